import { describe, expect, it } from 'vitest';
import { watchCommand } from '../../cli/run.ts';
import { parseConfig } from '../../src/config/load.ts';

const config = (yaml: string) => parseConfig(yaml, { baseDir: '/etc/poctd' });

describe('the start-up line names the broker the daemon actually uses', () => {
  it('the embedded broker on its configured port', () => {
    // No anonymous access: a user of access.users, or the machine's own operator account with its password file.
    expect(watchCommand(config('mqtt: { embedded: { port: 11883 } }'), 'mqtt://127.0.0.1:11883')).toBe(
      "mosquitto_sub -h 127.0.0.1 -p 11883 -u <user> -P <password> -t 'poct/#' -v",
    );
    expect(watchCommand(config('mqtt: { embedded: { port: 11883 } }'), 'mqtt://127.0.0.1:11883', { name: 'operator', file: '/var/lib/poctd/local-operator.secret' })).toBe(
      `mosquitto_sub -h 127.0.0.1 -p 11883 -u operator -P "$(cat /var/lib/poctd/local-operator.secret)" -t 'poct/#' -v`,
    );
  });

  it('the embedded broker with credentials: the user, never the password', () => {
    const c = config('mqtt: { embedded: { host: 0.0.0.0, username: bench, password: s3cret-pass } }');
    const line = watchCommand(c, 'mqtt://127.0.0.1:1883');
    expect(line).toBe("mosquitto_sub -h 127.0.0.1 -p 1883 -u bench -P <password> -t 'poct/#' -v");
    expect(line).not.toContain('s3cret');
  });

  it('an external TLS broker: host, default port 8883, the CA and client certificate, the base topic', () => {
    const c = config('mqtt: { url: "mqtts://broker.clinic", base_topic: lab, username: poctd, password: x, ca: ca.pem, cert: c.pem, key: k.pem }');
    expect(watchCommand(c, c.mqtt.url!)).toBe(
      "mosquitto_sub -h broker.clinic -p 8883 --cafile /etc/poctd/ca.pem --cert /etc/poctd/c.pem --key /etc/poctd/k.pem -u poctd -P <password> -t 'lab/#' -v",
    );
  });

  it('TLS without a CA file uses the system store; credentials in the URL give the user only', () => {
    const c = config('mqtt: { url: "mqtts://ops:pw@[fd00::5]:9883", reject_unauthorized: false }');
    const line = watchCommand(c, c.mqtt.url!);
    expect(line).toBe("mosquitto_sub -h fd00::5 -p 9883 --capath /etc/ssl/certs --insecure -u ops -P <password> -t 'poct/#' -v");
  });

  it('a WebSocket broker: mosquitto_sub cannot, so the URL (password hidden) is named', () => {
    const c = config('mqtt: { url: "wss://u:pw@broker.clinic:443/mqtt" }');
    expect(watchCommand(c, c.mqtt.url!)).toBe("a WebSocket MQTT client on wss://u:***@broker.clinic/mqtt, topic 'poct/#'");
  });
});
