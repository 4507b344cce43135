import pino, { type Logger } from 'pino';

/**
 * No patient identifier may reach a log line, however deep a careless `log.info({ batch }, …)`
 * nests it. Two layers do this:
 *
 * - `scrubForLog` walks every log object and every child logger's bindings before pino writes them
 *   and censors the values of patient-data and secret keys at any depth, in arrays too, without
 *   touching the caller's objects (a record passed to a log call stays intact);
 * - pino's own `redact` with `REDACTED_PATHS` censors the same keys at the shallow positions where
 *   a serializer's output (e.g. an error's own properties) could still carry them.
 */

/**
 * Key names (compared lowercase, without `_` and `-`) whose value is patient data or a secret
 * wherever it appears: `patient`, `patient_id`, `patientId`, `date_of_birth`, `password`, …
 */
const SENSITIVE_KEYS = new Set([
  'patient',
  'patientid',
  'patientname',
  'nameofpatient',
  'mrn',
  'dob',
  'dateofbirth',
  'birthdate',
  'specimenid',
  'rawtext',
  'password',
  'passwd',
  'passphrase',
]);

/** Mappings whose `id` identifies a patient's sample (`specimen.id`, `record.specimen.id`, …). */
const ID_BEARING_PARENTS = new Set(['specimen', 'patient']);

const CENSOR = '[redacted]';

function normalizeKey(key: string): string {
  return key.toLowerCase().replace(/[_-]/g, '');
}

/** Whether a mapping entry's value must be censored; `parentKey` is the key the mapping sits under. */
export function isSensitiveKey(key: string, parentKey?: string): boolean {
  if (SENSITIVE_KEYS.has(normalizeKey(key))) return true;
  return key === 'id' && parentKey !== undefined && ID_BEARING_PARENTS.has(normalizeKey(parentKey));
}

/**
 * A copy of `value` with every sensitive key's value censored, at any depth and inside arrays.
 * Returns `value` itself when nothing needed censoring (the common case costs no allocation), and
 * never mutates it. Values that serialize themselves (`toJSON`: Date, Buffer) are left as they are;
 * a reference back to an enclosing object becomes `[Circular]`, as pino's safe stringifier writes it.
 */
export function scrubForLog<T>(value: T): T {
  return scrub(value, undefined, new Set()) as T;
}

function scrub(value: unknown, parentKey: string | undefined, ancestors: Set<object>): unknown {
  if (value === null || typeof value !== 'object') return value;
  // A back-reference would lead the stringifier into the original, uncensored object.
  if (ancestors.has(value)) return '[Circular]';
  if (typeof (value as { toJSON?: unknown }).toJSON === 'function') return value;
  if (ArrayBuffer.isView(value) || value instanceof ArrayBuffer) return value;
  ancestors.add(value);
  try {
    if (Array.isArray(value)) {
      let out: unknown[] | undefined;
      value.forEach((item, i) => {
        // An element sits under the array's key: `specimen: [{ id }]` is censored like `specimen.id`.
        const next = scrub(item, parentKey, ancestors);
        if (next !== item) {
          out ??= value.slice();
          out[i] = next;
        }
      });
      return out ?? value;
    }
    let out: Record<string, unknown> | undefined;
    for (const key of Object.keys(value)) {
      const item = (value as Record<string, unknown>)[key];
      const next = isSensitiveKey(key, parentKey) && item !== undefined && item !== null ? CENSOR : scrub(item, key, ancestors);
      if (next !== item) {
        out ??= copyOf(value);
        out[key] = next;
      }
    }
    return out ?? value;
  } finally {
    ancestors.delete(value);
  }
}

/** A shallow copy that keeps what JSON and pino's error serializer see (an Error stays an Error). */
function copyOf(value: object): Record<string, unknown> {
  if (value instanceof Error) {
    const copy = Object.create(Object.getPrototypeOf(value) as object) as Error & Record<string, unknown>;
    Object.defineProperty(copy, 'message', { value: value.message, enumerable: false, writable: true, configurable: true });
    Object.defineProperty(copy, 'stack', { value: value.stack, enumerable: false, writable: true, configurable: true });
    return Object.assign(copy, value);
  }
  return { ...(value as Record<string, unknown>) };
}

/**
 * The same keys as pino redact paths, for the shallow positions (pino's `*` also matches array
 * indexes, so `*.*.patient` covers `records[0].patient`).
 */
export const REDACTED_PATHS = [
  'patient',
  '*.patient',
  '*.*.patient',
  'patient_id',
  '*.patient_id',
  'patient_name',
  '*.patient_name',
  'name',
  '*.name_of_patient',
  'mrn',
  '*.mrn',
  'dob',
  '*.dob',
  'date_of_birth',
  '*.date_of_birth',
  'birth_date',
  '*.birth_date',
  'specimen.id',
  '*.specimen.id',
  'specimen_id',
  '*.specimen_id',
  'raw_text',
  '*.raw_text',
  'password',
  '*.password',
];

