import { mkdirSync } from 'node:fs';
import { join } from 'node:path';
import mqtt, { type MqttClient } from 'mqtt';
import type { Page } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Controller } from '../../src/controller.ts';
import type { ResultRecord } from '../../src/records/types.ts';
import { browserMissing, launchBrowser } from '../helpers/browser.ts';
import { accessUsersYaml, submitLogin } from '../helpers/dashboard-login.ts';
import { startDaemon, testConfig } from '../helpers/daemon.ts';
import { eventually } from '../helpers/eventually.ts';
import { freePort } from '../helpers/mosquitto.ts';

/**
 * The dashboard in headless Chromium against a daemon with simulated meters, served under a base
 * path as behind a reverse proxy. Screenshots of each view go to docs/dashboard/ when
 * POCTD_SCREENSHOTS=1 (how the committed ones were made).
 */

const missing = browserMissing();
if (missing) console.warn(`dashboard-browser: did not run: ${missing}`);

const USERS = {
  op: { password: 'operator-pass-1', roles: '[operator, clinician]' },
  coordinator: { password: 'admin-pass-2', roles: '[admin]' },
  screen: { password: 'viewer-pass-3', roles: '[viewer]' },
} as const;
const DAEMON = { username: 'poctd-self', password: 'daemon-pass-0' };
const SHOTS = process.env.POCTD_SCREENSHOTS === '1' ? join(import.meta.dirname, '..', '..', 'docs', 'dashboard') : undefined;

let controller: Controller;
let base: string;
let mqttUrl: string;
let browser: Awaited<ReturnType<typeof launchBrowser>>;
/** The daemon's account: hears every result as it is published. */
let tap: MqttClient;
const published: Array<{ record: ResultRecord; at: number }> = [];

beforeAll(async () => {
  if (missing) return;
  const [mqttPort, httpPort] = [await freePort(), await freePort()];
  const config = testConfig(`
site: bench-3
mqtt: { embedded: { port: ${mqttPort}, ws_port: 0, username: ${DAEMON.username}, password: "${DAEMON.password}" } }
http: { port: ${httpPort}, base_path: /lab/poct/ }
health_interval_s: 1
access:
  users:
${accessUsersYaml(USERS)}
devices:
  - id: meter-a
    driver: onetouch-ultra2
    timezone: Europe/Copenhagen
    poll_interval: 1
    transport:
      type: simulated
      simulator:
        serial: GMF600DCY
        new_reading_every_s: 1
        timezone: Europe/Copenhagen
        memory:
          - { time: "2026-11-20T07:41:09", value: 96 }
          - { time: "2026-11-20T07:50:02", value: 104, control: true }
          - { time: "2026-11-20T08:02:55", value: 650 }
  - id: meter-gone
    driver: onetouch-ultra2
    transport: { type: serial, path: /dev/poctd-test-no-such-port, reconnect_min_ms: 60000, reconnect_max_ms: 60000 }
`);
  ({ controller } = await startDaemon(config));
  base = controller.dashboardUrl!;
  mqttUrl = `mqtt://127.0.0.1:${mqttPort}`;
  tap = await mqtt.connectAsync(mqttUrl, { ...DAEMON, reconnectPeriod: 0 });
  tap.on('message', (_t, payload) => published.push({ record: JSON.parse(payload.toString()) as ResultRecord, at: Date.now() }));
  await tap.subscribeAsync('poct/device/+/result', { qos: 1 });
  browser = await launchBrowser();
  if (SHOTS) mkdirSync(SHOTS, { recursive: true });
}, 60_000);

afterAll(async () => {
  await tap?.endAsync(true);
  await browser?.close();
  await controller?.stop();
});

async function loggedIn(user: keyof typeof USERS): Promise<Page> {
  const { page, errors } = await submitLogin(browser.context, base, user, USERS[user].password);
  await page.waitForSelector('[data-connection="online"]', { timeout: 10_000 });
  expect(errors).toEqual([]);
  return page;
}

async function shot(page: Page, name: string): Promise<void> {
  if (SHOTS) await page.screenshot({ path: join(SHOTS, `${name}.png`), fullPage: true });
}

