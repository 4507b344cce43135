import { describe, expect, it } from 'vitest';
import { EmbeddedBroker, EmbeddedBrokerRefused, isLoopbackHost } from '../../src/mqtt/embedded-broker.ts';
import { Topics } from '../../src/mqtt/topics.ts';
import mqtt from 'mqtt';

describe('Topics', () => {
  const t = new Topics('poct');
  it('builds the documented topic names', () => {
    expect(t.bridge('state')).toBe('poct/bridge/state');
    expect(t.record('bench1', 'result')).toBe('poct/device/bench1/result');
    expect(t.availability('bench1')).toBe('poct/device/bench1/availability');
    expect(t.deviceResponse('bench1', 'clock/sync')).toBe('poct/device/bench1/response/clock/sync');
  });
  it('parses request topics, verbs with slashes included', () => {
    expect(t.parseRequest('poct/bridge/request/results/replay')).toEqual({ target: 'bridge', verb: 'results/replay' });
    expect(t.parseRequest('poct/device/bench1/request/clock/sync')).toEqual({ target: 'device', device: 'bench1', verb: 'clock/sync' });
    expect(t.parseRequest('poct/device/bench1/result')).toBeNull();
    expect(t.parseRequest('other/bridge/request/x')).toBeNull();
  });
});

describe('EmbeddedBroker', () => {
  it('knows loopback addresses', () => {
    expect(['127.0.0.1', '127.1.2.3', '::1', 'localhost'].every(isLoopbackHost)).toBe(true);
    expect(['0.0.0.0', '10.0.0.4', '::', '192.168.1.2'].some(isLoopbackHost)).toBe(false);
  });

  it('refuses to listen on a non-loopback address without authentication', async () => {
    const broker = new EmbeddedBroker({ host: '0.0.0.0', port: 0, ws_port: 0 });
    await expect(broker.start()).rejects.toBeInstanceOf(EmbeddedBrokerRefused);
    await expect(broker.start()).rejects.toThrow(/mqtt\.embedded\.username/);
  });

  it('serves MQTT on loopback and enforces credentials when set', async () => {
    const broker = new EmbeddedBroker({ host: '127.0.0.1', port: 0, ws_port: 0, username: 'u', password: 'p' });
    await broker.start();
    try {
      const bad = mqtt.connect(broker.url, { username: 'u', password: 'wrong', reconnectPeriod: 0 });
      const badResult = await new Promise<string>((resolve) => {
        bad.once('connect', () => resolve('connected'));
        bad.once('error', (e) => resolve(e.message));
      });
      bad.end(true);
      expect(badResult).not.toBe('connected');
      const good = await mqtt.connectAsync(broker.url, { username: 'u', password: 'p', reconnectPeriod: 0 });
      await good.subscribeAsync('t');
      const got = new Promise<string>((resolve) => good.once('message', (_t, p) => resolve(p.toString())));
      await good.publishAsync('t', 'hello', { qos: 1 });
      expect(await got).toBe('hello');
      await good.endAsync();
    } finally {
      await broker.stop();
    }
  });
});
