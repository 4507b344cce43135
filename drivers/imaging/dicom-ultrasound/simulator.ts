/**
 * A scripted point-of-care ultrasound: makes one study (a US image, a US multi-frame cine loop and
 * an OB-GYN TID 5000 Comprehensive SR with BPD, HC, AC, FL, their gestational ages and an EFW) as
 * Part-10 files in explicit VR little endian, and sends it to a DICOM node over C-STORE, as a cart
 * does when the sonographer ends the exam. The files are also what the golden cases and tests use
 * (DCMTK's dcmdump and dsrdump read them).
 *
 * A modality calls the node, never the other way round: the simulator opens its own association
 * to `host`:`port`; the transport `poctd simulate` gives it carries nothing.
 */
import fs from 'node:fs';
import { join } from 'node:path';
import type { ByteTransport } from '../../../src/transports/transport.ts';
import type { DeviceSimulator } from '../../../src/driver-sdk/index.ts';
import { SimulatorOptionReader } from '../../../src/driver-sdk/simulator-options.ts';
import { SIMULATOR_OPTION_HELP } from './simulator-help.ts';
import { fileMetaHeader } from '../../../src/protocols/dicom/part10.ts';
import { ScuAssociation } from '../../../src/protocols/dicom/scu.ts';
import { SopClass, TransferSyntax } from '../../../src/protocols/dicom/uids.ts';

// ---------- a small explicit VR little endian writer ----------

type Value = string | number | Buffer | Item[];
interface Item {
  [tag: string]: [vr: string, value: Value];
}

const LONG = new Set(['OB', 'OW', 'SQ', 'UT', 'UN', 'UC', 'UR']);

function valueBytes(vr: string, value: Value): Buffer {
  if (Buffer.isBuffer(value)) return value.length % 2 ? Buffer.concat([value, Buffer.alloc(1)]) : value;
  if (vr === 'US') {
    const b = Buffer.alloc(2);
    b.writeUInt16LE(Number(value));
    return b;
  }
  if (vr === 'UL') {
    const b = Buffer.alloc(4);
    b.writeUInt32LE(Number(value));
    return b;
  }
  if (vr === 'AT') {
    const [g, e] = String(value).split(',').map((h) => Number.parseInt(h, 16)) as [number, number];
    const b = Buffer.alloc(4);
    b.writeUInt16LE(g, 0);
    b.writeUInt16LE(e, 2);
    return b;
  }
  const text = Buffer.from(String(value), vr === 'PN' || vr === 'LO' || vr === 'SH' || vr === 'LT' || vr === 'ST' || vr === 'UT' ? 'utf8' : 'latin1');
  if (text.length % 2 === 0) return text;
  return Buffer.concat([text, Buffer.from([vr === 'UI' ? 0 : 0x20])]);
}

/** `tag` as dicom-parser names it: `x` and eight hex digits, group then element. */
function element(tag: string, vr: string, value: Value): Buffer {
  const group = Number.parseInt(tag.slice(1, 5), 16);
  const elem = Number.parseInt(tag.slice(5, 9), 16);
  const body = Array.isArray(value) ? Buffer.concat(value.map(item)) : valueBytes(vr, value);
  const head = Buffer.alloc(LONG.has(vr) ? 12 : 8);
  head.writeUInt16LE(group, 0);
  head.writeUInt16LE(elem, 2);
  head.write(vr, 4, 'latin1');
  if (LONG.has(vr)) head.writeUInt32LE(body.length, 8);
  else head.writeUInt16LE(body.length, 6);
  return Buffer.concat([head, body]);
}

function dataSet(elements: Item): Buffer {
  return Buffer.concat(
    Object.keys(elements)
      .sort()
      .map((tag) => element(tag, elements[tag]![0], elements[tag]![1])),
  );
}

function item(elements: Item): Buffer {
  const body = dataSet(elements);
  const head = Buffer.alloc(8);
  head.writeUInt16LE(0xfffe, 0);
  head.writeUInt16LE(0xe000, 2);
  head.writeUInt32LE(body.length, 4);
  return Buffer.concat([head, body]);
}

function part10(sopClassUid: string, sopInstanceUid: string, elements: Item): Buffer {
  return Buffer.concat([fileMetaHeader({ sopClassUid, sopInstanceUid, transferSyntaxUid: TransferSyntax.ExplicitVRLittleEndian }), dataSet(elements)]);
}

