/** Every POCT1-A vendor profile, most specific first; `generic` matches any device and is last. */
import { genericProfile } from './generic.ts';
import { siemensDcaVantageProfile } from './siemens-dca-vantage.ts';
import type { DeviceHello, Poct1aProfile } from './types.ts';

export type { DeviceHello, ObservationCoding, Poct1aProfile } from './types.ts';

export const PROFILES: readonly Poct1aProfile[] = [siemensDcaVantageProfile, genericProfile];

export function findProfile(id: string): Poct1aProfile | undefined {
  return PROFILES.find((p) => p.id === id);
}

export function detectProfile(hello: DeviceHello | null): Poct1aProfile {
  if (!hello) return genericProfile;
  return PROFILES.find((p) => p.matches(hello)) ?? genericProfile;
}
