/**
 * The options of a LifeScan binary-protocol meter's simulator, one line each: `poctd simulate --help` prints them and the
 * simulator refuses any other. Kept apart from simulator.ts so that the driver definition can
 * declare them without loading the simulator.
 */
export const SIMULATOR_OPTION_HELP: Record<string, string> = {
  serial: 'serial number (printable ASCII)',
  firmware: 'firmware version text, e.g. "P02.00.00"',
  unit: 'display unit: mg/dL or mmol/L (readings stay mg/dL on the wire)',
  clock_offset_s: 'meter clock minus the true time, in seconds (default 0)',
  memory: 'readings: [{time: "YYYY-MM-DDTHH:MM:SS", value: mg/dL | "HI" | "LO", control?, meal?: none|before|after}]',
  off: 'true: the meter answers nothing (off, asleep or not in the cable)',
  corrupt_next: 'send the next N frames with a wrong CRC',
  timezone: "IANA zone of the meter's naive clock (default: the host's)",
  max_chunk: 'largest write in bytes; chunk sizes are random from 1 to this (default 16)',
  frame_delay_ms: 'pause before each frame in ms (default 0)',
  seed: 'random seed for reproducible runs',
};
