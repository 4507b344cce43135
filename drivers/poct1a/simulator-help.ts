/** The simulator's options, for `poctd simulate poct1a --help` (kept apart so help never loads the simulator). */
export const SIMULATOR_OPTIONS: Record<string, string> = {
  scenario: 'dca-vantage (default) or glucose',
  device_id: 'DEV.device_id the HEL names (default from the scenario, e.g. "SIEM^DCA Vantage^S000001")',
  serial: 'DEV.serial_id (default S000001 / GM000001)',
  count: 'patient observations to send (default 1)',
  qc: 'with scenario glucose: also send the QC runs (default true)',
  fault: 'none (default), bad-xml, duplicate-control-id, huge-message, drop-before-ack, drop-mid-message, doctype',
  busy_once: 'answer the first REQ with ESC CNC (busy) (default false)',
  refuse_continuous: 'answer START_CONTINUOUS with ESC (default false)',
  end_after_escape: 'with refuse_continuous: end the conversation itself right after its ESC (END.R01), as some devices do (default false)',
  clock_offset_s: 'the device clock is this many seconds off the real one (default 0)',
  timezone: 'the device clock zone (default Europe/Copenhagen)',
  max_chunk: 'write each message in pieces of at most this many bytes (default whole)',
};
