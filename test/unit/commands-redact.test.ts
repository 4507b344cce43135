import { describe, expect, it } from 'vitest';
import { PATIENT_DATA_OMITTED, redactPatientParams, type ParamsSchema } from '../../src/driver-sdk/commands.ts';

/** The audit row as stored: nothing of the patient's may be in it, whatever shape the request had. */
function stored(schema: ParamsSchema, params: Record<string, unknown>): string {
  return JSON.stringify(redactPatientParams(schema, params));
}

const patientObject: ParamsSchema = {
  type: 'object',
  additionalProperties: false,
  properties: {
    copies: { type: 'integer' },
    patient: { type: 'object', additionalProperties: false, properties: { id: { type: 'string', 'x-patient': true }, ward: { type: 'string' } } },
  },
};

describe('redactPatientParams: the audit keeps no patient data, whatever the request', () => {
  it('walks objects and arrays it can follow exactly, keeping the fields that are not patient data', () => {
    expect(redactPatientParams(patientObject, { copies: 2, patient: { id: 'MRN-1', ward: 'B' } })).toEqual({
      copies: 2,
      patient: { id: PATIENT_DATA_OMITTED, ward: 'B' },
    });
  });

  it('a string where the schema has an object holding a patient field (refused, but still audited) is omitted', () => {
    expect(redactPatientParams(patientObject, { copies: 2, patient: 'MRN-1 DOE JANE' })).toEqual({ copies: 2, patient: PATIENT_DATA_OMITTED });
  });

  it('an array where the schema has an object holding a patient field is omitted whole', () => {
    expect(stored(patientObject, { patient: ['MRN-1'] })).not.toContain('MRN-1');
  });

  it('a field whose patient marking is reached through $ref is omitted', () => {
    const schema: ParamsSchema = {
      type: 'object',
      $defs: { name: { type: 'string', 'x-patient': true } },
      properties: { patient_name: { $ref: '#/$defs/name' }, copies: { type: 'integer' } },
    };
    expect(redactPatientParams(schema, { patient_name: 'DOE^JANE', copies: 1 })).toEqual({ patient_name: PATIENT_DATA_OMITTED, copies: 1 });
  });

  it('an object whose patient field is in a $ref-ed object schema is omitted whole', () => {
    const schema: ParamsSchema = {
      type: 'object',
      $defs: { patient: { type: 'object', properties: { id: { type: 'string', 'x-patient': true } } } },
      properties: { patient: { $ref: '#/$defs/patient' } },
    };
    expect(stored(schema, { patient: { id: 'MRN-1' } })).not.toContain('MRN-1');
  });

  it('a patient marking inside anyOf omits the value', () => {
    const schema: ParamsSchema = {
      type: 'object',
      properties: { who: { anyOf: [{ type: 'integer' }, { type: 'string', 'x-patient': true }] } },
    };
    expect(redactPatientParams(schema, { who: 'MRN-1' })).toEqual({ who: PATIENT_DATA_OMITTED });
  });

  it('a patient marking inside oneOf omits the value, an object too', () => {
    const schema: ParamsSchema = {
      type: 'object',
      properties: { who: { oneOf: [{ type: 'object', properties: { id: { type: 'string', 'x-patient': true } } }, { type: 'integer' }] } },
    };
    expect(stored(schema, { who: { id: 'MRN-1' } })).not.toContain('MRN-1');
  });

  it('prefixItems entries marked x-patient are omitted', () => {
    const schema: ParamsSchema = {
      type: 'object',
      properties: { row: { type: 'array', prefixItems: [{ type: 'string', 'x-patient': true }, { type: 'integer' }] } },
    };
    expect(stored(schema, { row: ['MRN-1', 3] })).not.toContain('MRN-1');
  });

  it('a schema with no patient field keeps the params as they are', () => {
    const schema: ParamsSchema = { type: 'object', properties: { copies: { anyOf: [{ type: 'integer' }, { type: 'string' }] } } };
    expect(redactPatientParams(schema, { copies: '2', extra: [1] })).toEqual({ copies: '2', extra: [1] });
  });
});
