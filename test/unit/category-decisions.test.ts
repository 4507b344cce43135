import { describe, expect, it } from 'vitest';
import { decodeAstmMessage } from '../../drivers/analyzers/astm/records.ts';
import { clinitekStatusIdentity, recordToDraft as clinitekStatusDraft } from '../../drivers/urinalysis/clinitek-status/records.ts';
import { type ClinitekStatusRecord } from '../../drivers/urinalysis/clinitek-status/codec.ts';

/**
 * Rule 5 of the design (control, QC and calibration runs are never published as patient results),
 * one case per branch of each device's decision: every QC processing id, every control marker,
 * upper and lower case, with and without padding, and the near misses that must stay patient.
 */

const ctx = { deviceId: 'lab-1', timezone: 'Europe/Copenhagen' };

interface AstmCase {
  processing?: string;
  action?: string;
  descriptor?: string;
  instrumentSpecimen?: string;
  sender?: string;
  patient?: string;
}

function astm(c: AstmCase = {}): ReturnType<typeof decodeAstmMessage>['drafts'][number] {
  const sender = c.sender ?? 'GEN';
  const processing = c.processing ?? 'P';
  const patient = c.patient ?? 'P|1|PAT-7';
  // O-3 specimen, O-4 instrument specimen, O-5 test, O-12 action code, O-16 specimen descriptor.
  const order = ['O', '1', 'S1', c.instrumentSpecimen ?? '', '^^^GLU', 'R', '', '', '', '', '', c.action ?? 'N', '', '', '', c.descriptor ?? ''].join('|');
  const text = `H|\\^&|||${sender}|||||||${processing}|1|20250101120000\r${patient}\r${order}\rR|1|^^^GLU|95|mg/dL||N||F||||20250101115500\rL|1|N\r`;
  const { drafts } = decodeAstmMessage(Buffer.from(text, 'latin1'), ctx);
  expect(drafts).toHaveLength(1);
  return drafts[0]!;
}

describe('ASTM: H-12 processing id', () => {
  it.each([
    ['Q', 'qc', null],
    ['q', 'qc', null],
    [' Q ', 'qc', null],
    ['T', 'qc', 'processing:training'],
    ['t', 'qc', 'processing:training'],
    ['D', 'qc', 'processing:debugging'],
    [' d', 'qc', 'processing:debugging'],
    // Vendor ids (Mindray BS: PR patient, QR QC, CR calibration result).
    ['QR', 'qc', 'processing:qc-result'],
    ['qr', 'qc', 'processing:qc-result'],
    ['QC', 'qc', 'processing:qc-result'],
    ['CR', 'calibration', 'processing:calibration-result'],
    // Anything else is not a plain patient run either, and says what it was.
    ['X', 'qc', 'processing:unrecognised:X'],
    ['QQ', 'qc', 'processing:unrecognised:QQ'],
    ['TD', 'qc', 'processing:unrecognised:TD'],
    ['toString', 'qc', 'processing:unrecognised:TOSTRING'],
    ['constructor', 'qc', 'processing:unrecognised:?'],
    ['Q^x', 'qc', null],
  ])('%j: category %s, no patient, flag %s', (processing, category, flag) => {
    const d = astm({ processing });
    expect(d.category).toBe(category);
    expect(d.patient).toBeNull();
    expect(d.flags.filter((f) => f.startsWith('processing:'))).toEqual(flag ? [flag] : []);
  });

  it.each(['P', 'p', '', ' ', 'PR', 'pr', 'P^x'])('%j: a patient result with its patient id', (processing) => {
    const d = astm({ processing });
    expect(d.category).toBe('patient');
    expect(d.patient).toEqual({ id: 'PAT-7' });
    expect(d.flags.filter((f) => f.startsWith('processing:'))).toEqual([]);
  });
});

