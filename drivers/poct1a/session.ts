/**
 * The `poct1a` session: the data manager's side of the POCT1-A2 basic profile, then continuous
 * mode (research note §4.3), on the pushed-and-acknowledged base. Per connection:
 *
 *   device HEL ─► ACK           (the device is routed by its DEV.device_id)
 *   device DST ─► ACK, then REQ ROBS when it reports new observations
 *   device OBS ─► ACK AA only once its records are committed (AE with the reason when not)
 *   device EOT ─► [DTV.R02 SET_TIME] then DTV START_CONTINUOUS (continuous mode) or END
 *   continuous: OBS / EVS / KPA / DST whenever the device has them; each answered
 *
 * Device messages are handled one after another per connection, so the answers go out in the
 * order the messages came (an OBS's ACK waits for its commit; the EOT behind it waits too). Our
 * own messages wait for their answer (ACK by `ack_control_id`) for the device's
 * `DCP.application_timeout`; a wrong ack id, an ESC, an AE/AR are events. A device busy with ESC
 * `CNC` is asked again, twice at most; a device that refuses a directive with ESC gets END.
 *
 * Behind a listener (`tcp-server`) each caller is a conversation of its own, and its HEL's
 * `DEV.device_id` routes it (through the listener's allow-lists: `transport.sender` are the device
 * ids a device accepts, `transport.peers` its addresses) to the session of the device that names
 * it, which commits its observations. A device id no device names gets ACK AR, a
 * `listener_refused` event, and the connection closed.
 */
import type { Capture, SessionHost } from '../../src/driver-sdk/index.ts';
import { PushedSession, type PushedUnit, type TransmissionTotals, type UnitAnswer, type UnitOutcome } from '../../src/driver-sdk/pushed-session.ts';
import {
  ackMessage,
  directiveMessage,
  endMessage,
  endOfTopicMessage,
  escapeMessage,
  keepAliveMessage,
  operatorListMessages,
  poctTime,
  requestMessage,
  setTimeMessage,
  type AckType,
  type HeaderFields,
  type OperatorEntry,
} from '../../src/protocols/poct1a/builders.ts';
import { element, elements, parseDocument, value, type Poct1aMessage } from '../../src/protocols/poct1a/document.ts';
import { Poct1aSplitter, type SplitEvent } from '../../src/protocols/poct1a/splitter.ts';
import { ListenerTransport, type ListenerConnection } from '../../src/transports/listener.ts';
import type { ByteTransport } from '../../src/transports/transport.ts';
import type { SessionCommand } from '../../src/driver-sdk/meter-session.ts';
import type { ResultDraft } from '../../src/records/types.ts';
import { parseOperators, parsePoct1aOptions, type Poct1aOptions } from './options.ts';
import { detectProfile, findProfile, type Poct1aProfile } from './profiles/index.ts';
import {
  POCT1A_DRIVER_ID,
  canonicalType,
  decodeObservationMessage,
  factsOf,
  identityOf,
  observationCodes,
  readHello,
  readPoctTime,
  type Hello,
} from './records.ts';

const DEFAULT_REPLY_TIMEOUT_MS = 60_000;
/** What we send a device that announced no DSC.max_message_sz (the smallest seen, a Sofia's, is 1000). */
const DEFAULT_DEVICE_MESSAGE_BYTES = 1000;

export interface OperatorPushResult {
  acknowledged: boolean;
  messages: number;
  operators: number;
  answer: DeviceAnswer;
  error: string | null;
}
const BUSY_RETRIES = 2;
const BUSY_RETRY_MS = 1000;
/** Vendor messages acknowledged and not interpreted (settings a device reports). */
const ACKNOWLEDGED_ONLY = new Set(['SET.R01']);

const sessionOf = new WeakMap<ListenerTransport, Poct1aSession>();

/** Where a conversation writes and what closes it: a listener's connection or a device's transport. */
interface Carrier {
  write(bytes: Buffer): Promise<void>;
  close(): Promise<void>;
  readonly peerAddress: string;
}

type Purpose = 'request' | 'directive' | 'set-time' | 'operators' | 'keep-alive' | 'end';

/** How the device answered one of our messages: an ACK type, an ESC, or nothing in time. */
export type DeviceAnswer = 'AA' | 'AE' | 'AR' | 'ESC' | 'timeout' | 'closed' | 'not-sent';

interface Outstanding {
  purpose: Purpose;
  bytes: Buffer;
  timer: NodeJS.Timeout;
  busyRetries: number;
  /** Runs (inside the conversation's order) once the device answered. */
  onAnswer?: ((answer: DeviceAnswer) => Promise<void> | void) | undefined;
}

