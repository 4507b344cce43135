import { readdirSync, readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { topicSchema, TOPIC_SCHEMAS, type TopicPayloads } from '../../src/mqtt/topics.ts';
import { finalize } from '../../src/records/finalize.ts';
import { deviceRecordId } from '../../src/records/ids.ts';
import { eachDraft, kindByName, kindBySchema, RECORD_KIND_NAMES, RECORD_KINDS } from '../../src/records/kinds.ts';
import { applyPrivacy, hashPatientId, resolvePrivacy, type PrivacySettings } from '../../src/records/privacy.ts';
import { schemaProblems, SCHEMA_IDS } from '../../src/records/schemas.ts';
import type { ResultRecord } from '../../src/records/types.ts';
import { glucoseDraft } from '../helpers/records.ts';

const KEY = 'a-site-wide-secret-key';
const raw = { sha256: 'ab'.repeat(32), size: 10, kind: 'transcript' as const };

describe('the record kind table', () => {
  it('gives result its schema, topic, id rule and schema file', () => {
    const result = RECORD_KINDS.result;
    expect(result.schema).toBe('poct.result/2');
    expect(result.topic).toBe('result');
    expect(result.schemaFile).toBe('result-2.schema.json');
    const draft = glucoseDraft(1);
    expect(result.id(draft)).toBe(deviceRecordId(draft));
    expect(kindBySchema('poct.result/2')).toBe(result);
    expect(kindBySchema('poct.result/1')).toBeUndefined();
    expect(kindByName('result')).toBe(result);
    expect(kindByName('toString')).toBeUndefined();
  });

  it('every kind has its schema shipped, listed in bridge/info, and a topic with that schema', () => {
    const shipped = readdirSync(new URL('../../schemas/', import.meta.url));
    for (const name of RECORD_KIND_NAMES) {
      const kind = RECORD_KINDS[name];
      expect(shipped).toContain(kind.schemaFile);
      const file = JSON.parse(readFileSync(new URL(`../../schemas/${kind.schemaFile}`, import.meta.url), 'utf8')) as { $id: string };
      expect(file.$id).toBe(kind.schema);
      expect(SCHEMA_IDS).toContain(kind.schema);
      expect(topicSchema(`device/m1/${kind.topic}`)).toEqual({ pattern: `device/+/${kind.topic}`, schema: kind.schema });
    }
  });

  it('refuses drafts under a key that no kind has', () => {
    expect(() => eachDraft({ results: [glucoseDraft(1)] } as never)).toThrow(/unknown record kind "results" \(known: result, print-job, study\)/);
    expect(eachDraft({ result: [glucoseDraft(1), glucoseDraft(2)] }).map((d) => d.kind.name)).toEqual(['result', 'result']);
    expect(eachDraft({})).toEqual([]);
  });
});

describe('topic schemas', () => {
  it('names a schema (or none, for what the daemon only listens to) for every topic of TopicPayloads', () => {
    const patterns: Array<keyof TopicPayloads> = [
      'bridge/state', 'bridge/info', 'bridge/devices', 'bridge/health', 'bridge/event', 'bridge/request/+', 'bridge/response/+',
      'device/+', 'device/+/availability', 'device/+/result', 'device/+/job', 'device/+/study', 'device/+/request/+', 'device/+/response/+',
    ];
    expect(Object.keys(TOPIC_SCHEMAS).sort()).toEqual([...patterns].sort());
    for (const schema of Object.values(TOPIC_SCHEMAS)) if (schema) expect(SCHEMA_IDS).toContain(schema);
  });

  it('matches topics to their patterns; a verb may have several levels, a device id only one', () => {
    expect(topicSchema('bridge/response/results/replay')?.schema).toBe('poct.response/1');
    expect(topicSchema('device/m1/response/clock/sync')?.schema).toBe('poct.response/1');
    expect(topicSchema('device/m1')?.schema).toBe('poct.device-state/2');
    expect(topicSchema('device/m1/availability')?.schema).toBe('poct.availability/1');
    expect(topicSchema('bridge/state')?.schema).toBe('poct.availability/1');
    expect(topicSchema('bridge/request/info')).toEqual({ pattern: 'bridge/request/+', schema: null });
    expect(topicSchema('device/m1/extra/result')).toBeUndefined();
    expect(topicSchema('bridge/response')).toBeUndefined();
    expect(topicSchema('elsewhere')).toBeUndefined();
  });

  it('every shipped schema compiles under strict mode', () => {
    for (const id of [...SCHEMA_IDS, 'poct.result/1']) expect(() => schemaProblems(id, {})).not.toThrow();
  });

  it('the response schema holds ok and error answers to their shape', () => {
    expect(schemaProblems('poct.response/1', { status: 'ok', data: { n: 1 }, error: null, transaction: 't1' })).toEqual([]);
    expect(schemaProblems('poct.response/1', { status: 'error', data: null, error: 'unknown request' })).toEqual([]);
    expect(schemaProblems('poct.response/1', { status: 'error', data: null, error: null })).not.toEqual([]);
    expect(schemaProblems('poct.response/1', { status: 'ok', data: 1, error: 'but' })).not.toEqual([]);
  });
});

describe('privacy', () => {
  const withPatient = (): ResultRecord =>
    finalize(RECORD_KINDS.result, glucoseDraft(1, { patient: { id: 'MRN-7' } }), {
      seq: 1, site: 's', receivedAt: '2026-01-01T00:00:00.000Z', raw, timezone: 'UTC', privacy: { policy: 'publish' },
    });

  it('resolves every policy value; hash needs a key, from the config or the store', () => {
    expect(resolvePrivacy({ patient_id: 'publish' })).toEqual({ policy: 'publish' });
    expect(resolvePrivacy({ patient_id: 'omit', hash_key: KEY })).toEqual({ policy: 'omit' });
    expect(resolvePrivacy({ patient_id: 'hash', hash_key: KEY }, 'store-key-xxxxxxxxx')).toEqual({ policy: 'hash', key: KEY });
    expect(resolvePrivacy({ patient_id: 'hash' }, 'store-key-xxxxxxxxx')).toEqual({ policy: 'hash', key: 'store-key-xxxxxxxxx' });
  });

  it('fails closed: no settings, an unknown policy or no key never means publish', () => {
    expect(resolvePrivacy(undefined, KEY)).toEqual({ policy: 'hash', key: KEY });
    expect(resolvePrivacy({ patient_id: 'PUBLISH' } as unknown as PrivacySettings, KEY)).toEqual({ policy: 'hash', key: KEY });
    expect(resolvePrivacy({} as PrivacySettings, KEY)).toEqual({ policy: 'hash', key: KEY });
    // Hashing needs a key; where none can exist (a replay without a config) the id is left out.
    expect(resolvePrivacy(undefined)).toEqual({ policy: 'omit' });
    expect(resolvePrivacy({ patient_id: 'hash', hash_key: '' })).toEqual({ policy: 'omit' });
  });

  it("applies the kind's private fields: hashed, omitted or kept, the input never changed", () => {
    const record = withPatient();
    expect(applyPrivacy(record, RECORD_KINDS.result.privateFields, { policy: 'hash', key: KEY }).patient).toEqual({ id: hashPatientId('MRN-7', KEY) });
    expect(applyPrivacy(record, RECORD_KINDS.result.privateFields, { policy: 'omit' }).patient).toEqual({ id: null });
    expect(applyPrivacy(record, RECORD_KINDS.result.privateFields, { policy: 'publish' }).patient).toEqual({ id: 'MRN-7' });
    expect(record.patient).toEqual({ id: 'MRN-7' });
    // Nothing else of the record moves.
    const { patient: _a, ...rest } = applyPrivacy(record, RECORD_KINDS.result.privateFields, { policy: 'omit' });
    const { patient: _b, ...before } = record;
    expect(rest).toEqual(before);
  });

  it('protects what a kind lists inside arrays (`*`) and a value that is not a string', () => {
    const study = { series: [{ patient_name: 'DOE^JANE' }, { patient_name: null }, {}], birth: 19700101 };
    const out = applyPrivacy(study, [['series', '*', 'patient_name'], ['birth'], ['absent', 'x']], { policy: 'hash', key: KEY });
    expect(out).toEqual({ series: [{ patient_name: hashPatientId('DOE^JANE', KEY) }, { patient_name: null }, {}], birth: hashPatientId('19700101', KEY) });
  });
});

describe('finalize', () => {
  it('makes the record the store stores: owned fields, DST flag, privacy, and it validates', () => {
    const draft = glucoseDraft(1, { device_time: '2026-03-29T02:30:00', observed_at: '2026-03-29T02:30:00+01:00', patient: { id: 'MRN-7' } });
    const record = finalize(RECORD_KINDS.result, draft, {
      seq: 7, site: 'clinic-a', receivedAt: '2026-11-22T09:00:00.000Z', raw, timezone: 'Europe/Copenhagen', privacy: { policy: 'hash', key: KEY },
    });
    expect(record).toMatchObject({ schema: 'poct.result/2', id: deviceRecordId(draft), seq: 7, site: 'clinic-a', received_at: '2026-11-22T09:00:00.000Z', raw });
    expect(record.flags).toEqual(['device-time:skipped-hour']);
    expect(record.patient).toEqual({ id: hashPatientId('MRN-7', KEY) });
    expect('key' in record).toBe(false);
    expect(schemaProblems('poct.result/2', record)).toEqual([]);
    expect(draft.flags).toEqual([]);
  });
});
