/**
 * The options of a Contour Next meter's simulator, one line each: `poctd simulate --help` prints them and the
 * simulator refuses any other. Kept apart from simulator.ts so that the driver definition can
 * declare them without loading the simulator.
 */
export const SIMULATOR_OPTION_HELP: Record<string, string> = {
  serial: 'serial number as the H record carries it (default 7410-1234567)',
  model_code: 'model code in the H record sender (default 7410, Contour Next USB)',
  firmware: 'software versions, separated by / (default 01.14/01.03/04.18)',
  unit: 'meter unit: mg/dL or mmol/L (values are sent in it; mmol/L with one decimal)',
  clock_offset_s: 'meter clock minus the true time, in seconds (default 0)',
  memory: 'readings: [{time: "YYYY-MM-DDTHH:MM", value, control?, lo?, hi?, markers?: ["B"|"A"|"F"|"Z4"|...]}]',
  off: 'true: never answer (meter not in data-transfer mode)',
  corrupt_next: 'send the next N frames with a wrong checksum (NAKed, then sent again)',
  stop_after_frames: 'stop sending after N frames of a transfer (a meter that hangs)',
  once_per_plug: 'true: one transfer per plug-in, as the real meter; later pokes get no ENQ',
  extra_records: 'records (text) inserted before the L record, e.g. ["Q|1|x"]',
  random_cuts: 'true: reports carry a random 1-60 bytes, cutting frames anywhere',
  refuse_clock_set: 'true: NAK the date and time writes and keep the clock, as a Contour Next Link paired with a pump refuses the date',
  timezone: "IANA zone of the meter's naive clock (default: the host's)",
  seed: 'random seed for reproducible runs',
};
