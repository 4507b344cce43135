/**
 * Every driver the daemon knows, in one list. Adding a device is adding its file and one line here.
 */
import type { DriverDefinition } from '../src/driver-sdk/index.ts';

export const drivers: readonly DriverDefinition[] = [];

export function findDriver(id: string): DriverDefinition | undefined {
  return drivers.find((d) => d.id === id);
}
