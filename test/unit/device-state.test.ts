import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import {
  applyStatePatch,
  DEVICE_KIND_BLOCK,
  DEVICE_KINDS,
  DEVICE_STATE_SCHEMA,
  DEVICE_STATUSES,
  emptyBlock,
  initialDeviceState,
  PRINT_MODES,
  rememberedState,
  type DeviceBlockName,
  type DeviceKind,
} from '../../src/records/device-state.ts';
import { schemaProblems } from '../../src/records/schemas.ts';

interface SchemaFile {
  $id: string;
  properties: { status: { enum: string[] }; kind: { enum: string[] } };
  $defs: Record<DeviceBlockName, { required: string[]; properties: Record<string, { enum?: unknown[] }> }>;
}
const schema = JSON.parse(readFileSync(new URL('../../schemas/device-state-2.schema.json', import.meta.url), 'utf8')) as SchemaFile;
const BLOCKS: DeviceBlockName[] = ['meter', 'analyzer', 'printer', 'imaging'];

function fresh(kind: DeviceKind) {
  return initialDeviceState({ kind, id: 'dev1', driver: 'drv', manufacturer: 'Acme', model: 'M1' });
}

describe('poct.device-state/2: the schema and the code share their closed sets', () => {
  it('the schema is the one the code names', () => {
    expect(schema.$id).toBe(DEVICE_STATE_SCHEMA);
  });

  it("the schema's status enum is DEVICE_STATUSES, unplugged and unsupported included", () => {
    expect([...schema.properties.status.enum].sort()).toEqual([...DEVICE_STATUSES].sort());
    expect(DEVICE_STATUSES).toContain('unplugged');
    expect(DEVICE_STATUSES).toContain('unsupported');
  });

  it("the schema's kinds are DEVICE_KINDS, and every kind has a block", () => {
    expect([...schema.properties.kind.enum].sort()).toEqual([...DEVICE_KINDS].sort());
    for (const kind of DEVICE_KINDS) expect(BLOCKS).toContain(DEVICE_KIND_BLOCK[kind]);
  });

  it.each(BLOCKS)('the %s block has exactly the fields of its empty value', (block) => {
    expect([...schema.$defs[block].required].sort()).toEqual(Object.keys(emptyBlock(block)).sort());
    expect(Object.keys(schema.$defs[block].properties).sort()).toEqual(Object.keys(emptyBlock(block)).sort());
  });

  it('the print modes are the schema enum (plus null)', () => {
    expect(schema.$defs.printer.properties.print_mode!.enum).toEqual([...PRINT_MODES, null]);
  });
});

describe('initialDeviceState', () => {
  it.each([...DEVICE_KINDS])('a new %s state is valid and carries only its own block', (kind) => {
    const state = fresh(kind);
    expect(schemaProblems(DEVICE_STATE_SCHEMA, state)).toEqual([]);
    for (const block of BLOCKS) expect(block in state).toBe(block === DEVICE_KIND_BLOCK[kind]);
  });

  it.each([...DEVICE_STATUSES])('status %s is valid', (status) => {
    const { state, refused } = applyStatePatch(fresh('glucose-meter'), { status });
    expect(refused).toEqual([]);
    expect(schemaProblems(DEVICE_STATE_SCHEMA, state)).toEqual([]);
  });

  it('the schema refuses another kind’s block, a missing own block and an unknown status', () => {
    const meter = fresh('glucose-meter');
    expect(schemaProblems(DEVICE_STATE_SCHEMA, { ...meter, printer: emptyBlock('printer') })).not.toEqual([]);
    const { meter: _m, ...withoutBlock } = meter;
    expect(schemaProblems(DEVICE_STATE_SCHEMA, withoutBlock)).not.toEqual([]);
    expect(schemaProblems(DEVICE_STATE_SCHEMA, { ...meter, status: 'asleep' })).not.toEqual([]);
    expect(schemaProblems(DEVICE_STATE_SCHEMA, { ...meter, meter: { ...meter.meter, record_count: -1 } })).not.toEqual([]);
  });
});

describe('applyStatePatch', () => {
  it('replaces common fields and merges the block field by field', () => {
    let { state } = applyStatePatch(fresh('glucose-meter'), { serial: 'S1', meter: { display_unit: 'mmol/L' } });
    ({ state } = applyStatePatch(state, { status: 'ok', meter: { record_count: 4 } }));
    expect(state).toMatchObject({ serial: 'S1', status: 'ok', meter: { display_unit: 'mmol/L', record_count: 4 } });
    expect(schemaProblems(DEVICE_STATE_SCHEMA, state)).toEqual([]);
  });

  it('refuses another kind’s block, unknown fields, owned fields and statuses outside the set, keeping the state valid', () => {
    const before = fresh('analyzer');
    const patch = {
      meter: { record_count: 3 },
      analyzer: { dialect: 'generic', nonsense: 1 },
      id: 'other',
      kind: 'label-printer',
      status: 'asleep',
      volume: 11,
    } as unknown as Parameters<typeof applyStatePatch>[1];
    const { state, refused } = applyStatePatch(before, patch);
    expect(refused).toHaveLength(6);
    expect(refused.join('\n')).toMatch(/meter .*"analyzer" block/);
    expect(state).toMatchObject({ id: 'dev1', kind: 'analyzer', status: 'idle', analyzer: { dialect: 'generic', last_message_at: null } });
    expect('meter' in state).toBe(false);
    expect(schemaProblems(DEVICE_STATE_SCHEMA, state)).toEqual([]);
  });

  it('a printer patch from a ~HS reading validates', () => {
    const { state, refused } = applyStatePatch(fresh('label-printer'), {
      status: 'fault',
      status_detail: 'paper out',
      printer: { paper_out: true, head_open: false, print_mode: 'tear-off', labels_remaining: 0, status_read_at: '2026-12-04T10:00:00.000Z' },
    });
    expect(refused).toEqual([]);
    expect(schemaProblems(DEVICE_STATE_SCHEMA, state)).toEqual([]);
  });
});

describe('rememberedState', () => {
  it('reads a poct.device-state/1 row (meter fields at the top) into the meter block', () => {
    const v1 = { schema: 'poct.device-state/1', id: 'm', driver: 'drv', model: 'M', serial: 'S', firmware: 'F', display_unit: 'mg/dL', record_count: 9, last_seen: 'x', last_download: 'y' };
    expect(rememberedState(v1, 'drv', 'glucose-meter')).toEqual({
      model: 'M',
      serial: 'S',
      firmware: 'F',
      last_seen: 'x',
      last_download: 'y',
      meter: { display_unit: 'mg/dL', record_count: 9 },
    });
  });

  it('reads a v2 row, and keeps only the times of a row from another driver', () => {
    const v2 = { ...fresh('glucose-meter'), serial: 'S', meter: { display_unit: 'mmol/L', record_count: 2 } };
    expect(rememberedState(v2, 'drv', 'glucose-meter').meter).toEqual({ display_unit: 'mmol/L', record_count: 2 });
    expect(rememberedState(v2, 'another', 'glucose-meter')).toEqual({ last_seen: null, last_download: null });
    expect(rememberedState(v2, 'drv', 'analyzer').meter).toBeUndefined();
    expect(rememberedState(undefined, 'drv', 'analyzer')).toEqual({});
  });
});
