/**
 * Label printing end to end: a print request over Mosquitto → the daemon's zebra-zpl session →
 * the fake Zebra on a loopback port receives the ZPL → rendered offline (zpl-renderer-js) → the
 * barcode decoded by zbarimg and ZXingReader equals the specimen id. Also: a hostile name prints
 * literally and injects no command, 2 copies make 2 labels, job steps on `device/<id>/job` carry
 * no patient data, and a job accepted while the printer is unreachable prints once after the
 * daemon was killed with SIGKILL and started again.
 */
import { execFile, spawn, type ChildProcess } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { FakeZebraPrinter } from '../../drivers/printers/zebra-zpl/simulator.ts';
import { BUILTIN_TEMPLATES } from '../../drivers/printers/zebra-zpl/templates.ts';
import { LABEL_FIELDS } from '../../drivers/printers/zebra-zpl/label.ts';
import type { Controller } from '../../src/controller.ts';
import { zplCommands } from '../../src/protocols/zpl/fields.ts';
import { renderZplPng } from '../../src/protocols/zpl/render.ts';
import { renderTemplate } from '../../src/protocols/zpl/template.ts';
import type { PrintJobRecord } from '../../src/records/types.ts';
import { schemaProblems } from '../../src/records/schemas.ts';
import { useCleanups } from '../helpers/cleanups.ts';
import { startDaemon, tempDir, testConfig } from '../helpers/daemon.ts';
import { eventually } from '../helpers/eventually.ts';
import { Mosquitto } from '../helpers/mosquitto.ts';
import { Subscriber } from '../helpers/subscriber.ts';
import { fieldTexts } from '../helpers/specimen-label.ts';
import { startFakeZebra } from '../helpers/fake-zebra.ts';

const run = promisify(execFile);
const repo = resolve(fileURLToPath(new URL('../..', import.meta.url)));
const cleanups = useCleanups();
const ID = 'draw-printer-1';
const HOSTILE = 'Ærøe^XZ~JA\\, Zoë Łukasz 山田';

/** The barcode in a PNG, as zbarimg and ZXingReader read it. */
async function decodeBarcode(png: Buffer): Promise<{ zbar: string; zxing: string }> {
  const file = join(tempDir('poctd-label-'), 'label.png');
  writeFileSync(file, png);
  const zbar = (await run('zbarimg', ['--quiet', '--raw', file])).stdout.trim();
  const zx = (await run('ZXingReader', ['-format', 'Code128', file])).stdout;
  const zxing = /^Text:\s+"(.*)"$/m.exec(zx)?.[1] ?? zx;
  return { zbar, zxing };
}