/** One device connection: its splitter, its HEL, its outstanding messages, its answers in order. */
class Conversation {
  private readonly splitter: Poct1aSplitter;
  private chain: Promise<void> = Promise.resolve();
  private nextControl = 1000;
  hello: Hello | null = null;
  private helloBytes: Buffer | null = null;
  private profile: Poct1aProfile;
  private readonly outstanding = new Map<string, Outstanding>();
  private readonly seenControlIds = new Set<string>();
  /** Control ids of our ESC and EOT messages, which a device may acknowledge or not. */
  private readonly unanswered = new Set<string>();
  continuous = false;
  private silenceTimer: NodeJS.Timeout | null = null;
  private finishing = false;
  private setTimeDue = false;
  closed = false;

  constructor(
    private readonly carrier: Carrier,
    /** The session that serves the connection (behind a listener: any of the port's). */
    private readonly server: Poct1aSession,
    /** The session whose device this is, once known (from the start on a device's own transport). */
    public owner: Poct1aSession | null,
    private readonly conn: ListenerConnection | null,
  ) {
    const o = (owner ?? server).options;
    this.splitter = new Poct1aSplitter({ maxBytes: o.max_message_bytes });
    this.profile = o.profile ? findProfile(o.profile)! : detectProfile(null);
  }

  /** The session that hears about this caller: its device's, else the serving one. */
  private get target(): Poct1aSession {
    return this.owner ?? this.server;
  }

  private get opts(): Poct1aOptions {
    return this.target.options;
  }

  onData(chunk: Buffer): void {
    if (this.closed) return;
    this.armSilence();
    for (const ev of this.splitter.push(chunk)) this.enqueue(() => this.handle(ev));
  }

  onClose(): void {
    if (this.closed) return;
    this.closed = true;
    if (this.silenceTimer) clearTimeout(this.silenceTimer);
    this.silenceTimer = null;
    const left = [...this.outstanding.values()];
    this.outstanding.clear();
    for (const o of left) {
      clearTimeout(o.timer);
      void Promise.resolve(o.onAnswer?.('closed')).catch(() => undefined);
    }
    for (const ev of this.splitter.end()) {
      if (ev.kind === 'problem') this.target.badInput(ev.bytes, 'incomplete-message', 'the connection closed in the middle of a message; it was not acknowledged');
    }
    // A lost connection ends the device's transmission, after what it sent whole is handled.
    this.enqueue(async () => {
      if (this.owner && this.hello) await this.owner.transmissionEnded();
    });
  }

  /** Runs a step in the conversation's order (a command from the network, between device messages). */
  enqueue(step: () => Promise<void>): void {
    this.chain = this.chain.then(step).catch((err: unknown) => this.target.logWarn('poct1a: conversation step failed', (err as Error).message));
  }

  private header(): HeaderFields {
    const host = this.target.hostOf();
    return { controlId: ++this.nextControl, now: host.now(), timezone: host.timezone };
  }

  private async send(bytes: Buffer): Promise<void> {
    if (this.closed) return;
    try {
      await this.carrier.write(bytes);
    } catch (err) {
      this.target.logWarn('poct1a: could not write to the device', (err as Error).message);
    }
  }

  /** A message of ours the device need not answer (ESC, EOT); an ACK of one is no wrong ack id. */
  private async sendUnanswered(build: (h: HeaderFields) => Buffer): Promise<void> {
    const h = this.header();
    this.unanswered.add(String(h.controlId));
    if (this.unanswered.size > 100) this.unanswered.delete(this.unanswered.values().next().value!);
    await this.send(build(h));
  }

  private async ack(controlId: string | null, type: AckType, note?: string): Promise<void> {
    if (controlId === null) {
      // Nothing to acknowledge by id: an ESC carries the reason instead.
      await this.sendUnanswered((h) => escapeMessage(h, 'INVALID', note ?? 'the message has no HDR.control_id'));
      return;
    }
    await this.send(ackMessage(this.header(), controlId, type, note));
  }

  /**
   * Sends one of our messages that the device answers; `onAnswer` runs when it does (from the
   * device's ACK or ESC, in the conversation's order, so it never waits on itself).
   */
  private async expect(purpose: Purpose, build: (h: HeaderFields) => Buffer, onAnswer?: Outstanding['onAnswer']): Promise<void> {
    const h = this.header();
    await this.expectBuilt(purpose, h.controlId, build(h), onAnswer);
  }