describe.skipIf(missing !== undefined)('dashboard in headless Chromium', () => {
  it('a wrong password gets a message, not the page', async () => {
    const page = await browser.context.newPage();
    await page.goto(base);
    await page.fill('input[name=username]', 'op');
    await page.fill('input[name=password]', 'not-it');
    await page.click('button[type=submit]');
    await expect.poll(() => page.textContent('[role=alert]')).toBe('Wrong user name or password.');
    await page.close();
  });

  it('lists the devices, offline ones first, with model, serial and availability', async () => {
    const page = await loggedIn('op');
    await page.waitForSelector('[data-device="meter-a"] [data-availability="online"]');
    await page.waitForSelector('[data-device="meter-gone"] [data-status="port-missing"]');
    const order = await page.$$eval('#devices tbody tr', (rows) => rows.map((r) => r.getAttribute('data-device')));
    expect(order).toEqual(['meter-gone', 'meter-a']);
    expect(await page.textContent('[data-device="meter-a"]')).toContain('GMF600DCY');
    expect(await page.textContent('[data-device="meter-gone"] [data-availability]')).toBe('offline');
    await page.close();
  });

  it('a new result appears within a second of its publication', async () => {
    const page = await loggedIn('op');
    const after = published.length;
    await eventually('a result published after the page connected', () => published.length > after, 15_000);
    const fresh = published[after]!;
    await page.waitForSelector(`[data-result="${fresh.record.id}"]`, { timeout: 5000 });
    const shownAt = Date.now();
    console.info(`dashboard-browser: result on the page ${shownAt - fresh.at} ms after the broker delivered it to the tap`);
    expect(shownAt - fresh.at).toBeLessThan(1000);
    await page.close();
  });

  it('catch-up from results/replay (admin): the control run is marked as not a patient result, HI shows the limit', async () => {
    const page = await loggedIn('coordinator');
    const control = page.locator('tr.not-patient', { has: page.locator('[data-category="control"]') }).first();
    await control.waitFor({ timeout: 10_000 });
    expect(await control.locator('[data-category]').textContent()).toBe('CONTROL — not a patient result');
    const hi = page.locator('[data-limit="HI"]').first();
    await hi.waitFor();
    expect(await hi.textContent()).toBe('HI (> 600 mg/dL)');
    await page.click('[data-device="meter-a"] a');
    await page.waitForFunction(() => Number(document.querySelector('[data-chart]')?.getAttribute('data-points')) >= 3);
    await shot(page, 'admin-overview');
    await page.close();
  });

  it('the download button: the request reaches the device under the user\'s name, progress and the answer show', async () => {
    const page = await loggedIn('op');
    const before = controller.runtime!.store.auditRows().filter((r) => r.verb === 'download' && r.requested_by === 'op').length;
    await page.click('[data-device="meter-a"] [data-action="download"]');
    await eventually('the download audited under "op"', () => controller.runtime!.store.auditRows().filter((r) => r.verb === 'download' && r.requested_by === 'op').length > before, 15_000);
    await page.waitForSelector('[data-progress="meter-a"]');
    await page.waitForFunction(() => /meter-a download: ok/.test(document.querySelector('[data-toast]')?.textContent ?? ''), undefined, { timeout: 15_000 });
    await shot(page, 'operator-devices-results');
    await page.close();
  });

  it('a viewer gets no command buttons, no patient ids, and the broker refuses the command anyway', async () => {
    const page = await loggedIn('screen');
    await page.waitForSelector('[data-device="meter-a"]');
    await page.waitForSelector('[data-result]', { timeout: 10_000 });
    expect(await page.$$('[data-action]')).toEqual([]);
    const patients = await page.$$eval('#results tbody tr td:nth-child(6)', (cells) => cells.map((c) => c.textContent));
    expect(patients.every((p) => p === '—')).toBe(true);
    await shot(page, 'viewer');
    const audited = controller.runtime!.store.auditRows().length;
    // The page's own mqtt.js, logged in as the viewer, sends the request by hand.
    // As text: the test runner rewrites a dynamic import() in a function it would pass.
    const outcome = await page.evaluate(`(async () => {
      const { default: mqttjs } = await import(new URL('vendor/mqtt.esm.js', location.href).href);
      const client = mqttjs.connect(new URL('mqtt', location.href).href.replace(/^http/, 'ws'),
        { username: 'screen', password: ${JSON.stringify(USERS.screen.password)}, protocolVersion: 4, reconnectPeriod: 0 });
      return new Promise((resolve) => {
        client.on('connect', () => client.publish('poct/device/meter-a/request/download', '{"transaction":"sneaky"}', { qos: 1 }));
        client.on('close', () => resolve('closed by the broker'));
        setTimeout(() => resolve('still open'), 5000);
      });
    })()`);
    expect(outcome).toBe('closed by the broker');
    expect(controller.runtime!.store.auditRows().slice(audited).filter((r) => r.requested_by === 'screen')).toEqual([]);
    await page.close();
  });

  it('when the broker goes away the page says so', async () => {
    const page = await loggedIn('op');
    await controller.stop();
    await page.waitForSelector('[data-banner="lost"]', { timeout: 10_000 });
    expect(await page.textContent('[data-banner]')).toContain('Connection to the broker lost');
    await shot(page, 'broker-lost');
    await page.close();
  });
});
