/**
 * The options of a OneTouch Ultra 2's simulator, one line each: `poctd simulate --help` prints them and the
 * simulator refuses any other. Kept apart from simulator.ts so that the driver definition can
 * declare them without loading the simulator.
 */
export const SIMULATOR_OPTION_HELP: Record<string, string> = {
  serial: 'serial number, 9 characters ending in Y (default GMF600DCY)',
  firmware: 'DM? reply text (default "P02.00.00 30/08/06")',
  unit: 'display unit: mg/dL or mmol/L (readings stay mg/dL on the wire)',
  clock_offset_s: 'meter clock minus the true time, in seconds (default 0)',
  memory: 'readings: [{time: "YYYY-MM-DDTHH:MM:SS", value, control?, meal?: N|B|A, comment?: 0-11}]',
  new_reading_every_s: 'add a new reading every N seconds, about 1 in 10 a control run',
  capacity: 'readings kept before the oldest is dropped (default 500, as the real meter)',
  off: 'true: never answer; "nul": answer with a single 0x00 byte (meter on or not in the cable)',
  corrupt_next: 'send the next N lines with a wrong checksum',
  timezone: "IANA zone of the meter's naive clock (default: the host's)",
  max_chunk: 'largest write in bytes; chunk sizes are random from 1 to this (default 16)',
  line_delay_ms: 'pause before each line in ms (default 0)',
  seed: 'random seed for reproducible runs',
};
