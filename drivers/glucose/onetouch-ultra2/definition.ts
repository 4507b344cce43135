/**
 * LifeScan OneTouch Ultra 2: an ASCII line protocol over the meter's 3.5 mm TRS serial cable,
 * 9600 baud 8N1. Protocol notes: README.md.
 */
import type { DriverDefinition } from '../../../src/driver-sdk/index.ts';
import { MANUFACTURER, ULTRA2_DRIVER_ID, ULTRA2_MODEL, decodeUltra2 } from './records.ts';
import { Ultra2Session, ULTRA2_OPTIONS_SCHEMA } from './session.ts';
import { SIMULATOR_OPTION_HELP } from './simulator-help.ts';
import { NO_PARAMS, NO_PATIENT_DATA, derivedSerial } from '../../../src/driver-sdk/index.ts';

export const onetouchUltra2: DriverDefinition = {
  id: ULTRA2_DRIVER_ID,
  kind: 'glucose-meter',
  vendor: MANUFACTURER,
  models: [ULTRA2_MODEL],
  usb: [
    { vendorId: '067b', productId: '2303', description: 'Prolific PL2303 USB-serial cable (the LifeScan cable); only suggests this driver' },
    { vendorId: '0403', productId: '6001', description: 'FTDI FT232 USB-serial cable; only suggests this driver' },
    { vendorId: '1a86', productId: '7523', description: 'WCH CH340 USB-serial cable; only suggests this driver' },
  ],
  transports: ['serial', 'tcp', 'simulated'],
  optionsSchema: ULTRA2_OPTIONS_SCHEMA,
  serialDefaults: { baud_rate: 9600, data_bits: 8, parity: 'none', stop_bits: 1 },
  commands: {
    download: { description: 'read the whole meter memory (DMP) and store new readings; returns {inserted, duplicates, records}', params: NO_PARAMS, response: NO_PATIENT_DATA },
    'clock/sync': { description: "set the meter clock to the host time in the device's zone (DMT); returns the new clock", params: NO_PARAMS, response: NO_PATIENT_DATA },
    status: { description: 'the current device state: serial, firmware, display unit, clock skew, last download', params: NO_PARAMS, response: NO_PATIENT_DATA },
  },
  decode: decodeUltra2,
  createSession: (host) => new Ultra2Session(host),
  simulator: {
    description: 'a OneTouch Ultra 2 meter: answers DM?, DM@, DMF, DMSU?, DMP, DMT and DMZ with checksummed lines',
    options: SIMULATOR_OPTION_HELP,
    load: () => import('./simulator.ts').then((m) => ({ create: (options) => new m.Ultra2Simulator(m.parseSimulatorOptions(options)) })),
    serialFor: (id) => `${derivedSerial(id, 8)}Y`,
  },
};
