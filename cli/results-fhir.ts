/**
 * Stored results as a FHIR R4 `Bundle` (type `collection`) of `Observation`s, one per observation
 * of a record: LOINC in `code` (the device's own code beside it), the UCUM unit in
 * `valueQuantity`, HI/LO as a comparator on the device's limit, the device named, the patient only
 * as the record holds it (hashed or omitted by the site's policy).
 */
import { createHash } from 'node:crypto';
import type { Observation, ResultRecord } from '../src/records/types.ts';

const LOINC = 'http://loinc.org';
const UCUM = 'http://unitsofmeasure.org';
const CATEGORY = 'http://terminology.hl7.org/CodeSystem/observation-category';
const INTERPRETATION = 'http://terminology.hl7.org/CodeSystem/v3-ObservationInterpretation';
/** Where poctd's own identifiers come from (no registered system exists for them). */
const POCTD = 'urn:poctd';

type Json = Record<string, unknown>;

/** Flags with an HL7 interpretation code; the others go to `note`. */
const INTERPRETATIONS: Record<string, { code: string; display: string }> = {
  HI: { code: 'H', display: 'High' },
  LO: { code: 'L', display: 'Low' },
  abnormal: { code: 'A', display: 'Abnormal' },
};

/** The record's categories a FHIR consumer may take as a patient's results. */
export const FHIR_CATEGORIES = new Set(['patient']);

function value(o: Observation): Json {
  // HI/LO: no number, the device's limit with the comparator ("> 600 mg/dL").
  const number = o.value ?? (o.comparator !== null && typeof o.limit === 'number' ? o.limit : null);
  if (number !== null && o.unit !== null) {
    return {
      valueQuantity: {
        value: number,
        ...(o.comparator ? { comparator: o.comparator } : {}),
        unit: o.unit,
        ...(o.ucum ? { system: UCUM, code: o.ucum } : {}),
      },
    };
  }
  if (o.text !== null && o.text !== '') return { valueString: o.text };
  return { dataAbsentReason: { coding: [{ system: 'http://terminology.hl7.org/CodeSystem/data-absent-reason', code: 'unknown' }] } };
}

function observation(record: ResultRecord, o: Observation, index: number): Json {
  const interpretation = o.flags.filter((f) => INTERPRETATIONS[f]).map((f) => ({ coding: [{ system: INTERPRETATION, ...INTERPRETATIONS[f] }] }));
  const notes = [...o.flags.filter((f) => !INTERPRETATIONS[f]), ...record.flags];
  const device = record.device;
  return {
    resourceType: 'Observation',
    id: `${record.id}-${index + 1}`,
    identifier: [{ system: `${POCTD}:observation`, value: `${record.id}/${index + 1}` }],
    status: 'final',
    category: [{ coding: [{ system: CATEGORY, code: 'laboratory', display: 'Laboratory' }] }],
    code: {
      coding: [
        ...(o.loinc ? [{ system: LOINC, code: o.loinc, display: o.name }] : []),
        { system: `${POCTD}:device-code:${device.driver}`, code: o.code, display: o.name },
      ],
      text: o.name || o.code,
    },
    ...(record.patient?.id ? { subject: { identifier: { system: `${POCTD}:patient`, value: record.patient.id } } } : {}),
    effectiveDateTime: record.observed_at,
    issued: record.received_at,
    device: {
      identifier: { system: `${POCTD}:device`, value: device.id },
      display: [device.manufacturer, device.model, device.serial].filter(Boolean).join(' '),
    },
    ...value(o),
    ...(interpretation.length > 0 ? { interpretation } : {}),
    ...(notes.length > 0 ? { note: notes.map((text) => ({ text })) } : {}),
  };
}

/** One Bundle of every observation of `records` (only patient results: see `FHIR_CATEGORIES`). */
export function fhirBundle(records: Iterable<ResultRecord>, now: Date): Json {
  const entry: Json[] = [];
  for (const record of records) {
    if (!FHIR_CATEGORIES.has(record.category)) continue;
    record.observations.forEach((o, i) => {
      const resource = observation(record, o, i);
      entry.push({ fullUrl: `urn:uuid:${stableUuid(String(resource.id))}`, resource });
    });
  }
  return { resourceType: 'Bundle', type: 'collection', timestamp: now.toISOString(), entry };
}

/** A name-based (version 5 style, SHA-256) UUID: the same observation gets the same fullUrl in every export. */
function stableUuid(name: string): string {
  const h = createHash('sha256').update(`poctd:${name}`).digest();
  h[6] = (h[6]! & 0x0f) | 0x50;
  h[8] = (h[8]! & 0x3f) | 0x80;
  const hex = h.subarray(0, 16).toString('hex');
  return `${hex.slice(0, 8)}-${hex.slice(8, 12)}-${hex.slice(12, 16)}-${hex.slice(16, 20)}-${hex.slice(20)}`;
}