// ---------- the study ----------

export interface ScriptedStudy {
  studyUid: string;
  patientId: string;
  patientName: string;
  birthDate: string;
  date: string;
  time: string;
  accession: string;
  manufacturer: string;
  model: string;
  serial: string;
  station: string;
  /** Frames of the cine loop. */
  cineFrames: number;
  /** Size of each frame (monochrome, 8 bits); default 48 x 64. */
  rows?: number;
  columns?: number;
}

export const DEFAULT_STUDY: ScriptedStudy = {
  studyUid: '1.2.826.0.1.3680043.10.999.20.1',
  patientId: 'SIM-0001',
  patientName: 'SIMULATED^PATIENT',
  birthDate: '19900101',
  date: '20240501',
  time: '101500',
  accession: 'SIMACC01',
  manufacturer: 'poctd simulator',
  model: 'Scripted US',
  serial: 'SIM-US-1',
  station: 'SIM-US',
  cineFrames: 30,
};

export interface StudyFile {
  name: string;
  sopClassUid: string;
  sopInstanceUid: string;
  seriesInstanceUid: string;
  bytes: Buffer;
}

const code = (value: string, scheme: string, meaning: string): Item => ({ x00080100: ['SH', value], x00080102: ['SH', scheme], x00080104: ['LO', meaning] });
const ucum = (unit: string, meaning: string): Item => code(unit, 'UCUM', meaning);

function num(concept: Item, value: number, unit: Item, children: Item[] = []): Item {
  return {
    x0040a010: ['CS', 'CONTAINS'],
    x0040a040: ['CS', 'NUM'],
    x0040a043: ['SQ', [concept]],
    x0040a300: ['SQ', [{ x004008ea: ['SQ', [unit]], x0040a30a: ['DS', String(value)] }]],
    ...(children.length > 0 ? { x0040a730: ['SQ', children] as [string, Value] } : {}),
  };
}

function container(concept: Item, children: Item[], relationship = 'CONTAINS'): Item {
  return { x0040a010: ['CS', relationship], x0040a040: ['CS', 'CONTAINER'], x0040a043: ['SQ', [concept]], x0040a050: ['CS', 'SEPARATE'], x0040a730: ['SQ', children] };
}

function inferredFrom(equation: Item): Item {
  return { x0040a010: ['CS', 'INFERRED FROM'], x0040a040: ['CS', 'CODE'], x0040a043: ['SQ', [code('121420', 'DCM', 'Equation')]], x0040a168: ['SQ', [equation]] };
}

function biometry(concept: Item, mm: number, gaDays: number, equation: Item): Item {
  return container(code('125005', 'DCM', 'Biometry Group'), [
    num(concept, mm, ucum('mm', 'mm')),
    num(code('18185-9', 'LN', 'Gestational Age'), gaDays, ucum('d', 'days'), [inferredFrom(equation)]),
  ]);
}

function pixels(n: number): Buffer {
  const b = Buffer.allocUnsafe(n);
  for (let i = 0; i < n; i++) b[i] = (i * 7 + (i >> 6)) & 0xff;
  return b;
}

