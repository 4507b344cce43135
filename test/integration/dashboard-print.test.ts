import { execFile } from 'node:child_process';
import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { promisify } from 'node:util';
import type { Page } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { makeStudy, sendStudy } from '../../drivers/imaging/dicom-ultrasound/simulator.ts';
import { FakeZebraPrinter } from '../../drivers/printers/zebra-zpl/simulator.ts';
import type { Controller } from '../../src/controller.ts';
import type { StudyRecord } from '../../src/records/types.ts';
import { browserMissing, launchBrowser } from '../helpers/browser.ts';
import { accessUsersYaml, submitLogin } from '../helpers/dashboard-login.ts';
import { startDaemon, tempDir, testConfig } from '../helpers/daemon.ts';
import { eventually } from '../helpers/eventually.ts';
import { freePort } from '../helpers/mosquitto.ts';

/**
 * Printing a specimen label from the dashboard in headless Chromium: the daemon's zebra-zpl
 * session drives the fake Zebra on a loopback TCP port. The preview's PNG is decoded by zbarimg,
 * a field error shows beside its field, a print's job moves to printed on the page, and a job
 * left uncertain (the connection dropped after the label was sent) is settled by a reprint from
 * the page. A viewer gets no print form. POCTD_SCREENSHOTS=1 writes docs/dashboard/.
 */

const run = promisify(execFile);
const missing = browserMissing();
if (missing) console.warn(`dashboard-print: did not run: ${missing}`);

const USERS = {
  nurse: { password: 'operator-pass-7', roles: '[operator]' },
  screen: { password: 'viewer-pass-8', roles: '[viewer]' },
  doc: { password: 'clinician-pass-6', roles: '[clinician]' },
  lead: { password: 'admin-pass-5', roles: '[admin]' },
} as const;
const DAEMON = { username: 'poctd-self', password: 'daemon-pass-9' };
const SHOTS = process.env.POCTD_SCREENSHOTS === '1' ? join(import.meta.dirname, '..', '..', 'docs', 'dashboard') : undefined;
const PRINTER = 'draw-printer-1';
/** Sorts before the printer by name: the printer's fault must put it first anyway. */
const US = 'a-us-room-2';

let controller: Controller;
let base: string;
let printer: FakeZebraPrinter;
let dicomPort: number;
let browser: Awaited<ReturnType<typeof launchBrowser>>;

beforeAll(async () => {
  if (missing) return;
  printer = new FakeZebraPrinter();
  await printer.start();
  const [mqttPort, httpPort] = [await freePort(), await freePort()];
  dicomPort = await freePort();
  const config = testConfig(`
site: ward-2
mqtt: { embedded: { port: ${mqttPort}, ws_port: 0, username: ${DAEMON.username}, password: "${DAEMON.password}" } }
http: { port: ${httpPort} }
access:
  users:
${accessUsersYaml(USERS)}
devices:
  - id: ${PRINTER}
    driver: zebra-zpl
    transport: { type: tcp, host: 127.0.0.1, port: ${printer.port}, reconnect_min_ms: 50, reconnect_max_ms: 200 }
    options: { status_poll_ms: 200, status_timeout_ms: 300 }
  - id: ${US}
    driver: dicom-ultrasound
    transport: { type: dicom-scp, port: ${dicomPort}, allowed_callers: [US_ROOM2] }
    options: { quiet_period_ms: 300 }
`);
  ({ controller } = await startDaemon(config));
  base = controller.dashboardUrl!;
  browser = await launchBrowser();
  if (SHOTS) mkdirSync(SHOTS, { recursive: true });
}, 60_000);

afterAll(async () => {
  await browser?.close();
  await controller?.stop();
  await printer?.stop();
});

async function loggedIn(user: keyof typeof USERS, printerStatus: string | null = 'ok'): Promise<Page> {
  const { page, errors } = await submitLogin(browser.context, base, user, USERS[user].password);
  await page.waitForSelector('[data-connection="online"]', { timeout: 10_000 });
  if (printerStatus) await page.waitForSelector(`[data-device="${PRINTER}"] [data-status="${printerStatus}"]`, { timeout: 10_000 });
  expect(errors).toEqual([]);
  return page;
}

