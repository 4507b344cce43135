/**
 * The record kinds: one entry each, the one place a new kind is added. An entry says which schema
 * a kind's records carry, which topic under `device/<id>/` they go to, how a record's id derives
 * from the device identity and the draft's key (rule 3), which of its fields identify a patient,
 * and how the record is assembled from the draft. The store, the publisher, `finalize` and
 * `poctd replay` read this table and know no kind by name.
 *
 * Adding a kind (a study, a print job): its draft and record types in `types.ts`, a line in
 * `DraftTypes` and `RecordTypes` below, its entry in `RECORD_KINDS`, and its schema file.
 */
import { deviceRecordId } from './ids.ts';
import type { PrivateField } from './privacy.ts';
import {
  PRINT_JOB_SCHEMA,
  RESULT_SCHEMA,
  STUDY_SCHEMA,
  type DeviceIdentity,
  type PrintJobDraft,
  type PrintJobRecord,
  type RawRef,
  type ResultDraft,
  type ResultRecord,
  type StudyDraft,
  type StudyRecord,
} from './types.ts';

/** What every draft carries, whatever its kind: the device it came from and its own identity there. */
export interface DraftBase {
  key: string;
  device: DeviceIdentity;
}

/** Draft type by kind name: what a driver hands to `SessionHost.commit`. */
export interface DraftTypes {
  result: ResultDraft;
  'print-job': PrintJobDraft;
  study: StudyDraft;
}

/** Record type by kind name: what is stored and published. */
export interface RecordTypes {
  result: ResultRecord;
  'print-job': PrintJobRecord;
  study: StudyRecord;
}

export type RecordKindName = keyof DraftTypes & keyof RecordTypes;

/** A session's drafts for one commit, keyed by kind: `{ result: drafts }`. */
export type RecordDrafts = { [K in RecordKindName]?: ReadonlyArray<DraftTypes[K]> };

export type AnyRecord = RecordTypes[RecordKindName];

/** The fields the daemon owns in every record, whatever its kind. */
export interface OwnedFields {
  id: string;
  seq: number;
  site: string;
  received_at: string;
  raw: RawRef;
}

export interface RecordKind<K extends RecordKindName> {
  readonly name: K;
  /** The schema id every record of this kind carries (and the `schema` column of `records`). */
  readonly schema: RecordTypes[K]['schema'];
  /** Its JSON Schema, under `schemas/`. */
  readonly schemaFile: string;
  /** The topic under `device/<id>/` its records are published on (QoS 1, not retained). */
  readonly topic: string;
  /** Rule 3: from the device identity and the draft's key, so a re-download is a duplicate. */
  id(draft: DraftTypes[K]): string;
  /** The device's own naive clock reading, checked against DST changes; null when it has none. */
  deviceTime(draft: DraftTypes[K]): string | null;
  /** The draft with one more record-level flag (a DST note); the draft itself is not changed. */
  withFlag(draft: DraftTypes[K], flag: string): DraftTypes[K];
  /** The fields that identify a patient; the privacy policy applies to each. */
  readonly privateFields: readonly PrivateField[];
  /** The `category` column of `records` (a kind without categories gives its name). */
  category(draft: DraftTypes[K]): string;
  /** The record, fields in the order its schema lists them. */
  assemble(draft: DraftTypes[K], owned: OwnedFields): RecordTypes[K];
}

/**
 * A record whose own fields are its draft's: schema and the daemon's identity fields first, then
 * the draft without its key, then when it was received and from which bytes (the schemas' order).
 */
function aroundDraft<S extends string, D extends DraftBase>(schema: S, draft: D, owned: OwnedFields) {
  const { key: _key, ...body } = draft;
  return { schema, id: owned.id, seq: owned.seq, site: owned.site, ...body, received_at: owned.received_at, raw: owned.raw };
}

