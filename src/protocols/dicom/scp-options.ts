/**
 * The `dicom-scp` transport's options (config `devices[].transport`), their JSON Schema and the
 * checks a schema cannot state. Kept apart from the SCP itself so validating a config loads no
 * network code.
 */
import { isIP } from 'node:net';
import type { TransportOptionProblem } from '../../transports/registry.ts';

export interface DicomScpTransportOptions {
  type: 'dicom-scp';
  /** The port the SCP listens on; several devices may share it, told apart by calling AE title. */
  port: number;
  /** Default 127.0.0.1: a clinic network is opted into by naming its interface's address. */
  bind?: string;
  /** Our AE title, the one the device calls. Default POCTD. */
  ae_title?: string;
  /** The calling AE titles that are this device (required: an unknown caller is rejected). */
  allowed_callers: string[];
  /** IP addresses this device may call from; absent = any address. */
  allowed_addresses?: string[];
  /** The maximum PDU length announced and enforced. Default 262144. */
  max_pdu_length?: number;
  /** Associations open at once on the port. Default 16. */
  max_associations?: number;
  /** A data set is refused (0xA700) when the store's disk has less free space than this. Default 512. */
  min_free_mb?: number;
  /** No PDU for this long during an association: A-ABORT. Default 60000. */
  idle_timeout_ms?: number;
  /** A data set longer than this is refused (0xA700) and not kept. Default 4096. */
  max_object_mb?: number;
}

declare module '../../transports/transport.ts' {
  interface TransportOptionsByKind {
    'dicom-scp': DicomScpTransportOptions;
  }
}

const AE_TITLE = { type: 'string', minLength: 1, maxLength: 16, pattern: '^[\\x20-\\x5b\\x5d-\\x7e]*[\\x21-\\x5b\\x5d-\\x7e][\\x20-\\x5b\\x5d-\\x7e]*$' };

export const DICOM_SCP_SCHEMA: Record<string, unknown> = {
  type: 'object',
  additionalProperties: false,
  required: ['type', 'port', 'allowed_callers'],
  properties: {
    type: { const: 'dicom-scp' },
    port: { type: 'integer', minimum: 1, maximum: 65535, description: 'the port the C-STORE SCP listens on' },
    bind: { type: 'string', minLength: 1, description: 'listening address (default 127.0.0.1)' },
    ae_title: { ...AE_TITLE, description: 'the AE title the device calls (default POCTD)' },
    allowed_callers: { type: 'array', minItems: 1, items: AE_TITLE, description: 'calling AE titles that are this device' },
    allowed_addresses: { type: 'array', items: { type: 'string' }, description: 'IP addresses the device may call from (absent: any)' },
    max_pdu_length: { type: 'integer', minimum: 4096, maximum: 16777216, description: 'maximum PDU length announced and enforced (default 262144)' },
    max_associations: { type: 'integer', minimum: 1, maximum: 1024, description: 'associations open at once on the port (default 16)' },
    min_free_mb: { type: 'integer', minimum: 0, description: 'refuse a data set (0xA700) below this much free disk (default 512)' },
    idle_timeout_ms: { type: 'integer', minimum: 1000, description: 'an association silent this long is aborted (default 60000)' },
    max_object_mb: { type: 'integer', minimum: 1, description: 'a data set longer than this is refused with 0xA700 and not kept (default 4096)' },
  },
};

export function dicomScpOptionProblems(options: Record<string, unknown>): TransportOptionProblem[] {
  const out: TransportOptionProblem[] = [];
  if (Array.isArray(options.allowed_addresses)) {
    options.allowed_addresses.forEach((a, i) => {
      if (typeof a === 'string' && !isIP(a.trim())) out.push({ field: `allowed_addresses[${i}]`, message: `${JSON.stringify(a)} is not an IP address` });
    });
  }
  if (Array.isArray(options.allowed_callers)) {
    const seen = new Map<string, number>();
    options.allowed_callers.forEach((c, i) => {
      if (typeof c !== 'string') return;
      const key = c.trim();
      const first = seen.get(key);
      if (first !== undefined) out.push({ field: `allowed_callers[${i}]`, message: `duplicate of allowed_callers[${first}]` });
      else seen.set(key, i);
    });
  }
  return out;
}
