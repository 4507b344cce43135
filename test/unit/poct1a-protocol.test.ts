/**
 * The POCT1-A codec: the stream splitter (byte-exact documents for any chunking, comments and
 * CDATA that hold a fake close tag, a prolog per message, two messages in one read; DOCTYPE,
 * entity bombs, garbage, truncation and the size cap refused as problems, and the stream goes
 * on), the document parser and the message builders (split to the device's max_message_sz).
 */
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import {
  ackMessage,
  directiveMessage,
  endMessage,
  escapeXml,
  operatorListMessages,
  requestMessage,
  setTimeMessage,
} from '../../src/protocols/poct1a/builders.ts';
import { element, elements, parseDocument, value, values } from '../../src/protocols/poct1a/document.ts';
import { Poct1aSplitter, type SplitEvent } from '../../src/protocols/poct1a/splitter.ts';
import { cutAt } from '../helpers/cut-bytes.ts';

const HEL = '<?xml version="1.0" encoding="utf-8"?><HEL.R01><HDR><HDR.message_type V="HEL.R01" /><HDR.control_id V="1" /></HDR><DEV><DEV.device_id V="NOVA^Bed 4 &amp; 5" /><DSC><DSC.topics_supported_cd V="OBS" /><DSC.topics_supported_cd V="OP_LST" /><DSC.max_message_sz V="1000" /></DSC></DEV></HEL.R01>';
/** A comment and a CDATA section each holding the root's close tag, and non-ASCII text. */
const TRICKY =
  '<?xml version="1.0"?>\n<!-- before the root </OBS.R01> -->\n<OBS.R01><HDR><HDR.control_id V="2"/></HDR><!-- </OBS.R01> --><NTE><NTE.text><![CDATA[</OBS.R01> ]]> Glukose µmol/L — Øst</NTE.text></NTE></OBS.R01>';
const SELF_CLOSED = '<KPA.R01/>';
const NO_PROLOG = '<EOT.R01><HDR><HDR.control_id V="3"/></HDR><EOT><EOT.topic_cd V="OBS"/></EOT></EOT.R01>';

const DOCS = [HEL, TRICKY, SELF_CLOSED, NO_PROLOG].map((d) => Buffer.from(d, 'utf8'));
/** The stream: documents separated by nothing, newlines, CRLF, and a comment between messages. */
const STREAM = Buffer.concat([DOCS[0]!, DOCS[1]!, Buffer.from('\r\n'), DOCS[2]!, Buffer.from('\n<!-- device -> manager -->\n'), DOCS[3]!, Buffer.from('\n')]);

function split(chunks: Buffer[], maxBytes?: number): SplitEvent[] {
  const s = new Poct1aSplitter(maxBytes === undefined ? {} : { maxBytes });
  const out = chunks.flatMap((c) => s.push(c));
  return [...out, ...s.end()];
}

const cut = (bytes: Buffer, points: number[]): Buffer[] => cutAt(bytes, points).filter((b) => b.length > 0);

const docsOf = (events: SplitEvent[]): Buffer[] => events.filter((e) => e.kind === 'document').map((e) => e.bytes);
const problemsOf = (events: SplitEvent[]): string[] => events.filter((e) => e.kind === 'problem').map((e) => e.reason);

