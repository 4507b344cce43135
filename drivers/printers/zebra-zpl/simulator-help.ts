/** The simulator's options, for `poctd simulate zebra-zpl --help` (kept apart so the daemon does not load the simulator). */
export const SIMULATOR_OPTION_HELP: Record<string, string> = {
  model: 'what ~HI reports as the model (default ZD421-203dpi)',
  firmware: 'what ~HI reports as the firmware (default V93.21.26Z)',
  dpmm: 'dots per millimetre ~HI reports: 6, 8, 12 or 24 (default 8)',
  paper_out: 'start out of paper (true/false)',
  head_open: 'start with the head open',
  ribbon_out: 'start with the ribbon out',
  paused: 'start paused',
  labels_dir: 'a folder where each format printed is written as label-<n>.zpl and rendered as label-<n>.png',
  hs_when_faulted: 'answer ~HS even in MEDIA OUT / HEAD OPEN / RIBBON OUT (default false: silent, as the manual says)',
};
