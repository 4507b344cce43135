/** FreeStyle HID (`freestyle-hid`): the driver definition. Protocol notes: README.md beside this file. */
import type { DriverDefinition } from '../../../src/driver-sdk/index.ts';
import {
  configuredModel,
  decodeFreeStyle,
  FREESTYLE_DRIVER_ID,
  type FreeStyleModel,
  LIBRE2_UNSUPPORTED,
  MANUFACTURER,
  MODELS,
} from './records.ts';
import { FREESTYLE_OPTIONS_SCHEMA, FreeStyleSession } from './session.ts';
import { SIMULATOR_OPTION_HELP } from './simulator-help.ts';
import { NO_PARAMS, NO_PATIENT_DATA, derivedSerial } from '../../../src/driver-sdk/index.ts';

export const freestyleHid: DriverDefinition = {
  id: FREESTYLE_DRIVER_ID,
  kind: 'glucose-meter',
  vendor: MANUFACTURER,
  models: [MODELS.insulinx.name, MODELS.neo.name, MODELS.libre.name, MODELS['libre-pro'].name],
  usb: [
    { vendorId: '1a61', productId: '3460', description: 'FreeStyle InsuLinx (the meter itself)' },
    { vendorId: '1a61', productId: '3850', description: 'FreeStyle Precision/Optium Neo (the meter itself)' },
    { vendorId: '1a61', productId: '3650', description: 'FreeStyle Libre reader (the meter itself)' },
    { vendorId: '1a61', productId: '3670', description: 'FreeStyle Libre Pro reader (the meter itself)' },
    { vendorId: '1a61', productId: '3950', description: 'FreeStyle Libre 2 reader', unsupported: LIBRE2_UNSUPPORTED },
  ],
  transports: ['hid', 'tcp', 'simulated'],
  optionsSchema: FREESTYLE_OPTIONS_SCHEMA,
  commands: {
    download: { description: 'read the whole meter memory ($result?, or $history? and $arresult? on a Libre) and store new results; returns {inserted, duplicates, records}', params: NO_PARAMS, response: NO_PATIENT_DATA },
    'clock/sync': { description: "set the meter clock to the host time in the device's zone ($date, and $time,; minutes only); returns the new clock", params: NO_PARAMS, response: NO_PATIENT_DATA },
    status: { description: 'the current device state: model, serial, software version, clock skew, last download', params: NO_PARAMS, response: NO_PATIENT_DATA },
  },
  decode: decodeFreeStyle,
  // Never talk to a Libre 2 named by its model option: nothing it says could be read, and a guess
  // would be worse than nothing. Named by its USB id, the usb entry above refuses it.
  refuses: (device) => {
    let model: FreeStyleModel | null;
    try {
      model = configuredModel(device);
    } catch {
      return null; // a bad model option is the session's config error to report
    }
    const reason = model ? MODELS[model].unsupported : undefined;
    return model && reason ? { model: MODELS[model].name, reason } : null;
  },
  createSession: (host) => new FreeStyleSession(host),
  simulator: {
    description:
      'an Abbott FreeStyle HID meter (InsuLinx, Neo, Libre, Libre Pro; Libre 2 answers noise): 64-byte reports [type][len][payload], init 04/05/15/01, text commands with CKSM checksums',
    options: SIMULATOR_OPTION_HELP,
    load: () => import('./simulator.ts').then((m) => ({ create: (options) => new m.FreeStyleSimulator(m.parseSimulatorOptions(options)) })),
    serialFor: (id) => `SIM-${derivedSerial(id, 10)}`,
  },
};
