/**
 * The `zebra-zpl` session: one owner of one printer connection. Print requests become durable
 * jobs before they are answered (the job row and its `queued` record in one transaction), and a
 * pump sends them oldest first (a backlog in batches of at most `MAX_BATCH`, one write each)
 * whenever the printer is reachable and reports no fault. Each job's life is published as
 * `print-job` records on `device/<id>/job`.
 *
 * At most once per transaction: a repeated request finds the job its transaction made (in the
 * store, so also after a restart) and answers that. Never resent blindly: once a job's bytes
 * may have reached the printer (the write began), the job is `printed` only when the printer
 * then reports no fault and nothing left to print (`~HS`: no format in its buffer, no label left
 * in its batch); a connection that drops, a status that does not come, or a fault reported after
 * the write leaves it `uncertain` with the reason, for an operator to `confirm` (printed, or
 * reprint with the label marked REPRINT).
 *
 * Status: `~HS` every `status_poll_ms` (three STX…ETX strings, read whole with a timeout), then
 * `~HQES` when `~HS` is silent (media out, head open, ribbon out), `~HI` once per connection.
 */
import { randomBytes } from 'node:crypto';
import { CommandSession } from '../../../src/driver-sdk/command-session.ts';
import type { CommandContext, DeviceJob, DeviceJobs, DeviceStatePatch, SessionHost } from '../../../src/driver-sdk/index.ts';
import { NoAnswerError, ProtocolError, type SessionCommand } from '../../../src/driver-sdk/meter-session.ts';
import { numberOptions } from '../../../src/driver-sdk/meter-session.ts';
import { renderZplPng } from '../../../src/protocols/zpl/render.ts';
import { DEFAULT_SPECIMEN_ID_SCHEME, formatSpecimenId, schemeProblems, type SpecimenIdScheme } from '../../../src/protocols/zpl/specimen-id.ts';
import {
  parseErrorStatus,
  parseHostIdentification,
  parseHostStatus,
  ZebraReplyFramer,
  type ReplyItem,
} from '../../../src/protocols/zpl/status.ts';
import type { LabelTemplate } from '../../../src/protocols/zpl/template.ts';
import type { PrintJobDraft, PrintJobState } from '../../../src/records/types.ts';
import { labelRequestProblems, renderLabel, siteTemplateProblems, type LabelRequest } from './label.ts';
import { errorStatusStatePatch, hostStatusPatch, identificationPatch, MANUFACTURER, ZEBRA_ZPL_DRIVER_ID } from './records.ts';
import { BUILTIN_TEMPLATES } from './templates.ts';

export interface ZebraSessionOptions {
  /** How often the printer is asked for its status (ms). */
  status_poll_ms: number;
  /** How long a status reply may take (ms); `~HS` is silent in a fault, so keep it short. */
  status_timeout_ms: number;
}

const DEFAULTS: ZebraSessionOptions = { status_poll_ms: 5000, status_timeout_ms: 1500 };

/** A job's summary as stored with it (what may be shown: no patient data). */
interface JobSummary {
  specimen_id: string;
  specimen_id_issued: boolean;
  template: string;
  copies: number;
  reprint_of: string | null;
  /**
   * Where the template's `reprint` field's text goes in the job's ZPL (a character offset; null
   * when the template has none): a reprint writes REPRINT there, from the stored ZPL, since the
   * request itself (patient data) is not kept anywhere else.
   */
  reprint_at: number | null;
}

/** A job as `request/jobs` lists it. */
export interface JobView extends JobSummary {
  job: string;
  state: string;
  reason: string | null;
  attempts: number;
  created_at: string;
  updated_at: string;
}

export interface ZebraOptions {
  timing: ZebraSessionOptions;
  templates: Record<string, LabelTemplate>;
  scheme: SpecimenIdScheme;
}

