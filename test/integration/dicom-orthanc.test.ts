/**
 * Orthanc (Debian `orthanc`) as a second real C-STORE SCU: instances uploaded to it over its REST
 * API are pushed to the dicom-ultrasound device's SCP (`POST /modalities/poctd/store`), through the
 * real device manager and store, and become one study record; Orthanc's C-ECHO to us succeeds.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { dicomUltrasound } from '../../drivers/imaging/dicom-ultrasound/definition.ts';
import { DEFAULT_STUDY, makeStudy } from '../../drivers/imaging/dicom-ultrasound/simulator.ts';
import type { DeviceConfig } from '../../src/config/types.ts';
import type { StudyRecord } from '../../src/records/types.ts';
import { runCleanups, type Cleanups } from '../helpers/cleanups.ts';
import { deviceManagerRig } from '../helpers/device-manager-rig.ts';
import { eventually } from '../helpers/eventually.ts';
import { requireTool } from '../helpers/tools.ts';
import { freePort } from '../helpers/mosquitto.ts';

const cleanups: Cleanups = [];
afterEach(() => runCleanups(cleanups));

async function startOrthanc(scpPort: number): Promise<{ url: string; child: ChildProcess }> {
  const dir = mkdtempSync(join(tmpdir(), 'poctd-orthanc-'));
  const httpPort = await freePort();
  const dicomPort = await freePort();
  const config = {
    Name: 'poctd-test',
    StorageDirectory: join(dir, 'db'),
    IndexDirectory: join(dir, 'db'),
    HttpPort: httpPort,
    DicomPort: dicomPort,
    DicomAet: 'ORTHANC',
    RemoteAccessAllowed: false,
    AuthenticationEnabled: false,
    HttpBindAddress: '127.0.0.1',
    DicomBindAddress: '127.0.0.1',
    Plugins: [],
    DicomModalities: { poctd: ['POCTD', '127.0.0.1', scpPort] },
  };
  writeFileSync(join(dir, 'orthanc.json'), JSON.stringify(config));
  const child = spawn('Orthanc', [join(dir, 'orthanc.json')], { stdio: 'ignore', env: { ...process.env, TCP_NODELAY: '1' } });
  cleanups.push(async () => {
    child.kill('SIGTERM');
    await new Promise((r) => child.once('exit', r));
  });
  const url = `http://127.0.0.1:${httpPort}`;
  const deadline = Date.now() + 20_000;
  for (;;) {
    try {
      if ((await fetch(`${url}/system`)).ok) break;
    } catch {
      // not up yet
    }
    if (Date.now() > deadline) throw new Error('Orthanc did not start');
    await new Promise((r) => setTimeout(r, 100));
  }
  return { url, child };
}

describe('Orthanc pushing to the dicom-ultrasound SCP', () => {
  it('C-ECHO and C-STORE of a study uploaded to Orthanc make one study record', async () => {
    requireTool('Orthanc', 'orthanc');
    const scpPort = await freePort();
    const config = { id: 'us-gw', driver: 'dicom-ultrasound', transport: { type: 'dicom-scp', port: scpPort, allowed_callers: ['ORTHANC'] }, options: { quiet_period_ms: 300 } } as DeviceConfig;
    const rig = await deviceManagerRig({ devices: [config], drivers: [dicomUltrasound], cleanups });
    await eventually('the SCP listening', () => rig.states('us-gw').some((s) => s.status === 'idle'));
    const orthanc = await startOrthanc(scpPort);
    const echo = await fetch(`${orthanc.url}/modalities/poctd/echo`, { method: 'POST', body: '{}' });
    expect(echo.status).toBe(200);
    const ids: string[] = [];
    for (const f of makeStudy()) {
      const upload = await fetch(`${orthanc.url}/instances`, { method: 'POST', body: new Uint8Array(f.bytes) });
      expect(upload.status).toBe(200);
      ids.push(((await upload.json()) as { ID: string }).ID);
    }
    const store = await fetch(`${orthanc.url}/modalities/poctd/store`, { method: 'POST', body: JSON.stringify({ Resources: ids, Synchronous: true }) });
    expect(store.status, await store.clone().text()).toBe(200);
    await eventually('a study record', () => rig.store.recordsSince(0, 10).some((r) => r.schema === 'poct.study/1'), 15_000);
    const record = rig.store.recordsSince(0, 10).find((r): r is StudyRecord => r.schema === 'poct.study/1')!;
    expect(record).toMatchObject({ instances: 3, sender: { calling_ae: 'ORTHANC', source: 'c-store' }, study: { instance_uid: DEFAULT_STUDY.studyUid } });
    expect(record.measurements).toHaveLength(10);
  }, 60_000);
});
