/**
 * The export folder of a dicom-ultrasound device under the real device manager and store: a USB
 * layout with a DICOMDIR made by DCMTK dcmmkdir is ingested exactly once (also after a restart on
 * the same database), its paths resolved case-insensitively; a half-copied file is not taken until
 * it is whole; loose files without a DICOMDIR are taken too.
 */
import { execFileSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, renameSync, writeFileSync, appendFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { dicomUltrasound } from '../../drivers/imaging/dicom-ultrasound/definition.ts';
import type { DicomUltrasoundSession } from '../../drivers/imaging/dicom-ultrasound/session.ts';
import { DEFAULT_STUDY, makeStudy, UltrasoundSimulator, parseSimulatorOptions } from '../../drivers/imaging/dicom-ultrasound/simulator.ts';
import { memoryPair } from '../../src/transports/memory.ts';
import type { DeviceConfig } from '../../src/config/types.ts';
import type { SessionHost } from '../../src/driver-sdk/index.ts';
import type { StudyRecord } from '../../src/records/types.ts';
import { DicomInstanceIndex } from '../../src/store/dicom-instances.ts';
import { runCleanups, type Cleanups } from '../helpers/cleanups.ts';
import { deviceManagerRig, type DeviceManagerRig } from '../helpers/device-manager-rig.ts';
import { eventually } from '../helpers/eventually.ts';
import { requireTool } from '../helpers/tools.ts';
import { freePort } from '../helpers/mosquitto.ts';

const cleanups: Cleanups = [];
afterEach(() => runCleanups(cleanups));

async function device(folder: string): Promise<DeviceConfig> {
  return {
    id: 'us-cart-1',
    driver: 'dicom-ultrasound',
    transport: { type: 'dicom-scp', port: await freePort(), allowed_callers: ['US_CART1'] },
    options: { export_folder: folder, settle_ms: 150, poll_ms: 50, quiet_period_ms: 200 },
  } as DeviceConfig;
}

function studies(rig: DeviceManagerRig): StudyRecord[] {
  return rig.store.recordsSince(0, 100).filter((r): r is StudyRecord => r.schema === 'poct.study/1');
}

describe('dicom-ultrasound export folder', () => {
  it('a DICOMDIR tree (dcmmkdir) is ingested exactly once, paths matched case-insensitively, and again not after a restart', async () => {
    requireTool('dcmmkdir', 'dcmtk');
    const medium = mkdtempSync(join(tmpdir(), 'poctd-usb-'));
    mkdirSync(join(medium, 'DICOM', 'ST1'), { recursive: true });
    const [us, cine, sr] = makeStudy();
    writeFileSync(join(medium, 'DICOM', 'ST1', 'IM1'), us!.bytes);
    writeFileSync(join(medium, 'DICOM', 'ST1', 'IM2'), cine!.bytes);
    writeFileSync(join(medium, 'DICOM', 'ST1', 'SR1'), sr!.bytes);
    execFileSync('dcmmkdir', ['-q', '-Pfl', '+r', '+id', medium, 'DICOM'], { cwd: medium });
    // A FAT mount shows the names in lower case: the DICOMDIR still says DICOM\ST1\IM1.
    renameSync(join(medium, 'DICOM', 'ST1'), join(medium, 'DICOM', 'st1'));
    renameSync(join(medium, 'DICOM'), join(medium, 'dicom'));
    const config = await device(medium);
    let session: DicomUltrasoundSession | undefined;
    const driver = { ...dicomUltrasound, createSession: (host: SessionHost) => (session = dicomUltrasound.createSession(host) as DicomUltrasoundSession) };
    const rig = await deviceManagerRig({ devices: [config], drivers: [driver], cleanups });
    await eventually('a study record', () => studies(rig).length === 1);
    expect(studies(rig)[0]).toMatchObject({ instances: 3, sender: { source: 'folder', calling_ae: null, address: null }, study: { instance_uid: DEFAULT_STUDY.studyUid } });
    expect(studies(rig)[0]!.measurements).toHaveLength(10);
    // Several more passes over the folder: nothing new.
    const passes = session!.folderScans;
    await eventually('five more passes', () => session!.folderScans >= passes + 5);
    expect(studies(rig)).toHaveLength(1);
    const dbPath = rig.dbPath;
    await rig.stop();

    session = undefined;
    const again = await deviceManagerRig({ devices: [config], drivers: [driver], cleanups, dbPath });
    // Past the settle time (150 ms) and then some: a file not yet taken would be by now.
    await eventually('five passes after the restart', () => (session?.folderScans ?? 0) >= 5);
    expect(studies(again)).toHaveLength(1);
    const index = new DicomInstanceIndex(dbPath);
    expect(index.count()).toBe(3);
    index.close();
  });

  it('a half-copied file is not taken; once whole it is, and loose files need no DICOMDIR', async () => {
    const share = mkdtempSync(join(tmpdir(), 'poctd-share-'));
    const [us, cine] = makeStudy({ ...DEFAULT_STUDY, studyUid: '1.2.826.0.1.3680043.10.999.30.1' });
    writeFileSync(join(share, 'image.dcm'), us!.bytes);
    const half = Math.floor(cine!.bytes.length / 2);
    writeFileSync(join(share, 'cine.dcm'), cine!.bytes.subarray(0, half));
    writeFileSync(join(share, 'notes.txt'), 'not DICOM');
    const rig = await deviceManagerRig({ devices: [await device(share)], drivers: [dicomUltrasound], cleanups });
    await eventually('the cut-short cine refused', () => rig.events.some((e) => e.type === 'bad_frame' && /cut short/.test(e.message)));
    await eventually('the text file refused', () => rig.events.some((e) => e.type === 'bad_frame' && /not a Part-10/.test(e.message)));
    // No event names the file's path.
    expect(JSON.stringify(rig.events)).not.toContain(share);
    await eventually('the image recorded alone', () => studies(rig).length === 1);
    expect(studies(rig)[0]!.instances).toBe(1);
    appendFileSync(join(share, 'cine.dcm'), cine!.bytes.subarray(half));
    await eventually('a second version with the cine', () => studies(rig).length === 2);
    expect(studies(rig)[1]).toMatchObject({ instances: 2, version: 2, frames: 1 + DEFAULT_STUDY.cineFrames });
  });

  it('the scripted ultrasound writing its USB export (export_dir) is ingested through its DICOMDIR', async () => {
    const medium = mkdtempSync(join(tmpdir(), 'poctd-sim-usb-'));
    const simulator = new UltrasoundSimulator(parseSimulatorOptions({ export_dir: medium }));
    simulator.attach(memoryPair('unused').host);
    simulator.detach();
    // The simulator writes EXPORT1/DICOMDIR and EXPORT1/DICOM/ST1/…; the device watches EXPORT1.
    const rig = await deviceManagerRig({ devices: [await device(join(medium, 'EXPORT1'))], drivers: [dicomUltrasound], cleanups });
    await eventually('a study record', () => studies(rig).length === 1);
    expect(studies(rig)[0]).toMatchObject({ instances: 3, study: { instance_uid: `${DEFAULT_STUDY.studyUid}.1` }, sender: { source: 'folder' } });
  });
});