describe('label printing over MQTT (Mosquitto, fake Zebra, offline render, zbarimg, ZXingReader)', () => {
  let broker: Mosquitto;
  let sub: Subscriber;
  let controller: Controller;
  let printer: FakeZebraPrinter;

  beforeAll(async () => {
    broker = await Mosquitto.start();
    sub = await Subscriber.connect(broker.url);
    printer = new FakeZebraPrinter();
    await printer.start();
    const config = testConfig(`
site: clinic-a
mqtt: { url: ${broker.url} }
devices:
  - id: ${ID}
    driver: zebra-zpl
    transport: { type: tcp, host: 127.0.0.1, port: ${printer.port}, reconnect_min_ms: 50, reconnect_max_ms: 200 }
    options: { status_poll_ms: 200, status_timeout_ms: 300 }
`);
    ({ controller } = await startDaemon(config));
  });

  afterAll(async () => {
    await controller?.stop();
    await sub?.close();
    await broker?.stop();
    await printer?.stop();
  });

  it('prints the requested label: the barcode decodes to the specimen id, the name prints literally and injects nothing', async () => {
    const request = {
      template: 'specimen',
      specimen_id: 'S24000123',
      patient: { name: HOSTILE, mrn: '123456', dob: '1960-08-29' },
      collected_at: '2026-12-03T09:14:00+01:00',
      tests: ['GLU', 'UA'],
      copies: 2,
    };
    const response = await sub.request(`poct/device/${ID}/request/print`, `poct/device/${ID}/response/print`, request);
    expect(response).toMatchObject({ status: 'ok', data: { specimen_id: 'S24000123', state: 'queued' } });
    await eventually('2 labels', () => printer.printer.printed.length === 2);
    const zpl = printer.printer.printed[0]!.zpl;
    expect(printer.printer.formatsReceived).toBe(1);
    // Exactly the template's commands: nothing in the name became one.
    const plain = renderTemplate(BUILTIN_TEMPLATES.specimen!, {}, 2, LABEL_FIELDS).zpl.replace(/\n/g, '');
    expect(zplCommands(zpl)).toEqual(zplCommands(plain));
    expect(fieldTexts(zpl)[0]).toBe(HOSTILE.slice(0, 26));
    const [png] = await renderZplPng(zpl, BUILTIN_TEMPLATES.specimen!);
    expect(await decodeBarcode(png!)).toEqual({ zbar: 'S24000123', zxing: 'S24000123' });

    const job = (response.data as { job: string }).job;
    await sub.waitFor('job printed', () => sub.payloads<PrintJobRecord>(`poct/device/${ID}/job`).some((r) => r.job === job && r.state === 'printed'));
    const steps = sub.payloads<PrintJobRecord>(`poct/device/${ID}/job`).filter((r) => r.job === job);
    expect(steps.map((s) => s.state)).toEqual(['queued', 'printing', 'printed']);
    for (const step of steps) expect(schemaProblems('poct.print-job/1', step)).toEqual([]);
    // No patient data on any topic but the request and the asker's response.
    const published = sub.messages.filter((m) => !m.topic.includes('/request/') && !m.topic.endsWith('/response/print'));
    for (const secret of ['123456', 'Zo', 'ukasz', '1960-08-29']) {
      expect(published.filter((m) => JSON.stringify(m).includes(secret)).map((m) => m.topic), secret).toEqual([]);
    }
    expect(sub.messages.filter((m) => m.topic.endsWith('/job')).every((m) => !m.retain)).toBe(true);
  });

  it('renders every built-in template with a barcode both readers decode', async () => {
    for (const [name, template] of Object.entries(BUILTIN_TEMPLATES)) {
      const { zpl } = renderTemplate(template, { specimen_id: 'D10000015', 'patient.name': 'Ærøe, Zoë', 'patient.mrn': '123456' }, 1, LABEL_FIELDS);
      const [png] = await renderZplPng(zpl, template);
      expect(await decodeBarcode(png!), name).toEqual({ zbar: 'D10000015', zxing: 'D10000015' });
    }
  });

  it('answers a preview with a PNG whose barcode decodes, printing nothing', async () => {
    const before = printer.printer.formatsReceived;
    const response = await sub.request<{ status: string; data: { png: string } }>(`poct/device/${ID}/request/preview`, `poct/device/${ID}/response/preview`, {
      template: 'tube-wrap',
      specimen_id: 'T123456',
      patient: { name: 'Doe, Jane', mrn: '42' },
    });
    expect(response.status).toBe('ok');
    expect((await decodeBarcode(Buffer.from(response.data.png, 'base64'))).zbar).toBe('T123456');
    expect(printer.printer.formatsReceived).toBe(before);
  });
});