export type { Logger };

export function createLogger(level: string = 'info', destination?: pino.DestinationStream): Logger {
  return pino(
    {
      level,
      base: { app: 'poctd' },
      redact: { paths: REDACTED_PATHS, censor: CENSOR },
      formatters: {
        log: (object) => scrubForLog(object),
        bindings: (bindings) => scrubForLog(bindings),
      },
      timestamp: pino.stdTimeFunctions.isoTime,
    },
    destination,
  );
}

/** A component's logger: `component` appears on every line it writes. */
export function componentLogger(root: Logger, component: string): Logger {
  return root.child({ component });
}

/** Where and how the daemon logs (`log` in the config). */
export interface LogSettings {
  level: string;
  /** `json` (default): one JSON object a line; `pretty`: pino-pretty's coloured lines for a terminal. */
  format?: 'json' | 'pretty';
  /** Also written, as JSON lines, to a file rotated by size and/or daily, keeping `count` old files. */
  file?: { path: string; size?: string | number; frequency?: 'daily' | 'hourly'; count?: number };
}

/** pino-pretty's stream factory, as the optional package exports it. */
export type PrettyFactory = (options: { colorize?: boolean; translateTime?: string; ignore?: string; sync?: boolean; destination?: number | pino.DestinationStream }) => pino.DestinationStream;

/** How many rotated files `log.file` keeps beside the active one when `count` is not given. */
export const LOG_FILES_KEPT = 7;

export interface DaemonLogger {
  log: Logger;
  /** Said once the logger exists (e.g. that `pretty` was asked but pino-pretty is missing). */
  notices: string[];
  /** Flushes and closes the log file (the stdout stream stays). */
  close(): Promise<void>;
}

/** Loads the optional pino-pretty; undefined when it is not installed. */
async function loadPinoPretty(): Promise<PrettyFactory | undefined> {
  try {
    const module = (await import('pino-pretty')) as unknown as { default: PrettyFactory };
    return module.default;
  } catch (error) {
    const code = (error as { code?: string }).code;
    if (code === 'ERR_MODULE_NOT_FOUND' || code === 'MODULE_NOT_FOUND') return undefined;
    throw error;
  }
}

/**
 * The daemon's logger for its `log` settings. Every output gets the same lines: pino censors
 * (`scrubForLog`, `redact`) before it serializes, so stdout, pretty and the file each receive
 * text that is already redacted. pino-pretty is optional: when `pretty` is asked and it is not
 * installed, the log stays JSON and a notice says why.
 */
export async function createDaemonLogger(
  settings: LogSettings,
  options: { stdout?: pino.DestinationStream; loadPretty?: () => Promise<PrettyFactory | undefined> } = {},
): Promise<DaemonLogger> {
  const notices: string[] = [];
  let stdout: pino.DestinationStream = options.stdout ?? pino.destination(1);
  if (settings.format === 'pretty') {
    const pretty = await (options.loadPretty ?? loadPinoPretty)();
    if (pretty) {
      stdout = pretty({
        colorize: options.stdout ? false : process.stdout.isTTY,
        translateTime: 'SYS:HH:MM:ss.l',
        ignore: 'pid,hostname,app',
        destination: options.stdout ?? 1,
      });
    } else {
      notices.push('log.format: pretty needs the optional package pino-pretty, which is not installed (npm install pino-pretty); logging JSON lines instead');
    }
  }
  if (!settings.file) return { log: createLogger(settings.level, stdout), notices, close: async () => undefined };

  // pino-roll ships no types: its one export is declared here, where it is used.
  const rollModule = 'pino-roll';
  const { default: roll } = (await import(rollModule)) as { default: (options: Record<string, unknown>) => Promise<RollStream> };
  const { path, size, frequency, count } = settings.file;
  const file = await roll({ file: path, mkdir: true, ...(size !== undefined ? { size } : {}), ...(frequency ? { frequency } : {}), limit: { count: count ?? LOG_FILES_KEPT } });
  const streams = pino.multistream([
    { level: 'trace', stream: stdout },
    { level: 'trace', stream: file },
  ]);
  const log = createLogger(settings.level, streams);
  return {
    log,
    notices,
    close: () =>
      new Promise<void>((resolve) => {
        file.once('close', () => resolve());
        file.end();
      }),
  };
}

/** The SonicBoom stream pino-roll writes through. */
interface RollStream extends pino.DestinationStream {
  end(): void;
  once(event: 'close', listener: () => void): void;
}
