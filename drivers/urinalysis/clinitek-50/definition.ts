/**
 * The `clinitek-50` driver: Bayer / Siemens CLINITEK 50 urine strip reader (legacy), RS-232 9600
 * 8N1 with XON/XOFF and DTR low. Protocol notes and what is verified: README.md in this folder.
 */
import type { DriverDefinition } from '../../../src/driver-sdk/index.ts';
import { CLINITEK_50_DRIVER_ID, decodeClinitek50, MANUFACTURER, MODEL } from './records.ts';
import { CLINITEK_50_OPTIONS_SCHEMA, Clinitek50Session, clinitek50SessionOptions } from './session.ts';
import { SIMULATOR_OPTION_HELP } from './simulator-help.ts';
import { NO_PARAMS, NO_PATIENT_DATA } from '../../../src/driver-sdk/index.ts';

export const clinitek50: DriverDefinition = {
  id: CLINITEK_50_DRIVER_ID,
  kind: 'urinalysis-reader',
  vendor: MANUFACTURER,
  models: [MODEL],
  usb: [],
  transports: ['serial', 'tcp', 'simulated'],
  optionsSchema: CLINITEK_50_OPTIONS_SCHEMA,
  serialDefaults: { baud_rate: 9600, data_bits: 8, parity: 'none', stop_bits: 1 },
  commands: {
    download: { description: 'identify the reader (ENQ), read every record (XON DC2) and store it before ACKing it; returns {records, inserted, duplicates}', params: NO_PARAMS, response: NO_PATIENT_DATA },
    status: { description: 'the current device state: software version, unit system, clock skew, last download', params: NO_PARAMS, response: NO_PATIENT_DATA },
  },
  decode: (capture, ctx) => decodeClinitek50(capture, ctx, clinitek50SessionOptions({ id: ctx.deviceId, options: ctx.options }).date_order),
  createSession: (host) => new Clinitek50Session(host),
  simulator: {
    description: 'a CLINITEK 50 reader: answers ENQ with its identity packet and XON DC2 with checksummed record packets (NAK when empty)',
    options: SIMULATOR_OPTION_HELP,
    load: () => import('./simulator.ts').then((m) => ({ create: (options) => new m.Clinitek50Simulator(m.parseSimulatorOptions(options)) })),
  },
};