/** The options' shape as a JSON Schema, for the config loader; what only the driver can tell (a template's fields) is `readZebraOptions`'s. */
export const ZEBRA_OPTIONS_SCHEMA: Record<string, unknown> = {
  type: 'object',
  additionalProperties: false,
  properties: {
    templates: { type: 'object', additionalProperties: { type: 'object' }, description: 'site label templates by name' },
    specimen_ids: {
      type: 'object',
      additionalProperties: false,
      properties: { prefix: { type: 'string' }, digits: { type: 'integer' } },
    },
    status_poll_ms: { type: 'number', minimum: 0 },
    status_timeout_ms: { type: 'number', minimum: 0 },
  },
};

/** The device's `options` read for this driver, with every problem (`options.…: reason`) instead of a throw. */
export function readZebraOptions(device: Pick<SessionHost['device'], 'id' | 'options'>): { options: ZebraOptions; problems: Array<{ path: string; message: string }> } {
  const { templates: rawTemplates, specimen_ids: rawScheme, ...rest } = (device.options ?? {}) as Record<string, unknown>;
  const problems: Array<{ path: string; message: string }> = [];
  const split = (p: string): { path: string; message: string } => {
    const at = p.indexOf(': ');
    return { path: `options.${p.slice(0, at)}`, message: p.slice(at + 2) };
  };
  let timing = DEFAULTS;
  try {
    timing = numberOptions({ id: device.id, options: rest }, DEFAULTS);
  } catch (error) {
    problems.push({ path: 'options', message: (error as Error).message });
  }
  const isMap = typeof rawTemplates === 'object' && rawTemplates !== null && !Array.isArray(rawTemplates);
  const site = (isMap ? rawTemplates : {}) as Record<string, LabelTemplate>;
  if (rawTemplates !== undefined && !isMap) problems.push({ path: 'options.templates', message: 'must be a map of template name to template' });
  problems.push(...siteTemplateProblems(site).map(split));
  const scheme = { ...DEFAULT_SPECIMEN_ID_SCHEME, ...((rawScheme ?? {}) as Partial<SpecimenIdScheme>) };
  problems.push(...schemeProblems(scheme).map(split));
  return { options: { timing, templates: { ...BUILTIN_TEMPLATES, ...site }, scheme }, problems };
}

/** The device's options, checked; throws naming every problem. */
export function zebraOptions(device: Pick<SessionHost['device'], 'id' | 'options'>): ZebraOptions {
  const { options, problems } = readZebraOptions(device);
  if (problems.length > 0) throw new Error(`device ${device.id}: ${problems.map((p) => `${p.path}: ${p.message}`).join('; ')}`);
  return options;
}

const OPEN_STATES: ReadonlySet<string> = new Set(['queued', 'printing', 'uncertain']);

/** Jobs sent in one write: a backlog (after a printer outage) drains in batches, one commit per step each. */
const MAX_BATCH = 100;
/** How long the labels of one write may take to come out: a base, and per label (about 6 in/s, with margin). */
const PRINT_WAIT_BASE_MS = 10_000;
const PRINT_WAIT_PER_LABEL_MS = 1000;
/** How often the printer is asked while it still has labels to print. */
const PRINT_POLL_MS = 200;

export class ZebraSession extends CommandSession<ReplyItem> {
  private readonly framer = new ZebraReplyFramer();
  private readonly jobStore: DeviceJobs;
  private readonly options: ZebraOptions;
  private identified = false;
  private pumping = false;
  private pumpAgain = false;

  constructor(host: SessionHost) {
    const options = zebraOptions(host.device);
    super(host, ZEBRA_ZPL_DRIVER_ID, { statusPollMs: options.timing.status_poll_ms });
    if (!host.jobs) throw new Error(`${ZEBRA_ZPL_DRIVER_ID}: the host keeps no durable jobs; a printer needs them`);
    this.jobStore = host.jobs;
    this.options = options;
  }

