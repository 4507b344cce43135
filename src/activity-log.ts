/**
 * What the devices did, in the log at `info`: connected / link lost (once per change, not per
 * reconnect attempt), downloads started and finished with their counts, records stored per
 * device (counts by kind and category), records published (a summary line when the count moved),
 * device errors and clock skew as warnings. Only what bridge events and counts carry: reasons and
 * numbers, never a record's contents, so no patient data reaches the log.
 */
import type { Extension, Services } from './extensions/extension.ts';
import type { BridgeEvent } from './records/types.ts';

/** How often the published / stored totals are logged, when they moved. */
export const ACTIVITY_SUMMARY_MS = 60_000;

type Level = 'info' | 'warn' | 'debug';

/** The log level of each event type; the ones not named are `info`. */
const LEVELS: Partial<Record<BridgeEvent['type'], Level>> = {
  download_progress: 'debug',
  download_failed: 'warn',
  bad_frame: 'warn',
  no_answer: 'warn',
  port_missing: 'warn',
  clock_skew: 'warn',
  device_error: 'warn',
};

/** Events their source logs already (once per distinct reason): not logged twice. */
const LOGGED_AT_SOURCE: ReadonlySet<BridgeEvent['type']> = new Set(['config_error', 'mqtt_error', 'listener_refused']);

/**
 * Counts of a commit by kind and category, as text (`kinds: "result 3"`, `categories: "patient 2,
 * control 1"`): a `patient` key would be censored by the logger, and nothing else of the records
 * is taken.
 */
function countsOf(records: readonly { schema?: unknown; category?: unknown }[]): { kinds: string; categories?: string } {
  const kinds = new Map<string, number>();
  const categories = new Map<string, number>();
  for (const r of records) {
    const kind = typeof r.schema === 'string' ? r.schema.replace(/^poct\./, '').replace(/\/\d+$/, '') : 'record';
    kinds.set(kind, (kinds.get(kind) ?? 0) + 1);
    if (typeof r.category === 'string') categories.set(r.category, (categories.get(r.category) ?? 0) + 1);
  }
  const text = (m: Map<string, number>): string => [...m].map(([k, n]) => `${k} ${n}`).join(', ');
  return { kinds: text(kinds), ...(categories.size > 0 ? { categories: text(categories) } : {}) };
}

export class ActivityLog implements Extension {
  readonly name = 'activity-log';
  private readonly unsubscribe: Array<() => void> = [];
  /** Whether each device's link is up, so a drop and its reconnect attempts log once. */
  private readonly linkUp = new Map<string, boolean>();
  /** The last warning per device and type, so a device that keeps failing the same way logs once. */
  private readonly lastWarning = new Map<string, string>();
  private summaryTimer: NodeJS.Timeout | undefined;
  /** Set when the daemon stops: the links it closes itself are not "lost". */
  stopping = false;
  private logged = { stored: 0, published: 0, duplicates: 0, errors: 0 };

  constructor(private readonly s: Services) {}

  async start(): Promise<void> {
    const { bus } = this.s;
    this.unsubscribe.push(bus.on('bridgeEvent', (e) => this.onEvent(e)));
    this.unsubscribe.push(
      bus.on('recordsStored', ({ deviceId, records }) =>
        this.s.log.info({ device: deviceId, stored: records.length, ...countsOf(records as Array<{ schema?: unknown; category?: unknown }>) }, 'records stored'),
      ),
    );
    this.summaryTimer = setInterval(() => this.summary(), ACTIVITY_SUMMARY_MS);
    this.summaryTimer.unref();
  }

  async stop(): Promise<void> {
    this.unsubscribe.forEach((u) => u());
    clearInterval(this.summaryTimer);
    this.summary();
  }

  /** Totals since start, logged when they moved since the last line. */
  summary(): void {
    const { stored, published, duplicates, errors } = this.s.stats;
    const now = { stored, published, duplicates, errors };
    if (Object.entries(now).every(([k, v]) => this.logged[k as keyof typeof now] === v)) return;
    this.logged = now;
    let outbox: number | undefined;
    try {
      outbox = this.s.store.outboxDepth();
    } catch {
      outbox = undefined;
    }
    this.s.log.info({ ...now, ...(outbox !== undefined ? { outbox } : {}) }, 'records stored and published so far');
  }

  private onEvent(e: BridgeEvent): void {
    if (LOGGED_AT_SOURCE.has(e.type)) return;
    const device = e.device ?? undefined;
    const fields = { ...(device ? { device } : {}), event: e.type, ...(e.data ?? {}) };
    if (e.type === 'connected' || e.type === 'disconnected') {
      const up = e.type === 'connected';
      if (device && this.linkUp.get(device) === up) return;
      if (device) this.linkUp.set(device, up);
      if (up && device) this.lastWarning.delete(device);
      if (up) this.s.log.info(fields, `device connected: ${e.message}`);
      else if (this.stopping) this.s.log.debug(fields, `device link closed: ${e.message}`);
      else this.s.log.warn(fields, `device link lost: ${e.message}`);
      return;
    }
    const level = LEVELS[e.type] ?? 'info';
    if (level === 'warn') {
      const key = `${device ?? ''}\0${e.type}`;
      if (this.lastWarning.get(key) === e.message) return;
      this.lastWarning.set(key, e.message);
    } else if (device && (e.type === 'download_finished' || e.type === 'clock_set')) {
      // The device works again: its next failure is news.
      for (const key of this.lastWarning.keys()) if (key.startsWith(`${device}\0`)) this.lastWarning.delete(key);
    }
    this.s.log[level](fields, e.message);
  }
}
