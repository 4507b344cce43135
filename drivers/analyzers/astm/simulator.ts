/**
 * The `astm` simulator: an instrument that sends stored or generated messages in a dialect, with
 * the nasty variants (framing styles, corrupt frames, no EOT, a stall, random write sizes).
 */
import type { DeviceSimulator } from '../../../src/driver-sdk/index.ts';
import type { ByteTransport } from '../../../src/transports/transport.ts';
import { definedOnly, SimulatorOptionReader } from '../../../src/driver-sdk/simulator-options.ts';
import { seededRandom } from '../../../src/util/random.ts';
import { ChunkedWriter } from '../../../src/driver-sdk/simulator-wire.ts';
import { hostTimeZone, nowInZone } from '../../../src/util/time.ts';
import { ACK, ENQ, EOT, frameMessage, NAK, type FramingStyle } from '../../../src/protocols/astm/frame.ts';
import { ASTM_LINK_DEFAULTS, AstmLink } from '../../../src/protocols/astm/link.ts';
import { splitRecords } from '../../../src/protocols/astm/records.ts';
import { DIALECTS, findDialect, type AstmDialect } from './dialects/index.ts';
import { SIMULATOR_OPTION_HELP } from './simulator-help.ts';

const FRAMINGS: readonly FramingStyle[] = ['record-etx', 'record-etb', 'single', 'split'];

export interface AstmSimulatorOptions {
  dialect: AstmDialect;
  /** H-5 of generated messages; default the dialect's sample sender. */
  sender?: string;
  messages?: string[];
  count: number;
  every_s?: number;
  control: boolean;
  framing: FramingStyle;
  split_at: number;
  lowercase_checksum: boolean;
  corrupt_frame?: number;
  max_chunk?: number;
  never_eot: boolean;
  stall_after_frames?: number;
  reply_timeout_ms: number;
  seed: number;
  encoding: 'utf-8' | 'latin1';
  timezone: string;
}

const SIMULATOR = 'astm simulator';

/** Checks untyped options (from YAML or the command line) and returns them typed, with defaults. */
export function parseSimulatorOptions(o: Record<string, unknown>): AstmSimulatorOptions {
  const read = new SimulatorOptionReader(o, SIMULATOR, Object.keys(SIMULATOR_OPTION_HELP));
  const dialects = DIALECTS.map((d) => d.id);
  const whole = (v: number | undefined): number | undefined => (v === undefined ? undefined : Math.floor(v));
  const message = (m: unknown, where: string): string => {
    if (typeof m !== 'string' || !/^H/.test(m)) throw read.error(where, 'a string starting with an H record');
    return m;
  };
  const dialect = findDialect(read.oneOf('dialect', dialects, `one of ${dialects.join(', ')}`) ?? 'roche-cobas-c111')!;
  return definedOnly<AstmSimulatorOptions>({
    dialect,
    // A configured sender is the analyzer's whole identity; else the dialect's, with its serial.
    sender: senderField(read.string('sender'), read) ?? senderWithSerial(dialect, senderComponent(read.string('serial'), read)),
    messages: read.list('messages', message, 'a list of strings, each starting with an H record'),
    count: read.number('count', 0) ?? 1,
    every_s: read.number('every_s', 0.01),
    control: read.boolean('control') ?? false,
    framing: read.oneOf('framing', FRAMINGS, FRAMINGS.join(' | ')) ?? 'record-etb',
    split_at: read.number('split_at', 1) ?? ASTM_LINK_DEFAULTS.frameTextSize,
    lowercase_checksum: read.boolean('lowercase_checksum') ?? false,
    corrupt_frame: whole(read.number('corrupt_frame', 1)),
    max_chunk: whole(read.number('max_chunk', 1)),
    never_eot: read.boolean('never_eot') ?? false,
    stall_after_frames: whole(read.number('stall_after_frames', 0)),
    reply_timeout_ms: read.number('reply_timeout_ms', 10) ?? ASTM_LINK_DEFAULTS.replyTimeoutMs,
    seed: read.number('seed', 0) ?? Date.now(),
    encoding: read.oneOf('encoding', ['utf-8', 'latin1'] as const, 'utf-8 or latin1') ?? 'utf-8',
    timezone: read.timezone() ?? hostTimeZone(),
  });
}