  private async expectBuilt(purpose: Purpose, controlId: number, bytes: Buffer, onAnswer?: Outstanding['onAnswer']): Promise<void> {
    if (this.closed) {
      await onAnswer?.('closed');
      return;
    }
    const max = this.hello?.maxMessageBytes;
    if (max !== null && max !== undefined && bytes.length > max) {
      this.target.deviceProblem(`a ${purpose} message of ${bytes.length} bytes is over the device's DSC.max_message_sz ${max}; not sent`, 'message-too-large-for-device');
      await onAnswer?.('not-sent');
      return;
    }
    this.arm(String(controlId), { purpose, bytes, busyRetries: 0, onAnswer });
    await this.send(bytes);
  }

  /** The control id our next message will carry (operator lists number their messages themselves). */
  takeControlId(): number {
    return ++this.nextControl;
  }

  private replyTimeoutMs(): number {
    return this.opts.reply_timeout_ms ?? (this.hello?.applicationTimeoutS ? this.hello.applicationTimeoutS * 1000 : DEFAULT_REPLY_TIMEOUT_MS);
  }

  private arm(id: string, o: Omit<Outstanding, 'timer'>): void {
    const timer = setTimeout(() => {
      this.outstanding.delete(id);
      this.target.noAnswer(`the device did not answer our ${o.purpose} (control id ${id}) within ${this.replyTimeoutMs()} ms; connection closed`);
      void Promise.resolve(o.onAnswer?.('timeout')).catch(() => undefined);
      void this.close();
    }, this.replyTimeoutMs());
    timer.unref?.();
    this.outstanding.set(id, { ...o, timer });
  }

  /**
   * Continuous mode: a device silent for its application timeout is sent a keep-alive (KPA); one
   * that does not answer that either is gone (no_answer, connection closed by the reply timer).
   */
  private armSilence(): void {
    if (this.silenceTimer) clearTimeout(this.silenceTimer);
    this.silenceTimer = null;
    if (!this.continuous || this.closed) return;
    this.silenceTimer = setTimeout(() => {
      this.silenceTimer = null;
      this.enqueue(() => this.expect('keep-alive', (h) => keepAliveMessage(h), () => this.armSilence()));
    }, this.replyTimeoutMs());
    this.silenceTimer.unref?.();
  }

  async close(): Promise<void> {
    if (this.closed) return;
    await this.carrier.close().catch(() => undefined);
  }

  /**
   * One complete message or problem. Runs even after the connection closed: a message that arrived
   * whole is still stored (the device will send it again, and its id makes that a duplicate);
   * only the answers go nowhere.
   */
  private async handle(ev: SplitEvent): Promise<void> {
    if (ev.kind === 'problem') {
      this.target.badInput(ev.bytes, ev.reason, ev.detail);
      await this.sendUnanswered((h) => escapeMessage(h, ev.reason === 'too-large' ? 'TOO_LARGE' : 'INVALID', `${ev.reason}: ${ev.detail}`));
      return;
    }
    const parsed = parseDocument(ev.bytes);
    if (!parsed.ok) {
      this.target.badInput(ev.bytes, 'malformed-xml', parsed.reason);
      await this.sendUnanswered((h) => escapeMessage(h, 'INVALID', parsed.reason));
      return;
    }
    const m = parsed.message;
    const type = canonicalType(m.root, this.profile);
    const id = m.header.controlId;
    if (id !== null && type !== 'ACK.R01') {
      if (this.seenControlIds.has(id)) this.target.deviceProblem(`the device used control id ${id} twice in one connection (${type})`, 'duplicate-control-id');
      this.seenControlIds.add(id);
    }
    if (type.startsWith('OBS.') || type === 'EOT.R01') this.requestAnswered();
    if (type === 'HEL.R01') return this.onHello(m);
    // HEL first, on every carrier: without it the device is not identified (no serial, no profile).
    if (!this.owner || !this.hello) {
      this.target.badInput(m.bytes, 'hello-expected', `${type} before HEL`);
      await this.ack(id, 'AR', 'HEL.R01 first: the device is not identified');
      return;
    }
    switch (type) {
      case 'DST.R01':
        return this.onStatus(m);
      case 'OBS.R01':
      case 'OBS.R02':
        return this.onObservation(m, type);
      case 'EOT.R01':
        return this.onEndOfTopic(m);
      case 'ACK.R01':
        return this.onAck(m);
      case 'ESC.R01':
        return this.onEscape(m);
      case 'EVS.R01':
        return this.onEvents(m);
      case 'KPA.R01':
        return this.ack(id, 'AA');
      case 'END.R01':
        this.owner.conversationEnded('the device ended the conversation');
        await this.close();
        return;
      default:
        if (ACKNOWLEDGED_ONLY.has(type)) {
          this.target.logWarn(`poct1a: ${type} acknowledged, not interpreted`, null);
          return this.ack(id, 'AA');
        }
        if (type.startsWith('OBS.')) return this.onObservation(m, type);
        this.target.badInput(m.bytes, 'unsupported-message', `${m.root} is not a message this data manager handles`);
        await this.sendUnanswered((h) => escapeMessage(h, 'UNSUPPORTED', `${m.root} is not supported`));
    }
  }

