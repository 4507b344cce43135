/**
 * Judges the `astm` driver against the third-party messages in `../shared/corpus/astm/` (or
 * `POCTD_CORPUS`): `npm run corpus`. Each case folder holds `capture.bin` (bytes as `poctd replay`
 * reads them) and `source.json` (where they came from); `expectations.json` beside the cases says
 * what each source asserts. The repository's tests never depend on the corpus.
 *
 * For every case, besides what its source asserts:
 * - every R record of every complete message is published (a missing one names the reason the
 *   decoder gave);
 * - a plain number in R-4 is the published value (or the number sits in `limit` with a comparator);
 * - no two observations of one record share a code unless their test ids are the same;
 * - the category, specimen ids, units (UCUM), texts, comparators and time the source asserts.
 *
 * Prints one line per case (`pass` / `FAIL` / `refused` with the reasons) and a summary; the exit
 * code is the number of failed cases (0 when all pass).
 */
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { captureFromBytes } from '../src/driver-sdk/capture.ts';
import type { Observation, ResultDraft } from '../src/records/types.ts';
import { decodeText, parseMessage, type AstmResult } from '../src/protocols/astm/records.ts';
import { astmMessages, decodeAstmMessage, dialectOf } from '../drivers/analyzers/astm/records.ts';
import { parseAstmOptions } from '../drivers/analyzers/astm/options.ts';

const ROOT = resolve(fileURLToPath(new URL('..', import.meta.url)));
const CORPUS = process.env.POCTD_CORPUS ?? resolve(ROOT, '..', 'shared', 'corpus', 'astm');

interface Expectation {
  category?: string;
  specimen_ids?: string[];
  time?: string;
  options?: Record<string, unknown>;
  /** unit as sent → the UCUM code the result must carry. */
  ucum?: Record<string, string>;
  /** R-3 as sent → the text the result must carry. */
  texts?: Record<string, string>;
  comparators?: Record<string, { comparator: string; limit: number; ucum?: string }>;
}

interface Verdict {
  name: string;
  status: 'pass' | 'FAIL' | 'refused';
  problems: string[];
  records: number;
  results: number;
}

const STX = 0x02;
const ETX = 0x03;
const ETB = 0x17;
const NUMBER = /^[-+]?\d+(?:\.\d+)?$/;

/**
 * The R records the device sent, counted apart from the decoder: every frame's text (STX, frame
 * number, … up to ETB/ETX, whatever its checksum or number), or the text between STX and ETX when
 * a device sends no frame number, joined and split into records on CR. A frame the decoder drops
 * is still counted here, so a message published without it shows.
 */
export function resultRecordsSent(bytes: Buffer): number {
  let joined = '';
  let at = bytes.indexOf(STX);
  while (at >= 0) {
    let end = at + 1;
    while (end < bytes.length && bytes[end] !== ETX && bytes[end] !== ETB) end++;
    const body = bytes.subarray(at + 1, end).toString('latin1');
    joined += /^[0-7]/.test(body) ? body.slice(1) : body;
    at = bytes.indexOf(STX, end);
  }
  return joined.split(/\r\n|\r|\n/).filter((r) => /^R\|/.test(r) || /^R[^A-Za-z0-9]/.test(r)).length;
}

/** R-3 as the device wrote it (escaped text of the field's first repeat). */
const rawTestId = (r: AstmResult): string => r.record.field(3).split(r.record.delimiters.repeat)[0] ?? '';

