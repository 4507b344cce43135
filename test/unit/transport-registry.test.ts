import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { parseConfig, transportTypes } from '../../src/config/load.ts';
import { memoryPair } from '../../src/transports/memory.ts';
import { buildTransport, registerTransportKind, transportKind, transportKinds } from '../../src/transports/registry.ts';

const configSchema = JSON.parse(readFileSync(new URL('../../schemas/config.schema.json', import.meta.url), 'utf8')) as {
  $defs: { transport: { oneOf: { $ref: string }[] } } & Record<string, unknown>;
};

function problems(yaml: string): string[] {
  try {
    parseConfig(yaml);
  } catch (error) {
    return (error as Error).message.split('\n');
  }
  return [];
}

describe('transport registry', () => {
  it('the built-in kinds are the ones the config schema file documents, in its order', () => {
    const builtIn = transportKinds().filter((k) => '$defsName' in k.schema);
    expect(builtIn.map((k) => `#/$defs/${(k.schema as { $defsName: string }).$defsName}`)).toEqual(configSchema.$defs.transport.oneOf.map((b) => b.$ref));
    expect(transportTypes()).toEqual(['serial', 'tcp', 'tcp-server', 'hid', 'simulated', 'usb-printer', 'dicom-scp']);
  });

  it('a kind registered twice is refused, and so is an inline schema whose type const is not its name', () => {
    expect(() => registerTransportKind({ kind: 'tcp', schema: { $defsName: 'tcpTransport' }, description: '', build: async () => ({ transport: memoryPair().host }) })).toThrow(
      /already registered/,
    );
    expect(() =>
      registerTransportKind({
        kind: 'odd',
        schema: { inline: { type: 'object', properties: { type: { const: 'even' } } } },
        description: '',
        build: async () => ({ transport: memoryPair().host }),
      }),
    ).toThrow(/properties.type.const "odd"/);
    expect(transportKind('odd')).toBeUndefined();
  });

  it('a kind registered with its own schema is validated by the config loader, errors naming the field, and built by buildTransport', async () => {
    const built: unknown[] = [];
    registerTransportKind({
      kind: 'loopback-test',
      description: 'a test kind',
      schema: {
        inline: {
          type: 'object',
          additionalProperties: false,
          required: ['type', 'ae_title'],
          properties: {
            type: { const: 'loopback-test' },
            ae_title: { type: 'string', minLength: 1, maxLength: 16 },
            port: { type: 'integer', minimum: 1, maximum: 65535 },
          },
        },
      },
      check: (o) => (o.ae_title === 'ANY' ? [{ field: 'ae_title', message: 'must name one AE title' }] : []),
      build: async (options) => {
        built.push(options);
        return { transport: memoryPair('loop').host };
      },
    });
    const device = (transport: string): string => `devices:\n  - id: d1\n    driver: x\n    transport: ${transport}\n`;
    expect(transportTypes()).toContain('loopback-test');
    expect(problems(device('{ type: loopback-test, port: 0 }'))).toEqual([
      'devices[0].transport.ae_title: required',
      'devices[0].transport.port: must be >= 1',
    ]);
    expect(problems(device('{ type: loopback-test, ae_title: ANY }'))).toEqual(['devices[0].transport.ae_title: must name one AE title']);
    expect(problems(device('{ type: nowhere }'))).toEqual([
      'devices[0].transport.type: must be one of serial, tcp, tcp-server, hid, simulated, usb-printer, dicom-scp, loopback-test',
    ]);
    const config = parseConfig(device('{ type: loopback-test, ae_title: US_ROOM2, port: 11112 }'));
    const { transport } = await buildTransport(config.devices[0]!.transport);
    expect(transport.description).toBe('loop:host');
    expect(built).toEqual([{ type: 'loopback-test', ae_title: 'US_ROOM2', port: 11112 }]);
  });

  it('the built-in checks still name their field (reconnect_max_ms below reconnect_min_ms)', () => {
    expect(problems('devices:\n  - id: d1\n    driver: x\n    transport: { type: tcp, host: h, port: 1, reconnect_min_ms: 900, reconnect_max_ms: 100 }\n')).toEqual([
      'devices[0].transport.reconnect_max_ms: must be >= reconnect_min_ms (900)',
    ]);
  });

  it('simulated builds the driver simulator on an in-memory cable named after the device', async () => {
    const attached: unknown[] = [];
    const { transport, simulator } = await buildTransport(
      { type: 'simulated', simulator: { serial: 'S1' } },
      { deviceId: 'demo', simulator: async (options) => ({ attach: (t) => attached.push([options, t.description]), detach: () => undefined }) },
    );
    expect(transport.description).toBe('sim:demo:host');
    expect(simulator).toBeDefined();
    expect(attached).toEqual([[{ serial: 'S1' }, 'sim:demo:device']]);
  });
});
