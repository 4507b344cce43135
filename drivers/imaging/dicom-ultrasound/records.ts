/**
 * Decoding a capture of the `dicom-ultrasound` driver: a header bundle (what the session commits
 * with each study record) or one Part-10 file (a file off an export folder, `poctd replay` on a
 * stored instance). Each study in it becomes one `poct.study/1` draft; an instance that is not
 * readable DICOM is an issue, never a crash.
 */
import type { Capture, DecodeContext, DecodeIssue, DecodeResult, DeviceFacts } from '../../../src/driver-sdk/index.ts';
import { deviceBytes } from '../../../src/driver-sdk/capture.ts';
import { sha256Hex } from '../../../src/records/ids.ts';
import type { StudyDraft } from '../../../src/records/types.ts';
import { dataSetOffset } from '../../../src/protocols/dicom/part10.ts';
import { HeaderError, parseHeader, pixelDataTruncation, uidOf } from '../../../src/protocols/dicom/header.ts';
import { decodeBundle, headerPart, isBundle, type BundledInstance } from './bundle.ts';
import { readInstance, studyDraft, type ReadInstance } from './study.ts';

function bundledFromFile(file: Buffer): BundledInstance {
  const { dataSet } = parseHeader(file);
  const truncated = pixelDataTruncation(dataSet, file.length, file.subarray(-8));
  if (truncated) throw new HeaderError(truncated);
  return {
    sha256: sha256Hex(file),
    size: file.length,
    transfer_syntax_uid: uidOf(dataSet, 'x00020010') ?? '',
    calling_ae: uidOf(dataSet, 'x00020016') ?? null,
    address: null,
    source: 'folder',
    header: headerPart(file),
  };
}

export function decodeDicomUltrasound(capture: Capture, ctx: DecodeContext): DecodeResult {
  const bytes = deviceBytes(capture);
  const issues: DecodeIssue[] = [];
  let bundled: BundledInstance[];
  try {
    if (isBundle(bytes)) bundled = decodeBundle(bytes);
    else if (dataSetOffset(bytes) !== undefined) bundled = [bundledFromFile(bytes)];
    else return { drafts: {}, issues: [{ reason: 'neither a Part-10 DICOM file nor a poctd DICOM header bundle', bytes }], device: {} };
  } catch (error) {
    return { drafts: {}, issues: [{ reason: `not decodable: ${(error as Error).message}`, bytes }], device: {} };
  }
  const read: ReadInstance[] = [];
  for (const b of bundled) {
    try {
      const instance = readInstance(b);
      if (!instance.meta.studyInstanceUid || !instance.meta.sopInstanceUid) {
        issues.push({ reason: `instance ${b.sha256.slice(0, 12)}: no study or SOP instance UID`, bytes: b.header });
        continue;
      }
      read.push(instance);
    } catch (error) {
      issues.push({ reason: `instance ${b.sha256.slice(0, 12)}: ${(error as Error).message}`, bytes: b.header });
    }
  }
  const byStudy = new Map<string, ReadInstance[]>();
  for (const r of read) byStudy.set(r.meta.studyInstanceUid, [...(byStudy.get(r.meta.studyInstanceUid) ?? []), r]);
  const drafts: StudyDraft[] = [...byStudy.values()].map((instances) => studyDraft(instances, { deviceId: ctx.deviceId, timezone: ctx.timezone }));
  const first = drafts[0]?.device;
  const device: DeviceFacts = first ? { manufacturer: first.manufacturer, model: first.model, serial: first.serial, firmware: first.firmware } : {};
  return { drafts: drafts.length > 0 ? { study: drafts } : {}, issues, device };
}
