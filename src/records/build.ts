import { resultId } from './ids.ts';
import { RESULT_SCHEMA, type ResultDraft, type ResultRecord } from './types.ts';

/** A driver's draft plus what the daemon owns: schema, id, seq, site, arrival time, raw capture. */
export function buildResultRecord(
  draft: ResultDraft,
  owned: { seq: number; site: string; receivedAt: string; captureSha256: string },
): ResultRecord {
  const { key: _key, ...body } = draft;
  return {
    schema: RESULT_SCHEMA,
    id: resultId(draft),
    seq: owned.seq,
    site: owned.site,
    ...body,
    received_at: owned.receivedAt,
    raw: { capture: owned.captureSha256, sha256: owned.captureSha256 },
  };
}
