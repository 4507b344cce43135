/**
 * What one instance's header says (research notes A6), read with dicom-parser from the bytes
 * before the pixel data, every text and person-name value decoded with its Specific Character Set
 * (0008,0005) by dicom-character-set: Latin-1, UTF-8, Cyrillic, ISO 2022 Japanese and the rest.
 * dicom-parser's own `string()` is used only for ASCII-only VRs (UI, CS, DA, TM, IS, DS).
 */
import { convertBytes } from 'dicom-character-set';
import type dicomParser from 'dicom-parser';
import { naiveFromFields, naiveToZoned } from '../../../src/util/time.ts';
import { parseHeader, uidOf } from '../../../src/protocols/dicom/header.ts';

export interface InstanceMetadata {
  sopClassUid: string;
  sopInstanceUid: string;
  studyInstanceUid: string;
  seriesInstanceUid: string;
  transferSyntaxUid: string | null;
  specificCharacterSet: string | null;
  modality: string | null;
  patient: { id: string | null; name: string | null; birthDate: string | null; sex: string | null };
  accessionNumber: string | null;
  studyId: string | null;
  studyDescription: string | null;
  seriesDescription: string | null;
  seriesNumber: number | null;
  instanceNumber: number | null;
  studyDate: string | null;
  studyTime: string | null;
  /** (0008,0201) e.g. `+0100`: the sender's own offset, which wins over the configured zone. */
  timezoneOffset: string | null;
  manufacturer: string | null;
  model: string | null;
  deviceSerial: string | null;
  softwareVersions: string | null;
  stationName: string | null;
  institutionName: string | null;
  operators: string | null;
  performingPhysician: string | null;
  numberOfFrames: number;
  bodyPart: string | null;
  laterality: string | null;
  burnedInAnnotation: string | null;
}

const PN = 'PN';

function bytesOf(dataSet: dicomParser.DataSet, tag: string): Uint8Array | undefined {
  const element = dataSet.elements[tag];
  if (!element || element.length <= 0) return undefined;
  return dataSet.byteArray.subarray(element.dataOffset, element.dataOffset + element.length);
}

/** A text value (SH, LO, ST, LT, PN, UT) in its character set, without padding; null when empty. */
export function decodedText(dataSet: dicomParser.DataSet, tag: string, vr: string, charset: string | null): string | null {
  const bytes = bytesOf(dataSet, tag);
  if (!bytes) return null;
  const text = convertBytes(charset ?? '', bytes, { vr }).replace(/[\0 ]+$/, '').trim();
  // An empty PN component group leaves trailing separators (`Wang^XiaoDong=`): they carry nothing.
  const cleaned = vr === PN ? text.replace(/=+$/, '') : text;
  return cleaned === '' ? null : cleaned;
}

function ascii(dataSet: dicomParser.DataSet, tag: string): string | null {
  const value = dataSet.string(tag)?.replace(/[\0 ]+$/, '').trim();
  return value ? value : null;
}

function integer(dataSet: dicomParser.DataSet, tag: string): number | null {
  const text = ascii(dataSet, tag);
  if (text === null) return null;
  const n = Number.parseInt(text, 10);
  return Number.isFinite(n) ? n : null;
}

/** The character set value as DICOM writes it (multi-valued with backslashes), or null. */
function charsetOf(dataSet: dicomParser.DataSet): string | null {
  const bytes = bytesOf(dataSet, 'x00080005');
  if (!bytes) return null;
  const text = Buffer.from(bytes).toString('latin1').replace(/[\0 ]+$/, '');
  return text === '' ? null : text;
}

export function metadataOf(dataSet: dicomParser.DataSet): InstanceMetadata {
  const cs = charsetOf(dataSet);
  const t = (tag: string, vr: string): string | null => decodedText(dataSet, tag, vr, cs);
  return {
    sopClassUid: uidOf(dataSet, 'x00080016') ?? '',
    sopInstanceUid: uidOf(dataSet, 'x00080018') ?? '',
    studyInstanceUid: uidOf(dataSet, 'x0020000d') ?? '',
    seriesInstanceUid: uidOf(dataSet, 'x0020000e') ?? '',
    transferSyntaxUid: uidOf(dataSet, 'x00020010') ?? null,
    specificCharacterSet: cs,
    modality: ascii(dataSet, 'x00080060'),
    patient: { id: t('x00100020', 'LO'), name: t('x00100010', PN), birthDate: ascii(dataSet, 'x00100030'), sex: ascii(dataSet, 'x00100040') },
    accessionNumber: t('x00080050', 'SH'),
    studyId: t('x00200010', 'SH'),
    studyDescription: t('x00081030', 'LO'),
    seriesDescription: t('x0008103e', 'LO'),
    seriesNumber: integer(dataSet, 'x00200011'),
    instanceNumber: integer(dataSet, 'x00200013'),
    studyDate: ascii(dataSet, 'x00080020'),
    studyTime: ascii(dataSet, 'x00080030'),
    timezoneOffset: ascii(dataSet, 'x00080201'),
    manufacturer: t('x00080070', 'LO'),
    model: t('x00081090', 'LO'),
    deviceSerial: t('x00181000', 'LO'),
    softwareVersions: t('x00181020', 'LO'),
    stationName: t('x00081010', 'SH'),
    institutionName: t('x00080080', 'LO'),
    operators: t('x00081070', PN),
    performingPhysician: t('x00081050', PN),
    numberOfFrames: integer(dataSet, 'x00280008') ?? 1,
    bodyPart: ascii(dataSet, 'x00180015'),
    laterality: ascii(dataSet, 'x00200060') ?? ascii(dataSet, 'x00200062'),
    burnedInAnnotation: ascii(dataSet, 'x00280301'),
  };
}

/** The metadata of a Part-10 file or of its first bytes (`prefixOnly`). */
export function readMetadata(bytes: Buffer, options: { prefixOnly?: boolean } = {}): InstanceMetadata {
  return metadataOf(parseHeader(bytes, options).dataSet);
}

/**
 * The study's start as the device's naive wall clock (`YYYY-MM-DDTHH:MM:SS`), from DA and TM
 * (`HHMMSS.FFFFFF`, or shorter: `HHMM`, `HH`); null when the date is missing or names no day.
 */
export function naiveStudyTime(date: string | null, time: string | null): string | null {
  // `YYYY.MM.DD` is the ACR-NEMA form old carts still write (pydicom's ExplVR_BigEnd.dcm has it).
  const d = date ? /^(\d{4})\.?(\d{2})\.?(\d{2})$/.exec(date) : null;
  if (!d) return null;
  const t = /^(\d{2})(\d{2})?(\d{2})?/.exec(time ?? '') ?? [];
  return naiveFromFields(Number(d[1]), Number(d[2]), Number(d[3]), Number(t[1] ?? 0), Number(t[2] ?? 0), Number(t[3] ?? 0));
}

/** The absolute time of a naive wall clock: the sender's (0008,0201) offset if it gave one, else the device's zone. */
export function absoluteTime(naive: string, timezoneOffset: string | null, timeZone: string): string {
  const m = timezoneOffset ? /^([+-])(\d{2})(\d{2})$/.exec(timezoneOffset) : null;
  if (m && Number(m[2]) <= 14 && Number(m[3]) < 60) return `${naive}${m[1]}${m[2]}:${m[3]}`;
  return naiveToZoned(naive, timeZone);
}