  /** The device is sending what we asked for (REQ ROBS is answered by OBS and EOT, not by an ACK). */
  private requestAnswered(): void {
    for (const [id, o] of this.outstanding) {
      if (o.purpose !== 'request') continue;
      clearTimeout(o.timer);
      this.outstanding.delete(id);
    }
  }

  private async onHello(m: Poct1aMessage): Promise<void> {
    const hello = readHello(m);
    const id = m.header.controlId;
    if (this.conn) {
      const route = this.conn.listener.route(hello.deviceId, this.conn.peerAddress);
      const owner = 'member' in route ? sessionOf.get(route.member) : undefined;
      if (!owner) {
        const why = 'refused' in route ? route.message : 'no session runs for that device';
        await this.ack(id, 'AR', why);
        this.conn.listener.refuse(this.conn, 'refused' in route ? route.refused : 'device-not-ready', why, hello.deviceId);
        this.closed = true;
        return;
      }
      if (this.owner !== owner && 'member' in route) {
        this.owner = owner;
        route.member.claim(this.conn);
      }
    }
    // A hello starts the conversation over (a device that restarted without dropping the line).
    this.hello = hello;
    this.helloBytes = m.bytes;
    this.finishing = false;
    this.continuous = false;
    const opts = this.opts;
    this.profile = opts.profile ? findProfile(opts.profile)! : detectProfile(hello);
    const skewFlagged = this.owner!.onHello(hello, this.profile, m.bytes);
    this.setTimeDue = opts.set_time && skewFlagged;
    await this.ack(id, 'AA');
  }

  private async onStatus(m: Poct1aMessage): Promise<void> {
    await this.ack(m.header.controlId, 'AA');
    const qty = Number(value(element(m.body, 'DST'), 'DST.new_observations_qty') ?? '0');
    if (Number.isFinite(qty) && qty > 0) {
      await this.expect('request', (h) => requestMessage(h, 'ROBS'), async (a) => {
        // Refused or escaped: nothing to wait for; the conversation goes on to its end.
        if (a === 'AE' || a === 'AR' || a === 'ESC') await this.afterTopic();
      });
      return;
    }
    // Nothing new: straight to what follows a topic (continuous mode or END).
    await this.afterTopic();
  }

  private async onObservation(m: Poct1aMessage, type: string): Promise<void> {
    const owner = this.owner!;
    const host = owner.hostOf();
    const r = decodeObservationMessage(m, type, this.hello, this.profile, { deviceId: host.device.id, timezone: host.timezone });
    const capture: Capture = { kind: 'transcript', exchanges: [...(this.helloBytes ? [{ dir: 'D' as const, bytes: this.helloBytes }] : []), { dir: 'D', bytes: m.bytes }] };
    if (r.drafts.length === 0) {
      const reason = r.issues[0]?.reason ?? 'no observations in the message';
      const kept = await owner.keep(m.bytes, 'no-observations');
      owner.deviceProblem(`${type} not stored: ${reason}`, 'no-observations');
      // Rejected (AR): sending it again would not help. Unless its bytes could not even be kept.
      await this.ack(m.header.controlId, kept ? 'AR' : 'AE', reason);
      return;
    }
    owner.flagUnknownOperators(r.drafts);
    const identity = identityOf(this.hello, this.profile, host.device.id);
    const unit: PushedUnit = {
      drafts: { result: r.drafts },
      capture,
      facts: factsOf(identity),
      state: { analyzer: { dialect: this.profile.id, last_message_at: host.now().toISOString() } },
    };
    const outcome = await owner.commitUnit(unit, {
      acknowledge: () => this.ack(m.header.controlId, 'AA'),
      refuse: (reason) => this.ack(m.header.controlId, 'AE', `not stored: ${reason}`.slice(0, 200)),
    });
    if (outcome.stored && r.issues.length > 0) {
      owner.deviceProblem(`${type} stored with ${r.issues.length} problem(s)`, 'message-problems', { problems: r.issues.map((i) => i.reason), codes: observationCodes(m) });
    }
  }

