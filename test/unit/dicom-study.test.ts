/**
 * The study record's contents against DCMTK's own reading of the same files (dsrdump for SR
 * measurements, dcmdump for UIDs and counts), character sets against pydicom's charset files, the
 * context that tells one measurement from another, the privacy policy on each patient field, and
 * malformed files (pydicom's truncated and meta-less ones) as issues, not crashes.
 */
import { execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { dicomUltrasound } from '../../drivers/imaging/dicom-ultrasound/definition.ts';
import { encodeBundle, headerPart } from '../../drivers/imaging/dicom-ultrasound/bundle.ts';
import { readMetadata } from '../../drivers/imaging/dicom-ultrasound/metadata.ts';
import { dicomdirFiles } from '../../drivers/imaging/dicom-ultrasound/export-folder.ts';
import { DEFAULT_STUDY, makeStudy, makeVascularSr, writeExport, type StudyFile } from '../../drivers/imaging/dicom-ultrasound/simulator.ts';
import { readSr } from '../../drivers/imaging/dicom-ultrasound/sr.ts';
import { readInstance, studyDraft } from '../../drivers/imaging/dicom-ultrasound/study.ts';
import { finalize } from '../../src/records/finalize.ts';
import { sha256Hex } from '../../src/records/ids.ts';
import { RECORD_KINDS } from '../../src/records/kinds.ts';
import { hashPatientId, resolvePrivacy } from '../../src/records/privacy.ts';
import type { StudyDraft } from '../../src/records/types.ts';
import { itShared, sharedFixture } from '../helpers/shared-fixtures.ts';
import { PYDICOM_FILES } from '../helpers/dicom-files.ts';

const CHARSETS = '/usr/lib/python3/dist-packages/pydicom/data/charset_files';
const ctx = { deviceId: 'us-room-2', timezone: 'Europe/Copenhagen' };

/** The NUM items as dsrdump prints them: [concept meaning, value, unit code]. */
function dsrdumpNums(path: string): Array<[string, number, string]> {
  const out = execFileSync('dsrdump', ['-q', path], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'] });
  return [...out.matchAll(/NUM:\(,,"([^"]+)"\)="([^"]+)" \(([^,]+),/g)].map((m) => [m[1]!, Number(m[2]), m[3]!]);
}

function tempFile(file: StudyFile | Buffer, name = 'f.dcm'): string {
  const path = join(mkdtempSync(join(tmpdir(), 'poctd-dicom-study-')), name);
  writeFileSync(path, Buffer.isBuffer(file) ? file : file.bytes);
  return path;
}

function bundled(files: readonly StudyFile[], callingAe = 'US_ROOM2') {
  return files.map((f) => ({
    sha256: sha256Hex(f.bytes),
    size: f.bytes.length,
    transfer_syntax_uid: '1.2.840.10008.1.2.1',
    calling_ae: callingAe,
    address: '127.0.0.1',
    source: 'c-store' as const,
    header: headerPart(f.bytes),
  }));
}

function draftOf(files: readonly StudyFile[]): StudyDraft {
  return studyDraft(bundled(files).map(readInstance), ctx);
}

describe('SR measurements equal what dsrdump reads', () => {
  it('the scripted OB-GYN SR (TID 5000) and the vascular SR (TID 5100)', () => {
    for (const file of [makeStudy()[2]!, makeVascularSr()]) {
      const ours = readSr(file.bytes).measurements.map((m) => [m.meaning, m.value, m.unit]);
      expect(ours).toEqual(dsrdumpNums(tempFile(file)));
    }
  });

  it("pydicom's test-SR.dcm (containers without a concept name)", () => {
    const path = join(PYDICOM_FILES, 'test-SR.dcm');
    expect(readSr(readFileSync(path)).measurements.map((m) => [m.meaning, m.value, m.unit])).toEqual(dsrdumpNums(path));
  });

  itShared([sharedFixture('dicom/synthetic-ob-sr.dcm')], 'the shared synthetic OB SR', () => {
    const file = sharedFixture('dicom/synthetic-ob-sr.dcm');
    expect(readSr(file.bytes()).measurements.map((m) => [m.meaning, m.value, m.unit])).toEqual(dsrdumpNums(file.fromRepo));
  });
});

describe('measurement context', () => {
  it('tells the left carotid PSV from the right by the section finding site and laterality, and keeps the derivation', () => {
    const psv = readSr(makeVascularSr().bytes).measurements.filter((m) => m.loinc === '11726-7');
    expect(psv.map((m) => ({ value: m.value, ucum: m.ucum, site: m.finding_site?.code, side: m.laterality?.code, derivation: m.derivation }))).toEqual([
      { value: 92.5, ucum: 'cm/s', site: '32062004', side: '24028007', derivation: 'Mean' },
      { value: 88, ucum: 'cm/s', site: '32062004', side: '7771000', derivation: null },
    ]);
  });

  it('each OB gestational age carries the equation it was inferred from and its biometry section', () => {
    const ga = readSr(makeStudy()[2]!.bytes).measurements.filter((m) => m.code === '18185-9');
    expect(ga.map((m) => [m.value, m.equation, m.path.join(' > ')])).toEqual([
      [146, 'BPD, Hadlock 1984', 'Fetal Biometry > Biometry Group'],
      [150, 'HC, Hadlock 1984', 'Fetal Biometry > Biometry Group'],
      [148, 'AC, Hadlock 1984', 'Fetal Biometry > Biometry Group'],
      [145, 'FL, Hadlock 1984', 'Fetal Long Bones > Biometry Group'],
    ]);
  });
});

describe('study draft from a study\'s instances', () => {
  it('UIDs, series, counts and frames as dcmdump reads them', () => {
    const files = makeStudy();
    const draft = draftOf(files);
    for (const f of files) {
      const dump = execFileSync('dcmdump', ['-q', tempFile(f)], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'] });
      const tag = (t: string): string | undefined => new RegExp(`\\(${t}\\) \\w\\w \\[([^\\]]*)\\]`).exec(dump)?.[1];
      const stored = draft.storage.find((s) => s.sop_instance_uid === tag('0008,0018'))!;
      expect(stored).toBeDefined();
      expect(stored.series_instance_uid).toBe(tag('0020,000e'));
      expect(draft.study.instance_uid).toBe(tag('0020,000d'));
      expect(stored.frames).toBe(f.sopClassUid.includes('88.') ? 0 : Number(tag('0028,0008') ?? 1));
      expect(stored.sha256).toBe(sha256Hex(f.bytes));
    }
    expect(draft.series.map((s) => [s.number, s.instances, s.frames])).toEqual([
      [1, 1, 1],
      [2, 1, DEFAULT_STUDY.cineFrames],
      [99, 1, 0],
    ]);
    expect(draft.frames).toBe(1 + DEFAULT_STUDY.cineFrames);
    expect(draft.flags).toEqual([]);
  });

  it('the same instances in another order make the same key; another instance version a new key, same study_key', () => {
    const files = makeStudy();
    const a = draftOf(files);
    const b = draftOf([...files].reverse());
    expect(b.key).toBe(a.key);
    const fewer = draftOf(files.slice(0, 2));
    expect(fewer.key).not.toBe(a.key);
    expect(fewer.study_key).toBe(a.study_key);
    expect(fewer.version).toBe(2);
  });

  it('instances of one study that name two patients are flagged patient:inconsistent', () => {
    const [us] = makeStudy();
    // The cine of the same study UID, naming another patient.
    const second = makeStudy({ ...DEFAULT_STUDY, patientId: 'OTHER-9', patientName: 'OTHER^PERSON', cineFrames: 3 })[1]!;
    expect(draftOf([us!, second]).flags).toContain('patient:inconsistent');
    expect(draftOf([us!, makeStudy()[1]!]).flags).not.toContain('patient:inconsistent');
  });

  it('a study time is made absolute with the device zone, in summer and in winter', () => {
    const summer = draftOf([makeStudy()[0]!]);
    const winter = draftOf([makeStudy({ ...DEFAULT_STUDY, date: '20240115' })[0]!]);
    expect([summer.study.started_at, winter.study.started_at]).toEqual(['2024-05-01T10:15:00+02:00', '2024-01-15T10:15:00+01:00']);
    expect(summer.device_time).toBe('2024-05-01T10:15:00');
  });
});

describe('privacy policy on the study record', () => {
  const draft = draftOf(makeStudy());
  const raw = { sha256: 'a'.repeat(64), size: 1, kind: 'raw' as const };
  const record = (privacy: Parameters<typeof resolvePrivacy>[0]) =>
    finalize(RECORD_KINDS.study, draft, { seq: 1, site: 's', receivedAt: new Date(0).toISOString(), raw, timezone: 'Europe/Copenhagen', privacy: resolvePrivacy(privacy) });

  it('hash: id, name and birth date each hashed; sex kept', () => {
    expect(record({ patient_id: 'hash', hash_key: 'a-key-of-16-chars!' }).patient).toEqual({
      id: hashPatientId('SIM-0001', 'a-key-of-16-chars!'),
      name: hashPatientId('SIMULATED^PATIENT', 'a-key-of-16-chars!'),
      birth_date: hashPatientId('19900101', 'a-key-of-16-chars!'),
      sex: 'F',
    });
  });

  it('omit: all three null; publish: as the device sent them', () => {
    expect(record({ patient_id: 'omit' }).patient).toEqual({ id: null, name: null, birth_date: null, sex: 'F' });
    expect(record({ patient_id: 'publish' }).patient).toEqual({ id: 'SIM-0001', name: 'SIMULATED^PATIENT', birth_date: '19900101', sex: 'F' });
  });

  it('no policy passed (or hash without a key): fails closed, nothing in the clear', () => {
    const p = record(undefined as never).patient!;
    expect([p.id, p.name, p.birth_date]).toEqual([null, null, null]);
  });
});

describe('Specific Character Set decoding (pydicom charset files)', () => {
  it.each([
    ['chrX1.dcm', 'Wang^XiaoDong=王^小東'],
    ['chrRuss.dcm', 'Люкceмбypг'],
    ['chrH31.dcm', 'Yamada^Tarou=山田^太郎=やまだ^たろう'],
    ['chrGerm.dcm', 'Äneas^Rüdiger'],
    ['chrGreek.dcm', 'Διονυσιος'],
  ])('%s: patient name %s', (file, name) => {
    expect(readMetadata(readFileSync(join(CHARSETS, file))).patient.name).toBe(name);
  });
});

describe('malformed files are issues, never crashes or records', () => {
  it.each(['MR_truncated.dcm', 'no_meta.dcm', 'rtplan_truncated.dcm'])('%s: no record, an issue', (file) => {
    const result = dicomUltrasound.decode({ kind: 'raw', bytes: readFileSync(join(PYDICOM_FILES, file)) }, ctx);
    expect(result.drafts).toEqual({});
    expect(result.issues.length).toBeGreaterThan(0);
  });

  it('a bundle cut short is one issue naming where', () => {
    const bundle = encodeBundle(bundled(makeStudy()));
    const result = dicomUltrasound.decode({ kind: 'raw', bytes: bundle.subarray(0, bundle.length - 10) }, ctx);
    expect(result.drafts).toEqual({});
    expect(result.issues.map((i) => i.reason)).toEqual([expect.stringMatching(/cut short inside the header of instance 3/)]);
  });
});

describe('the simulator\'s USB export', () => {
  it('writes a DICOMDIR whose record offsets are the ones dcmdump finds, and whose files our reader resolves', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'poctd-export-'));
    const written = writeExport(dir, makeStudy());
    const dump = execFileSync('dcmdump', ['-q', written.dicomdir], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'] });
    const at = new Set([...dump.matchAll(/offset=\$(\d+)/g)].map((m) => Number(m[1])));
    const pointed = [...dump.matchAll(/\(0004,(?:1200|1202|1400|1420)\) up (\d+)/g)].map((m) => Number(m[1])).filter((n) => n !== 0);
    expect(at.size).toBe(8); // patient, study, 3 series, 3 instance records
    expect(pointed.length).toBeGreaterThan(0);
    for (const p of pointed) expect(at.has(p), `offset ${p} is a record`).toBe(true);
    expect((await dicomdirFiles(written.dicomdir)).files).toEqual(written.files);
  });
});