/** The study's three files: a US image, a cine loop, the OB SR. Deterministic for one spec. */
export function makeStudy(s: ScriptedStudy = DEFAULT_STUDY): StudyFile[] {
  const common = (modality: string, series: string, seriesNumber: number, instanceUid: string, sopClass: string): Item => ({
    x00080005: ['CS', 'ISO_IR 192'],
    x00080016: ['UI', sopClass],
    x00080018: ['UI', instanceUid],
    x00080020: ['DA', s.date],
    x00080030: ['TM', s.time],
    x00080050: ['SH', s.accession],
    x00080060: ['CS', modality],
    x00080070: ['LO', s.manufacturer],
    x00081010: ['SH', s.station],
    x00081090: ['LO', s.model],
    x00100010: ['PN', s.patientName],
    x00100020: ['LO', s.patientId],
    x00100030: ['DA', s.birthDate],
    x00100040: ['CS', 'F'],
    x00181000: ['LO', s.serial],
    x0020000d: ['UI', s.studyUid],
    x0020000e: ['UI', series],
    x00200010: ['SH', '1'],
    x00200011: ['IS', String(seriesNumber)],
    x00200013: ['IS', '1'],
  });
  const rows = s.rows ?? 48;
  const columns = s.columns ?? 64;
  const image = (frames: number): Item => ({
    x00280002: ['US', 1],
    x00280004: ['CS', 'MONOCHROME2'],
    x00280010: ['US', rows],
    x00280011: ['US', columns],
    x00280100: ['US', 8],
    x00280101: ['US', 8],
    x00280102: ['US', 7],
    x00280103: ['US', 0],
    x7fe00010: ['OB', pixels(rows * columns * frames)],
  });
  const usUid = `${s.studyUid}.1.1`;
  const cineUid = `${s.studyUid}.2.1`;
  const srUid = `${s.studyUid}.9.1`;
  const us = part10(SopClass.UltrasoundImage, usUid, { ...common('US', `${s.studyUid}.1`, 1, usUid, SopClass.UltrasoundImage), x00080008: ['CS', 'ORIGINAL\\PRIMARY'], ...image(1) });
  const cine = part10(SopClass.UltrasoundMultiFrameImage, cineUid, {
    ...common('US', `${s.studyUid}.2`, 2, cineUid, SopClass.UltrasoundMultiFrameImage),
    x00080008: ['CS', 'ORIGINAL\\PRIMARY'],
    x00181063: ['DS', '33.33'],
    x00280008: ['IS', String(s.cineFrames)],
    x00280009: ['AT', '0018,1063'],
    ...image(s.cineFrames),
  });
  const sr = part10(SopClass.ComprehensiveSR, srUid, {
    ...common('SR', `${s.studyUid}.9`, 99, srUid, SopClass.ComprehensiveSR),
    x00080023: ['DA', s.date],
    x00080033: ['TM', s.time],
    x0040a040: ['CS', 'CONTAINER'],
    x0040a043: ['SQ', [code('125000', 'DCM', 'OB-GYN Ultrasound Procedure Report')]],
    x0040a050: ['CS', 'SEPARATE'],
    x0040a491: ['CS', 'COMPLETE'],
    x0040a493: ['CS', 'UNVERIFIED'],
    x0040a504: ['SQ', [{ x00080105: ['CS', 'DCMR'], x0040db00: ['CS', '5000'] }]],
    x0040a730: [
      'SQ',
      [
        container(code('121111', 'DCM', 'Summary'), [
          container(code('125008', 'DCM', 'Fetus Summary'), [
            num(code('11888-5', 'LN', 'Composite Ultrasound Age'), 151, ucum('d', 'days')),
            num(code('11727-5', 'LN', 'Estimated Weight'), 310, ucum('g', 'g')),
          ]),
        ]),
        container(code('125002', 'DCM', 'Fetal Biometry'), [
          biometry(code('11820-8', 'LN', 'Biparietal Diameter'), 48.2, 146, code('11902-4', 'LN', 'BPD, Hadlock 1984')),
          biometry(code('11984-2', 'LN', 'Head Circumference'), 178.5, 150, code('11932-1', 'LN', 'HC, Hadlock 1984')),
          biometry(code('11979-2', 'LN', 'Abdominal Circumference'), 152, 148, code('11892-7', 'LN', 'AC, Hadlock 1984')),
        ]),
        container(code('125003', 'DCM', 'Fetal Long Bones'), [
          biometry(code('11963-6', 'LN', 'Femur Length'), 33.4, 145, code('11920-6', 'LN', 'FL, Hadlock 1984')),
        ]),
      ],
    ],
  });
  return [
    { name: 'us-image.dcm', sopClassUid: SopClass.UltrasoundImage, sopInstanceUid: usUid, seriesInstanceUid: `${s.studyUid}.1`, bytes: us },
    { name: 'us-cine.dcm', sopClassUid: SopClass.UltrasoundMultiFrameImage, sopInstanceUid: cineUid, seriesInstanceUid: `${s.studyUid}.2`, bytes: cine },
    { name: 'ob-sr.dcm', sopClassUid: SopClass.ComprehensiveSR, sopInstanceUid: srUid, seriesInstanceUid: `${s.studyUid}.9`, bytes: sr },
  ];
}

