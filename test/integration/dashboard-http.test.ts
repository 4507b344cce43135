import { readFileSync } from 'node:fs';
import { request } from 'node:http';
import { connect, Socket } from 'node:net';
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import WebSocket from 'ws';
import type { Controller } from '../../src/controller.ts';
import { TOPIC_SCHEMAS } from '../../src/mqtt/topics.ts';
import { packageFile } from '../../src/util/package-files.ts';
import { startDaemon, testConfig } from '../helpers/daemon.ts';
import { freePort } from '../helpers/mosquitto.ts';

/**
 * The dashboard's HTTP server as a browser and a hostile page see it: under a base path, the
 * daemon's own topic map and schemas, the login check, the WebSocket upgrade to the broker and
 * the refusals (foreign Origin, paths outside the page, the daemon's own account).
 */

let controller: Controller;
let base: string;
let origin: string;

beforeAll(async () => {
  const [mqttPort, httpPort] = [await freePort(), await freePort()];
  const config = testConfig(
    `mqtt: { embedded: { port: ${mqttPort}, ws_port: 0, username: poctd-self, password: "daemon-secret-1" } }\n` +
      `http: { port: ${httpPort}, base_path: /poct/ }\n` +
      'access:\n  users:\n    - { name: ann, roles: [clinician], password: "ann-password" }\n',
  );
  ({ controller } = await startDaemon(config));
  origin = `http://127.0.0.1:${httpPort}`;
  base = `${origin}/poct/`;
});
afterAll(() => controller?.stop());

async function login(body: unknown, headers: Record<string, string> = {}): Promise<Response> {
  return fetch(`${base}api/session`, { method: 'POST', headers: { 'content-type': 'application/json', ...headers }, body: JSON.stringify(body) });
}