describe('poct1a splitter', () => {
  it('cuts each document at its root close tag, byte for byte, in one read', () => {
    const events = split([STREAM]);
    expect(problemsOf(events)).toEqual([]);
    expect(docsOf(events)).toEqual(DOCS);
    expect(events.map((e) => (e.kind === 'document' ? e.root : e.reason))).toEqual(['HEL.R01', 'OBS.R01', 'KPA.R01', 'EOT.R01']);
  });

  it('gives the same documents for the stream cut into random chunks (byte by byte too)', () => {
    expect(docsOf(split([...STREAM].map((b) => Buffer.from([b]))))).toEqual(DOCS);
    fc.assert(
      fc.property(fc.array(fc.nat(), { maxLength: 40 }), (points) => {
        const events = split(cut(STREAM, points));
        expect(problemsOf(events)).toEqual([]);
        expect(docsOf(events)).toEqual(DOCS);
      }),
      { numRuns: 300 },
    );
  });

  it('refuses a DOCTYPE with an entity expansion bomb, then reads the next message', () => {
    const bomb = '<?xml version="1.0"?><!DOCTYPE lolz [<!ENTITY lol "lol"><!ENTITY lol2 "&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;">]><OBS.R01>&lol2;</OBS.R01>';
    fc.assert(
      fc.property(fc.array(fc.nat(), { maxLength: 10 }), (points) => {
        const events = split(cut(Buffer.concat([Buffer.from(bomb), DOCS[0]!]), points));
        expect(events.map((e) => (e.kind === 'document' ? e.root : e.reason))).toEqual(['doctype', 'HEL.R01']);
        expect(docsOf(events)).toEqual([DOCS[0]]);
      }),
      { numRuns: 100 },
    );
  });

  it('refuses an undefined entity reference and malformed XML, skipping to the close tag of the broken message', () => {
    const events = split([Buffer.from('<OBS.R01><A V="1">&bomb;</A></OBS.R01>'), Buffer.from('<DST.R01><A></B></DST.R01>'), DOCS[3]!]);
    expect(events.map((e) => (e.kind === 'document' ? e.root : e.reason))).toEqual(['malformed-xml', 'malformed-xml', 'EOT.R01']);
    const first = events[0]!;
    expect(first.kind === 'problem' && first.root).toBe('OBS.R01');
  });

  it('reports garbage between messages once per run, and the messages around it are intact', () => {
    const events = split(cut(Buffer.concat([Buffer.from('\x00\x01junk'), DOCS[0]!, Buffer.from('more junk'), DOCS[3]!]), [2, 7, 40, 300]));
    expect(events.map((e) => (e.kind === 'document' ? e.root : e.reason))).toEqual(['garbage', 'HEL.R01', 'garbage', 'EOT.R01']);
    expect(events[0]!.bytes.toString('latin1')).toBe('\x00\x01junk');
  });

  it('a message cut short and resent without a prolog: the resend is read, not swallowed by the skip to the close tag', () => {
    const whole = '<OBS.R01><HDR><HDR.control_id V="7"/></HDR><SVC><SVC.role_cd V="OBS"/></SVC></OBS.R01>';
    const broken = whole.slice(0, 40) + '<<';
    fc.assert(
      fc.property(fc.array(fc.nat(), { maxLength: 8 }), (points) => {
        const events = split(cut(Buffer.from(broken + whole + NO_PROLOG), points));
        expect(events.map((e) => (e.kind === 'document' ? e.root : e.reason))).toEqual(['malformed-xml', 'OBS.R01', 'EOT.R01']);
        expect(docsOf(events)[0]!.toString()).toBe(whole);
      }),
      { numRuns: 100 },
    );
  });

  it('a broken start before any root (a stray <, a bad prolog) costs only itself: the next message is read even without a prolog', () => {
    const events = split([Buffer.from('<<!x <?xml version="1.0"?><?xml version="2"?>'), DOCS[3]!, DOCS[2]!]);
    expect(events.filter((e) => e.kind === 'document').map((e) => e.kind === 'document' && e.root)).toEqual(['EOT.R01', 'KPA.R01']);
    expect(problemsOf(events).length).toBeGreaterThan(0);
  });

  it('a message cut off by the end of the stream is a problem with its bytes, never a document', () => {
    const half = DOCS[0]!.subarray(0, 100);
    const s = new Poct1aSplitter();
    expect(s.push(half)).toEqual([]);
    expect(s.partial).toEqual(half);
    const end = s.end();
    expect(end).toHaveLength(1);
    expect(end[0]).toMatchObject({ kind: 'problem', reason: 'malformed-xml', root: 'HEL.R01', bytes: half });
  });

  it('refuses a message over the size cap, keeps at most the cap, and reads the next message', () => {
    const huge = Buffer.from(`<OBS.R01>${'<NTE V="x"/>'.repeat(2000)}</OBS.R01>`);
    fc.assert(
      fc.property(fc.array(fc.nat(), { maxLength: 10 }), (points) => {
        const events = split(cut(Buffer.concat([huge, DOCS[0]!]), points), 4096);
        expect(events.map((e) => (e.kind === 'document' ? e.root : e.reason))).toEqual(['too-large', 'HEL.R01']);
        expect(events[0]!.bytes.length).toBeLessThanOrEqual(4096);
        expect(docsOf(events)).toEqual([DOCS[0]]);
      }),
      { numRuns: 100 },
    );
  });

  it('a second root without a prolog in between still starts a new document (a fresh parser each)', () => {
    expect(docsOf(split([Buffer.from('<A/><B></B><?xml version="1.0"?><C/>')])).map((b) => b.toString())).toEqual(['<A/>', '<B></B>', '<?xml version="1.0"?><C/>']);
  });
});