function modifier(concept: Item, value: Item): Item {
  return { x0040a010: ['CS', 'HAS CONCEPT MOD'], x0040a040: ['CS', 'CODE'], x0040a043: ['SQ', [concept]], x0040a168: ['SQ', [value]] };
}

/**
 * A vascular ultrasound report (TID 5100): one section per carotid side, its finding site and
 * laterality given once on the section, PSV / EDV / RI inside; the right PSV as a mean of measured
 * values (derivation). What tells the left PSV from the right is only the section's context.
 */
export function makeVascularSr(s: ScriptedStudy = DEFAULT_STUDY): StudyFile {
  const uid = `${s.studyUid}.8.1`;
  const side = (laterality: Item, psv: number, edv: number, ri: number, mean: boolean): Item =>
    container(code('121070', 'DCM', 'Findings'), [
      modifier(code('363698007', 'SCT', 'Finding Site'), code('32062004', 'SCT', 'Common Carotid Artery')),
      modifier(code('272741003', 'SCT', 'Laterality'), laterality),
      num(code('11726-7', 'LN', 'Peak Systolic Velocity'), psv, ucum('cm/s', 'cm/s'), mean ? [modifier(code('121401', 'DCM', 'Derivation'), code('R-00317', 'SRT', 'Mean'))] : []),
      num(code('11653-3', 'LN', 'End Diastolic Velocity'), edv, ucum('cm/s', 'cm/s')),
      num(code('12023-8', 'LN', 'Resistivity Index'), ri, ucum('{ratio}', 'ratio')),
    ]);
  const bytes = part10(SopClass.EnhancedSR, uid, {
    x00080005: ['CS', 'ISO_IR 192'],
    x00080016: ['UI', SopClass.EnhancedSR],
    x00080018: ['UI', uid],
    x00080020: ['DA', s.date],
    x00080023: ['DA', s.date],
    x00080030: ['TM', s.time],
    x00080033: ['TM', s.time],
    x00080060: ['CS', 'SR'],
    x00080070: ['LO', s.manufacturer],
    x00081090: ['LO', s.model],
    x00100010: ['PN', s.patientName],
    x00100020: ['LO', s.patientId],
    x00181000: ['LO', s.serial],
    x0020000d: ['UI', s.studyUid],
    x0020000e: ['UI', `${s.studyUid}.8`],
    x00200011: ['IS', '98'],
    x00200013: ['IS', '1'],
    x0040a040: ['CS', 'CONTAINER'],
    x0040a043: ['SQ', [code('125100', 'DCM', 'Vascular Ultrasound Procedure Report')]],
    x0040a050: ['CS', 'SEPARATE'],
    x0040a491: ['CS', 'COMPLETE'],
    x0040a493: ['CS', 'UNVERIFIED'],
    x0040a730: [
      'SQ',
      [
        container(code('125101', 'DCM', 'Vascular Ultrasound Section'), [side(code('24028007', 'SCT', 'Right'), 92.5, 24.1, 0.74, true), side(code('7771000', 'SCT', 'Left'), 88.0, 22.9, 0.74, false)]),
      ],
    ],
  });
  return { name: 'vascular-sr.dcm', sopClassUid: SopClass.EnhancedSR, sopInstanceUid: uid, seriesInstanceUid: `${s.studyUid}.8`, bytes };
}

// ---------- an export folder (USB stick layout) ----------

const MEDIA_STORAGE_DIRECTORY = '1.2.840.10008.1.3.10';

/**
 * Writes the study as a cart's USB export: `DICOM/ST1/IM1…` (upper case, at most 8 characters, no
 * extension) and a DICOMDIR at the top whose PATIENT → STUDY → SERIES → IMAGE / SR DOCUMENT records
 * carry the offsets PS3.10 asks for (next record, first lower-level record). Returns the paths.
 */
