/**
 * `npm run bench` helper: the subscriber of the paced phases, in a process of its own as a
 * dashboard would be, so its work is not counted against the daemon's thread. Subscribes to
 * every result with QoS 1, notes when each arrived (absolute ms) and tells the parent only when
 * asked, so that reporting costs the daemon nothing while it is measured.
 */
import mqtt from 'mqtt';

const url = process.argv[2];
if (!url) throw new Error('usage: bench-subscriber.ts MQTT_URL');
const now = (): number => performance.timeOrigin + performance.now();

let arrivals: Array<[id: string, at: number]> = [];
const client = await mqtt.connectAsync(url, { clientId: `bench-sub-${process.pid}` });
client.on('message', (_topic, payload) => {
  const at = now();
  arrivals.push([(JSON.parse(payload.toString()) as { id: string }).id, at]);
});
await client.subscribeAsync('poct/device/+/result', { qos: 1 });
process.on('message', (m) => {
  if (m !== 'report') return;
  process.send?.({ arrivals });
  arrivals = [];
});
process.on('disconnect', () => void client.endAsync().then(() => process.exit(0)));
process.send?.({ ready: true });