  override async start(): Promise<void> {
    this.transport.on('open', this.onLinkOpen);
    this.transport.on('close', this.onLinkClose);
    await super.start();
    // Jobs accepted before a restart: queued ones are sent, one left `printing` by a crash may have
    // reached the printer, so it is not sent again but marked uncertain.
    for (const job of this.jobStore.open()) {
      if (job.state === 'printing') await this.step(job, 'uncertain', 'the daemon stopped while the label was being sent', job.attempts);
    }
    this.report.patch(this.queuePatch());
    this.pump();
  }

  override async stop(): Promise<void> {
    this.transport.off('open', this.onLinkOpen);
    this.transport.off('close', this.onLinkClose);
    await super.stop();
  }

  private readonly onLinkOpen = (): void => {
    this.identified = false;
  };
  private readonly onLinkClose = (): void => {
    this.framer.reset();
  };

  protected frame(chunk: Buffer): ReplyItem[] {
    const items = this.framer.push(chunk);
    for (const item of items) if (item.kind === 'garbage') this.report.badData(item.bytes, 'not-a-status-reply', item.reason, 'bytes');
    return items.filter((i) => i.kind === 'block');
  }

  /** The number of jobs the printer still owes, from the store. */
  protected override queuePatch(): DeviceStatePatch {
    return { printer: { queued_jobs: this.jobStore.open().filter((j) => j.state === 'queued').length } };
  }

  // ---- status ----------------------------------------------------------------------------

  /** Sends a query and reads `blocks` replies whole; null when nothing came before the timeout. */
  private async ask(query: string, blocks: number): Promise<string[] | null> {
    await this.send(Buffer.from(query, 'latin1'));
    const deadline = Date.now() + this.options.timing.status_timeout_ms;
    const got: string[] = [];
    while (got.length < blocks) {
      const item = await this.inbox.next(Math.max(0, deadline - Date.now()));
      if (!item) break;
      if (item.kind === 'block') got.push(item.text);
    }
    if (got.length === 0) return null;
    if (got.length < blocks) throw new ProtocolError('incomplete-reply', `${query}: ${got.length} of ${blocks} strings before the timeout`);
    return got;
  }

  protected async readStatus(): Promise<DeviceStatePatch> {
    const patch: DeviceStatePatch = {};
    if (!this.identified) {
      const id = await this.ask('~HI', 1);
      if (id) {
        Object.assign(patch, identificationPatch(parseHostIdentification(id[0]!)));
        this.identified = true;
      }
    }
    const now = this.host.now().toISOString();
    const hs = await this.ask('~HS', 3);
    let status: DeviceStatePatch;
    if (hs) {
      status = hostStatusPatch(parseHostStatus(hs));
    } else {
      // Zebra: no ~HS reply in MEDIA OUT, RIBBON OUT, HEAD OPEN, REWINDER FULL, HEAD OVER-TEMP.
      const hq = await this.ask('~HQES', 1);
      if (!hq) throw new NoAnswerError('the printer answers neither ~HS nor ~HQES');
      status = errorStatusStatePatch(parseErrorStatus(hq[0]!));
    }
    Object.assign(patch, status, { printer: { ...status.printer, status_read_at: now } });
    if (status.status === 'ok') setImmediate(() => this.pump());
    return patch;
  }

  // ---- commands --------------------------------------------------------------------------

  override async command(verb: string, params: Record<string, unknown>, context?: CommandContext): Promise<unknown> {
    if (this.stopped) throw new Error(`${this.tag}: the session is stopped`);
    switch (verb) {
      case 'print':
        return this.print(params, context?.transaction ?? null);
      case 'preview':
        return this.preview(params);
      case 'jobs':
        return this.listJobs(params);
      case 'cancel':
        return this.cancel(String(params.job));
      case 'confirm':
        return this.confirm(String(params.job), params.printed === true);
      case 'status':
        return super.command('status', params);
      default:
        throw new Error(`${this.tag}: unknown command "${verb}" (known: print, preview, jobs, cancel, confirm, status)`);
    }
  }