export function writeExport(dir: string, files: readonly StudyFile[], s: ScriptedStudy = DEFAULT_STUDY): { dicomdir: string; files: string[] } {
  const { mkdirSync, writeFileSync } = fs;
  const folder = join(dir, 'DICOM', 'ST1');
  mkdirSync(folder, { recursive: true });
  const series = new Map<string, { modality: string; number: number; images: Array<{ id: string[]; file: StudyFile }> }>();
  let n = 0;
  for (const f of files) {
    const seriesUid = f.seriesInstanceUid;
    const isSr = f.sopClassUid.startsWith('1.2.840.10008.5.1.4.1.1.88.');
    n += 1;
    const name = `${isSr ? 'SR' : 'IM'}${n}`;
    writeFileSync(join(folder, name), f.bytes);
    const entry = series.get(seriesUid) ?? { modality: isSr ? 'SR' : 'US', number: series.size + 1, images: [] };
    entry.images.push({ id: ['DICOM', 'ST1', name], file: f });
    series.set(seriesUid, entry);
  }
  // Records in file order, with who points at whom; offsets filled in the second pass.
  interface Rec { elements: Item; next: number | null; lower: number | null }
  const recs: Rec[] = [];
  const add = (elements: Item): number => recs.push({ elements, next: null, lower: null }) - 1;
  const patient = add({ x00041430: ['CS', 'PATIENT'], x00080005: ['CS', 'ISO_IR 192'], x00100010: ['PN', s.patientName], x00100020: ['LO', s.patientId] });
  const study = add({ x00041430: ['CS', 'STUDY'], x00080005: ['CS', 'ISO_IR 192'], x00080020: ['DA', s.date], x00080030: ['TM', s.time], x00080050: ['SH', s.accession], x0020000d: ['UI', s.studyUid], x00200010: ['SH', '1'] });
  recs[patient]!.lower = study;
  let previousSeries: number | null = null;
  for (const [uid, entry] of series) {
    const r = add({ x00041430: ['CS', 'SERIES'], x00080060: ['CS', entry.modality], x0020000e: ['UI', uid], x00200011: ['IS', String(entry.number)] });
    if (previousSeries === null) recs[study]!.lower = r;
    else recs[previousSeries]!.next = r;
    previousSeries = r;
    let previous: number | null = null;
    for (const { id, file } of entry.images) {
      const isSr = file.sopClassUid.startsWith('1.2.840.10008.5.1.4.1.1.88.');
      const rec = add({
        x00041430: ['CS', isSr ? 'SR DOCUMENT' : 'IMAGE'],
        x00041500: ['CS', id.join('\\')],
        x00041510: ['UI', file.sopClassUid],
        x00041511: ['UI', file.sopInstanceUid],
        x00041512: ['UI', TransferSyntax.ExplicitVRLittleEndian],
        x00200013: ['IS', '1'],
        ...(isSr ? { x00080023: ['DA', s.date] as [string, Value], x00080033: ['TM', s.time] as [string, Value], x0040a491: ['CS', 'COMPLETE'] as [string, Value], x0040a493: ['CS', 'UNVERIFIED'] as [string, Value] } : {}),
      });
      if (previous === null) recs[r]!.lower = rec;
      else recs[previous]!.next = rec;
      previous = rec;
    }
  }
  const uid = `${s.studyUid}.99`;
  const header = fileMetaHeader({ sopClassUid: MEDIA_STORAGE_DIRECTORY, sopInstanceUid: uid, transferSyntaxUid: TransferSyntax.ExplicitVRLittleEndian });
  const encode = (offsets: number[]): Buffer[] =>
    recs.map((r) =>
      item({
        ...r.elements,
        x00041400: ['UL', r.next === null ? 0 : offsets[r.next]!],
        x00041410: ['US', 0xffff],
        x00041420: ['UL', r.lower === null ? 0 : offsets[r.lower]!],
      }),
    );
  const before = (first: number, last: number): Item => ({
    x00041130: ['CS', 'POCTD_SIM'],
    x00041200: ['UL', first],
    x00041202: ['UL', last],
    x00041212: ['US', 0],
  });
  // Every offset is a UL, so the sizes do not depend on the values: measure, then place.
  const sizes = encode(recs.map(() => 0)).map((b) => b.length);
  const start = header.length + dataSet(before(0, 0)).length + 12;
  const offsets: number[] = [];
  let at = start;
  for (const size of sizes) {
    offsets.push(at);
    at += size;
  }
  const records = Buffer.concat(encode(offsets));
  const sqHead = Buffer.alloc(12);
  sqHead.writeUInt16LE(0x0004, 0);
  sqHead.writeUInt16LE(0x1220, 2);
  sqHead.write('SQ', 4, 'latin1');
  sqHead.writeUInt32LE(records.length, 8);
  const dicomdir = join(dir, 'DICOMDIR');
  // The root directory entity is the patient record alone.
  writeFileSync(dicomdir, Buffer.concat([header, dataSet(before(offsets[patient]!, offsets[patient]!)), sqHead, records]));
  return { dicomdir, files: [...series.values()].flatMap((e) => e.images.map((i) => join(dir, ...i.id))) };
}

