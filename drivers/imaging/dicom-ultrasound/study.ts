/**
 * One study's instances (their headers, where each file is, who sent it) → a `poct.study/1` draft.
 *
 * The draft's key is the Study Instance UID with a digest of the instance versions it covers, so
 * the same instances sent again make the same record (stored once), and more instances a new
 * version; `study_key` stays the same across versions. Pixel data never enters it.
 */
import { createHash } from 'node:crypto';
import { deviceRecordId } from '../../../src/records/ids.ts';
import type { DeviceIdentity, StudyDraft, StudyInstance, StudyMeasurement, StudySeries } from '../../../src/records/types.ts';
import { SopClass } from '../../../src/protocols/dicom/uids.ts';
import type { BundledInstance } from './bundle.ts';
import { absoluteTime, naiveStudyTime, readMetadata, type InstanceMetadata } from './metadata.ts';
import { readSr, type SrReport } from './sr.ts';

export const DRIVER_ID = 'dicom-ultrasound';

/** SOP classes whose content is a document, not frames (the session reads these whole). */
export const DOCUMENT_CLASSES = new Set<string>([
  SopClass.BasicTextSR,
  SopClass.EnhancedSR,
  SopClass.ComprehensiveSR,
  SopClass.Comprehensive3DSR,
  SopClass.KeyObjectSelection,
  SopClass.EncapsulatedPdf,
]);
const SR_CLASSES = new Set<string>([SopClass.BasicTextSR, SopClass.EnhancedSR, SopClass.ComprehensiveSR, SopClass.Comprehensive3DSR]);

export interface ReadInstance {
  bundled: BundledInstance;
  meta: InstanceMetadata;
  sr: SrReport | null;
}

/** Reads one bundled header; an SR's tree too. Throws (HeaderError) when the header is not DICOM. */
export function readInstance(bundled: BundledInstance): ReadInstance {
  const meta = readMetadata(bundled.header);
  const sr = SR_CLASSES.has(meta.sopClassUid) ? readSr(bundled.header) : null;
  return { bundled, meta, sr };
}

function first<T>(values: Array<T | null | undefined>): T | null {
  for (const v of values) if (v !== null && v !== undefined) return v;
  return null;
}

export interface StudyContext {
  deviceId: string;
  timezone: string;
}

