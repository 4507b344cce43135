/**
 * The `poct1a` driver: the data manager side of CLSI POCT1-A2 (XML messages over TCP) for
 * hospital glucose meters and connected point-of-care analyzers, with vendor profiles as data
 * (`profiles/`). Protocol notes, options and what is verified: README.md in this folder.
 */
import type { DriverDefinition } from '../../src/driver-sdk/index.ts';
import { NO_PARAMS, NO_PATIENT_DATA } from '../../src/driver-sdk/index.ts';
import { POCT1A_OPTIONS_SCHEMA } from './options.ts';
import { PROFILES } from './profiles/index.ts';
import { decodePoct1a, POCT1A_DRIVER_ID } from './records.ts';
import { Poct1aSession } from './session.ts';
import { SIMULATOR_OPTIONS } from './simulator-help.ts';

export const poct1aDriver: DriverDefinition = {
  id: POCT1A_DRIVER_ID,
  kind: 'analyzer',
  vendor: 'various (CLSI POCT1-A2)',
  models: PROFILES.map((p) => p.description),
  usb: [],
  transports: ['tcp-server', 'simulated'],
  // Behind a shared tcp-server port, a caller is the device whose `sender` list names its HEL's DEV.device_id.
  listenerIdentities: ['sender'],
  optionsSchema: POCT1A_OPTIONS_SCHEMA,
  commands: {
    status: { description: 'the device state: identity from the last HEL, clock skew, profile', params: NO_PARAMS, response: NO_PATIENT_DATA },
    directive: {
      description: 'send a directive (DTV.R01) the device lists in its HEL, e.g. a vendor\'s FORCE_NORMAL, to the device connected in continuous mode: {"command": "FORCE_NORMAL", "coding_system": "SIEM"}',
      params: {
        type: 'object',
        additionalProperties: false,
        required: ['command'],
        properties: {
          command: { type: 'string', pattern: '^[A-Za-z0-9_.]{1,64}$', description: 'DTV.command_cd' },
          coding_system: { type: 'string', pattern: '^[A-Za-z0-9_.]{1,16}$', description: 'the SN of a vendor directive (SIEM)' },
        },
      },
      response: NO_PATIENT_DATA,
    },
    'operators/sync': {
      description:
        'replace the operator list (default: the configured options.operators) and push it: now to a device connected in continuous mode (answered once acknowledged), else on its next connection. {"operators": [{"id": "OP1", "name": "…", "password": "…", "permission": "1"}], "incremental": false}',
      params: {
        type: 'object',
        additionalProperties: false,
        properties: {
          // Operator names and passwords are not patient data, but they are personal and secret: the audit never keeps them.
          operators: { type: 'array', 'x-patient': true, items: { type: 'object' }, description: 'the operators; absent: the configured list' },
          incremental: { type: 'boolean', description: 'OPL.R02 (add to the device list) instead of OPL.R01 (replace it)' },
        },
      },
      response: NO_PATIENT_DATA,
    },
  },
  decode: decodePoct1a,
  createSession: (host) => new Poct1aSession(host),
  simulator: {
    description: 'a POCT1-A device (DCA Vantage or a glucose meter) that says hello, reports its status and sends its observations when asked',
    options: SIMULATOR_OPTIONS,
    load: () => import('./simulator.ts').then((m) => ({ create: (options) => new m.Poct1aSimulator(m.parseSimulatorOptions(options)) })),
  },
};