describe('poct1a document', () => {
  it('reads the header and values, repeated elements as arrays, entities decoded, text values as a fallback', () => {
    const r = parseDocument(DOCS[0]!);
    expect(r.ok).toBe(true);
    if (!r.ok) return;
    expect(r.message.root).toBe('HEL.R01');
    expect(r.message.header).toEqual({ messageType: 'HEL.R01', controlId: '1', versionId: null, creationTime: null });
    const dev = element(r.message.body, 'DEV');
    expect(value(dev, 'DEV.device_id')).toBe('NOVA^Bed 4 & 5');
    expect(values(element(dev, 'DSC'), 'DSC.topics_supported_cd')).toEqual(['OBS', 'OP_LST']);
    const tricky = parseDocument(DOCS[1]!);
    expect(tricky.ok && value(element(tricky.message.body, 'NTE'), 'NTE.text')).toBe('</OBS.R01> ]]> Glukose µmol/L — Øst'.replace(' ]]>', ''));
    expect(elements(null, 'X')).toEqual([]);
    // Well-formedness is the splitter's (saxes) check; the parser still refuses a document with no root.
    expect(parseDocument(Buffer.from('<?xml version="1.0"?>')).ok).toBe(false);
  });
});

describe('poct1a builders', () => {
  const h = { controlId: 4001, now: new Date('2026-01-01T12:00:00Z'), timezone: 'Europe/Copenhagen' };

  it('builds messages the parser reads back, with the header the DCA capture shows', () => {
    const ack = parseDocument(ackMessage(h, '10014', 'AE', 'store <busy> & "down"'));
    expect(ack.ok && ack.message.header).toEqual({ messageType: 'ACK.R01', controlId: '4001', versionId: 'POCT1', creationTime: '2026-01-01T13:00:00+01:00' });
    expect(ack.ok && value(element(ack.message.body, 'ACK'), 'ACK.type_cd')).toBe('AE');
    expect(ack.ok && value(element(ack.message.body, 'ACK'), 'ACK.note_txt')).toBe('store <busy> & "down"');
    const req = requestMessage(h, 'ROBS').toString();
    expect(req).toContain('<REQ><REQ.request_cd V="ROBS"/></REQ>');
    expect(directiveMessage(h, 'START_CONTINUOUS').toString()).toContain('<DTV.command_cd V="START_CONTINUOUS"/>');
    expect(endMessage(h).toString()).toContain('<TRM.reason_cd V="NRM"/>');
    expect(setTimeMessage(h, '2026-01-01T13:00:00+01:00').toString()).toContain('<TM><TM.dttm V="2026-01-01T13:00:00+01:00"/></TM>');
    expect(escapeXml(`<a&'">`)).toBe('&lt;a&amp;&apos;&quot;&gt;');
  });

  it('splits an operator list so each message fits the device max_message_sz, and keeps every operator once', () => {
    const operators = Array.from({ length: 40 }, (_, i) => ({ id: `OP${i}`, name: `Nurse ${i}`, password: `pw${i}`, permission: '1' }));
    let id = 5000;
    const msgs = operatorListMessages(operators, { incremental: false, maxBytes: 1000, now: h.now, timezone: h.timezone, nextControlId: () => ++id });
    expect(msgs.length).toBeGreaterThan(3);
    for (const m of msgs) expect(m.length).toBeLessThanOrEqual(1000);
    const ids = msgs.flatMap((m) => {
      const r = parseDocument(m);
      if (!r.ok) throw new Error(r.reason);
      expect(r.message.root).toBe('OPL.R01');
      return elements(r.message.body, 'OPR').map((o) => value(o, 'OPR.operator_id'));
    });
    expect(ids).toEqual(operators.map((o) => o.id));
    const first = parseDocument(msgs[0]!);
    const acc = first.ok ? element(element(first.message.body, 'OPR'), 'ACC') : null;
    expect(value(acc, 'ACC.password')).toBe(Buffer.from('pw0').toString('base64'));
    expect(() => operatorListMessages([{ id: 'x'.repeat(2000) }], { incremental: true, maxBytes: 1000, now: h.now, timezone: h.timezone, nextControlId: () => 1 })).toThrow(/needs \d+ bytes/);
    // An empty complete list is still one message (it clears the device's list).
    expect(operatorListMessages([], { incremental: false, maxBytes: 1000, now: h.now, timezone: h.timezone, nextControlId: () => 1 })).toHaveLength(1);
  });
});