  private async onEndOfTopic(m: Poct1aMessage): Promise<void> {
    const topic = (value(element(m.body, 'EOT'), 'EOT.topic_cd') ?? '').toUpperCase();
    const eotOf = value(element(m.body, 'EOT'), 'EOT.eot_control_id');
    if (eotOf !== null) {
      const o = this.outstanding.get(eotOf);
      if (o?.purpose === 'request') {
        clearTimeout(o.timer);
        this.outstanding.delete(eotOf);
      }
    }
    if (topic === 'OBS' || topic === '') await this.owner!.transmissionEnded();
    await this.afterTopic();
  }

  /**
   * The observations are in: set the clock if due, push the operator list if due, then continuous
   * mode or END; each step waits for the device's answer to the one before.
   */
  private async afterTopic(): Promise<void> {
    if (this.continuous || this.finishing || this.closed) return;
    this.finishing = true;
    const steps: Array<(next: () => Promise<void>) => Promise<void>> = [];
    if (this.setTimeDue) {
      this.setTimeDue = false;
      steps.push((next) => {
        const host = this.target.hostOf();
        return this.expect('set-time', (h) => setTimeMessage(h, poctTime(host.now(), host.timezone)), async (a) => {
          if (a !== 'timeout' && a !== 'closed') await next();
        });
      });
    }
    const list = this.owner?.operatorListFor(this);
    if (list) steps.push((next) => this.pushOperators(list.operators, list.incremental, async (r) => {
      this.owner?.operatorsPushed(this, r);
      if (r.acknowledged || r.answer === 'AE' || r.answer === 'AR' || r.answer === 'ESC' || r.answer === 'not-sent') await next();
    }));
    steps.push(() => this.finish());
    const run = async (i: number): Promise<void> => steps[i]!(() => run(i + 1));
    await run(0);
  }

  private async finish(): Promise<void> {
    const supportsContinuous = (this.hello?.directives ?? []).some((d) => d.toUpperCase() === 'START_CONTINUOUS');
    if (this.opts.mode === 'continuous' && supportsContinuous) {
      await this.expect('directive', (h) => directiveMessage(h, 'START_CONTINUOUS'), async (a) => {
        if (a === 'AA') {
          this.continuous = true;
          this.owner?.conversationState('continuous');
          this.armSilence();
        } else if (a !== 'timeout' && a !== 'closed') {
          // A device that does not take the directive (ESC, AE/AR) is ended normally.
          await this.terminate();
        }
      });
      return;
    }
    await this.terminate();
  }

  private async terminate(): Promise<void> {
    await this.expect('end', (h) => endMessage(h, 'NRM'), async (a) => {
      if (a === 'AA') this.owner?.conversationEnded('the conversation ended (END acknowledged)');
      await this.close();
    });
  }

  /**
   * Sends an operator list as OPL messages within the device's max_message_sz, each waiting for
   * its ACK, then EOT (topic OPL); `done` gets how it went.
   */
  async pushOperators(operators: readonly OperatorEntry[], incremental: boolean, done: (r: OperatorPushResult) => Promise<void> | void): Promise<void> {
    const host = this.target.hostOf();
    let msgs: Buffer[];
    const ids: number[] = [];
    try {
      msgs = operatorListMessages(operators, {
        incremental,
        maxBytes: this.hello?.maxMessageBytes ?? DEFAULT_DEVICE_MESSAGE_BYTES,
        now: host.now(),
        timezone: host.timezone,
        nextControlId: () => {
          const id = this.takeControlId();
          ids.push(id);
          return id;
        },
      });
    } catch (err) {
      await done({ acknowledged: false, messages: 0, operators: operators.length, answer: 'not-sent', error: (err as Error).message });
      return;
    }
    const sendAt = async (i: number): Promise<void> => {
      if (i === msgs.length) {
        await this.sendUnanswered((h) => endOfTopicMessage(h, 'OPL', ids[0]));
        await done({ acknowledged: true, messages: msgs.length, operators: operators.length, answer: 'AA', error: null });
        return;
      }
      await this.expectBuilt('operators', ids[i]!, msgs[i]!, async (a) => {
        if (a === 'AA') await sendAt(i + 1);
        else await done({ acknowledged: false, messages: msgs.length, operators: operators.length, answer: a, error: `the device answered message ${i + 1} of the list with ${a}` });
      });
    };
    await sendAt(0);
  }

  /** A directive from the network (continuous mode): DTV.R01, and how the device answered. */
  async sendDirective(command: string, attrs: Record<string, string>, done: (a: DeviceAnswer) => void): Promise<void> {
    await this.expect('directive', (h) => directiveMessage(h, command, attrs), (a) => done(a));
  }

