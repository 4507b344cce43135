/**
 * The `dicom-ultrasound` driver: point-of-care ultrasound machines that push their studies to a
 * DICOM node (C-STORE) — images, cine loops, SR measurements, PDF reports. Protocol notes and what
 * is verified: README.md in this folder.
 */
import { NO_PARAMS, NO_PATIENT_DATA, type DriverDefinition } from '../../../src/driver-sdk/index.ts';
import { decodeDicomUltrasound } from './records.ts';
import { DICOM_ULTRASOUND_OPTIONS_SCHEMA, DicomUltrasoundSession } from './session.ts';
import { SIMULATOR_OPTION_HELP } from './simulator-help.ts';
import { DRIVER_ID } from './study.ts';

export const dicomUltrasound: DriverDefinition = {
  id: DRIVER_ID,
  kind: 'ultrasound',
  vendor: 'any (DICOM)',
  models: ['DICOM Storage SCU: US Image, US Multi-frame, Secondary Capture, Basic/Enhanced/Comprehensive SR, Encapsulated PDF'],
  usb: [],
  transports: ['dicom-scp'],
  optionsSchema: DICOM_ULTRASOUND_OPTIONS_SCHEMA,
  commands: {
    status: { description: 'the current device state and how many studies are in their quiet period', params: NO_PARAMS, response: NO_PATIENT_DATA },
  },
  decode: (capture, ctx) => decodeDicomUltrasound(capture, ctx),
  createSession: (host) => new DicomUltrasoundSession(host),
  simulator: {
    description: 'a scripted ultrasound: sends a study (a US image, a cine loop, an OB-GYN SR) to a DICOM node over C-STORE',
    options: SIMULATOR_OPTION_HELP,
    load: () => import('./simulator.ts').then((m) => ({ create: (options) => new m.UltrasoundSimulator(m.parseSimulatorOptions(options)) })),
  },
};
