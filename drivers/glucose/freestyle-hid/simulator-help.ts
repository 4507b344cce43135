/**
 * The options of a FreeStyle HID meter's simulator, one line each: `poctd simulate --help` prints them and the
 * simulator refuses any other. Kept apart from simulator.ts so that the driver definition can
 * declare them without loading the simulator.
 */
export const SIMULATOR_OPTION_HELP: Record<string, string> = {
  model: 'insulinx (default), neo, libre, libre-pro or libre2 (libre2 answers encrypted noise)',
  serial: 'serial number (default JAGT241-U6242-like per model)',
  firmware: 'software version (default 1.40)',
  clock_offset_s: 'meter clock minus the true time, in seconds (default 0)',
  memory: 'records: [{time: "YYYY-MM-DDTHH:MM:SS", kind?: glucose|ketone|scan|history, value: mg/dL | mmol/L (ketone) | "HI" | "LO", control?, error?}]',
  corrupt_next: 'send the next N text replies with a wrong CKSM checksum',
  keepalive_every: 'send a 0x22 keep-alive report after every N reports (default 3; 0 = none)',
  max_payload: 'largest payload per report, 1-62 (default 62); replies are cut there, even mid-token',
  off: 'true: never answer',
  report_delay_ms: 'pause between reports in ms (default 0)',
  patient_name: "the patient name the meter holds (patient data; the driver never asks for it)",
  patient_id: "the patient id the meter holds (patient data; the driver never asks for it)",
  timezone: "IANA zone of the meter's naive clock (default: the host's)",
  seed: 'random seed for reproducible runs',
};
