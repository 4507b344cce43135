/**
 * Every driver the daemon knows, in one list. Adding a device is adding its file and one line here.
 */
import type { DriverDefinition } from '../src/driver-sdk/index.ts';
import { astmDriver } from './analyzers/astm/definition.ts';
import { contourNext } from './glucose/contour-next/definition.ts';
import { freestyleHid } from './glucose/freestyle-hid/definition.ts';
import { onetouchUltra2 } from './glucose/onetouch-ultra2/definition.ts';
import { onetouchUltraEasy } from './glucose/onetouch-ultraeasy/definition.ts';
import { onetouchVerioIq } from './glucose/onetouch-verio-iq/definition.ts';
import { dicomUltrasound } from './imaging/dicom-ultrasound/definition.ts';
import { clinitek50 } from './urinalysis/clinitek-50/definition.ts';
import { clinitekStatus } from './urinalysis/clinitek-status/definition.ts';
import { poct1aDriver } from './poct1a/definition.ts';
import { zebraZpl } from './printers/zebra-zpl/definition.ts';

export const drivers: readonly DriverDefinition[] = [onetouchUltra2, onetouchUltraEasy, onetouchVerioIq, clinitekStatus, clinitek50, freestyleHid, astmDriver, contourNext, poct1aDriver, zebraZpl, dicomUltrasound];

export function findDriver(id: string): DriverDefinition | undefined {
  return drivers.find((d) => d.id === id);
}
