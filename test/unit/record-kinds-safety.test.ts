/**
 * The record-kind table's refusal of draft keys no kind has, as the mutation run on
 * `src/records/kinds.ts` found it: every unknown key is named, each quoted, in one message.
 */
import { describe, expect, it } from 'vitest';
import { eachDraft, type RecordDrafts } from '../../src/records/kinds.ts';
import { glucoseDraft } from '../helpers/records.ts';

describe('record kinds (safety)', () => {
  it('names every unknown kind of a commit, quoted and comma-separated, with the known ones', () => {
    const drafts = { result: [glucoseDraft(1)], studdy: [], prnt: [] } as unknown as RecordDrafts;
    expect(() => eachDraft(drafts)).toThrow(new Error('unknown record kind "studdy", "prnt" (known: result, print-job, study)'));
  });
});
