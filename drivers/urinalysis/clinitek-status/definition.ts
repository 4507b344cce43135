/**
 * The `clinitek-status` driver: Siemens CLINITEK Status / Status+ urine strip reader, one comma
 * record per strip over RS-232. Protocol notes and what is verified: README.md in this folder.
 */
import type { DriverDefinition } from '../../../src/driver-sdk/index.ts';
import { CLINITEK_STATUS_DRIVER_ID, decodeClinitekStatus, MANUFACTURER } from './records.ts';
import { CLINITEK_STATUS_OPTIONS_SCHEMA, ClinitekStatusSession, clinitekStatusSessionOptions } from './session.ts';
import { SIMULATOR_OPTION_HELP } from './simulator-help.ts';
import { NO_PARAMS, NO_PATIENT_DATA } from '../../../src/driver-sdk/index.ts';


export const clinitekStatus: DriverDefinition = {
  id: CLINITEK_STATUS_DRIVER_ID,
  kind: 'urinalysis-reader',
  vendor: MANUFACTURER,
  models: ['CLINITEK Status', 'CLINITEK Status+'],
  usb: [],
  transports: ['serial', 'tcp', 'simulated'],
  // 9600 8N1 is the CLINITEK family's setting in the research note (CLINITEK 50); the Status
  // bulletin's first page does not give it. A site can override it in the config.
  optionsSchema: CLINITEK_STATUS_OPTIONS_SCHEMA,
  serialDefaults: { baud_rate: 9600, data_bits: 8, parity: 'none', stop_bits: 1 },
  commands: {
    status: { description: 'the current device state (the reader cannot be asked for data: press "Send all data" on it)', params: NO_PARAMS, response: NO_PATIENT_DATA },
  },
  decode: (capture, ctx) =>
    decodeClinitekStatus(capture, ctx, clinitekStatusSessionOptions({ id: ctx.deviceId, options: ctx.options }).date_order),
  createSession: (host) => new ClinitekStatusSession(host),
  simulator: {
    description: 'a CLINITEK Status reader: sends its stored strips as comma records, as on "Send all data", in English or Spanish',
    options: SIMULATOR_OPTION_HELP,
    load: () => import('./simulator.ts').then((m) => ({ create: (options) => new m.ClinitekStatusSimulator(m.parseSimulatorOptions(options)) })),
  },
};
