/**
 * The dicom-ultrasound driver under the real device manager and store: studies sent by the
 * scripted ultrasound (our SCU) and by DCMTK storescu become poct.study/1 records after the quiet
 * period; the same instances again make no new record, one more instance a new version; a caller
 * no device allows is refused with a listener_refused event, a refused C-STORE is a bad_frame
 * event; patient name, id and birth date follow the privacy policy.
 */
import { execFile } from 'node:child_process';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { afterEach, describe, expect, it } from 'vitest';
import { dicomUltrasound } from '../../drivers/imaging/dicom-ultrasound/definition.ts';
import type { DicomUltrasoundSession } from '../../drivers/imaging/dicom-ultrasound/session.ts';
import { DEFAULT_STUDY, makeStudy, sendStudy } from '../../drivers/imaging/dicom-ultrasound/simulator.ts';
import type { DeviceConfig } from '../../src/config/types.ts';
import type { SessionHost } from '../../src/driver-sdk/index.ts';
import { hashPatientId } from '../../src/records/privacy.ts';
import type { StudyRecord } from '../../src/records/types.ts';
import { Status } from '../../src/protocols/dicom/dimse.ts';
import { AssociationRejected } from '../../src/protocols/dicom/scu.ts';
import { InstanceStore } from '../../drivers/imaging/dicom-ultrasound/instance-store.ts';
import { DicomScpServer } from '../../src/protocols/dicom/server.ts';
import { ACCEPTED_TRANSFER_SYNTAXES, ULTRASOUND_STORAGE_CLASSES } from '../../src/protocols/dicom/uids.ts';
import { DicomInstanceIndex } from '../../src/store/dicom-instances.ts';
import { Store } from '../../src/store/store.ts';
import { runCleanups, type Cleanups } from '../helpers/cleanups.ts';
import { deviceManagerRig, type DeviceManagerRig } from '../helpers/device-manager-rig.ts';
import { eventually } from '../helpers/eventually.ts';
import { requireTool } from '../helpers/tools.ts';
import { freePort } from '../helpers/mosquitto.ts';

const run = promisify(execFile);
const cleanups: Cleanups = [];
afterEach(() => runCleanups(cleanups));

function device(port: number, extra: Partial<DeviceConfig['transport']> = {}): DeviceConfig {
  return {
    id: 'us-room-2',
    driver: 'dicom-ultrasound',
    transport: { type: 'dicom-scp', port, allowed_callers: ['US_ROOM2'], ...extra } as DeviceConfig['transport'],
    options: { quiet_period_ms: 300 },
  } as DeviceConfig;
}

function studies(rig: DeviceManagerRig): StudyRecord[] {
  return rig.store.recordsSince(0, 100).filter((r): r is StudyRecord => r.schema === 'poct.study/1');
}

const send = (port: number, files = makeStudy(), calling = 'US_ROOM2'): Promise<number[]> =>
  sendStudy(files, { host: '127.0.0.1', port, calling_ae: calling, called_ae: 'POCTD' });

