/** The simulator's options, for `poctd simulate dicom-ultrasound --help` (without loading the simulator). */
export const SIMULATOR_OPTION_HELP: Record<string, string> = {
  host: 'the DICOM node to send to (default 127.0.0.1)',
  port: 'its port (default 11112)',
  calling_ae: 'the AE title the simulator calls with (default US_SIM)',
  called_ae: "the node's AE title (default POCTD)",
  interval_s: 'send a new study every this many seconds (default 0: once)',
  export_dir: 'write each study as a USB export (DICOMDIR, DICOM/ST1/IM1…) under this folder instead of sending it',
};