function judgeResult(r: AstmResult, o: Observation, exp: Expectation, where: string, problems: string[]): void {
  const id = rawTestId(r);
  const values = r.value.map((v) => v.trim()).filter((v) => v !== '');
  const plain = values.length === 1 && NUMBER.test(values[0]!) ? Number(values[0]) : null;
  const rangeFlag = r.abnormalFlags.some((f) => f === '<' || f === '>');
  const cannot = r.status.trim().toUpperCase() === 'X';
  if (plain !== null && !rangeFlag && !cannot) {
    const published = o.value ?? (o.text !== null && NUMBER.test(o.text) ? Number(o.text) : null);
    if (published !== plain) problems.push(`${where} ${id}: R-4 ${values[0]} published as value ${o.value} text ${JSON.stringify(o.text)}`);
  }
  const unit = r.units.trim();
  const wantUcum = exp.ucum?.[unit];
  if (wantUcum !== undefined && o.value !== null && o.ucum !== wantUcum) problems.push(`${where} ${id}: unit ${unit} → ucum ${o.ucum}, expected ${wantUcum}`);
  const wantText = exp.texts?.[id];
  if (wantText !== undefined && o.text !== wantText) problems.push(`${where} ${id}: text ${JSON.stringify(o.text)}, expected ${JSON.stringify(wantText)}`);
  const wantCmp = exp.comparators?.[id];
  if (wantCmp) {
    if (o.comparator !== wantCmp.comparator || o.limit !== wantCmp.limit || o.value !== null) {
      problems.push(`${where} ${id}: comparator ${o.comparator} limit ${o.limit} value ${o.value}, expected ${wantCmp.comparator} ${wantCmp.limit} and no value`);
    }
    if (wantCmp.ucum && o.ucum !== wantCmp.ucum) problems.push(`${where} ${id}: ucum ${o.ucum}, expected ${wantCmp.ucum}`);
  }
}

function judgeCase(name: string, dir: string, exp: Expectation): Verdict {
  const problems: string[] = [];
  const capture = captureFromBytes(readFileSync(join(dir, 'capture.bin')));
  const ctx = { deviceId: name, timezone: 'UTC', options: exp.options ?? {} };
  let options;
  try {
    options = parseAstmOptions(exp.options ?? {}, 'options');
  } catch (error) {
    return { name, status: 'refused', problems: [(error as Error).message], records: 0, results: 0 };
  }
  const { messages, issues } = astmMessages(capture, options);
  const verdict: Verdict = { name, status: 'pass', problems, records: 0, results: 0 };
  if (messages.length === 0) {
    verdict.status = 'refused';
    const reasons = new Map<string, { n: number; detail: string | undefined }>();
    for (const i of issues) reasons.set(i.reason, { n: (reasons.get(i.reason)?.n ?? 0) + 1, detail: reasons.get(i.reason)?.detail ?? i.detail });
    problems.push(...[...reasons].map(([r, { n, detail }]) => `${r}${n > 1 ? ` ×${n}` : ''}${detail ? ` (first: ${detail})` : ''}`));
    if (problems.length === 0) problems.push('no complete message in the capture');
    return verdict;
  }
  const published: ResultDraft[] = [];
  messages.forEach((bytes, m) => {
    const dialect = dialectOf(bytes, options.dialect);
    const text = decodeText(bytes, options.encoding ?? dialect.encoding, dialect.fallbackEncoding).text;
    const orders = parseMessage(text).patients.flatMap((p) => p.orders).filter((o) => o.results.length > 0);
    const decoded = decodeAstmMessage(bytes, ctx, options);
    published.push(...decoded.drafts);
    if (decoded.drafts.length !== orders.length) {
      const why = decoded.issues.map((i) => i.reason).join('; ') || 'no reason given';
      problems.push(`message ${m + 1}: ${orders.length} order(s) with results, ${decoded.drafts.length} published (${why})`);
      return;
    }
    orders.forEach((order, k) => {
      const draft = decoded.drafts[k]!;
      const where = `message ${m + 1} order ${k + 1}`;
      verdict.results += order.results.length;
      if (draft.observations.length !== order.results.length) {
        problems.push(`${where}: ${order.results.length} R records, ${draft.observations.length} observations`);
        return;
      }
      const byCode = new Map<string, string>();
      order.results.forEach((r, i) => {
        const o = draft.observations[i]!;
        const id = rawTestId(r);
        const seen = byCode.get(o.code);
        if (seen !== undefined && seen !== id) problems.push(`${where}: two test ids share the code ${o.code}: ${seen} and ${id}`);
        byCode.set(o.code, id);
        judgeResult(r, o, exp, where, problems);
      });
      if (exp.time && draft.device_time !== exp.time) problems.push(`${where}: time ${draft.device_time}, expected ${exp.time}`);
    });
  });
  verdict.records = published.length;
  const sent = resultRecordsSent(capture.kind === 'raw' ? capture.bytes : Buffer.concat(capture.exchanges.filter((e) => e.dir === 'D').map((e) => e.bytes)));
  const publishedResults = published.reduce((n, d) => n + d.observations.length, 0);
  if (sent === 0 && publishedResults === 0) {
    verdict.status = 'refused';
    const reasons = new Set([...issues, ...messages.flatMap((b) => decodeAstmMessage(b, ctx, options).issues)].map((i) => i.reason));
    problems.push(`no R record in the capture (${[...reasons].join('; ') || 'the messages hold no results'})`);
    return verdict;
  }
  if (publishedResults !== sent) {
    const reasons = new Map<string, number>();
    for (const i of issues) reasons.set(i.reason, (reasons.get(i.reason) ?? 0) + 1);
    const why = [...reasons].map(([r, n]) => (n > 1 ? `${r} ×${n}` : r)).join('; ');
    problems.push(`${sent} R records sent, ${publishedResults} published${why ? ` (link: ${why})` : ''}`);
  }
  if (exp.category) {
    const wrong = published.filter((d) => d.category !== exp.category);
    if (wrong.length) problems.push(`${wrong.length} record(s) of category ${[...new Set(wrong.map((d) => d.category))].join(', ')}, expected ${exp.category}`);
  }
  if (exp.specimen_ids) {
    const ids = published.map((d) => d.specimen.id);
    if (JSON.stringify(ids) !== JSON.stringify(exp.specimen_ids)) problems.push(`specimen ids ${JSON.stringify(ids)}, expected ${JSON.stringify(exp.specimen_ids)}`);
  }
  if (problems.length) verdict.status = 'FAIL';
  return verdict;
}

