import pino from 'pino';
import type { Capture, SessionHost } from '../../src/driver-sdk/index.ts';
import type { DeviceConfig } from '../../src/config/types.ts';
import { findDriver } from '../../drivers/index.ts';
import { mergePatch } from '../../src/driver-sdk/meter-session.ts';
import { applyStatePatch, initialDeviceState, type DeviceKind, type DeviceState, type DeviceStatePatch } from '../../src/records/device-state.ts';
import { schemaProblems } from '../../src/records/schemas.ts';
import type { BridgeEventType, ResultDraft } from '../../src/records/types.ts';
import { captureToBytes } from '../../src/driver-sdk/capture.ts';
import { finalize } from '../../src/records/finalize.ts';
import { sha256Hex } from '../../src/records/ids.ts';
import { eachDraft, type AnyRecord, type DraftTypes, type RecordDrafts, type RecordKindName } from '../../src/records/kinds.ts';
import { resolvePrivacy, type PrivacySettings } from '../../src/records/privacy.ts';
import type { ByteTransport } from '../../src/transports/transport.ts';

export interface SeenEvent {
  type: BridgeEventType;
  message: string;
  data?: Record<string, unknown>;
}

/** Every FakeHost made in the current test, for the after-each check of their states. */
const liveHosts = new Set<FakeHost>();

/**
 * The problems of every state the FakeHosts made since the last call saw, and forgets those
 * hosts. `test/helpers/setup.ts` calls it after every test, so a session that reports a state its
 * schema refuses fails the test that made it.
 */
export function takeStateProblems(): string[] {
  const out = [...liveHosts].flatMap((h) => h.stateProblems.map((p) => `${h.device.id}: ${p}`));
  liveHosts.clear();
  return out;
}

/**
 * A SessionHost for driver session unit tests: keeps events, state, quarantined bytes and commits,
 * and stores drafts by their record id like the real store (so duplicates are counted). Every new
 * draft is finalized as the store would (the same `finalize`, its kind from the table) and checked
 * against its kind's schema: a session whose drafts would make a record that breaks its schema
 * fails its commit, as a test should.
 */
export class FakeHost implements SessionHost {
  readonly log = pino({ level: 'silent' });
  timezone = 'Europe/Copenhagen';
  readonly events: SeenEvent[] = [];
  /** What the session reported, merged as the device manager merges it (blocks field by field). */
  readonly state: DeviceStatePatch = {};
  /** The whole state the device manager would publish after the last patch. */
  published: DeviceState;
  /** Why a published state was refused by `poct.device-state/2` or a patch field by the kind. */
  readonly stateProblems: string[] = [];
  readonly quarantined: { bytes: Buffer; reason: string }[] = [];
  /** Each commit: its result drafts (`drafts`), every kind's (`records`), and the capture. */
  readonly commits: { drafts: ResultDraft[]; records: RecordDrafts; capture: Capture }[] = [];
  /** Stored drafts by record id. */
  readonly stored = new Map<string, DraftTypes[RecordKindName]>();
  /** The records the store would have written, in commit order. */
  readonly finalized: AnyRecord[] = [];
  privacy: PrivacySettings = { patient_id: 'hash', hash_key: 'fake-host-patient-key' };
  /** Event types and commit start/end, in order. */
  readonly order: string[] = [];
  commitDelayMs = 0;
  private waiters: (() => void)[] = [];

  constructor(
    readonly device: DeviceConfig,
    readonly transport: ByteTransport,
    /**
     * The driver's kind; by default the registered driver's that `device.driver` names, and a
     * glucose meter for the SDK tests' own probe drivers.
     */
    kind?: DeviceKind,
  ) {
    const driver = findDriver(device.driver);
    const k = kind ?? driver?.kind ?? 'glucose-meter';
    this.published = initialDeviceState({ kind: k, id: device.id, driver: device.driver, manufacturer: driver?.vendor ?? 'test', model: null });
    liveHosts.add(this);
  }

  now(): Date {
    return new Date();
  }

  async commit(records: RecordDrafts, capture: Capture): Promise<{ inserted: number; duplicates: number }> {
    this.order.push('commit:start');
    if (this.commitDelayMs > 0) await new Promise((r) => setTimeout(r, this.commitDelayMs));
    const drafts = eachDraft(records);
    const bytes = captureToBytes(capture);
    const raw = { sha256: sha256Hex(bytes), size: bytes.length, kind: capture.kind };
    const privacy = resolvePrivacy(this.privacy);
    const fresh: Array<{ id: string; draft: DraftTypes[RecordKindName]; record: AnyRecord }> = [];
    for (const { kind, draft } of drafts) {
      const id = kind.id(draft);
      if (this.stored.has(id) || fresh.some((f) => f.id === id)) continue;
      const seq = this.finalized.length + fresh.length + 1;
      const record = finalize(kind, draft, { seq, site: 'fake-host', receivedAt: this.now().toISOString(), raw, timezone: this.timezone, privacy });
      const problems = schemaProblems(kind.schema, record);
      if (problems.length > 0) throw new Error(`a ${kind.name} draft makes an invalid ${kind.schema} record: ${problems.join('; ')}`);
      fresh.push({ id, draft, record });
    }
    this.commits.push({ drafts: [...(records.result ?? [])], records, capture });
    for (const f of fresh) {
      this.stored.set(f.id, f.draft);
      this.finalized.push(f.record);
    }
    this.order.push('commit:end');
    this.notify();
    return { inserted: fresh.length, duplicates: drafts.length - fresh.length };
  }

  async quarantine(bytes: Buffer, reason: string): Promise<void> {
    this.quarantined.push({ bytes, reason });
  }

  event(type: BridgeEventType, message: string, data?: Record<string, unknown>): void {
    this.events.push({ type, message, data });
    this.order.push(type);
    this.notify();
  }

  updateState(patch: DeviceStatePatch): void {
    mergePatch(this.state, patch);
    const { state, refused } = applyStatePatch(this.published, patch);
    this.published = state;
    this.stateProblems.push(...refused.map((r) => `refused ${r}`));
    this.stateProblems.push(...schemaProblems(state.schema, state));
    this.notify();
  }

  types(): BridgeEventType[] {
    return this.events.map((e) => e.type);
  }

  /** Resolves once `pred` holds, or fails after `ms`. */
  async until(pred: () => boolean, ms = 5000): Promise<void> {
    const deadline = Date.now() + ms;
    while (!pred()) {
      if (Date.now() > deadline) throw new Error(`timed out; events so far: ${this.types().join(', ')}`);
      await new Promise<void>((r) => {
        this.waiters.push(r);
        setTimeout(r, 20);
      });
    }
  }

  private notify(): void {
    const w = this.waiters;
    this.waiters = [];
    for (const r of w) r();
  }
}