describe('ASTM: O-12 action code and O-16 specimen descriptor', () => {
  it.each(['Q', 'q', ' Q '])('action code %j: qc', (action) => {
    expect(astm({ action })).toMatchObject({ category: 'qc', patient: null });
  });

  it.each(['N', 'A', 'C', '', 'QC'])('action code %j: not qc by itself', (action) => {
    expect(astm({ action }).category).toBe('patient');
  });

  it.each(['CONTROL', 'control', 'Control', ' control ', 'QC', 'qc', 'blood^CONTROL', 'QC^serum', 'CTRL^^CTRL MEDIUM', 'ctrl'])('descriptor %j: control, no patient', (descriptor) => {
    expect(astm({ descriptor })).toMatchObject({ category: 'control', patient: null });
  });

  it.each(['controls', 'CONTROL1', 'xqc', 'serum', 'Q', 'blood^urine', ''])('descriptor %j: patient', (descriptor) => {
    expect(astm({ descriptor }).category).toBe('patient');
  });

  it('QC by processing id wins over a control descriptor', () => {
    expect(astm({ processing: 'Q', descriptor: 'CONTROL' }).category).toBe('qc');
    expect(astm({ action: 'Q', descriptor: 'CONTROL' }).category).toBe('qc');
  });
});

describe('ASTM: the 77 Elektronika dialect marks controls in O-4', () => {
  const LUP2 = 'LUP2^LUP2^1.0.11^1^UA1';
  it.each(['0001^Service^CONTROL', '0001^Service^control', '0001^Service^QC', '0001^Service^Kontrola', '0001^Service^ KONTROLA '])('O-4 %j: control', (instrumentSpecimen) => {
    expect(astm({ sender: LUP2, instrumentSpecimen })).toMatchObject({ category: 'control', patient: null });
  });

  it.each(['0001^Service^SAMPLE', '0001^Service^controlled', '0001^Service^QC1', ''])('O-4 %j: patient', (instrumentSpecimen) => {
    expect(astm({ sender: LUP2, instrumentSpecimen }).category).toBe('patient');
  });

  it('another dialect does not read O-4 as a control marker', () => {
    expect(astm({ sender: 'GEN', instrumentSpecimen: '0001^Service^CONTROL' }).category).toBe('patient');
  });
});

describe('ASTM: the patient id of a patient result', () => {
  it.each([
    ['P|1|PAT-7|LAB-8|ID3-9', 'PAT-7'],
    ['P|1||LAB-8|ID3-9', 'LAB-8'],
    ['P|1|-|LAB-8', 'LAB-8'],
    ['P|1| - | |ID3-9', 'ID3-9'],
    ['P|1|PAT-7^ALT|LAB-8', 'PAT-7'],
    ['P|1|^PAT-7|LAB-8', 'LAB-8'],
    ['P|1|||', null],
    ['P|1|-|-|-', null],
  ])('%j → %j', (patient, id) => {
    expect(astm({ patient }).patient).toEqual({ id });
  });
});

describe('CLINITEK Status: control runs by the id the user entered', () => {
  const record = (patient: string | null): ClinitekStatusRecord => ({
    seq: 12,
    time: '2025-03-01T10:20:00',
    colour: 'YELLOW',
    clarity: 'CLEAR',
    results: [],
    operator: 'OP01',
    patient,
    strip: 'MULTISTIX 10 SG',
    error: null,
  });
  const draft = (patient: string | null) => clinitekStatusDraft(record(patient), clinitekStatusIdentity('urine-1'), 'Europe/Copenhagen');

  it.each(['CONTROL', 'CONTROL-1', 'control_2', 'Control 3', 'CONTROL4', 'CTRL', 'ctrl-1', 'CTRL_A', 'QC', 'qc-low', 'QC 2', 'QC1', 'CONTROL.HI'])(
    '%j: category control, the id kept as the specimen id, no patient',
    (id) => {
      const d = draft(id);
      expect(d.category).toBe('control');
      expect(d.specimen).toEqual({ id, type: 'control solution' });
      expect(d.patient).toBeNull();
      expect(d.flags).toContain('control:by-id');
    },
  );

  it.each(['CONTROLLED', 'CTRLX', 'QCA', 'QUALITY', 'P-CONTROL', 'MRN-0001', '12345'])('%j: a patient result with that patient id', (id) => {
    const d = draft(id);
    expect(d.category).toBe('patient');
    expect(d.specimen).toEqual({ id: null, type: 'urine' });
    expect(d.patient).toEqual({ id });
    expect(d.flags).not.toContain('control:by-id');
  });

  it('no id entered: a patient result with no patient', () => {
    const d = draft(null);
    expect(d.category).toBe('patient');
    expect(d.patient).toBeNull();
    expect(d.specimen).toEqual({ id: null, type: 'urine' });
    expect(d.flags).toEqual(['strip:MULTISTIX 10 SG']);
  });
});
