/**
 * The options of a CLINITEK Status reader's simulator, one line each: `poctd simulate --help` prints them and the
 * simulator refuses any other. Kept apart from simulator.ts so that the driver definition can
 * declare them without loading the simulator.
 */
import { CLINITEK_STATUS_LOCALES } from './locales.ts';

export const SIMULATOR_OPTION_HELP: Record<string, string> = {
  locale: `labels and words: ${Object.keys(CLINITEK_STATUS_LOCALES).join(' or ')} (default en)`,
  memory: 'records: [{seq, time: "YYYY-MM-DDTHH:MM:SS", operator?, patient?, strip?, colour?, clarity?, results: [{code, value, abnormal?}] | error: "E58"}]',
  no_error_record: 'true: leave the E58 error record out of the stored samples',
  line_end: 'cr, crlf or lf after each record (default crlf)',
  send_delay_ms: 'send all records this many ms after the port opens (default 300; -1: not on open)',
  send_all_every_s: 'press "Send all data" again every N seconds',
  new_record_every_s: 'add a new random strip every N seconds (sent with the next "Send all data")',
  garbage: 'true: a line of noise between records',
  truncate_last: 'true: cut the last record short, with no line end',
  max_chunk: 'largest write in bytes; chunk sizes are random from 1 to this (default 16)',
  seed: 'random seed for reproducible runs',
  timezone: "IANA zone of the reader's clock, for new records (default: the host's)",
};
