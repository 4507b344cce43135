import { execFileSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import mqtt from 'mqtt';
import { describe, expect, it } from 'vitest';
import { drivers } from '../../drivers/index.ts';
import { Controller } from '../../src/controller.ts';
import { createLogger } from '../../src/logger.ts';
import { useCleanups } from '../helpers/cleanups.ts';
import { startDaemon, tempDir, testConfig, ULTRA2_MEMORY } from '../helpers/daemon.ts';
import { freePort } from '../helpers/mosquitto.ts';
import { eventually } from '../helpers/eventually.ts';
import { requireTool } from '../helpers/tools.ts';

/**
 * TLS on the embedded broker's listeners (mqtt.embedded.tls): clients need mqtts:// / wss:// and
 * the certificate; the daemon itself keeps publishing through its in-process connection.
 */

const cleanups = useCleanups();

function selfSigned(dir: string): { cert: string; key: string } {
  const openssl = requireTool('openssl');
  const cert = join(dir, 'broker.crt');
  const key = join(dir, 'broker.key');
  execFileSync(openssl, ['req', '-x509', '-newkey', 'rsa:2048', '-nodes', '-days', '2', '-subj', '/CN=bench-broker.clinic.test',
    '-addext', 'subjectAltName=DNS:bench-broker.clinic.test', '-keyout', key, '-out', cert], { stdio: 'ignore' });
  return { cert, key };
}

/** `connected`, the error's message, or `closed` when the connection ends without either. */
async function outcome(url: string): Promise<string> {
  const client = mqtt.connect(url, { username: 'lis', password: 'lis-password', reconnectPeriod: 0, connectTimeout: 5000 });
  try {
    return await new Promise((resolve) => {
      client.once('connect', () => resolve('connected'));
      client.once('error', (e) => resolve(e.message));
      client.once('close', () => setImmediate(() => resolve('closed')));
    });
  } finally {
    client.end(true);
  }
}

describe('embedded broker with TLS', () => {
  it('mqtts and wss with the certificate; plain MQTT on the port fails; the daemon publishes as before', async () => {
    const dir = tempDir('poctd-tls-');
    const { cert, key } = selfSigned(dir);
    const [port, wsPort] = [await freePort(), await freePort()];
    const { controller } = await startDaemon(
      testConfig(`mqtt: { embedded: { port: ${port}, ws_port: ${wsPort}, tls: { cert: ${cert}, key: ${key} } } }
access:
  users:
    - { name: lis, roles: [integration], password: "lis-password" }
devices:
  - id: m1
    driver: onetouch-ultra2
    timezone: Europe/Copenhagen
    transport: { type: simulated, simulator: { serial: GMF600DCY, memory: ${JSON.stringify(ULTRA2_MEMORY)} } }
`),
    );
    cleanups.push(() => controller.stop());
    expect(controller.brokerUrl).toBe(`mqtts://127.0.0.1:${port}`);
    await eventually('the daemon connected inside the process', () => controller.runtime!.mqtt.connected);

    const tlsOptions = { ca: readFileSync(cert), servername: 'bench-broker.clinic.test', username: 'lis', password: 'lis-password', reconnectPeriod: 0, connectTimeout: 5000 };
    for (const url of [`mqtts://127.0.0.1:${port}`, `wss://127.0.0.1:${wsPort}`]) {
      const client = await mqtt.connectAsync(url, { ...tlsOptions, wsOptions: { servername: 'bench-broker.clinic.test', ca: readFileSync(cert) } } as mqtt.IClientOptions);
      cleanups.push(() => client.endAsync(true));
      const results: unknown[] = [];
      client.on('message', (topic, p) => topic.endsWith('/result') && results.push(JSON.parse(p.toString())));
      await client.subscribeAsync(['poct/device/+/result', 'poct/bridge/response/results/replay'], { qos: 1 });
      await client.publishAsync('poct/bridge/request/results/replay', JSON.stringify({ since_seq: 0 }), { qos: 1 });
      await eventually(`the stored results over ${url}`, () => results.length === ULTRA2_MEMORY.length);
    }

    // Without the CA the certificate is refused; plain MQTT on the TLS port is closed unanswered.
    expect(await outcome(`mqtts://127.0.0.1:${port}`)).toMatch(/self.signed|certificate/i);
    expect(await outcome(`mqtt://127.0.0.1:${port}`)).toBe('closed');
  });

  it('a certificate file that cannot be read names the setting', async () => {
    const port = await freePort();
    const config = testConfig(`mqtt: { embedded: { port: ${port}, ws_port: 0, tls: { cert: /nonexistent/poctd.crt, key: /nonexistent/poctd.key } } }\n`);
    const controller = new Controller(config, { log: createLogger('silent'), drivers });
    cleanups.push(() => controller.stop());
    await expect(controller.start()).rejects.toThrow('mqtt.embedded.tls.cert: cannot read /nonexistent/poctd.crt: no such file');
  });
});
