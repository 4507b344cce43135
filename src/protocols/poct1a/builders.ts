/**
 * The messages the data manager sends to a POCT1-A device, built as the DCA Vantage capture shows
 * them (`../shared/fixtures/poct1a/`, research note §4.6): a UTF-8 prolog, the root, an `HDR`
 * with `HDR.message_type`, `HDR.control_id` (our own counter), `HDR.version_id` `POCT1` and
 * `HDR.creation_dttm` with its offset, then the body with every value in a `V` attribute.
 *
 * What the device can receive is capped by its `DSC.max_message_sz` (a Sofia announces 1000
 * bytes): a list (operators) is split over as many messages as it needs, each within the cap, and
 * a message that cannot be made to fit is an Error, never sent over size.
 *
 * Element names the capture shows: ACK.type_cd, ACK.ack_control_id, REQ.request_cd,
 * DTV.command_cd, EOT.topic_cd, EOT.eot_control_id, OPR.operator_id, ACC.password (ENC="B64"),
 * ACC.permission_level_cd. From the message catalogue (§4.2) without a capture: TRM.reason_cd,
 * TM.dttm, ESC.reason_cd. `ACK.note_txt`, `ESC.note_txt` and `OPR.name` are this project's
 * reading of the standard's naming; a device that does not know them ignores them.
 */
import { naiveToZoned, nowInZone } from '../../util/time.ts';

export const POCT1_VERSION = 'POCT1';
export const PROLOG = '<?xml version="1.0" encoding="utf-8"?>';