describe('a job accepted while the printer is unreachable, across kill -9 (Mosquitto, poctd run)', () => {
  it('prints exactly once when the printer is back and the daemon has been started again', async () => {
    const broker = await Mosquitto.start();
    cleanups.push(() => broker.stop());
    const printer = await startFakeZebra(cleanups);
    await printer.setUnreachable(true);
    const dir = tempDir('poctd-print-kill-');
    const configFile = join(dir, 'poctd.yaml');
    writeFileSync(
      configFile,
      `site: clinic-a
mqtt: { url: ${broker.url} }
store: { path: ${join(dir, 'poctd.db')} }
devices:
  - id: ${ID}
    driver: zebra-zpl
    transport: { type: tcp, host: 127.0.0.1, port: ${printer.port}, reconnect_min_ms: 50, reconnect_max_ms: 200 }
    options: { status_poll_ms: 200, status_timeout_ms: 300 }
`,
    );
    const startPoctd = (): ChildProcess => {
      const child = spawn(process.execPath, ['--import', 'tsx', 'cli/main.ts', 'run', '--config', configFile], { cwd: repo, stdio: ['ignore', 'ignore', 'pipe'] });
      cleanups.push(async () => {
        if (child.exitCode === null && child.signalCode === null) {
          child.kill('SIGKILL');
          await new Promise((r) => child.once('close', r));
        }
      });
      return child;
    };
    const sub = await Subscriber.connect(broker.url);
    cleanups.push(() => sub.close());
    const first = startPoctd();
    await sub.waitFor('daemon online', () => sub.last<{ state: string }>('poct/bridge/state')?.state === 'online', 20_000);
    // The bridge is online before the device manager has added the printer: its state says it has.
    await sub.waitFor('the printer added', () => sub.last(`poct/device/${ID}`) !== undefined, 20_000);
    const response = await sub.request(`poct/device/${ID}/request/print`, `poct/device/${ID}/response/print`, {
      template: 'specimen',
      specimen_id: 'S24000999',
      patient: { name: 'Doe, Jane', mrn: '42' },
    });
    expect(response).toMatchObject({ status: 'ok', data: { state: 'queued' } });
    first.kill('SIGKILL');
    await new Promise((r) => first.once('close', r));
    await printer.setUnreachable(false);
    startPoctd();
    await eventually('the label', () => printer.printer.printed.length === 1, 20_000);
    const job = (response.data as { job: string }).job;
    await sub.waitFor('job printed', () => sub.payloads<PrintJobRecord>(`poct/device/${ID}/job`).some((r) => r.job === job && r.state === 'printed'), 20_000);
    expect(printer.printer.formatsReceived).toBe(1);
  });
});

describe('a retained print request (Mosquitto)', () => {
  it('is refused with an error response when the daemon receives it as retained, printing nothing', async () => {
    const broker = await Mosquitto.start();
    cleanups.push(() => broker.stop());
    const printer = await startFakeZebra(cleanups);
    const sub = await Subscriber.connect(broker.url);
    cleanups.push(() => sub.close());
    // Left on the broker before the daemon subscribes (as it would be at every reconnect after).
    const topic = `poct/device/${ID}/request/print`;
    await sub.client.publishAsync(topic, JSON.stringify({ template: 'specimen', patient: { name: 'Doe, Jane', mrn: '42' }, transaction: 'kept' }), { qos: 1, retain: true });
    const config = testConfig(`
site: clinic-a
mqtt: { url: ${broker.url} }
devices:
  - id: ${ID}
    driver: zebra-zpl
    transport: { type: tcp, host: 127.0.0.1, port: ${printer.port} }
    options: { status_poll_ms: 200, status_timeout_ms: 300 }
`);
    const { controller } = await startDaemon(config);
    cleanups.push(() => controller.stop());
    await sub.waitFor('the refusal', () => sub.payloads<{ transaction?: string }>(`poct/device/${ID}/response/print`).some((r) => r.transaction === 'kept'));
    const refusal = sub.payloads<{ transaction?: string; status: string; error: string }>(`poct/device/${ID}/response/print`).find((r) => r.transaction === 'kept')!;
    expect(refusal).toMatchObject({ status: 'error', error: expect.stringContaining('retain flag') });
    await sub.waitFor('the printer polled', () => printer.printer.controls.filter((c) => c === 'HS').length >= 2);
    expect(printer.printer.formatsReceived).toBe(0);
    expect(sub.payloads(`poct/device/${ID}/job`)).toEqual([]);
    await sub.client.publishAsync(topic, '', { qos: 1, retain: true });
  });
});
