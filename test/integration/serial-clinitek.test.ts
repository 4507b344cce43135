import { describe, expect, it } from 'vitest';
import { schemaProblems } from '../../src/records/schemas.ts';
import type { ResultRecord } from '../../src/records/types.ts';
import { daemonOnSerial, simulateSerialDevice } from '../helpers/serial-meter.ts';
import { startPtyPair } from '../helpers/socat.ts';
import { brokerWithSubscriber } from '../helpers/broker.ts';
import { useCleanups } from '../helpers/cleanups.ts';

const cleanups = useCleanups();

describe('CLINITEK urine strip readers over a socat pty pair, Mosquitto as broker', () => {
  it('clinitek-status: a Spanish "Send all data" is published as coded results; the E58 record is an event; a resend adds nothing', async () => {
    const { broker, sub } = await brokerWithSubscriber(cleanups);
    const pty = await startPtyPair();
    cleanups.push(() => pty.stop());

    // The reader presses "Send all data" every second, so the first send cannot be missed while
    // the daemon opens its end; every resend after the first is a duplicate.
    await simulateSerialDevice('clinitek-status', pty.a, { locale: 'es', send_all_every_s: 1, max_chunk: 9, seed: 4 }, cleanups).ready;
    const controller = await daemonOnSerial(broker.url, pty.b, cleanups, '', 'clinitek-status');

    await sub.waitFor('6 results', () => sub.on('poct/device/bench1/result').length >= 6, 20_000);
    const results = sub.payloads<ResultRecord>('poct/device/bench1/result');
    for (const r of results) expect(schemaProblems('poct.result/2', r)).toEqual([]);
    expect(results.map((r) => r.device.driver)).toEqual(Array(6).fill('clinitek-status'));
    expect(results.filter((r) => r.category === 'control')).toHaveLength(1);
    const big = results.find((r) => r.device_time === '2018-06-18T15:25:00')!;
    expect(big.observations.find((o) => o.code === 'PRO')).toMatchObject({ loinc: '50561-0', value: 300, comparator: '>=', unit: 'mg/dL', text: '>=300 mg/dL', flags: ['abnormal'] });
    expect(big.observations.find((o) => o.code === 'KET')).toMatchObject({ text: '15 mg/dL', value: 15 }); // sent as CET
    expect(big.observed_at).toBe('2018-06-18T15:25:00+02:00');

    await sub.waitFor('E58 event', () => sub.events().some((e) => e.type === 'device_error' && e.data?.code === 'E58'));
    await new Promise((r) => setTimeout(r, 2500)); // two more sends
    expect(sub.on('poct/device/bench1/result')).toHaveLength(6);
    expect(controller.runtime!.store.recordCount()).toBe(6);
    // No patient id in any event or retained message.
    const text = JSON.stringify(sub.messages.filter((m) => m.topic !== 'poct/device/bench1/result'));
    expect(text).not.toMatch(/P-000[0-9]/);
  });

  it('clinitek-50: identifies the reader, reads every record with ACKs, and NAKs a corrupted packet', async () => {
    const { broker, sub } = await brokerWithSubscriber(cleanups);
    const pty = await startPtyPair();
    cleanups.push(() => pty.stop());

    await simulateSerialDevice('clinitek-50', pty.a, { corrupt_next: 1, max_chunk: 7, seed: 2, timezone: 'Europe/Copenhagen' }, cleanups).ready;
    await daemonOnSerial(broker.url, pty.b, cleanups, 'poll_interval: 2', 'clinitek-50');

    await sub.waitFor('3 results', () => sub.on('poct/device/bench1/result').length >= 3, 20_000);
    const results = sub.payloads<ResultRecord>('poct/device/bench1/result');
    for (const r of results) expect(schemaProblems('poct.result/2', r)).toEqual([]);
    expect(results.map((r) => r.device_time).sort()).toEqual(['1997-03-03T11:11:00', '1997-03-03T11:20:00', '1997-03-03T11:31:00']);
    expect(results.find((r) => r.device_time === '1997-03-03T11:11:00')!.observations.find((o) => o.code === 'BLD')).toMatchObject({
      text: 'Ca 10 Ery/uL',
      flags: ['abnormal', 'approximate'],
      value: null,
    });
    // The event and the results are different topics: the event is awaited, not assumed from the order.
    await sub.waitFor('bad_frame for the corrupted packet', () => sub.events().some((e) => e.type === 'bad_frame' && e.data?.reason === 'bad-checksum'));
    await sub.waitFor('download finished', () => sub.events().some((e) => e.type === 'download_finished'));
    // The next poll finds the reader empty: nothing more is published.
    await new Promise((r) => setTimeout(r, 2500));
    expect(sub.on('poct/device/bench1/result')).toHaveLength(3);
  });
});
