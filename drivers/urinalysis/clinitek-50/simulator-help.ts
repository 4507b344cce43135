/**
 * The options of a CLINITEK 50 reader's simulator, one line each: `poctd simulate --help` prints them and the
 * simulator refuses any other. Kept apart from simulator.ts so that the driver definition can
 * declare them without loading the simulator.
 */
import { CLINITEK_50_LOCALES } from './locales.ts';

export const SIMULATOR_OPTION_HELP: Record<string, string> = {
  language: `labels and words: ${Object.keys(CLINITEK_50_LOCALES).join(' or ')} (default de)`,
  units: 'unit system in the identity packet (default CONV.)',
  strip: 'strip type in the identity packet (default MULTISTIX 10 SG)',
  software: 'software version NN.NN (default 01.02)',
  memory: 'records: [{seq, time: "YYYY-MM-DDTHH:MM:SS", colour?, results: [{code, value, abnormal?}]}]',
  corrupt_next: 'send the next N data packets with a wrong checksum',
  garbage: 'true: noise bytes before every data packet',
  off: 'true: never answer',
  max_chunk: 'largest write in bytes; chunk sizes are random from 1 to this (default 16)',
  seed: 'random seed for reproducible runs',
  timezone: "IANA zone of the reader's clock (default: the host's)",
};
