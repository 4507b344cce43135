/**
 * Verio IQ transcripts → drafts, through the shared LifeScan binary records
 * (`../lifescan-binary/records.ts`) with this meter's dialect.
 */
import type { DriverDefinition } from '../../../src/driver-sdk/index.ts';
import { decodeLifeScan } from '../lifescan-binary/records.ts';
import { verioIqDialect } from './codec.ts';

export const decodeVerioIq: DriverDefinition['decode'] = (capture, ctx) => decodeLifeScan(verioIqDialect, capture, ctx);
