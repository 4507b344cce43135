import { describe, expect, it } from 'vitest';
import type { DeviceStatePatch, SessionHost } from '../../src/driver-sdk/index.ts';
import { CommandSession } from '../../src/driver-sdk/command-session.ts';
import { MAX_WAITING_COMMANDS, NoAnswerError } from '../../src/driver-sdk/meter-session.ts';
import { useCleanups } from '../helpers/cleanups.ts';
import { deviceManagerRig } from '../helpers/device-manager-rig.ts';
import { eventually } from '../helpers/eventually.ts';
import { LineDevice, LineFramer, lineDriver } from '../helpers/line-device.ts';

const cleanups = useCleanups();
const REPLY_MS = 300;

/** The line printer on the command-taking base: `JOB x` → `DONE x`, `STATUS?` → `PAPER 0|1`. */
class LinePrinter extends CommandSession<string> {
  private readonly framer = new LineFramer();
  constructor(host: SessionHost, statusPollMs: number) {
    super(host, 'line-printer', { statusPollMs });
  }
  protected frame(chunk: Buffer): string[] {
    return this.framer.push(chunk);
  }
  private async ask(line: string, expect: RegExp): Promise<string> {
    await this.send(Buffer.from(`${line}\n`));
    for (;;) {
      const reply = await this.inbox.next(REPLY_MS);
      if (reply === null) throw new NoAnswerError(`no answer to ${line} within ${REPLY_MS} ms`);
      if (expect.test(reply)) return reply;
    }
  }
  protected async readStatus(): Promise<DeviceStatePatch> {
    const reply = await this.ask('STATUS?', /^PAPER [01]$/);
    const out = reply.endsWith('1');
    return {
      ...(out ? { status: 'fault' as const, status_detail: 'paper out' } : {}),
      printer: { paper_out: out, status_read_at: this.host.now().toISOString() },
    };
  }
  /** Jobs of the `hold` command, each running until the test calls its release. */
  readonly held: Array<() => void> = [];
  protected jobs() {
    return {
      hold: () => new Promise<{ held: true }>((release) => this.held.push(() => release({ held: true }))),
      print: async (params: Record<string, unknown>) => {
        const reply = await this.ask(`JOB ${String(params.label)}`, /^DONE /);
        return { printed: reply.slice(5) };
      },
    };
  }
}

/** A printer that answers a job only when the test says so, and its status at once. */
function heldPrinter(device: LineDevice, paper: { out: boolean }) {
  const held: string[] = [];
  device.onLine = (line) => {
    if (line === 'STATUS?') device.send(`PAPER ${paper.out ? 1 : 0}`);
    else if (line.startsWith('JOB ')) held.push(line.slice(4));
  };
  return { held, finish: () => device.send(`DONE ${held.shift()!}`) };
}

async function rig(statusPollMs = 0) {
  const device = new LineDevice();
  const made: { session?: LinePrinter } = {};
  const driver = lineDriver('label-printer', (host) => (made.session = new LinePrinter(host, statusPollMs)), device, {
    print: {
      description: 'print one label',
      params: { type: 'object', additionalProperties: false, required: ['label'], properties: { label: { type: 'string', minLength: 1 } } },
    },
    hold: { description: 'a job that runs until the test releases it', params: { type: 'object', additionalProperties: false, properties: {} } },
  });
  const r = await deviceManagerRig({ drivers: [driver], cleanups, devices: [{ id: 'pr1', driver: 'line-device', transport: { type: 'simulated' } }] });
  return { r, device, session: () => made.session! };
}

