/**
 * LifeScan OneTouch Verio IQ: LifeScan binary frames with link-control 0x00 over the meter's
 * built-in CP210x USB-serial bridge, 38400 baud 8N1. Protocol notes: README.md.
 */
import type { DriverDefinition } from '../../../src/driver-sdk/index.ts';
import { MANUFACTURER } from '../lifescan-binary/records.ts';
import { LIFESCAN_OPTIONS_SCHEMA, LifeScanSession } from '../lifescan-binary/session.ts';
import { SIMULATOR_OPTION_HELP } from '../lifescan-binary/simulator-help.ts';
import { VERIO_IQ_DRIVER_ID, VERIO_IQ_MODEL, verioIqDialect } from './codec.ts';
import { decodeVerioIq } from './records.ts';
import { NO_PARAMS, NO_PATIENT_DATA, derivedSerial } from '../../../src/driver-sdk/index.ts';

export const onetouchVerioIq: DriverDefinition = {
  id: VERIO_IQ_DRIVER_ID,
  kind: 'glucose-meter',
  vendor: MANUFACTURER,
  models: [VERIO_IQ_MODEL],
  usb: [
    {
      vendorId: '10c4',
      productId: '85a7',
      description: "Silicon Labs CP210x id used by the Verio IQ's built-in USB-serial bridge; a cable chip id that other devices may share, so it only suggests this driver",
    },
  ],
  transports: ['serial', 'tcp', 'simulated'],
  optionsSchema: LIFESCAN_OPTIONS_SCHEMA,
  serialDefaults: { baud_rate: 38400, data_bits: 8, parity: 'none', stop_bits: 1 },
  commands: {
    download: { description: 'read version, serial, clock, display unit, record count and every record; store new readings; returns {inserted, duplicates, records}', params: NO_PARAMS, response: NO_PATIENT_DATA },
    'clock/sync': { description: "set the meter clock to the host time in the device's zone (03 20 01), then read it back; returns the new clock", params: NO_PARAMS, response: NO_PATIENT_DATA },
    status: { description: 'the current device state: serial, firmware, display unit, clock skew, record count, last download', params: NO_PARAMS, response: NO_PATIENT_DATA },
  },
  decode: decodeVerioIq,
  createSession: (host) => new LifeScanSession(verioIqDialect, host),
  simulator: {
    description: 'a OneTouch Verio IQ meter: LifeScan binary frames with link-control 0, clock counted from 2000-01-01',
    options: {
      ...SIMULATOR_OPTION_HELP,
      serial: 'serial number, 6-16 characters A-Z/0-9 (default VIQSIM0001)',
      memory: 'readings: [{time: "YYYY-MM-DDTHH:MM:SS", value: mg/dL (> 600 shows HI, < 20 LO), control?, meal?: none|before|after}]',
    },
    load: () => import('./simulator.ts').then((m) => ({ create: (options) => m.createVerioIqSimulator(options) })),
    serialFor: (id) => derivedSerial(id, 10),
  },
};
