import { createHmac } from 'node:crypto';
import type { PatientIdPolicy } from '../config/types.ts';

/**
 * The site's privacy settings as the config has them (`privacy.patient_id`, `privacy.hash_key`).
 * Every place that finalizes a record must be handed them: the type makes them required, and
 * `resolvePrivacy` makes a caller that still forgets them (plain JavaScript, a cast) fail closed.
 */
export interface PrivacySettings {
  patient_id: PatientIdPolicy;
  hash_key?: string | undefined;
}

/**
 * A field of a record that identifies a patient, as a path of property names; `*` steps into each
 * item of an array. Each record kind lists its own (see `kinds.ts`).
 */
export type PrivateField = readonly string[];

/** What will really be done to the private fields, once missing settings or keys are accounted for. */
export type ResolvedPrivacy = { policy: 'publish' } | { policy: 'omit' } | { policy: 'hash'; key: Buffer | string };

const POLICIES: ReadonlySet<string> = new Set<PatientIdPolicy>(['publish', 'hash', 'omit']);

/**
 * Fails closed: settings that are missing or name no known policy mean `hash`, and `hash` with no
 * key at hand (no configured key and no store key, as in a replay without a config) means `omit`.
 * Only a policy that says `publish` in so many words publishes a clear id.
 */
export function resolvePrivacy(settings: PrivacySettings | undefined, fallbackKey?: Buffer | string): ResolvedPrivacy {
  const asked = settings?.patient_id;
  const policy: PatientIdPolicy = asked !== undefined && POLICIES.has(asked) ? asked : 'hash';
  if (policy !== 'hash') return { policy };
  const key = settings?.hash_key ?? fallbackKey;
  return key !== undefined && key.length > 0 ? { policy: 'hash', key } : { policy: 'omit' };
}

/**
 * Applies the policy to every private field of `record` (a copy; the input is not changed), before
 * the record is stored, so the database, MQTT and replays all hold the same thing.
 *
 * `hash` is an HMAC-SHA256 under a secret key: the same patient gets the same value, so results
 * stay linkable, but a patient id (often a short number) cannot be found again by hashing every
 * candidate, which a plain hash of the id would allow. Daemons that must agree on the values share
 * the key through `privacy.hash_key`; otherwise each store keeps a random key of its own.
 */
export function applyPrivacy<T extends object>(record: T, fields: readonly PrivateField[], privacy: ResolvedPrivacy): T {
  if (privacy.policy === 'publish' || fields.length === 0) return record;
  const protect = (value: string): string | null => (privacy.policy === 'omit' ? null : hashPatientId(value, privacy.key));
  const copy = structuredClone(record) as unknown;
  let out = copy;
  for (const field of fields) out = rewrite(out, field, protect);
  return out as T;
}

/**
 * `node` with the value at `path` protected. It fails closed: a present value that is not the
 * shape the path steps into (a string where an object holding the id belongs, an array where an
 * object does, an object where an array of items does) is protected whole, since it may be the
 * patient id itself.
 */
function rewrite(node: unknown, path: PrivateField, protect: (value: string) => string | null): unknown {
  if (node === null || node === undefined || node === '') return node;
  if (path.length === 0) {
    // A driver that gave a number or an object where a string belongs still gets it protected.
    return protect(typeof node === 'string' ? node : JSON.stringify(node));
  }
  const [step, ...rest] = path as [string, ...string[]];
  if (step === '*') {
    if (!Array.isArray(node)) return rewrite(node, [], protect);
    for (let i = 0; i < node.length; i++) node[i] = rewrite(node[i], rest, protect);
    return node;
  }
  if (typeof node !== 'object' || Array.isArray(node)) return rewrite(node, [], protect);
  const holder = node as Record<string, unknown>;
  if (Object.hasOwn(holder, step)) holder[step] = rewrite(holder[step], rest, protect);
  return holder;
}

export function hashPatientId(id: string, hashKey: Buffer | string): string {
  if (hashKey.length < 16) throw new Error('the patient-id hash key must be at least 16 bytes');
  return `hmac:${createHmac('sha256', hashKey).update(id, 'utf8').digest('hex').slice(0, 32)}`;
}
