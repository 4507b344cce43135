import { describe, expect, it } from 'vitest';
import { decodeText, escapeAstm, parseAstmDate, parseDelimiters, parseMessage, unescapeAstm, DEFAULT_DELIMITERS } from '../../src/protocols/astm/records.ts';

describe('E1394 records', () => {
  it('reads the delimiters from each H record, never assuming |\\^&', () => {
    expect(parseDelimiters('H|\\^&|||x')).toEqual({ field: '|', repeat: '\\', component: '^', escape: '&' });
    expect(parseDelimiters('H|@^\\|URM')).toEqual({ field: '|', repeat: '@', component: '^', escape: '\\' });
    expect(parseDelimiters('H!@#$!')).toEqual({ field: '!', repeat: '@', component: '#', escape: '$' });
    expect(parseDelimiters('H||^&|')).toBeNull(); // not four distinct characters
    expect(parseDelimiters('P|1')).toBeNull();
    const m = parseMessage('H!@#$!!!ODD#1.0#SN9\rP!1!PAT7\rO!1!S$F$1#R2!!#$S$#GLU@#$S$#KET\rR!1!##$S$#GLU!5.5!mmol/L\rL!1!N\r');
    expect(m.header?.sender).toEqual(['ODD', '1.0', 'SN9']);
    const order = m.patients[0]!.orders[0]!;
    expect(order.specimen).toEqual(['S!1', 'R2']);
    expect(order.testIds).toEqual([['', '#', 'GLU'], ['', '#', 'KET']]);
    expect(order.results[0]!.testId).toEqual(['', '', '#', 'GLU']);
    expect(order.results[0]!.value).toEqual(['5.5']);
    expect(m.terminationCode).toBe('N');
    expect(m.issues).toEqual([]);
  });

  it('decodes escapes after splitting: &F& &S& &R& &E& and &Xhh&, others kept', () => {
    const d = DEFAULT_DELIMITERS;
    expect(unescapeAstm('a&F&b&S&c&R&d&E&e', d)).toBe('a|b^c\\d&e');
    expect(unescapeAstm('&X4142&', d)).toBe('AB');
    expect(unescapeAstm('&XC2B5&g', d, 'utf-8')).toBe('µg');
    expect(unescapeAstm('&H&bold&N&', d)).toBe('&H&bold&N&');
    expect(unescapeAstm('dangling&F', d)).toBe('dangling&F');
    expect(unescapeAstm(escapeAstm('x|y^z\\w&v', d), d)).toBe('x|y^z\\w&v');
  });

  it('splits repeats and components; attaches comments to the record they follow', () => {
    const m = parseMessage(
      [
        'H|\\^&|||ABX|||||||P|E1394-97|20220727121551',
        'C|1|L|header note|G',
        'P|1|PID1||||Doe^Jane',
        'C|1|L|patient note|G',
        'O|1|S1234^00^00||^^^DIF\\^^^CBC|||202205270000',
        'C|1|L|order note|G',
        'R|1|^^^WBC^804-5^1|8.5|1||L\\A||W||NNE||20220727121550',
        'C|1|I|Alarm_WBC^LMNE-|I',
        'C|2|I|LARGE CELL|I',
        'R|2|^^^RBC^789-9^1|4.65|1||||F||NNE||20220727121550',
        'L|1|N',
      ].join('\r'),
    );
    expect(m.header!.comments.map((c) => c.text)).toEqual([['header note']]);
    const p = m.patients[0]!;
    expect(p.practiceId).toBe('PID1');
    expect(p.comments.map((c) => c.text[0])).toEqual(['patient note']);
    const o = p.orders[0]!;
    expect(o.testIds).toEqual([['', '', '', 'DIF'], ['', '', '', 'CBC']]);
    expect(o.comments.map((c) => c.text[0])).toEqual(['order note']);
    expect(o.results[0]!.abnormalFlags).toEqual(['L', 'A']);
    expect(o.results[0]!.status).toBe('W');
    expect(o.results[0]!.comments.map((c) => [c.source, c.text, c.commentType])).toEqual([
      ['I', ['Alarm_WBC', 'LMNE-'], 'I'],
      ['I', ['LARGE CELL'], 'I'],
    ]);
    expect(o.results[1]!.comments).toEqual([]);
    expect(o.results[1]!.completedAt).toBe('20220727121550');
  });

  it('keeps unknown record types raw and reports them; Q and M records are kept', () => {
    const m = parseMessage('H|\\^&\rQ|1|^S001||ALL||||||||O\rM|1|RR^BM|137\rZ|1|vendor\rL|1|N\r');
    expect(m.queries).toHaveLength(1);
    expect(m.queries[0]!.startingRange).toEqual(['', 'S001']);
    expect(m.manufacturer).toHaveLength(1);
    expect(m.unknown.map((r) => r.type)).toEqual(['Z']);
    expect(m.issues).toEqual(['record 4: unknown record type "Z" kept raw (expected H, P, O, R, C, Q, M or L)']);
  });

  it('a result with no order, records before H, and no H are issues, not exceptions', () => {
    expect(parseMessage('R|1|^^^X|1\rL|1|N\r').issues).toEqual(['2 record(s) before the H record skipped', 'no H record']);
    const m = parseMessage('H|\\^&\rR|1|^^^X|1|mg/dL\rL|1|N\r');
    expect(m.patients[0]!.orders[0]!.implicit).toBe(true);
    expect(m.issues).toEqual(['record 2 (R): a result arrived with no order (O) record before it']);
  });

  it('parses E1394 dates of 8, 10, 12 and 14 digits and refuses impossible ones', () => {
    expect(parseAstmDate('20220727121550')).toBe('2022-07-27T12:15:50');
    expect(parseAstmDate('202205270000')).toBe('2022-05-27T00:00:00');
    expect(parseAstmDate('2022052713')).toBe('2022-05-27T13:00:00');
    expect(parseAstmDate('20220527')).toBe('2022-05-27T00:00:00');
    expect(parseAstmDate('20230229120000')).toBeNull();
    expect(parseAstmDate('20221327')).toBeNull();
    expect(parseAstmDate('')).toBeNull();
    expect(parseAstmDate('2022-05-27')).toBeNull();
  });

  it('decodes text as latin1, utf-8 (invalid → replacement, flagged), windows-1250, or auto', () => {
    const utf8 = Buffer.from('Ery/µl mętny', 'utf8');
    expect(decodeText(utf8, 'utf-8')).toEqual({ text: 'Ery/µl mętny', encoding: 'utf-8', invalid: false });
    expect(decodeText(utf8, 'latin1').text).toBe('Ery/Âµl mÄ\u0099tny'); // what the research note saw
    expect(decodeText(utf8, 'auto').encoding).toBe('utf-8');
    const bad = Buffer.from([0x61, 0xc3, 0x28, 0x62]);
    expect(decodeText(bad, 'utf-8')).toEqual({ text: 'a\ufffd(b', encoding: 'utf-8', invalid: true });
    expect(decodeText(Buffer.from([0x6d, 0xea, 0x74]), 'windows-1250').text).toBe('męt');
    expect(decodeText(Buffer.from([0x6d, 0xea, 0x74]), 'auto', 'windows-1250')).toEqual({ text: 'męt', encoding: 'windows-1250', invalid: false, fellBack: true });
  });
});