function senderComponent(v: string | undefined, read: SimulatorOptionReader): string | undefined {
  if (v === undefined) return undefined;
  if (!/^[A-Za-z0-9._-]+$/.test(v)) throw read.error('serial', 'letters, digits, . _ or - only (it goes into one component of H-5)');
  return v;
}

/**
 * The dialect's sample sender with `serial` in place of the sample's serial (N simulated analyzers
 * are N analyzers: record ids come from the serial). A dialect whose sender names no serial keeps
 * its sender: its records are told apart by the device id already.
 */
export function senderWithSerial(dialect: AstmDialect, serial: string | undefined): string | undefined {
  if (serial === undefined) return undefined;
  const parts = dialect.sample.sender.split('^');
  const current = dialect.identify(parts).serial;
  const at = current ? parts.lastIndexOf(current) : -1;
  if (at < 0) return undefined;
  parts[at] = serial;
  return parts.join('^');
}

/** A sender goes into one field: the field, repeat and escape delimiters and CR/LF cannot be in it. */
function senderField(v: string | undefined, read: SimulatorOptionReader): string | undefined {
  if (v === undefined) return undefined;
  if (v.trim() === '' || /[|\\&\r\n]/.test(v)) throw read.error('sender', 'a non-empty H-5 value without | \\ & or line breaks (components separated by ^)');
  return v;
}

/** YYYYMMDDHHMMSS on the instrument's clock, which keeps naive local time in `timezone`. */
function stamp(d: Date, timezone: string): string {
  return nowInZone(timezone, d).replace(/\D/g, '');
}

/** A plausible message from the dialect's sample description (generated values, no real patient). */
export function generateMessage(
  dialect: AstmDialect,
  random: () => number,
  now: Date,
  n: number,
  control = false,
  timezone = hostTimeZone(),
  sender = dialect.sample.sender,
): string {
  const s = dialect.sample;
  const ts = stamp(now, timezone);
  const specimen = `${s.specimenPrefix}${String(100000 + n).slice(1)}`;
  // The specimen id where the family puts it (the cobas c311: O-3 component 2, after a counter).
  const at = dialect.specimenIdAt ?? { field: 3, component: 1 };
  const place = (field: 3 | 4): string => (at.field === field ? [...Array<string>(at.component - 1).fill(at.component > 1 ? String(n) : ''), specimen].join('^') : '');
  const records = [
    `H|\\^&|||${sender}|||||||${control ? 'Q' : 'P'}|${s.version}|${ts}`,
    'P|1',
    `O|1|${place(3)}|${place(4)}|${s.tests.map((t) => t.testId).join('\\')}|R||||||${control ? 'Q' : 'N'}||||||||||||||F`,
  ];
  s.tests.forEach((t, i) => {
    let value: string;
    if (t.choices) value = t.choices[Math.floor(random() * t.choices.length)]!;
    else value = ((t.min ?? 0) + random() * ((t.max ?? 1) - (t.min ?? 0))).toFixed(t.decimals ?? 1);
    records.push(`R|${i + 1}|${t.testId}|${value}|${t.unit}||N||F||${s.operator}||${ts}|${s.instrument ?? ''}`);
  });
  records.push('L|1|N');
  return records.join('\r') + '\r';
}

export class AstmSimulator implements DeviceSimulator {
  private transport: ByteTransport | null = null;
  private link: AstmLink | null = null;
  private readonly random: () => number;
  private readonly wire: ChunkedWriter;
  private timer: NodeJS.Timeout | null = null;
  private generated = 0;
  private framesSent = 0;
  private corruptDone = false;
  private stallDone = false;
  private readonly retries = new Set<NodeJS.Timeout>();
  /** Every byte the simulator received from the host (tests read it). */
  readonly received: number[] = [];
  /** Messages the host acknowledged in full. */
  delivered = 0;
  /** Send failures (NAK limit, timeouts). */
  readonly failures: string[] = [];