  private async onAck(m: Poct1aMessage): Promise<void> {
    const ack = element(m.body, 'ACK');
    const of = value(ack, 'ACK.ack_control_id');
    const type = (value(ack, 'ACK.type_cd') ?? '').toUpperCase();
    const o = of === null ? undefined : this.outstanding.get(of);
    if (!o && of !== null && this.unanswered.delete(of)) return;
    if (!o) {
      this.target.deviceProblem(`an ACK for control id ${of ?? '(none)'}, which no message of ours is waiting on`, 'wrong-ack-id');
      return;
    }
    this.outstanding.delete(of!);
    clearTimeout(o.timer);
    if (type !== 'AA') this.target.deviceProblem(`the device answered our ${o.purpose} with ACK ${type || '(no type)'}`, 'device-refused', { ack: type });
    const answer: DeviceAnswer = type === 'AA' || type === 'AE' || type === 'AR' ? type : 'AE';
    await o.onAnswer?.(answer);
  }

  private async onEscape(m: Poct1aMessage): Promise<void> {
    const esc = element(m.body, 'ESC');
    const reason = (value(esc, 'ESC.reason_cd') ?? value(esc, 'ESC.condition_cd') ?? '').toUpperCase();
    const refersTo = value(esc, 'ESC.ack_control_id') ?? value(esc, 'ESC.esc_control_id');
    const entry = (refersTo !== null && this.outstanding.has(refersTo) ? [refersTo, this.outstanding.get(refersTo)!] : [...this.outstanding.entries()].at(-1)) as [string, Outstanding] | undefined;
    this.target.deviceProblem(`the device escaped${entry ? ` our ${entry[1].purpose}` : ''}: ${reason || 'no reason given'}`, 'device-escape', { escape: reason || null });
    if (!entry) return;
    const [id, o] = entry;
    clearTimeout(o.timer);
    this.outstanding.delete(id);
    if (reason === 'CNC' && o.busyRetries < BUSY_RETRIES) {
      // Busy: the same message again, after a moment, under a new control id.
      await new Promise((r) => setTimeout(r, BUSY_RETRY_MS));
      const retried = o.busyRetries + 1;
      const h = this.header();
      const again = rebuildWithControlId(o.bytes, h.controlId);
      this.arm(String(h.controlId), { purpose: o.purpose, bytes: again, busyRetries: retried, onAnswer: o.onAnswer });
      await this.send(again);
      return;
    }
    await o.onAnswer?.('ESC');
  }

  private async onEvents(m: Poct1aMessage): Promise<void> {
    for (const evt of elements(element(m.body, 'EVS') ?? m.body, 'EVT')) {
      const description = value(evt, 'EVT.description')?.slice(0, 200) ?? null;
      this.owner!.deviceEvent(value(evt, 'EVT.event_cd'), description, value(evt, 'EVT.severity_cd'), value(evt, 'EVT.event_dttm'));
    }
    await this.ack(m.header.controlId, 'AA');
  }
}

