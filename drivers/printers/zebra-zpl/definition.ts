/**
 * The `zebra-zpl` driver: Zebra printers and printers that emulate ZPL II, over raw TCP port 9100
 * (the JetDirect-style port: one owner per printer, no-delay socket), the USB printer class
 * (`/dev/usb/lp*`) or serial. Specimen labels
 * from templates, durable print jobs, status from `~HS` / `~HQES` / `~HI`. Protocol notes, what
 * is verified and what is not: README.md in this folder.
 */
import { NO_PARAMS, NO_PATIENT_DATA, type DriverDefinition } from '../../../src/driver-sdk/index.ts';
import { LABEL_PARAMS } from './label.ts';
import { decodeZebraCapture, MANUFACTURER, ZEBRA_ZPL_DRIVER_ID } from './records.ts';
import { readZebraOptions, ZEBRA_OPTIONS_SCHEMA, ZebraSession } from './session.ts';
import { SIMULATOR_OPTION_HELP } from './simulator-help.ts';

const JOB_ID = { type: 'string', pattern: '^[0-9a-f]{32}$' } as const;

export const zebraZpl: DriverDefinition = {
  id: ZEBRA_ZPL_DRIVER_ID,
  kind: 'label-printer',
  vendor: MANUFACTURER,
  models: ['ZPL II printer', 'ZD421', 'ZD621', 'GK420d', 'ZT411'],
  // Any Zebra (USB vendor 0a5f, Debian usb.ids) that shows as a printer-class node: `poctd ports`
  // lists it with this driver. Only printer-class nodes are matched by the '*' product.
  usb: [{ vendorId: '0a5f', productId: '*', description: 'a Zebra printer on the USB printer class (/dev/usb/lp*)' }],
  transports: ['tcp', 'usb-printer', 'serial', 'simulated'],
  // The common factory setting (research note B5); the printer's configuration label (~WC) says.
  serialDefaults: { baud_rate: 9600, data_bits: 8, parity: 'none', stop_bits: 1 },
  commands: {
    print: {
      description: 'print a label: stored as a job before the answer, sent when the printer is reachable, once per transaction',
      params: LABEL_PARAMS,
      response: NO_PATIENT_DATA,
    },
    preview: {
      description: 'the label a print request would make, as a PNG (base64) rendered offline; nothing is printed or stored',
      params: LABEL_PARAMS,
      response: { type: 'object', properties: { png: { type: 'string', 'x-patient': true } } },
    },
    jobs: {
      description: 'the newest print jobs (or only the open ones) with their state',
      params: {
        type: 'object',
        additionalProperties: false,
        properties: { limit: { type: 'integer', minimum: 1, maximum: 200 }, open: { type: 'boolean' } },
      },
      response: NO_PATIENT_DATA,
    },
    cancel: {
      description: 'cancel a queued job (one already sent cannot be called back)',
      params: { type: 'object', additionalProperties: false, required: ['job'], properties: { job: JOB_ID } },
      response: NO_PATIENT_DATA,
    },
    confirm: {
      description: 'settle an uncertain job: printed true (the label is there) or false (reprint it, marked REPRINT)',
      params: { type: 'object', additionalProperties: false, required: ['job', 'printed'], properties: { job: JOB_ID, printed: { type: 'boolean' } } },
      response: NO_PATIENT_DATA,
    },
    status: { description: 'ask the printer for its status now (~HS, ~HQES when ~HS is silent)', params: NO_PARAMS, response: NO_PATIENT_DATA },
  },
  decode: (capture) => decodeZebraCapture(capture),
  optionsSchema: ZEBRA_OPTIONS_SCHEMA,
  optionProblems: (device) => readZebraOptions(device).problems,
  createSession: (host) => new ZebraSession(host),
  simulator: {
    description: 'a Zebra ZPL printer: keeps the labels it is sent, answers ~HS / ~HQES / ~HI, can be out of paper, head open or paused',
    options: SIMULATOR_OPTION_HELP,
    load: () => import('./simulator.ts').then((m) => ({ create: (options) => new m.ZebraSimulator(m.parseSimulatorOptions(options)) })),
  },
};