async function fillLabel(page: Page, fields: Record<string, string>): Promise<void> {
  await page.click(`[data-device="${PRINTER}"] [data-action="label"]`);
  await page.waitForSelector(`[data-print="${PRINTER}"]`);
  for (const [name, value] of Object.entries(fields)) await page.fill(`[data-print] input[name="${name}"]`, value);
}

async function zbar(png: Buffer): Promise<string> {
  const file = join(tempDir('poctd-dash-label-'), 'preview.png');
  writeFileSync(file, png);
  return (await run('zbarimg', ['--quiet', '--raw', file])).stdout.trim();
}

describe.skipIf(missing !== undefined)('printing a specimen label from the dashboard (headless Chromium, fake Zebra)', () => {
  it('a viewer gets no print form', async () => {
    const page = await loggedIn('screen');
    expect(await page.$$('[data-action="label"]')).toEqual([]);
    await page.close();
  });

  it('preview shows the label the printer would make (its barcode is the specimen id); nothing is printed', async () => {
    const page = await loggedIn('nurse');
    const before = printer.printer.formatsReceived;
    await fillLabel(page, { specimen_id: 'S24000123', 'patient.name': 'Ærøe, Zoë', 'patient.mrn': '123456', 'patient.dob': '1960-08-29', tests: 'GLU, UA' });
    await page.click('[data-label-action="preview"]');
    const img = await page.waitForSelector('img[data-preview]', { timeout: 15_000 });
    const src = (await img.getAttribute('src'))!;
    expect(src.startsWith('data:image/png;base64,')).toBe(true);
    const png = Buffer.from(src.slice('data:image/png;base64,'.length), 'base64');
    expect(png.subarray(1, 4).toString()).toBe('PNG');
    expect(await zbar(png)).toBe('S24000123');
    expect(await img.evaluate((e) => (e as HTMLImageElement).naturalWidth)).toBeGreaterThan(100);
    if (SHOTS) await page.screenshot({ path: join(SHOTS, 'print-label-preview.png'), fullPage: true });
    expect(printer.printer.formatsReceived).toBe(before);
    await page.close();
  });

  it('a field the daemon refuses is named beside its field, and nothing is printed', async () => {
    const page = await loggedIn('nurse');
    const before = printer.printer.formatsReceived;
    await fillLabel(page, { 'patient.name': 'Test, Ann', 'patient.mrn': '778', 'patient.dob': '1960-13-45', copies: '1' });
    await page.click('[data-label-action="print"]');
    const error = await page.waitForSelector('[data-field-error="patient.dob"]', { timeout: 15_000 });
    expect(await error.textContent()).toContain('not a date');
    expect(await page.$$('[data-field-error="patient.name"]')).toEqual([]);
    // The schema's own refusal (an empty MRN) is named the same way.
    await page.fill('[data-print] input[name="patient.dob"]', '');
    await page.fill('[data-print] input[name="patient.mrn"]', '');
    await page.click('[data-label-action="print"]');
    await page.waitForSelector('[data-field-error="patient.mrn"]', { timeout: 15_000 });
    expect(await page.$$('[data-field-error="patient.dob"]')).toEqual([]);
    expect(await page.$$('[data-job]')).toEqual([]);
    expect(printer.printer.formatsReceived).toBe(before);
    await page.close();
  });

  it('print: the job shows queued and then printed, and the printer got one label', async () => {
    const page = await loggedIn('nurse');
    const before = printer.printer.printed.length;
    await fillLabel(page, { 'patient.name': 'Berg, Ola', 'patient.mrn': '4455', copies: '1' });
    const clicked = Date.now();
    await page.click('[data-label-action="print"]');
    const job = page.locator('#print [data-job]').first();
    await job.waitFor({ timeout: 15_000 });
    await page.waitForSelector('#print [data-job][data-job-state="printed"]', { timeout: 15_000 });
    console.info(`dashboard-print: Print pressed → "printed" on the page in ${Date.now() - clicked} ms`);
    expect(printer.printer.printed.length).toBe(before + 1);
    // The specimen id the daemon issued is the one on the page.
    const id = await job.getAttribute('data-job');
    const row = controller.runtime!.store.jobs.get(PRINTER, id!)!;
    expect(await job.textContent()).toContain((row.summary as { specimen_id: string }).specimen_id);
    await page.close();
  });

  it('a job left uncertain shows its reason and offers confirm / reprint; reprint prints it again marked REPRINT', async () => {
    const page = await loggedIn('nurse');
    await fillLabel(page, { specimen_id: 'S24000999', 'patient.name': 'Lund, Kai', 'patient.mrn': '9911' });
    printer.dropAfterNextFormat();
    await page.click('[data-label-action="print"]');
    const uncertain = page.locator('#print [data-job][data-job-state="uncertain"]');
    await uncertain.waitFor({ timeout: 15_000 });
    expect(await uncertain.locator('[data-job-reason]').textContent()).toMatch(/\S/);
    expect(await uncertain.locator('[data-confirm]').count()).toBe(2);
    // An open uncertain job marks its printer as needing someone, though the printer reports no fault.
    await page.waitForSelector(`[data-device="${PRINTER}"].attention [data-queue] [data-job-state="uncertain"]`);
    expect(await page.$$eval('#devices tbody tr', (rows) => rows.map((r) => r.getAttribute('data-device')))).toEqual([PRINTER, US]);
    expect(await page.getAttribute(`[data-device="${PRINTER}"] [data-availability]`, 'data-availability')).toBe('online');
    if (SHOTS) await page.screenshot({ path: join(SHOTS, 'print-label-uncertain.png'), fullPage: true });
    const printed = printer.printer.printed.length;
    await uncertain.locator('[data-confirm="reprint"]').click();
    await page.waitForSelector('#print [data-job][data-job-state="failed"]', { timeout: 15_000 });
    const reprint = page.locator('#print [data-job][data-job-state="printed"]', { hasText: 'REPRINT' });
    await reprint.waitFor({ timeout: 15_000 });
    await eventually('the reprint reached the printer', () => printer.printer.printed.length > printed, 10_000);
    expect(printer.printer.printed.at(-1)!.zpl).toContain('REPRINT');
    await page.waitForSelector(`[data-device="${PRINTER}"]:not(.attention)`);
    await page.close();
  });

  it("a printer's fault puts it first in the devices view with its queued jobs; a page opened later lists them too; they print when it clears", async () => {
    const page = await loggedIn('nurse');
    printer.printer.set({ paper_out: true });
    await page.waitForSelector(`[data-device="${PRINTER}"].attention`, { timeout: 15_000 });
    expect(await page.textContent(`[data-device="${PRINTER}"]`)).toContain('paper out');
    await fillLabel(page, { specimen_id: 'S24000555', 'patient.name': 'Holm, Eva', 'patient.mrn': '5566' });
    await page.click('[data-label-action="print"]');
    await page.waitForSelector(`[data-queue="${PRINTER}"] [data-queued="1"]`, { timeout: 15_000 });
    await page.waitForSelector(`[data-queue="${PRINTER}"] [data-job-state="queued"]`);
    const order = await page.$$eval('#devices tbody tr', (rows) => rows.map((r) => r.getAttribute('data-device')));
    expect(order).toEqual([PRINTER, US]);
    // Opened after the job was queued: the job list comes from request/jobs, not from a step it saw.
    const later = await loggedIn('nurse', null);
    const queued = later.locator(`[data-queue="${PRINTER}"] [data-job-state="queued"]`);
    await queued.waitFor({ timeout: 15_000 });
    expect(await queued.textContent()).toContain('S24000555');
    if (SHOTS) await later.screenshot({ path: join(SHOTS, 'printer-fault-queue.png'), fullPage: true });
    printer.printer.set({ paper_out: false });
    await page.waitForSelector(`[data-queue="${PRINTER}"] [data-queued="0"]`, { timeout: 15_000 });
    await page.waitForSelector(`#print [data-job][data-job-state="printed"]`, { timeout: 15_000 });
    expect(await page.$$(`[data-queue="${PRINTER}"] [data-job]`)).toEqual([]);
    // Paused (the printer still answers ~HS): the flag shows and the printer is first again.
    await page.waitForSelector(`[data-device="${PRINTER}"]:not(.attention)`, { timeout: 15_000 });
    expect(await page.$$eval('#devices tbody tr', (rows) => rows.map((r) => r.getAttribute('data-device')))).toEqual([US, PRINTER]);
    printer.printer.set({ paused: true });
    await page.waitForSelector(`[data-device="${PRINTER}"].attention [data-status="fault"]`, { timeout: 15_000 });
    expect(await page.textContent(`[data-device="${PRINTER}"]`)).toContain('paused');
    expect(await page.$$eval('#devices tbody tr', (rows) => rows.map((r) => r.getAttribute('data-device')))).toEqual([PRINTER, US]);
    printer.printer.set({ paused: false });
    await page.waitForSelector(`[data-device="${PRINTER}"]:not(.attention)`, { timeout: 15_000 });
    await later.close();
    await page.close();
  });

  it('studies are listed with their measurements, no pixel data, and patient fields as each role sees them', async () => {
    const nurse = await loggedIn('nurse', null);
    const doc = await loggedIn('doc', null);
    expect(await sendStudy(makeStudy(), { host: '127.0.0.1', port: dicomPort, calling_ae: 'US_ROOM2', called_ae: 'POCTD' })).not.toContain(0xa700);
    let record: StudyRecord | undefined;
    await eventually('the study recorded', () => {
      record = controller.runtime!.store.recordsSince(0, 1000).filter((r): r is StudyRecord => r.schema === 'poct.study/1').at(-1);
      return record !== undefined;
    }, 20_000);
    expect(record!.measurements.length).toBeGreaterThan(0);
    for (const page of [nurse, doc]) {
      const study = page.locator(`[data-study="${record!.study_key}"]`);
      await study.waitFor({ timeout: 15_000 });
      await page.waitForFunction((n) => document.querySelectorAll('#studies [data-measurement]').length >= n, record!.measurements.length, { timeout: 15_000 });
      expect(await page.$$('#studies img, #studies canvas, #studies video')).toEqual([]);
      const first = record!.measurements.find((m) => m.value !== null)!;
      expect(await study.textContent()).toContain(first.meaning);
      expect(await study.textContent()).toContain(String(first.value));
    }
    // The operator's copy has the patient fields removed; the clinician sees them as the policy publishes them.
    expect(await nurse.textContent(`[data-study="${record!.study_key}"] [data-study-patient]`)).toBe('—');
    const p = record!.patient;
    const published = [p?.name && `name ${p.name}`, p?.id && `id ${p.id}`, p?.birth_date && `born ${p.birth_date}`].filter(Boolean).join(' · ');
    expect(published).not.toBe('');
    expect(await doc.textContent(`[data-study="${record!.study_key}"] [data-study-patient]`)).toBe(published);
    expect(published).not.toContain('SIMULATED');
    if (SHOTS) await doc.screenshot({ path: join(SHOTS, 'studies.png'), fullPage: true });
    await nurse.close();
    await doc.close();
  });

  it('a page opened after the study and the jobs catches up from results/replay (admin): the study, and no job reopened', async () => {
    const study = controller.runtime!.store.recordsSince(0, 1000).filter((r): r is StudyRecord => r.schema === 'poct.study/1').at(-1)!;
    const page = await loggedIn('lead', null);
    await page.waitForSelector(`[data-study="${study.study_key}"][data-version="${study.version}"]`, { timeout: 15_000 });
    // Every job's replayed steps end where the job is: none is open any more.
    await page.waitForFunction((id) => document.querySelector(`[data-queue="${id}"] [data-queued]`)?.getAttribute('data-queued') === '0', PRINTER);
    expect(await page.$$(`[data-queue="${PRINTER}"] [data-job]`)).toEqual([]);
    await page.close();
  });
});