describe('CommandSession over the real host adapter', () => {
  it('runs jobs one at a time in order, the next sent only after the last one is done, with queued_jobs on the state', async () => {
    const { r, device } = await rig();
    const printer = heldPrinter(device, { out: false });
    await eventually('the status read on open', () => r.states('pr1').some((s) => s.printer?.status_read_at));
    for (const label of ['a', 'b', 'c']) r.request('pr1', 'print', { label, transaction: label });
    await eventually('the first job on the wire', () => printer.held.length === 1);
    await eventually('three jobs queued on the state', () => r.states('pr1').at(-1)?.printer?.queued_jobs === 3);
    expect(device.received.filter((l) => l.startsWith('JOB'))).toEqual(['JOB a']);
    printer.finish();
    await eventually('the second job', () => device.received.includes('JOB b'));
    expect(device.received.filter((l) => l.startsWith('JOB'))).toEqual(['JOB a', 'JOB b']);
    printer.finish();
    await eventually('the third job', () => device.received.includes('JOB c'));
    printer.finish();
    const answers = [await r.response('pr1', 'print', 1), await r.response('pr1', 'print', 2), await r.response('pr1', 'print', 3)];
    expect(answers.map((a) => [a.transaction, a.data])).toEqual([
      ['a', { printed: 'a' }],
      ['b', { printed: 'b' }],
      ['c', { printed: 'c' }],
    ]);
    await eventually('the queue empty on the state', () => r.states('pr1').at(-1)?.printer?.queued_jobs === 0);
    await r.stop();
  });

  it('polls the status through the queue, never inside a job; paper out is status fault', async () => {
    const { r, device, session } = await rig(40);
    const paper = { out: false };
    const printer = heldPrinter(device, paper);
    r.request('pr1', 'print', { label: 'x' });
    await eventually('the job on the wire', () => printer.held.length === 1);
    const sentAtJob = device.received.length;
    const dueAtJob = session().statusPollsDue;
    await eventually('three polls due while the job is open', () => session().statusPollsDue >= dueAtJob + 3);
    // They wait in the queue: nothing more went to the printer while the job was open.
    expect(device.received.slice(sentAtJob)).toEqual([]);
    paper.out = true;
    printer.finish();
    await r.response('pr1', 'print');
    await eventually('status fault after the next poll', () => r.states('pr1').at(-1)?.status === 'fault');
    expect(r.states('pr1').at(-1)).toMatchObject({ status_detail: 'paper out', printer: { paper_out: true } });
    const jobAt = device.received.indexOf('JOB x');
    expect(device.received[jobAt + 1]).toBe('STATUS?');
    paper.out = false;
    await eventually('status ok again', () => r.states('pr1').at(-1)?.status === 'ok');
    await r.stop();
  });

  it('a printer that does not answer: the job fails naming the wait, status no-answer; the status request says so too', async () => {
    const { r, device } = await rig();
    device.onLine = () => undefined;
    r.request('pr1', 'print', { label: 'y' });
    expect((await r.response('pr1', 'print')).error).toBe(`no answer to JOB y within ${REPLY_MS} ms`);
    await eventually('status no-answer', () => r.states('pr1').at(-1)?.status === 'no-answer');
    r.request('pr1', 'status', {});
    expect((await r.response('pr1', 'status')).error).toBe(`no answer to STATUS? within ${REPLY_MS} ms`);
    await r.stop();
  });

  it(`refuses a job beyond ${MAX_WAITING_COMMANDS} waiting as busy`, async () => {
    const { r, device } = await rig();
    const printer = heldPrinter(device, { out: false });
    await eventually('the status read on open', () => r.states('pr1').some((s) => s.printer?.status_read_at));
    const sent = MAX_WAITING_COMMANDS + 2;
    for (let i = 0; i < sent; i++) r.request('pr1', 'print', { label: `l${i}` });
    const answers = (): Record<string, unknown>[] => r.mqtt.on('poct/device/pr1/response/print') as Record<string, unknown>[];
    await eventually('a busy refusal', () => answers().some((a) => /busy/.test(String(a.error))));
    while (answers().length < sent) {
      await eventually('a job or the last answer', () => printer.held.length > 0 || answers().length === sent);
      if (printer.held.length > 0) printer.finish();
    }
    const refused = answers().filter((a) => a.status === 'error');
    expect(refused.length).toBeGreaterThan(0);
    expect(refused.every((a) => /the device is busy \(8 commands already waiting\)/.test(String(a.error)))).toBe(true);
    // Every job not refused was printed, one at a time.
    expect(device.received.filter((l) => l.startsWith('JOB'))).toHaveLength(sent - refused.length);
    await eventually('every answer', () => r.mqtt.on('poct/device/pr1/response/print').length === MAX_WAITING_COMMANDS + 2);
    await r.stop();
  });

  it('a poll tick that finds the queue full does not stop the polling: a later tick with room polls again', async () => {
    const { r, device, session } = await rig(500);
    heldPrinter(device, { out: false });
    const statusAsks = (): number => device.received.filter((l) => l === 'STATUS?').length;
    // Right after a tick's poll (the one on open aside), so the queue is full well before the next tick.
    await eventually('a poll tick answered', () => session().statusPollsDue >= 2 && statusAsks() >= 2 && r.states('pr1').at(-1)?.printer?.status_read_at !== undefined);
    const sent = MAX_WAITING_COMMANDS + 1;
    r.request('pr1', 'hold', {});
    await eventually('the first job running', () => session().held.length === 1);
    for (let i = 1; i < sent; i++) r.request('pr1', 'hold', {});
    await eventually('the queue full', () => r.states('pr1').at(-1)?.printer?.queued_jobs === sent);
    const dueWhenFull = session().statusPollsDue;
    const asksWhenFull = statusAsks();
    await eventually('a tick while the queue is full', () => session().statusPollsDue > dueWhenFull);
    for (let i = 0; i < sent; i++) {
      await eventually('the next job running', () => session().held.length === 1);
      session().held.shift()!();
    }
    await eventually('every job answered', () => r.mqtt.on('poct/device/pr1/response/hold').length === sent);
    // None was refused busy: the queue really was full of jobs alone when the tick came.
    expect((r.mqtt.on('poct/device/pr1/response/hold') as Record<string, unknown>[]).map((a) => a.status)).toEqual(Array(sent).fill('ok'));
    await eventually('a status poll once the queue has room again', () => statusAsks() > asksWhenFull);
    await r.stop();
  });
});
