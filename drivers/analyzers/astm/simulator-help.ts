/**
 * The options of an ASTM instrument's simulator, one line each: `poctd simulate --help` prints them and the
 * simulator refuses any other. Kept apart from simulator.ts so that the driver definition can
 * declare them without loading the simulator.
 */
import { DIALECTS } from './dialects/index.ts';

export const SIMULATOR_OPTION_HELP: Record<string, string> = {
  dialect: `whose messages to send: ${DIALECTS.map((d) => d.id).join(', ')} (default roche-cobas-c111)`,
  sender: "the H-5 sender field of generated messages (components by ^; default: the dialect's), to play one of several analyzers on one port",
  serial: "the serial in the dialect's sender (default: derived from the device id, so each simulated analyzer is its own); ignored when sender is set",
  messages: 'messages to send instead: a list of strings, records separated by \\r or \\n (H … L)',
  count: 'generated messages sent when the link opens (default 1)',
  every_s: 'send another generated message every N seconds',
  control: 'true: generated messages are QC runs (O-12 = Q)',
  framing: 'record-etx | record-etb | single | split (default record-etb)',
  split_at: 'text bytes per frame for split and for long records (default 240)',
  lowercase_checksum: 'true: checksums in lowercase hex',
  corrupt_frame: 'N: corrupt frame N (1-based, counted over the session) once; the host must NAK it',
  max_chunk: 'largest write in bytes; chunk sizes are random from 1 to this (default: whole frames)',
  never_eot: 'true: never send EOT after a message',
  stall_after_frames: 'N: stop in silence after N frames of the first message (no EOT)',
  reply_timeout_ms: 'how long to wait for ACK/NAK (default 15000)',
  seed: 'random seed for reproducible runs',
  encoding: 'utf-8 | latin1: how text is written (default utf-8)',
  timezone: "IANA zone of the instrument's clock, for generated messages (default: the host's)",
};