  constructor(readonly options: AstmSimulatorOptions) {
    this.random = seededRandom(options.seed);
    // The link hears of a failed write, fails the send and the message is sent again later.
    this.wire = new ChunkedWriter(this.random, options.max_chunk ?? 0, (t) => t === this.transport, 'report');
  }

  attach(transport: ByteTransport): void {
    this.detach();
    this.transport = transport;
    const o = this.options;
    this.link = new AstmLink(
      transport,
      { onMessage: async () => undefined, onIssue: () => undefined },
      {
        role: 'instrument',
        replyTimeoutMs: o.reply_timeout_ms,
        frameTextSize: o.split_at,
        write: (b) => this.wire.write(transport, [b]),
      },
    );
    this.link.start();
    transport.on('data', this.onData);
    transport.on('open', this.onOpen);
    if (transport.isOpen) this.onOpen();
    if (o.every_s) this.timer = setInterval(() => this.sendNext(), o.every_s * 1000);
  }

  detach(): void {
    if (this.timer) clearInterval(this.timer);
    this.timer = null;
    for (const r of this.retries) clearTimeout(r);
    this.retries.clear();
    if (this.transport) {
      this.transport.off('data', this.onData);
      this.transport.off('open', this.onOpen);
    }
    void this.link?.stop();
    this.link = null;
    this.transport = null;
  }

  private readonly onData = (chunk: Buffer): void => {
    for (const b of chunk) if (b === ACK || b === NAK || b === ENQ || b === EOT) this.received.push(b);
  };

  private readonly onOpen = (): void => {
    const o = this.options;
    if (o.messages) for (const m of o.messages) this.send(m);
    else for (let i = 0; i < o.count; i++) this.sendNext();
  };

  /** Sends one more generated message. */
  sendNext(): void {
    const o = this.options;
    this.send(generateMessage(o.dialect, this.random, new Date(), ++this.generated, o.control, o.timezone, o.sender ?? o.dialect.sample.sender));
  }

  /** Sends one message text (records separated by CR or LF). */
  send(text: string): void {
    if (!this.link) return;
    const body = Buffer.from(splitRecords(text).map((r) => `${r}\r`).join(''), this.options.encoding === 'latin1' ? 'latin1' : 'utf8');
    this.sendBytes(this.link, body);
  }

  /** A message the host did not take (no answer, NAK limit) is sent again a second later, up to 5 times, as instruments do. */
  private sendBytes(link: AstmLink, body: Buffer, attempt = 0): void {
    const o = this.options;
    const frames = frameMessage(body, o.framing, o.split_at);
    const stall = o.stall_after_frames !== undefined && !this.stallDone;
    if (stall) this.stallDone = true;
    link
      .send(body, {
        frames,
        skipEot: o.never_eot,
        lowercaseChecksum: o.lowercase_checksum,
        ...(stall ? { stallAfterFrames: o.stall_after_frames } : {}),
        mangle: (frame) => {
          this.framesSent++;
          if (o.corrupt_frame !== undefined && !this.corruptDone && this.framesSent === o.corrupt_frame) {
            this.corruptDone = true;
            const bad = Buffer.from(frame);
            bad[2] = bad[2]! ^ 0x20; // a flipped bit in the text: the checksum no longer matches
            return bad;
          }
          return frame;
        },
      })
      .then(() => {
        if (!stall) this.delivered++;
      })
      .catch((err: Error) => {
        this.failures.push(err.message);
        if (attempt < 5 && this.link === link) {
          const retry = setTimeout(() => {
            this.retries.delete(retry);
            if (this.link === link) this.sendBytes(link, body, attempt + 1);
          }, 1000);
          this.retries.add(retry);
        }
      });
  }

}