  protected jobs(): Record<string, SessionCommand> {
    return { send: () => this.sendBatch() };
  }

  private checked(params: Record<string, unknown>): { request: LabelRequest; template: LabelTemplate } {
    const problems = labelRequestProblems(params, this.options.templates, this.host.now());
    if (problems.length > 0) throw new Error(problems.join('; '));
    const request = params as unknown as LabelRequest;
    return { request, template: this.options.templates[request.template]! };
  }

  private async print(params: Record<string, unknown>, transaction: string | number | null): Promise<unknown> {
    const { request, template } = this.checked(params);
    if (transaction !== null) {
      const first = this.jobStore.byTransaction('print', transaction);
      if (first) return this.answer(first);
    }
    let specimenId = request.specimen_id;
    const issued = specimenId === undefined;
    if (specimenId === undefined) {
      const { prefix, digits } = this.options.scheme;
      specimenId = formatSpecimenId(this.options.scheme, await this.jobStore.nextSequence(`specimen-id:${prefix}:${digits}`));
    }
    const { zpl } = renderLabel(request, template, specimenId);
    const summary: JobSummary = {
      specimen_id: specimenId,
      specimen_id_issued: issued,
      template: request.template,
      copies: request.copies ?? 1,
      reprint_of: null,
      reprint_at: reprintOffset(zpl, renderLabel(request, template, specimenId, { reprint: true }).zpl),
    };
    const job = await this.newJob(Buffer.from(zpl, 'latin1'), summary, transaction);
    return this.answer(job);
  }

  private async newJob(zpl: Buffer, summary: JobSummary, transaction: string | number | null): Promise<DeviceJob> {
    const id = randomBytes(16).toString('hex');
    const draft = this.draft(id, summary, 'queued', null, 0);
    await this.host.commit({ 'print-job': [draft] }, { kind: 'raw', bytes: zpl }, [
      { op: 'insert', job: { id, verb: 'print', transaction, state: 'queued', open: true, summary: { ...summary }, attempts: 0, reason: null } },
    ]);
    this.report.patch(this.queuePatch());
    setImmediate(() => this.pump());
    return this.jobStore.get(id)!;
  }

  private answer(job: DeviceJob): Record<string, unknown> {
    return { job: job.id, specimen_id: (job.summary as unknown as JobSummary).specimen_id, state: job.state };
  }

  private async preview(params: Record<string, unknown>): Promise<unknown> {
    const { request, template } = this.checked(params);
    // A preview issues no id: it shows where the id goes, with one that cannot be mistaken for an issued one.
    const specimenId = request.specimen_id ?? 'PREVIEW';
    const { zpl, cut } = renderLabel(request, template, specimenId);
    const [png] = await renderZplPng(zpl, template);
    return { png: png!.toString('base64'), width_mm: template.width_mm, height_mm: template.height_mm, dpmm: template.dpmm, cut };
  }

  private listJobs(params: Record<string, unknown>): unknown {
    const limit = typeof params.limit === 'number' ? params.limit : 20;
    const rows = params.open === true ? this.jobStore.open() : this.jobStore.recent(limit);
    return { jobs: rows.slice(0, limit).map((j) => this.view(j)) };
  }

  private view(j: DeviceJob): JobView {
    const s = j.summary as unknown as JobSummary;
    return { job: j.id, ...s, state: j.state, reason: j.reason, attempts: j.attempts, created_at: j.created_at, updated_at: j.updated_at };
  }

  private async cancel(id: string): Promise<unknown> {
    const job = this.jobStore.get(id);
    if (!job) throw new Error(`job: no job "${id}" on this printer`);
    if (job.state !== 'queued') throw new Error(`job: ${id} is ${job.state}; only a queued job can be cancelled`);
    await this.step(job, 'cancelled', 'cancelled on request', job.attempts);
    return { job: id, state: 'cancelled' };
  }