/** The same message under a new `HDR.control_id` (a retry after ESC busy). */
function rebuildWithControlId(bytes: Buffer, controlId: number): Buffer {
  return Buffer.from(bytes.toString('utf8').replace(/(<HDR\.control_id V=")[^"]*(")/, `$1${controlId}$2`), 'utf8');
}

export class Poct1aSession extends PushedSession {
  readonly options: Poct1aOptions;
  private readonly conversations = new Set<Conversation>();
  private single: Conversation | null = null;
  private readonly unwire: Array<() => void> = [];

  /** The operator list the device should hold (config, or the last `operators/sync`), and who has it. */
  private operatorList: { operators: OperatorEntry[]; incremental: boolean; version: number } | null;
  /** DEV.device_id of the callers that acknowledged the current list version. */
  private readonly operatorsHeldBy = new Set<string>();

  constructor(host: SessionHost) {
    const options = parsePoct1aOptions(host.device.options ?? {}, `device ${host.device.id}: options`);
    super(host, POCT1A_DRIVER_ID, { idleMs: 30_000 });
    this.options = options;
    this.operatorList = options.operators ? { operators: options.operators, incremental: false, version: 1 } : null;
  }

  protected override commands(): Record<string, SessionCommand> {
    return {
      directive: async (params) => {
        const command = params.command;
        if (typeof command !== 'string' || !/^[A-Z0-9_.]{1,64}$/i.test(command)) throw new Error('poct1a: directive needs {"command": "FORCE_NORMAL"} (letters, digits, "_" or ".")');
        const c = this.liveConversation();
        if (!c?.continuous) throw new Error('poct1a: no device of this id is connected in continuous mode; a directive goes to a connected device');
        const supported = (c.hello?.directives ?? []).map((d) => d.toUpperCase());
        if (!supported.includes(command.toUpperCase())) throw new Error(`poct1a: the device does not list directive ${command} (it supports: ${supported.join(', ') || 'none'})`);
        const attrs: Record<string, string> = typeof params.coding_system === 'string' ? { SN: params.coding_system } : {};
        const answer = await new Promise<DeviceAnswer>((resolve) => c.enqueue(() => c.sendDirective(command, attrs, resolve)));
        if (answer !== 'AA') throw new Error(`poct1a: the device answered the directive with ${answer}`);
        return { command, answer };
      },
      'operators/sync': async (params) => {
        const operators = params.operators === undefined ? (this.options.operators ?? []) : parseOperators(params.operators, 'operators');
        const incremental = params.incremental === true;
        this.operatorList = { operators, incremental, version: (this.operatorList?.version ?? 0) + 1 };
        this.operatorsHeldBy.clear();
        const c = this.liveConversation();
        if (!c?.continuous) return { pushed: false, queued: true, operators: operators.length };
        const r = await new Promise<OperatorPushResult>((resolve) => c.enqueue(() => c.pushOperators(operators, incremental, (res) => {
          this.operatorsPushed(c, res);
          resolve(res);
        })));
        if (!r.acknowledged) throw new Error(`poct1a: the operator list was not accepted: ${r.error ?? r.answer}`);
        return { pushed: true, queued: false, operators: r.operators, messages: r.messages };
      },
    };
  }

  /** The newest open conversation of this device. */
  private liveConversation(): Conversation | null {
    const mine = [...this.allConversations()].filter((c) => c.owner === this && !c.closed && c.hello !== null);
    return mine.at(-1) ?? null;
  }

  private *allConversations(): Iterable<Conversation> {
    if (this.single) yield this.single;
    const t = this.host.transport;
    if (!(t instanceof ListenerTransport)) return;
    for (const member of t.listener.members) yield* sessionOf.get(member)?.conversations ?? [];
  }

  /** The list a conversation should push now, or null (none configured, or this device holds it). */
  operatorListFor(c: Conversation): { operators: OperatorEntry[]; incremental: boolean } | null {
    const list = this.operatorList;
    if (!list) return null;
    const supports = (c.hello?.topics ?? []).some((t) => ['OP_LST', 'OPL'].includes(t.toUpperCase()));
    if (!supports) return null;
    if (this.operatorsHeldBy.has(c.hello?.deviceId ?? '')) return null;
    return list;
  }

  operatorsPushed(c: Conversation, r: OperatorPushResult): void {
    if (r.acknowledged) {
      this.operatorsHeldBy.add(c.hello?.deviceId ?? '');
      this.host.log.info({ operators: r.operators, messages: r.messages }, 'poct1a: operator list acknowledged');
    } else {
      this.deviceProblem(`the operator list was not accepted: ${r.error ?? r.answer}`, 'operator-list-refused', { answer: r.answer });
    }
  }

  /** Operator lockout: with a list, an observation by an operator not on it is flagged. */
  flagUnknownOperators(drafts: ResultDraft[]): void {
    const list = this.operatorList;
    if (!list || list.incremental) return;
    const known = new Set(list.operators.map((o) => o.id.toLowerCase()));
    for (const d of drafts) {
      const id = d.operator?.id;
      if (id && !known.has(id.toLowerCase()) && !d.flags.includes('operator-unknown')) d.flags.push('operator-unknown');
    }
  }

  hostOf(): SessionHost {
    return this.host;
  }

  protected override describeTransmission(t: TransmissionTotals): string {
    return `received ${t.records} results in ${t.units} observation messages: ${t.inserted} new, ${t.duplicates} already stored`;
  }

  protected attach(): void {
    const t = this.host.transport;
    if (t instanceof ListenerTransport) {
      sessionOf.set(t, this);
      t.serve((conn) => this.serveCaller(conn));
      return;
    }
    const onOpen = (): void => this.startSingle(t);
    const onData = (chunk: Buffer): void => {
      // A device that says hello again after an END starts a new conversation on the same line.
      if (!this.single || this.single.closed) this.startSingle(t);
      this.single!.onData(chunk);
    };
    const onClose = (): void => {
      this.single?.onClose();
      this.single = null;
    };
    t.on('open', onOpen);
    t.on('data', onData);
    t.on('close', onClose);
    this.unwire.push(() => {
      t.off('open', onOpen);
      t.off('data', onData);
      t.off('close', onClose);
    });
    if (t.isOpen) this.startSingle(t);
  }

  private startSingle(t: ByteTransport): void {
    this.single?.onClose();
    let c: Conversation | null = null;
    const carrier: Carrier = { write: (b) => t.write(b), close: async () => c?.onClose(), peerAddress: 'local' };
    c = new Conversation(carrier, this, this, null);
    this.single = c;
  }

  protected async detach(): Promise<void> {
    const t = this.host.transport;
    if (t instanceof ListenerTransport) {
      t.unserve();
      sessionOf.delete(t);
    }
    for (const u of this.unwire.splice(0)) u();
    this.single?.onClose();
    this.single = null;
    const all = [...this.conversations];
    this.conversations.clear();
    await Promise.all(all.map((c) => c.close()));
  }

  /** A caller on the listener: a conversation of its own, routed by its HEL. */
  private serveCaller(conn: ListenerConnection): void {
    const owner = conn.owner ? (sessionOf.get(conn.owner) ?? null) : null;
    const c = new Conversation(conn, this, owner, conn);
    this.conversations.add(c);
    conn.on('data', (chunk: Buffer) => c.onData(chunk));
    conn.once('close', () => {
      c.onClose();
      this.conversations.delete(c);
    });
  }

  // ── what a conversation reports to the session of its device ──

  /** Identity and clock from the HEL; returns whether the clock skew is over the limit. */
  onHello(hello: Hello, profile: Poct1aProfile, _bytes: Buffer): boolean {
    const now = this.host.now();
    const identity = identityOf(hello, profile, this.host.device.id);
    this.report.patch({ ...factsOf(identity), last_seen: now.toISOString(), analyzer: { dialect: profile.id, device_id: hello.deviceId ?? null } });
    this.report.emit('connected', `${identity.model} ${identity.serial ?? ''} said hello`.trim(), { profile: profile.id, device_id: hello.deviceId });
    const clock = readPoctTime(hello.deviceClock, this.host.timezone);
    if (!clock) return false;
    const skew = Math.round((Date.parse(clock.at) - now.getTime()) / 1000);
    const limit = this.options.clock_skew_limit_s;
    const flagged = Math.abs(skew) > limit;
    const was = this.report.state.clock_skew_flagged === true;
    this.report.patch({ clock_skew_s: skew, clock_skew_flagged: flagged });
    if (flagged && !was) this.report.emit('clock_skew', `the device clock is ${skew} s off the host clock (limit ${limit} s)`, { clock_skew_s: skew, limit_s: limit });
    return flagged;
  }

  commitUnit(unit: PushedUnit, answer: UnitAnswer): Promise<UnitOutcome> {
    return this.receive(unit, answer);
  }

  async transmissionEnded(): Promise<void> {
    await this.endTransmission();
  }

  keep(bytes: Buffer, reason: string): Promise<boolean> {
    return this.report.quarantine(bytes, reason);
  }

  /** Bytes that are not a message we can use: kept, logged and announced by reason only. */
  badInput(bytes: Buffer, reason: string, detail: string): void {
    if (bytes.length > 0) void this.report.quarantine(bytes, reason);
    this.host.log.warn({ reason, detail }, 'poct1a: bad message from the device');
    this.report.emit('bad_frame', `bad message from the device: ${reason}`, { reason, detail: detail.slice(0, 300) });
  }

  deviceProblem(message: string, reason: string, data: Record<string, unknown> = {}): void {
    this.host.log.warn({ reason }, `poct1a: ${message}`);
    this.report.emit('device_error', message, { reason, ...data });
  }

  noAnswer(message: string): void {
    this.report.emit('no_answer', message, { reason: 'reply-timeout' });
  }

  /**
   * An EVS event on `bridge/event`. Its description is free text the device wrote, which may name
   * a patient: published only when `options.event_text` says so; otherwise only its code.
   */
  deviceEvent(code: string | null, description: string | null, severity: string | null, at: string | null): void {
    const text = this.options.event_text ? description : null;
    const what = text ?? (code ? `code ${code}` : description ? '(description withheld: options.event_text)' : '(no description)');
    this.report.emit('device_error', `device event: ${what}`, { reason: 'device-event', event_cd: code, severity, event_dttm: at, ...(text ? { description: text } : {}) });
  }

  conversationState(state: 'continuous'): void {
    this.report.patch({ status_detail: state === 'continuous' ? 'continuous mode' : null });
  }

  conversationEnded(message: string): void {
    this.host.log.info(`poct1a: ${message}`);
  }

  logWarn(message: string, err: string | null): void {
    this.host.log.warn({ err }, message);
  }
}