// ---------- sending ----------

export interface SendOptions {
  host: string;
  port: number;
  calling_ae: string;
  called_ae: string;
}

/** Sends the files on one association; resolves with each file's C-STORE status. */
export async function sendStudy(files: readonly StudyFile[], options: SendOptions): Promise<number[]> {
  const classes = [...new Set(files.map((f) => f.sopClassUid))];
  const scu = await ScuAssociation.connect({
    host: options.host,
    port: options.port,
    callingAe: options.calling_ae,
    calledAe: options.called_ae,
    contexts: classes.map((abstractSyntax) => ({ abstractSyntax, transferSyntaxes: [TransferSyntax.ExplicitVRLittleEndian] })),
  });
  const statuses: number[] = [];
  try {
    for (const f of files) {
      const ctx = scu.contextFor(f.sopClassUid);
      if (!ctx) throw new Error(`the node did not accept ${f.sopClassUid}`);
      const offset = 144 + f.bytes.readUInt32LE(140);
      statuses.push((await scu.store({ contextId: ctx.id, sopClassUid: f.sopClassUid, sopInstanceUid: f.sopInstanceUid, dataSet: f.bytes.subarray(offset) })).status);
    }
    await scu.release();
  } catch (error) {
    scu.abort();
    throw error;
  }
  return statuses;
}

export interface UltrasoundSimulatorOptions extends SendOptions {
  /** Send the study again every this many seconds (0: once). */
  interval_s: number;
  /** Write each study as a USB export (DICOMDIR and DICOM/ST1/…) under this folder instead of sending it. */
  export_dir: string | null;
}

export function parseSimulatorOptions(options: Record<string, unknown>): UltrasoundSimulatorOptions {
  const r = new SimulatorOptionReader(options, 'dicom-ultrasound simulator', Object.keys(SIMULATOR_OPTION_HELP));
  const ae = /^[\x20-\x5b\x5d-\x7e]{1,16}$/;
  const port = r.number('port', 1, 65535) ?? 11112;
  const interval = r.number('interval_s', 0) ?? 0;
  if (!Number.isInteger(port)) throw r.error('port', 'an integer from 1 to 65535');
  return {
    host: r.string('host') ?? '127.0.0.1',
    port,
    calling_ae: r.string('calling_ae', ae, 'an AE title of 1-16 characters') ?? 'US_SIM',
    called_ae: r.string('called_ae', ae, 'an AE title of 1-16 characters') ?? 'POCTD',
    interval_s: interval,
    export_dir: r.string('export_dir') ?? null,
  };
}

export class UltrasoundSimulator implements DeviceSimulator {
  private timer: NodeJS.Timeout | null = null;
  private sent = 0;

  constructor(private readonly options: UltrasoundSimulatorOptions) {}

  attach(_transport: ByteTransport): void {
    const once = (): void => {
      this.sent += 1;
      // Each repeat is a new study (its own UIDs), as the next exam would be.
      const spec = { ...DEFAULT_STUDY, studyUid: `${DEFAULT_STUDY.studyUid}.${this.sent}` };
      const files = makeStudy(spec);
      if (this.options.export_dir) {
        const written = writeExport(join(this.options.export_dir, `EXPORT${this.sent}`), files, spec);
        process.stderr.write(`wrote study ${this.sent}: ${written.dicomdir} and ${written.files.length} files\n`);
        return;
      }
      sendStudy(files, this.options).then(
        (statuses) => process.stderr.write(`sent study ${this.sent}: statuses ${statuses.map((s) => `0x${s.toString(16)}`).join(' ')}\n`),
        (error: Error) => process.stderr.write(`study ${this.sent} not sent: ${error.message}\n`),
      );
    };
    once();
    if (this.options.interval_s > 0) this.timer = setInterval(once, this.options.interval_s * 1000);
  }

  detach(): void {
    if (this.timer) clearInterval(this.timer);
    this.timer = null;
  }
}