/** The draft of the study the instances belong to (they must share one Study Instance UID). */
export function studyDraft(instances: readonly ReadInstance[], ctx: StudyContext): StudyDraft {
  if (instances.length === 0) throw new Error('a study draft needs at least one instance');
  const studyUid = instances[0]!.meta.studyInstanceUid;
  const others = instances.filter((i) => i.meta.studyInstanceUid !== studyUid);
  if (others.length > 0) throw new Error(`instances of ${1 + new Set(others.map((o) => o.meta.studyInstanceUid)).size} studies given as one`);
  const metas = instances.map((i) => i.meta);
  const device: DeviceIdentity = {
    id: ctx.deviceId,
    driver: DRIVER_ID,
    manufacturer: first(metas.map((m) => m.manufacturer)) ?? 'unknown',
    model: first(metas.map((m) => m.model)) ?? 'unknown',
    serial: first(metas.map((m) => m.deviceSerial)),
    firmware: first(metas.map((m) => m.softwareVersions)),
  };
  // Instances in a stable order: series number, instance number, UID.
  const ordered = [...instances].sort(
    (a, b) =>
      (a.meta.seriesNumber ?? 0) - (b.meta.seriesNumber ?? 0) ||
      a.meta.seriesInstanceUid.localeCompare(b.meta.seriesInstanceUid) ||
      (a.meta.instanceNumber ?? 0) - (b.meta.instanceNumber ?? 0) ||
      a.meta.sopInstanceUid.localeCompare(b.meta.sopInstanceUid) ||
      a.bundled.sha256.localeCompare(b.bundled.sha256),
  );
  const framesOf = (m: InstanceMetadata): number => (DOCUMENT_CLASSES.has(m.sopClassUid) ? 0 : m.numberOfFrames);
  const seriesMap = new Map<string, StudySeries>();
  for (const { meta } of ordered) {
    let s = seriesMap.get(meta.seriesInstanceUid);
    if (!s) {
      s = {
        instance_uid: meta.seriesInstanceUid,
        number: meta.seriesNumber,
        modality: meta.modality,
        description: meta.seriesDescription,
        body_part: meta.bodyPart,
        laterality: meta.laterality,
        instances: 0,
        frames: 0,
        sop_classes: [],
      };
      seriesMap.set(meta.seriesInstanceUid, s);
    }
    s.instances += 1;
    s.frames += framesOf(meta);
    if (!s.sop_classes.includes(meta.sopClassUid)) s.sop_classes.push(meta.sopClassUid);
  }
  const storage: StudyInstance[] = ordered.map(({ meta, bundled }) => ({
    sop_instance_uid: meta.sopInstanceUid,
    sop_class_uid: meta.sopClassUid,
    series_instance_uid: meta.seriesInstanceUid,
    transfer_syntax_uid: bundled.transfer_syntax_uid,
    frames: framesOf(meta),
    sha256: bundled.sha256,
    size: bundled.size,
  }));
  const measurements: StudyMeasurement[] = ordered.flatMap(({ meta, sr }) => (sr ? sr.measurements.map((m) => ({ sop_instance_uid: meta.sopInstanceUid, ...m })) : []));
  const reports = ordered.flatMap(({ meta, sr }) =>
    sr ? [{ sop_instance_uid: meta.sopInstanceUid, title: sr.title, template: sr.template, completion: sr.completion, verification: sr.verification }] : [],
  );
  const dated = ordered.find((i) => naiveStudyTime(i.meta.studyDate, i.meta.studyTime) !== null)?.meta;
  const deviceTime = dated ? naiveStudyTime(dated.studyDate, dated.studyTime) : null;
  const flags: string[] = [];
  // Images of two patients under one study UID: a reader must not take the study for one patient's.
  const patientIds = new Set(metas.map((m) => m.patient.id).filter((id) => id !== null));
  const patientNames = new Set(metas.map((m) => m.patient.name).filter((n) => n !== null));
  if (patientIds.size > 1 || patientNames.size > 1) flags.push('patient:inconsistent');
  if (metas.some((m) => m.burnedInAnnotation === 'YES')) flags.push('burned-in-annotation');
  const patientMeta = metas.find((m) => m.patient.id !== null || m.patient.name !== null);
  const digest = createHash('sha256')
    .update(storage.map((s) => `${s.sop_instance_uid}:${s.sha256}`).sort().join('\n'))
    .digest('hex')
    .slice(0, 32);
  const sender = ordered[ordered.length - 1]!.bundled;
  const operator = first(metas.map((m) => m.operators ?? m.performingPhysician));
  return {
    key: `${studyUid}/${digest}`,
    device,
    study_key: deviceRecordId({ device, key: studyUid }, 'study-key'),
    version: storage.length,
    study: {
      instance_uid: studyUid,
      study_id: first(metas.map((m) => m.studyId)),
      accession_number: first(metas.map((m) => m.accessionNumber)),
      description: first(metas.map((m) => m.studyDescription)),
      started_at: deviceTime ? absoluteTime(deviceTime, dated!.timezoneOffset, ctx.timezone) : null,
      modalities: [...new Set(metas.map((m) => m.modality).filter((m): m is string => m !== null))].sort(),
    },
    patient: patientMeta
      ? { id: patientMeta.patient.id, name: patientMeta.patient.name, birth_date: patientMeta.patient.birthDate, sex: patientMeta.patient.sex }
      : null,
    operator: operator ? { name: operator } : null,
    sender: { calling_ae: sender.calling_ae, address: sender.address, station_name: first(metas.map((m) => m.stationName)), source: sender.source },
    series: [...seriesMap.values()],
    instances: new Set(storage.map((s) => s.sop_instance_uid)).size,
    frames: storage.reduce((n, s) => n + s.frames, 0),
    reports,
    measurements,
    storage,
    device_time: deviceTime,
    flags,
  };
}
