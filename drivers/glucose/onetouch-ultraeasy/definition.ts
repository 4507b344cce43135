/**
 * LifeScan OneTouch UltraEasy and UltraMini: LifeScan binary frames with the DISC/ACK/sequence-bit
 * handshake over the meter's 3.5 mm TRS serial cable, 9600 baud 8N1. Protocol notes: README.md.
 */
import type { DriverDefinition } from '../../../src/driver-sdk/index.ts';
import { MANUFACTURER } from '../lifescan-binary/records.ts';
import { LIFESCAN_OPTIONS_SCHEMA, LifeScanSession } from '../lifescan-binary/session.ts';
import { SIMULATOR_OPTION_HELP } from '../lifescan-binary/simulator-help.ts';
import { ULTRAEASY_DRIVER_ID, ultraEasyDialect } from './codec.ts';
import { decodeUltraEasy } from './records.ts';
import { NO_PARAMS, NO_PATIENT_DATA, derivedSerial } from '../../../src/driver-sdk/index.ts';

export const onetouchUltraEasy: DriverDefinition = {
  id: ULTRAEASY_DRIVER_ID,
  kind: 'glucose-meter',
  vendor: MANUFACTURER,
  models: ['OneTouch UltraEasy', 'OneTouch UltraMini'],
  usb: [
    { vendorId: '067b', productId: '2303', description: 'Prolific PL2303 USB-serial cable (the LifeScan cable); a cable chip id, only suggests this driver' },
    { vendorId: '0403', productId: '6001', description: 'FTDI FT232 USB-serial cable; a cable chip id, only suggests this driver' },
    { vendorId: '1a86', productId: '7523', description: 'WCH CH340 USB-serial cable; a cable chip id, only suggests this driver' },
  ],
  transports: ['serial', 'tcp', 'simulated'],
  optionsSchema: LIFESCAN_OPTIONS_SCHEMA,
  serialDefaults: { baud_rate: 9600, data_bits: 8, parity: 'none', stop_bits: 1 },
  commands: {
    download: { description: 'read version, serial, clock, display unit, record count and every record; store new readings; returns {inserted, duplicates, records}', params: NO_PARAMS, response: NO_PATIENT_DATA },
    'clock/sync': { description: "set the meter clock to the host time in the device's zone (05 20 01), then read it back; returns the new clock", params: NO_PARAMS, response: NO_PATIENT_DATA },
    status: { description: 'the current device state: serial, firmware, display unit, clock skew, record count, last download', params: NO_PARAMS, response: NO_PATIENT_DATA },
  },
  decode: decodeUltraEasy,
  createSession: (host) => new LifeScanSession(ultraEasyDialect, host),
  simulator: {
    description: 'a OneTouch UltraEasy/UltraMini meter: LifeScan binary frames with the DISC/ACK/sequence-bit handshake',
    options: { ...SIMULATOR_OPTION_HELP, serial: 'serial number, 9 characters A-Z/0-9 (default UESIM0001)', memory: 'readings: [{time: "YYYY-MM-DDTHH:MM:SS", value: mg/dL | "HI" | "LO"}] (no control or meal on this meter)' },
    load: () => import('./simulator.ts').then((m) => ({ create: (options) => m.createUltraEasySimulator(options) })),
    serialFor: (id) => derivedSerial(id, 9),
  },
};
