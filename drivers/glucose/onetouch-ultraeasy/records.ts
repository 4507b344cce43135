/**
 * UltraEasy transcripts → drafts, through the shared LifeScan binary records
 * (`../lifescan-binary/records.ts`) with this meter's dialect.
 */
import type { DriverDefinition } from '../../../src/driver-sdk/index.ts';
import { decodeLifeScan } from '../lifescan-binary/records.ts';
import { ultraEasyDialect } from './codec.ts';

export const decodeUltraEasy: DriverDefinition['decode'] = (capture, ctx) => decodeLifeScan(ultraEasyDialect, capture, ctx);