export function escapeXml(text: string): string {
  return text.replace(/[<>&"']/g, (c) => ({ '<': '&lt;', '>': '&gt;', '&': '&amp;', '"': '&quot;', "'": '&apos;' })[c]!);
}

/** `<name V="value"/>`, with more attributes when given; nothing for a null value. */
export function leaf(name: string, v: string | number | null | undefined, extra: Record<string, string> = {}): string {
  if (v === null || v === undefined) return '';
  const attrs = Object.entries({ V: String(v), ...extra })
    .map(([k, x]) => ` ${k}="${escapeXml(x)}"`)
    .join('');
  return `<${name}${attrs}/>`;
}

export function wrap(name: string, ...inner: string[]): string {
  return `<${name}>${inner.join('')}</${name}>`;
}

/** A device-facing time: the daemon's wall clock in `timezone`, with its offset. */
export function poctTime(now: Date, timezone: string): string {
  return naiveToZoned(nowInZone(timezone, now), timezone);
}

export interface HeaderFields {
  controlId: number;
  now: Date;
  timezone: string;
}

/** A whole message: prolog, root, HDR, body. */
export function message(root: string, h: HeaderFields, body: string, messageType = root): Buffer {
  const hdr = wrap(
    'HDR',
    leaf('HDR.message_type', messageType),
    leaf('HDR.control_id', h.controlId),
    leaf('HDR.version_id', POCT1_VERSION),
    leaf('HDR.creation_dttm', poctTime(h.now, h.timezone)),
  );
  return Buffer.from(`${PROLOG}<${root}>${hdr}${body}</${root}>`, 'utf8');
}

export type AckType = 'AA' | 'AE' | 'AR';

/** ACK.R01: AA accepted, AE error (send again), AR rejected (do not). A reason goes with AE/AR. */
export function ackMessage(h: HeaderFields, ackControlId: string, type: AckType, note?: string | null): Buffer {
  return message('ACK.R01', h, wrap('ACK', leaf('ACK.type_cd', type), leaf('ACK.ack_control_id', ackControlId), leaf('ACK.note_txt', note ? note.slice(0, 200) : null)));
}

export function requestMessage(h: HeaderFields, requestCd: string): Buffer {
  return message('REQ.R01', h, wrap('REQ', leaf('REQ.request_cd', requestCd)));
}

/** DTV.R01, a basic directive (`START_CONTINUOUS`, a vendor's `FORCE_NORMAL`...). */
export function directiveMessage(h: HeaderFields, commandCd: string, attrs: Record<string, string> = {}): Buffer {
  return message('DTV.R01', h, wrap('DTV', leaf('DTV.command_cd', commandCd, attrs)));
}

/** DTV.R02 SET_TIME: the device's clock to `dttm` (the daemon's clock, with its offset). */
export function setTimeMessage(h: HeaderFields, dttm: string): Buffer {
  return message('DTV.R02', h, wrap('DTV', leaf('DTV.command_cd', 'SET_TIME')) + wrap('TM', leaf('TM.dttm', dttm)));
}

/** END.R01: the manager ends the conversation (`NRM` normal). */
export function endMessage(h: HeaderFields, reasonCd = 'NRM'): Buffer {
  return message('END.R01', h, wrap('TRM', leaf('TRM.reason_cd', reasonCd)));
}

/** ESC.R01: the manager cannot handle what the device sent (an unknown message, a list it cannot take). */
export function escapeMessage(h: HeaderFields, reasonCd: string, note?: string | null): Buffer {
  return message('ESC.R01', h, wrap('ESC', leaf('ESC.reason_cd', reasonCd), leaf('ESC.note_txt', note ? note.slice(0, 200) : null)));
}

export function endOfTopicMessage(h: HeaderFields, topicCd: string, eotControlId?: string | number): Buffer {
  return message('EOT.R01', h, wrap('EOT', leaf('EOT.topic_cd', topicCd), leaf('EOT.eot_control_id', eotControlId ?? null)));
}

export function keepAliveMessage(h: HeaderFields): Buffer {
  return message('KPA.R01', h, '');
}

/** One operator as an operator list carries it. */
export interface OperatorEntry {
  id: string;
  name?: string | null;
  /** Sent base64 with `ENC="B64"`, as the DCA tooling does. */
  password?: string | null;
  /** `ACC.permission_level_cd` (the DCA tooling sends `1`). */
  permission?: string | null;
}

export function operatorXml(o: OperatorEntry): string {
  const acc =
    o.password || o.permission
      ? wrap(
          'ACC',
          leaf('ACC.method_cd', o.password ? 'PASSWORD' : null),
          leaf('ACC.password', o.password ? Buffer.from(o.password, 'utf8').toString('base64') : null, { ENC: 'B64' }),
          leaf('ACC.permission_level_cd', o.permission ?? null),
        )
      : '';
  return wrap('OPR', leaf('OPR.operator_id', o.id), leaf('OPR.name', o.name ?? null), acc);
}

/**
 * An operator list as OPL messages, each within `maxBytes`: complete (`OPL.R01`: the device's
 * list is replaced by the messages up to the EOT) or incremental (`OPL.R02`). `nextControlId`
 * numbers each message. Throws when one operator alone does not fit, or `maxBytes` is too small
 * for an empty list message.
 */
export function operatorListMessages(
  operators: readonly OperatorEntry[],
  opts: { incremental: boolean; maxBytes: number; now: Date; timezone: string; nextControlId: () => number },
): Buffer[] {
  const root = opts.incremental ? 'OPL.R02' : 'OPL.R01';
  const items = operators.map(operatorXml);
  const out: Buffer[] = [];
  // Sized with the largest control id it could carry, so the real one never makes it bigger.
  const sizeOf = (body: string): number => message(root, { controlId: 999_999_999, now: opts.now, timezone: opts.timezone }, body).length;
  if (sizeOf('') > opts.maxBytes) throw new Error(`the device takes messages of ${opts.maxBytes} bytes; an empty operator list needs ${sizeOf('')}`);
  let batch: string[] = [];
  const flush = (): void => {
    out.push(message(root, { controlId: opts.nextControlId(), now: opts.now, timezone: opts.timezone }, batch.join('')));
    batch = [];
  };
  for (const item of items) {
    if (sizeOf(item) > opts.maxBytes) throw new Error(`an operator entry needs ${sizeOf(item)} bytes; the device takes messages of ${opts.maxBytes}`);
    if (batch.length > 0 && sizeOf([...batch, item].join('')) > opts.maxBytes) flush();
    batch.push(item);
  }
  if (batch.length > 0 || out.length === 0) flush();
  return out;
}
