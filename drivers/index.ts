/**
 * Every driver the daemon knows, in one list. Adding a device is adding its file and one line here.
 */
import type { DriverDefinition } from '../src/driver-sdk/index.ts';
import { onetouchUltra2 } from './glucose/onetouch-ultra2.ts';

export const drivers: readonly DriverDefinition[] = [onetouchUltra2];

export function findDriver(id: string): DriverDefinition | undefined {
  return drivers.find((d) => d.id === id);
}