  private async confirm(id: string, printed: boolean): Promise<unknown> {
    const job = this.jobStore.get(id);
    if (!job) throw new Error(`job: no job "${id}" on this printer`);
    if (job.state !== 'uncertain') throw new Error(`job: ${id} is ${job.state}; only an uncertain job is confirmed`);
    if (printed) {
      await this.step(job, 'printed', 'confirmed printed by an operator', job.attempts);
      return { job: id, state: 'printed' };
    }
    // Not on the tube: print it again, the label marked REPRINT (the first may yet turn up).
    const first = job.summary as unknown as JobSummary;
    const zpl = this.jobStore.payload(job).toString('latin1');
    const reprinted = Buffer.from(first.reprint_at === null ? zpl : zpl.slice(0, first.reprint_at) + REPRINT_MARK + zpl.slice(first.reprint_at), 'latin1');
    const summary: JobSummary = { ...first, reprint_of: job.id, reprint_at: null };
    const again = await this.newJob(reprinted, summary, null);
    await this.step(job, 'failed', `an operator found it not printed; reprinted as job ${again.id}`, job.attempts);
    return { job: id, state: 'failed', reprint: this.answer(again) };
  }

  // ---- sending ---------------------------------------------------------------------------

  /** Sends queued jobs one at a time while the printer is reachable and reports no fault. */
  private pump(): void {
    if (this.stopped) return;
    if (this.pumping) {
      this.pumpAgain = true;
      return;
    }
    this.pumping = true;
    void (async () => {
      try {
        while (!this.stopped && this.transport.isOpen) {
          if (!this.jobStore.open().some((j) => j.state === 'queued')) break;
          const outcome = (await super.command('send', {}).catch(() => 'stopped')) as string;
          if (outcome !== 'done') break;
        }
      } finally {
        this.pumping = false;
        if (this.pumpAgain) {
          this.pumpAgain = false;
          setImmediate(() => this.pump());
        }
      }
    })();
  }

  /**
   * One conversation (in the queue, never beside a status poll): the queued jobs, oldest first and
   * at most `MAX_BATCH`, sent in one write. `done` lets the pump go on.
   *
   * 1. The status first: a fault leaves every job queued and unsent.
   * 2. `printing` for each, stored (one commit) before a byte is written: a crash from here on
   *    leaves them uncertain, never resent.
   * 3. The write, then `~HS` until the printer has no format left in its buffer and no label left
   *    in its batch (the labels are out), a fault, or the time a batch may take. Only the first is
   *    `printed`; anything else leaves the jobs `uncertain` with the reason.
   */
  private async sendBatch(): Promise<string> {
    const jobs = this.jobStore.open().filter((j) => j.state === 'queued').slice(0, MAX_BATCH);
    if (jobs.length === 0) return 'idle';
    let before: DeviceStatePatch;
    try {
      before = await this.readStatus();
    } catch (error) {
      // Silent or unreadable: nothing is sent; the state says why, and the next poll tries again.
      this.report.failed(error, 'device_error', this.stopped);
      return 'waiting';
    }
    this.report.patch({ ...before, last_seen: this.host.now().toISOString() });
    if (before.status !== 'ok') return 'waiting';
    const sent = jobs.map((job) => ({ ...job, attempts: job.attempts + 1 }));
    // The bytes as they go on the wire: the capture of these steps' records.
    const wire = Buffer.concat(sent.map((job) => this.jobStore.payload(job)));
    await this.steps(sent, 'printing', null, wire);
    this.report.patch({ status: 'printing', status_detail: null });
    try {
      await this.send(wire);
    } catch (error) {
      await this.steps(sent, 'uncertain', `the connection failed while the label was being sent (${(error as Error).message})`, wire);
      return 'uncertain';
    }
    const labels = sent.reduce((n, job) => n + (job.summary as unknown as JobSummary).copies, 0);
    const deadline = Date.now() + PRINT_WAIT_BASE_MS + labels * PRINT_WAIT_PER_LABEL_MS;
    for (;;) {
      let after: DeviceStatePatch;
      try {
        after = await this.readStatus();
      } catch (error) {
        await this.steps(sent, 'uncertain', `the label was sent but the printer did not confirm it (${(error as Error).message})`, wire);
        return 'uncertain';
      }
      this.report.patch({ ...after, last_seen: this.host.now().toISOString() });
      if (after.status !== 'ok') {
        // The format may be in the printer's buffer and print when the fault clears, or not at all.
        await this.steps(sent, 'uncertain', `the printer reported ${after.status_detail ?? 'a fault'} after the label was sent`, wire);
        return 'uncertain';
      }
      const p = after.printer ?? {};
      if (!p.formats_in_buffer && !p.labels_remaining) break;
      if (Date.now() > deadline) {
        await this.steps(sent, 'uncertain', `the printer still had ${p.formats_in_buffer ?? 0} formats and ${p.labels_remaining ?? 0} labels to print`, wire);
        return 'uncertain';
      }
      await new Promise((resolve) => setTimeout(resolve, PRINT_POLL_MS));
    }
    await this.steps(sent, 'printed', null, wire);
    return 'done';
  }

