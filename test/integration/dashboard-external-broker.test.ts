import { execFileSync } from 'node:child_process';
import { chmodSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Controller } from '../../src/controller.ts';
import { mosquittoAcl } from '../../src/mqtt/access.ts';
import { browserMissing, launchBrowser } from '../helpers/browser.ts';
import { submitLogin } from '../helpers/dashboard-login.ts';
import { startDaemon, tempDir, testConfig, ULTRA2_MEMORY } from '../helpers/daemon.ts';
import { freePort, Mosquitto } from '../helpers/mosquitto.ts';
import { requireTool } from '../helpers/tools.ts';

/**
 * The dashboard with an external broker: Mosquitto (password file, the generated ACL, a
 * WebSocket listener at http.broker_url). The daemon cannot check the login there, so the page
 * goes straight to the broker: a wrong password shows the broker's refusal, a right one the bench.
 */

const missing = browserMissing();
if (missing) console.warn(`dashboard-external-broker: did not run: ${missing}`);

const DAEMON = { name: 'poctd-bench', password: 'daemon-pass-9' };
const CLINICIAN = { name: 'nurse', password: 'nurse-pass-8' };

let mosquitto: Mosquitto;
let controller: Controller;
let browser: Awaited<ReturnType<typeof launchBrowser>>;

beforeAll(async () => {
  if (missing) return;
  const passwd = requireTool('mosquitto_passwd', 'mosquitto');
  const dir = tempDir('poctd-dash-ext-');
  chmodSync(dir, 0o755);
  const passwordFile = join(dir, 'passwd');
  writeFileSync(passwordFile, '');
  for (const u of [DAEMON, CLINICIAN]) execFileSync(passwd, ['-b', passwordFile, u.name, u.password]);
  const aclFile = join(dir, 'acl');
  writeFileSync(aclFile, mosquittoAcl('poct', DAEMON.name, [{ name: CLINICIAN.name, roles: ['clinician'] }]));
  for (const f of [passwordFile, aclFile]) chmodSync(f, 0o644);
  const wsPort = await freePort();
  mosquitto = await Mosquitto.start({
    extraConfig: `allow_anonymous false\npassword_file ${passwordFile}\nacl_file ${aclFile}\nlistener ${wsPort} 127.0.0.1\nprotocol websockets\n`,
  });
  ({ controller } = await startDaemon(
    testConfig(`
mqtt: { url: "${mosquitto.url}", username: ${DAEMON.name}, password: "${DAEMON.password}", client_id: dash-ext-${process.pid} }
http: { port: ${await freePort()}, broker_url: "ws://127.0.0.1:${wsPort}" }
devices:
  - id: meter-x
    driver: onetouch-ultra2
    timezone: Europe/Copenhagen
    transport: { type: simulated, simulator: { serial: GMF600DCY, memory: ${JSON.stringify(ULTRA2_MEMORY)} } }
`),
  ));
  browser = await launchBrowser();
}, 60_000);

afterAll(async () => {
  await browser?.close();
  await controller?.stop();
  await mosquitto?.stop();
});

async function open(user: string, password: string): Promise<import('playwright-core').Page> {
  return (await submitLogin(browser.context, controller.dashboardUrl!, user, password)).page;
}

describe.skipIf(missing !== undefined)('dashboard with Mosquitto as the broker', () => {
  it('a wrong password: the page says the broker refused the login', async () => {
    const page = await open(CLINICIAN.name, 'wrong-password');
    await page.waitForSelector('[data-banner="refused"]', { timeout: 10_000 });
    expect(await page.textContent('[data-banner]')).toContain('The broker refused this login');
    await page.close();
  });

  it('the right one: the devices from the retained topics; the broker decides the roles', async () => {
    const page = await open(CLINICIAN.name, CLINICIAN.password);
    await page.waitForSelector('[data-connection="online"]', { timeout: 10_000 });
    await page.waitForSelector('[data-device="meter-x"] [data-availability="online"]');
    expect(await page.textContent('[data-user]')).toContain('nurse (broker decides)');
    await page.close();
  });
});
