/** Contour Next (`contour-next`): the driver definition. Protocol notes: README.md beside this file. */
import type { DriverDefinition } from '../../../src/driver-sdk/index.ts';
import { CONTOUR_DRIVER_ID, decodeContour, MANUFACTURER } from './records.ts';
import { CONTOUR_OPTIONS_SCHEMA, ContourSession } from './session.ts';
import { SIMULATOR_OPTION_HELP } from './simulator-help.ts';
import { NO_PARAMS, NO_PATIENT_DATA, derivedSerial } from '../../../src/driver-sdk/index.ts';

const usb = (productId: string, description: string): DriverDefinition['usb'][number] => ({ vendorId: '1a79', productId, description });

export const contourNext: DriverDefinition = {
  id: CONTOUR_DRIVER_ID,
  kind: 'glucose-meter',
  vendor: MANUFACTURER,
  models: ['Contour Next USB', 'Contour Next', 'Contour USB', 'Contour Next Link', 'Contour Next Link 2.4', 'Contour Next One', 'Contour Plus One', 'Contour Plus Blue'],
  usb: [
    usb('7350', 'Ascensia/Bayer Contour Next (USB HID)'),
    usb('7410', 'Ascensia/Bayer Contour Next USB (USB HID)'),
    usb('6002', 'Bayer Contour USB (USB HID)'),
    usb('6200', 'Bayer Contour Next Link, mg/dL (USB HID)'),
    usb('6300', 'Bayer Contour Next Link, mmol/L (USB HID)'),
    usb('6210', 'Ascensia Contour Next Link 2.4 (USB HID)'),
    usb('7800', 'Ascensia Contour Next One / Contour Plus One (USB HID)'),
    usb('7900', 'Ascensia Contour Next, newer model (USB HID)'),
    usb('7950', 'Ascensia Contour Plus Blue (USB HID)'),
  ],
  transports: ['hid', 'simulated'],
  optionsSchema: CONTOUR_OPTIONS_SCHEMA,
  commands: {
    download: { description: 'poke the meter and read its whole memory (one transfer per plug-in); returns {inserted, duplicates, records, unreadable}', params: NO_PARAMS, response: NO_PATIENT_DATA },
    'clock/sync': { description: 'set the meter clock to the host time (minutes) in command mode after a transfer; unverified on hardware (one source)', params: NO_PARAMS, response: NO_PATIENT_DATA },
    status: { description: 'the current device state: model, serial, unit, record count, clock skew, last download', params: NO_PARAMS, response: NO_PATIENT_DATA },
  },
  decode: decodeContour,
  createSession: (host) => new ContourSession(host),
  simulator: {
    description: 'a Contour Next meter in data-transfer mode: ASTM frames in 64-byte HID reports, NAK → resend, command-mode clock set',
    options: SIMULATOR_OPTION_HELP,
    load: () => import('./simulator.ts').then((m) => ({ create: (options) => new m.ContourSimulator(m.parseContourSimulatorOptions(options)) })),
    serialFor: (id) => `7410-${derivedSerial(id, 7, '0123456789')}`,
  },
};
