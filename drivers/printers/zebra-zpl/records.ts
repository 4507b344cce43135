/**
 * What a printer's replies say, as device state: the decoder `poctd replay` and the golden tests
 * run over a capture of a status conversation, and the patches the live session publishes. A
 * printer makes no records of its own (its print jobs are the daemon's), so a decode gives no
 * drafts: only the state and the problems.
 */
import type { Capture, DecodeIssue, DecodeResult, DeviceStatePatch } from '../../../src/driver-sdk/index.ts';
import { mergePatch } from '../../../src/driver-sdk/meter-session.ts';
import { deviceBytes } from '../../../src/driver-sdk/capture.ts';
import {
  errorStatusPatch,
  hostStatusFault,
  parseErrorStatus,
  parseHostIdentification,
  parseHostStatus,
  StatusReplyError,
  ZebraReplyFramer,
  type ErrorStatus,
  type HostIdentification,
  type HostStatus,
} from '../../../src/protocols/zpl/status.ts';

export const ZEBRA_ZPL_DRIVER_ID = 'zebra-zpl';
export const MANUFACTURER = 'Zebra Technologies';

/** The state a `~HS` reply gives: the flags, and status `fault` with the reason when one stops printing. */
export function hostStatusPatch(s: HostStatus): DeviceStatePatch {
  const { partial_format: _partial, ...printer } = s;
  const fault = hostStatusFault(s);
  return { status: fault ? 'fault' : 'ok', status_detail: fault, printer };
}

/** The state a `~HQES` reply gives (asked when `~HS` is silent): the error bits, fault when any is set. */
export function errorStatusStatePatch(s: ErrorStatus): DeviceStatePatch {
  const fault = s.errors.present || s.errors.group1 !== 0 ? s.errors.texts.join(', ') || 'error reported (no known bit)' : null;
  return { status: fault ? 'fault' : 'ok', status_detail: fault, printer: errorStatusPatch(s) };
}

export function identificationPatch(id: HostIdentification): DeviceStatePatch {
  return { model: id.model, firmware: id.firmware };
}

/** The reply blocks of a capture, each decoded by its shape (a ~HS reply is three comma strings). */
export function decodeStatusBlocks(blocks: readonly string[]): { patch: DeviceStatePatch; issues: DecodeIssue[]; identification: HostIdentification | null } {
  const patch: DeviceStatePatch = {};
  const issues: DecodeIssue[] = [];
  let identification: HostIdentification | null = null;
  for (let i = 0; i < blocks.length; i++) {
    const block = blocks[i]!;
    try {
      if (/PRINTER STATUS/.test(block)) {
        mergePatch(patch, errorStatusStatePatch(parseErrorStatus(block)));
      } else if (block.split(',').length === 12) {
        // String 1 of a ~HS reply: the next two blocks are its strings 2 and 3, good or bad.
        const strings = blocks.slice(i, i + 3);
        i += 2;
        mergePatch(patch, hostStatusPatch(parseHostStatus(strings)));
      } else {
        identification = parseHostIdentification(block);
        mergePatch(patch, identificationPatch(identification));
      }
    } catch (error) {
      if (!(error instanceof StatusReplyError)) throw error;
      issues.push({ reason: error.message, bytes: Buffer.from(block, 'latin1') });
    }
  }
  return { patch, issues, identification };
}

export function decodeZebraCapture(capture: Capture): DecodeResult {
  const framer = new ZebraReplyFramer();
  const blocks: string[] = [];
  const issues: DecodeIssue[] = [];
  for (const item of framer.push(deviceBytes(capture))) {
    if (item.kind === 'block') blocks.push(item.text);
    else issues.push({ reason: item.reason, bytes: item.bytes });
  }
  const decoded = decodeStatusBlocks(blocks);
  issues.push(...decoded.issues);
  const id = decoded.identification;
  return {
    drafts: {},
    issues,
    device: id ? { manufacturer: MANUFACTURER, model: id.model, firmware: id.firmware } : {},
    state: decoded.patch,
  };
}