export const RECORD_KINDS: { readonly [K in RecordKindName]: RecordKind<K> } = {
  result: {
    name: 'result',
    schema: RESULT_SCHEMA,
    schemaFile: 'result-2.schema.json',
    topic: 'result',
    // No namespace: the ids stored before kinds existed stay what they were.
    id: (draft) => deviceRecordId(draft),
    deviceTime: (draft) => draft.device_time,
    withFlag: (draft, flag) => (draft.flags.includes(flag) ? draft : { ...draft, flags: [...draft.flags, flag] }),
    privateFields: [['patient', 'id']],
    category: (draft) => draft.category,
    assemble: (draft, owned) => {
      const { key: _key, ...body } = draft;
      return {
        schema: RESULT_SCHEMA,
        id: owned.id,
        seq: owned.seq,
        site: owned.site,
        ...body,
        received_at: owned.received_at,
        raw: owned.raw,
      };
    },
  },
  'print-job': {
    name: 'print-job',
    schema: PRINT_JOB_SCHEMA,
    schemaFile: 'print-job-1.schema.json',
    topic: 'job',
    id: (draft) => deviceRecordId(draft, 'print-job'),
    deviceTime: () => null,
    withFlag: (draft) => draft,
    // None by construction: the patient's name and MRN stay in the job's ZPL (its raw capture).
    privateFields: [],
    category: () => 'print-job',
    assemble: (draft, owned) => aroundDraft(PRINT_JOB_SCHEMA, draft, owned),
  },
  study: {
    name: 'study',
    schema: STUDY_SCHEMA,
    schemaFile: 'study-1.schema.json',
    topic: 'study',
    id: (draft) => deviceRecordId(draft, 'study'),
    deviceTime: (draft) => draft.device_time,
    withFlag: (draft, flag) => (draft.flags.includes(flag) ? draft : { ...draft, flags: [...draft.flags, flag] }),
    // A study names its patient three ways; each is protected by the policy.
    privateFields: [
      ['patient', 'id'],
      ['patient', 'name'],
      ['patient', 'birth_date'],
    ],
    category: () => 'study',
    assemble: (draft, owned) => aroundDraft(STUDY_SCHEMA, draft, owned),
  },
};

/** Kind names in the order a commit stores them (and so the order of their seqs). */
export const RECORD_KIND_NAMES = Object.keys(RECORD_KINDS) as RecordKindName[];

/** The kind whose records carry `schema`, as the store's `schema` column tells. */
export function kindBySchema(schema: string): RecordKind<RecordKindName> | undefined {
  return RECORD_KIND_NAMES.map((name) => RECORD_KINDS[name] as RecordKind<RecordKindName>).find((k) => k.schema === schema);
}

/** The kind named `name`, or undefined for a key no kind has (a driver's typo, a kind not built yet). */
export function kindByName(name: string): RecordKind<RecordKindName> | undefined {
  return Object.hasOwn(RECORD_KINDS, name) ? (RECORD_KINDS[name as RecordKindName] as RecordKind<RecordKindName>) : undefined;
}

/** Every draft of a commit with its kind, kinds in table order, drafts in the order given. */
export function eachDraft(drafts: RecordDrafts): Array<{ kind: RecordKind<RecordKindName>; draft: DraftTypes[RecordKindName] }> {
  const unknown = Object.keys(drafts).filter((name) => !kindByName(name));
  if (unknown.length > 0) {
    throw new Error(`unknown record kind ${unknown.map((n) => `"${n}"`).join(', ')} (known: ${RECORD_KIND_NAMES.join(', ')})`);
  }
  return RECORD_KIND_NAMES.flatMap((name) =>
    (drafts[name] ?? []).map((draft) => ({ kind: RECORD_KINDS[name] as RecordKind<RecordKindName>, draft })),
  );
}

/**
 * A commit's counts by kind name: what it stored and what it found stored already (every draft is
 * one or the other, so a kind's duplicates are its drafts less its inserted records).
 */
export function countsByKind(drafts: RecordDrafts, inserted: ReadonlyArray<{ schema: string }>): { stored: Record<string, number>; duplicates: Record<string, number> } {
  const stored: Record<string, number> = {};
  const duplicates: Record<string, number> = {};
  for (const record of inserted) {
    const name = kindBySchema(record.schema)?.name ?? 'unknown';
    stored[name] = (stored[name] ?? 0) + 1;
  }
  for (const name of RECORD_KIND_NAMES) {
    const n = (drafts[name]?.length ?? 0) - (stored[name] ?? 0);
    if (n > 0) duplicates[name] = n;
  }
  return { stored, duplicates };
}
