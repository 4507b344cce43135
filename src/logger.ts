import pino, { type Logger } from 'pino';

/**
 * Paths that can hold patient data anywhere in a log object. pino censors them before a line is
 * written, so a careless `log.info({ record }, …)` still cannot leak a patient id.
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
  'dob',
  '*.dob',
  'date_of_birth',
  '*.date_of_birth',
  'birth_date',
  '*.birth_date',
  'specimen.id',
  '*.specimen.id',
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
      redact: { paths: REDACTED_PATHS, censor: '[redacted]' },
      timestamp: pino.stdTimeFunctions.isoTime,
    },
    destination,
  );
}

/** A component's logger: `component` appears on every line it writes. */
export function componentLogger(root: Logger, component: string): Logger {
  return root.child({ component });
}