  // ---- records ---------------------------------------------------------------------------

  private draft(job: string, summary: JobSummary, state: PrintJobState, reason: string | null, attempts: number): PrintJobDraft {
    const s = this.report.state;
    return {
      key: `${job}:${attempts}:${state}`,
      device: {
        id: this.host.device.id,
        driver: ZEBRA_ZPL_DRIVER_ID,
        manufacturer: MANUFACTURER,
        model: s.model ?? 'ZPL printer',
        serial: null,
        firmware: s.firmware ?? null,
      },
      job,
      state,
      reason,
      specimen_id: summary.specimen_id,
      specimen_id_issued: summary.specimen_id_issued,
      template: summary.template,
      copies: summary.copies,
      reprint_of: summary.reprint_of,
      attempts,
      at: this.host.now().toISOString(),
    };
  }

  /** A job's next state: its record and the job row in one commit (before anyone hears of it). */
  private async step(job: DeviceJob, state: PrintJobState, reason: string | null, attempts: number): Promise<void> {
    await this.steps([{ ...job, attempts }], state, reason, this.jobStore.payload(job));
  }

  /** The next state of several jobs (`attempts` as given), in one commit whose capture is `bytes`. */
  private async steps(jobs: readonly DeviceJob[], state: PrintJobState, reason: string | null, bytes: Buffer): Promise<void> {
    const drafts = jobs.map((job) => this.draft(job.id, job.summary as unknown as JobSummary, state, reason, job.attempts));
    const writes = jobs.map((job) => ({ op: 'update' as const, id: job.id, state, open: OPEN_STATES.has(state), attempts: job.attempts, reason }));
    await this.host.commit({ 'print-job': drafts }, { kind: 'raw', bytes }, writes);
    this.report.patch(this.queuePatch());
    // An operator must look at the printer: said on the bridge's events too (ids and reasons only).
    if (state !== 'uncertain') return;
    for (const job of jobs) {
      const specimen = (job.summary as unknown as JobSummary).specimen_id;
      this.report.emit('device_error', `print job ${job.id} (specimen ${specimen}) is uncertain: ${reason ?? ''}; confirm it or reprint`, {
        reason: 'print-uncertain',
        job: job.id,
      });
    }
  }
}

const REPRINT_MARK = 'REPRINT';

/** The offset at which the two renderings differ by exactly the REPRINT mark; null when they do not. */
export function reprintOffset(first: string, reprint: string): number | null {
  if (reprint.length !== first.length + REPRINT_MARK.length) return null;
  let i = 0;
  while (i < first.length && first[i] === reprint[i]) i++;
  return reprint.slice(i, i + REPRINT_MARK.length) === REPRINT_MARK && reprint.slice(i + REPRINT_MARK.length) === first.slice(i) ? i : null;
}