describe('dashboard HTTP server', () => {
  it('serves the page under the base path (the bare path redirects), with a strict CSP; nothing outside it', async () => {
    expect(controller.dashboardUrl).toBe(base);
    const page = await fetch(base);
    expect(page.status).toBe(200);
    expect(await page.text()).toContain('<script type="module" src="app/app.js">');
    expect(page.headers.get('content-security-policy')).toMatch(/default-src 'self'.*frame-ancestors 'none'/);
    expect(page.headers.get('x-frame-options')).toBe('DENY');
    const bare = await fetch(`${origin}/poct`, { redirect: 'manual' });
    expect([bare.status, bare.headers.get('location')]).toEqual([301, '/poct/']);
    expect((await fetch(`${origin}/`)).status).toBe(404);
    expect((await fetch(`${base}app/app.js`)).headers.get('content-type')).toBe('text/javascript; charset=utf-8');
  });

  it('never serves a file outside web/ (encoded ../, other extensions)', async () => {
    for (const path of ['app/..%2f..%2fpackage.json', 'app/%2e%2e/%2e%2e/package.json', 'app/../../schemas/config.schema.json', 'app/x.ts']) {
      expect((await fetch(`${base}${path}`)).status, path).toBe(404);
    }
  });

  it('gives the page the daemon\'s own topic map, role table and schemas', async () => {
    const map = (await (await fetch(`${base}api/topics.json`)).json()) as { topics: unknown; base_topic: string; broker: string; roles: Record<string, { publish: string[] }> };
    expect(map.topics).toEqual(TOPIC_SCHEMAS);
    expect(map.base_topic).toBe('poct');
    expect(map.broker).toBe('mqtt');
    expect(map.roles.viewer!.publish).toEqual([]);
    const schema = await fetch(`${base}api/schemas/result-2.schema.json`);
    expect(await schema.text()).toBe(readFileSync(packageFile('schemas', 'result-2.schema.json'), 'utf8'));
  });

  it('serves the browser builds; preact/hooks imports the preact file served beside it', async () => {
    for (const name of ['mqtt.esm.js', 'preact.mjs', 'htm.mjs', 'uplot.mjs', 'uplot.css']) expect((await fetch(`${base}vendor/${name}`)).status, name).toBe(200);
    const hooks = await (await fetch(`${base}vendor/preact-hooks.mjs`)).text();
    expect(hooks).toContain('from"./preact.mjs"');
    expect(hooks).not.toMatch(/from\s*"preact"/);
  });

  it('login: the roles for a right password; 401 for a wrong one or the daemon\'s account; 403 from a foreign page', async () => {
    const ok = await login({ username: 'ann', password: 'ann-password' });
    expect(await ok.json()).toEqual({ username: 'ann', roles: ['clinician'] });
    expect((await login({ username: 'ann', password: 'wrong' })).status).toBe(401);
    expect((await login({ username: 'poctd-self', password: 'daemon-secret-1' })).status).toBe(401);
    expect((await login({ username: 'ann', password: 'ann-password' }, { origin: 'http://evil.example' })).status).toBe(403);
    expect((await login({ username: 'ann', password: 'ann-password' }, { origin })).status).toBe(200);
    expect((await fetch(`${base}api/session`, { method: 'POST', body: 'nope' })).status).toBe(400);
    expect((await fetch(`${base}api/session`)).status).toBe(405);
  });

  it('WebSocket: <base>mqtt reaches the broker from the page\'s origin; a foreign Origin gets 403, another path 404', async () => {
    const status = (url: string, headers: Record<string, string>): Promise<number | 'open'> =>
      new Promise((resolve) => {
        const ws = new WebSocket(url, 'mqtt', { headers });
        ws.once('open', () => {
          ws.close();
          resolve('open');
        });
        ws.once('unexpected-response', (_q, res) => resolve(res.statusCode ?? 0));
        ws.once('error', () => undefined);
      });
    const ws = base.replace('http:', 'ws:');
    expect(await status(`${ws}mqtt`, { origin })).toBe('open');
    expect(await status(`${ws}mqtt`, { origin: 'http://evil.example' })).toBe(403);
    expect(await status(`${ws}other`, { origin })).toBe(404);
  });

  it('answers only for its own names: a page whose name was rebound to 127.0.0.1 gets 421, for the page and the WebSocket', async () => {
    const port = Number(new URL(base).port);
    const status = (host: string, upgrade = false): Promise<number> =>
      new Promise((resolve) => {
        const headers: Record<string, string> = { host };
        if (upgrade) Object.assign(headers, { connection: 'Upgrade', upgrade: 'websocket', 'sec-websocket-version': '13', 'sec-websocket-key': 'dGhlIHNhbXBsZSBub25jZQ==', origin: `http://${host}` });
        const req = request({ host: '127.0.0.1', port, path: upgrade ? '/poct/mqtt' : '/poct/', headers });
        req.on('response', (res) => {
          res.resume();
          resolve(res.statusCode ?? 0);
        });
        req.on('upgrade', (res, socket) => {
          socket.destroy();
          resolve(res.statusCode ?? 0);
        });
        req.end();
      });
    expect(await status(`evil.example:${port}`)).toBe(421);
    expect(await status(`evil.example:${port}`, true)).toBe(421);
    expect(await status(`127.0.0.1:${port}`)).toBe(200);
    expect(await status(`localhost:${port}`)).toBe(200);
    expect(await status(`127.0.0.1:${port}`, true)).toBe(101);
  });

  it('sets no-delay on the sockets it accepts (a request/response page must not wait on Nagle)', async () => {
    const original = Socket.prototype.setNoDelay;
    const calls: Array<{ localPort: number | undefined; enable: boolean | undefined }> = [];
    const spy = vi.spyOn(Socket.prototype, 'setNoDelay').mockImplementation(function (this: Socket, enable?: boolean) {
      calls.push({ localPort: this.localPort, enable });
      return original.call(this, enable);
    });
    const port = Number(new URL(base).port);
    try {
      await new Promise<void>((resolve) => {
        const s = connect(port, '127.0.0.1', () => s.write(`GET /poct/api/topics.json HTTP/1.0\r\nHost: 127.0.0.1:${port}\r\n\r\n`));
        s.on('data', () => undefined);
        s.on('end', () => resolve());
      });
      const serverSide = calls.filter((c) => c.localPort === port);
      expect(serverSide.length).toBeGreaterThan(0);
      expect(serverSide.every((c) => c.enable === true)).toBe(true);
    } finally {
      spy.mockRestore();
    }
  });
});

describe('dashboard: where it may listen', () => {
  it('off loopback it needs configured users (the local operator account is for this machine)', async () => {
    const config = testConfig(`mqtt: { embedded: { port: ${await freePort()}, ws_port: 0 } }\nhttp: { host: 0.0.0.0, port: ${await freePort()} }\n`);
    const { Controller } = await import('../../src/controller.ts');
    const { createLogger } = await import('../../src/logger.ts');
    const { drivers } = await import('../../drivers/index.ts');
    const c = new Controller(config, { log: createLogger('silent'), drivers });
    await expect(c.start()).rejects.toThrow('dashboard: refusing to listen on 0.0.0.0 without users; add access.users (poctd user add), or keep http.host 127.0.0.1');
    await c.stop();
  });
});