function main(): number {
  if (!existsSync(CORPUS)) {
    process.stderr.write(`judge-corpus: no corpus at ${CORPUS} (set POCTD_CORPUS)\n`);
    return 1;
  }
  const expectations = JSON.parse(readFileSync(join(CORPUS, 'expectations.json'), 'utf8')) as Record<string, Expectation>;
  const cases = readdirSync(CORPUS, { withFileTypes: true })
    .filter((e) => e.isDirectory() && existsSync(join(CORPUS, e.name, 'capture.bin')))
    .map((e) => e.name)
    .sort();
  const verdicts = cases.map((name) => judgeCase(name, join(CORPUS, name), expectations[name] ?? {}));
  for (const v of verdicts) {
    process.stdout.write(`${v.status.padEnd(7)} ${v.name}: ${v.records} record(s), ${v.results} result(s)\n`);
    const shown = new Map<string, number>();
    for (const p of v.problems) shown.set(p, (shown.get(p) ?? 0) + 1);
    let lines = 0;
    for (const [p, n] of shown) {
      if (lines++ === 8) {
        process.stdout.write(`          … ${shown.size - 8} more\n`);
        break;
      }
      process.stdout.write(`          ${p}${n > 1 ? ` (×${n})` : ''}\n`);
    }
  }
  const count = (s: Verdict['status']): number => verdicts.filter((v) => v.status === s).length;
  process.stdout.write(`\n${count('pass')} pass, ${count('FAIL')} fail, ${count('refused')} refused of ${verdicts.length} cases in ${CORPUS}\n`);
  return count('FAIL');
}

process.exitCode = main();
