/**
 * The `astm` driver: the generic CLSI LIS2-A2 (ASTM E1394 records over E1381 framing) analyzer
 * driver. Protocol notes, options and what is verified: README.md in this folder.
 */
import type { DriverDefinition } from '../../../src/driver-sdk/index.ts';
import { DIALECTS } from './dialects/index.ts';
import { ASTM_DRIVER_ID, decodeAstm } from './records.ts';
import { ASTM_OPTIONS_SCHEMA } from './options.ts';
import { AstmSession } from './session.ts';
import { SIMULATOR_OPTION_HELP } from './simulator-help.ts';
import { NO_PARAMS, NO_PATIENT_DATA, derivedSerial } from '../../../src/driver-sdk/index.ts';

export const astmDriver: DriverDefinition = {
  id: ASTM_DRIVER_ID,
  kind: 'analyzer',
  vendor: 'various (CLSI LIS2-A2 / ASTM E1394)',
  models: DIALECTS.filter((d) => d.id !== 'generic').map((d) => d.description),
  usb: [],
  transports: ['serial', 'tcp', 'tcp-server', 'simulated'],
  // Behind a shared tcp-server port, each message goes to the device whose `sender` its H-5 names.
  listenerIdentities: ['sender'],
  optionsSchema: ASTM_OPTIONS_SCHEMA,
  serialDefaults: { baud_rate: 9600, data_bits: 8, parity: 'none', stop_bits: 1 },
  commands: {
    status: { description: 'the device state: model, serial and firmware from the last H record, last message time', params: NO_PARAMS, response: NO_PATIENT_DATA },
    send: {
      description: 'send a message to the device (host → device, e.g. orders): {"message": "H|\\\\^&|…\\rL|1|N"}',
      // An order carries patient fields (P record): the audit never keeps the message.
      params: {
        type: 'object',
        additionalProperties: false,
        required: ['message'],
        properties: { message: { type: 'string', minLength: 1, 'x-patient': true, description: 'the ASTM message, records separated by CR' } },
      },
      // The answer is a count of records sent.
      response: NO_PATIENT_DATA,
    },
  },
  decode: decodeAstm,
  createSession: (host) => new AstmSession(host),
  simulator: {
    description: 'an ASTM E1381/E1394 instrument that sends result messages (ENQ, frames, EOT) in a chosen dialect and framing',
    options: SIMULATOR_OPTION_HELP,
    serialFor: (id) => derivedSerial(id, 8, '0123456789'),
    load: () => import('./simulator.ts').then((m) => ({ create: (options) => new m.AstmSimulator(m.parseSimulatorOptions(options)) })),
  },
};
