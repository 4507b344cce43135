import type { Cleanups } from './cleanups.ts';
import { Mosquitto } from './mosquitto.ts';
import { Subscriber } from './subscriber.ts';

/**
 * A Mosquitto for one test and a dashboard-like subscriber on `filters` (`poct/#` unless given),
 * both torn down after it.
 */
export async function brokerWithSubscriber(cleanups: Cleanups, filters?: string[]): Promise<{ broker: Mosquitto; sub: Subscriber }> {
  const broker = await Mosquitto.start();
  cleanups.push(() => broker.stop());
  const sub = await Subscriber.connect(broker.url, filters);
  cleanups.push(() => sub.close());
  return { broker, sub };
}