describe('dicom-ultrasound session (device manager, real store)', () => {
  it('a study from the scripted ultrasound becomes one poct.study/1 record after the quiet period, patient fields hashed', async () => {
    const port = await freePort();
    const rig = await deviceManagerRig({ devices: [device(port)], drivers: [dicomUltrasound], cleanups });
    rig.services.config.privacy = { patient_id: 'hash', hash_key: 'site-secret-of-the-clinic' };
    await eventually('the SCP listening', () => rig.states('us-room-2').some((s) => s.status === 'idle'));
    expect(await send(port)).toEqual([Status.Success, Status.Success, Status.Success]);
    await eventually('a study record', () => studies(rig).length === 1);
    const [record] = studies(rig);
    expect(record).toMatchObject({
      device: { id: 'us-room-2', driver: 'dicom-ultrasound', manufacturer: 'poctd simulator', serial: 'SIM-US-1' },
      version: 3,
      instances: 3,
      frames: 1 + DEFAULT_STUDY.cineFrames,
      study: { instance_uid: DEFAULT_STUDY.studyUid, accession_number: 'SIMACC01', started_at: '2024-05-01T10:15:00+02:00', modalities: ['SR', 'US'] },
      sender: { calling_ae: 'US_ROOM2', address: '127.0.0.1', source: 'c-store' },
      patient: {
        id: hashPatientId('SIM-0001', 'site-secret-of-the-clinic'),
        name: hashPatientId('SIMULATED^PATIENT', 'site-secret-of-the-clinic'),
        birth_date: hashPatientId('19900101', 'site-secret-of-the-clinic'),
        sex: 'F',
      },
    });
    expect(record!.measurements.map((m) => [m.code, m.value, m.ucum])).toEqual([
      ['11888-5', 151, 'd'],
      ['11727-5', 310, 'g'],
      ['11820-8', 48.2, 'mm'],
      ['18185-9', 146, 'd'],
      ['11984-2', 178.5, 'mm'],
      ['18185-9', 150, 'd'],
      ['11979-2', 152, 'mm'],
      ['18185-9', 148, 'd'],
      ['11963-6', 33.4, 'mm'],
      ['18185-9', 145, 'd'],
    ]);
    // Each stored file is in the blob store under the sha256 the record names.
    for (const s of record!.storage) expect(rig.store.blobs.sizeOf(s.sha256)).toBe(s.size);
    await eventually('download_finished', () => rig.events.some((e) => e.type === 'download_finished'));
    expect(rig.events.map((e) => e.type)).toEqual(expect.arrayContaining(['download_started', 'download_finished']));
    // The device state's imaging block: who called, how many instances, no association left open.
    await eventually('the association counted closed', () => rig.states('us-room-2').at(-1)?.imaging?.associations_open === 0);
    expect(rig.states('us-room-2').at(-1)).toMatchObject({
      status: 'ok',
      manufacturer: 'poctd simulator',
      imaging: { calling_ae_title: 'US_ROOM2', instances_received: 3, associations_open: 0 },
    });
    expect(rig.states('us-room-2').some((s) => s.imaging?.associations_open === 1)).toBe(true);
  });

  it('the same instances again: no new record; one more instance: a new version with the same study_key', async () => {
    const port = await freePort();
    const rig = await deviceManagerRig({ devices: [device(port)], drivers: [dicomUltrasound], cleanups });
    await eventually('the SCP listening', () => rig.states('us-room-2').some((s) => s.status === 'idle'));
    const files = makeStudy();
    await send(port, files.slice(0, 2));
    await eventually('version 2', () => studies(rig).length === 1);
    await send(port, files.slice(0, 2));
    await eventually('the resend recorded as already stored', () => rig.events.filter((e) => e.type === 'download_finished').length === 2);
    expect(studies(rig)).toHaveLength(1);
    await send(port, files.slice(2));
    await eventually('version 3', () => studies(rig).length === 2);
    const [v2, v3] = studies(rig);
    expect([v2!.version, v3!.version]).toEqual([2, 3]);
    expect(v3!.study_key).toBe(v2!.study_key);
    expect(v3!.id).not.toBe(v2!.id);
    expect(v3!.measurements).toHaveLength(10);
  });

  it('DCMTK storescu sending the scripted files is recorded the same; an unknown caller is refused with listener_refused', async () => {
    requireTool('storescu', 'dcmtk');
    const port = await freePort();
    const rig = await deviceManagerRig({ devices: [device(port)], drivers: [dicomUltrasound], cleanups });
    await eventually('the SCP listening', () => rig.states('us-room-2').some((s) => s.status === 'idle'));
    const dir = mkdtempSync(join(tmpdir(), 'poctd-us-files-'));
    const paths = makeStudy().map((f) => {
      const path = join(dir, f.name);
      writeFileSync(path, f.bytes);
      return path;
    });
    await run('storescu', ['-aet', 'US_ROOM2', '-aec', 'POCTD', '127.0.0.1', String(port), ...paths]);
    await eventually('a study record', () => studies(rig).length === 1);
    expect(studies(rig)[0]!.instances).toBe(3);
    const refused = await send(port, makeStudy(), 'STRANGER').catch((e: unknown) => e);
    expect(refused).toBeInstanceOf(AssociationRejected);
    await eventually('a listener_refused event', () => rig.events.some((e) => e.type === 'listener_refused'));
    const event = rig.events.find((e) => e.type === 'listener_refused')!;
    expect(event.message).toMatch(/STRANGER/);
    expect(JSON.stringify(event)).not.toMatch(/SIM-0001|SIMULATED/);
  });

  it('a C-STORE refused (the disk below min_free_mb) is a bad_frame event with its status, and nothing is recorded', async () => {
    const port = await freePort();
    const rig = await deviceManagerRig({ devices: [device(port, { min_free_mb: 1024 * 1024 * 1024 } as never)], drivers: [dicomUltrasound], cleanups });
    await eventually('the SCP listening', () => rig.states('us-room-2').some((s) => s.status === 'idle'));
    expect(await send(port)).toEqual([Status.OutOfResources, Status.OutOfResources, Status.OutOfResources]);
    await eventually('bad_frame events', () => rig.events.filter((e) => e.type === 'bad_frame').length === 3);
    expect(rig.events.find((e) => e.type === 'bad_frame')!.message).toMatch(/status 0xa700/);
    expect(studies(rig)).toEqual([]);
  });

  it('instances stored before a kill inside the quiet period (no record yet) are recorded when the session starts', async () => {
    // The SCP part alone stores and answers the study, as the daemon had before it was killed.
    const dbPath = join(mkdtempSync(join(tmpdir(), 'poctd-us-kill-')), 'poctd.db');
    const store = new Store(dbPath);
    const index = new DicomInstanceIndex(dbPath);
    const server = new DicomScpServer({
      bind: '127.0.0.1',
      port: 0,
      aeTitle: 'POCTD',
      maxPduLength: 65536,
      maxAssociations: 4,
      storageClasses: ULTRASOUND_STORAGE_CLASSES,
      transferSyntaxes: ACCEPTED_TRANSFER_SYNTAXES,
      artimMs: 5000,
      idleTimeoutMs: 5000,
      decide: () => ({ accept: true, handler: new InstanceStore({ blobs: store.blobs, index, deviceId: 'us-room-2', minFreeBytes: 0 }) }),
    });
    await server.start();
    expect(await send(server.port)).toEqual([Status.Success, Status.Success, Status.Success]);
    await server.stop();
    index.close();
    store.close();

    const rig = await deviceManagerRig({ devices: [device(await freePort())], drivers: [dicomUltrasound], cleanups, dbPath });
    await eventually('the study recorded at start', () => studies(rig).length === 1);
    expect(studies(rig)[0]).toMatchObject({ instances: 3, version: 3 });
    // Recorded once: a second start finds nothing left to record.
    await rig.stop();
    let session: DicomUltrasoundSession | undefined;
    const driver = { ...dicomUltrasound, createSession: (host: SessionHost) => (session = dicomUltrasound.createSession(host) as DicomUltrasoundSession) };
    const again = await deviceManagerRig({ devices: [device(await freePort())], drivers: [driver], cleanups, dbPath });
    await eventually('the SCP listening', () => again.states('us-room-2').some((s) => s.status === 'idle'));
    // The start-up pass over unrecorded studies has run to its end (flush awaits every queued record).
    await session!.flush();
    expect(studies(again)).toHaveLength(1);
  });
});
