import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { checkConfig } from '../../cli/check-config.ts';
import { drivers } from '../../drivers/index.ts';
import { zebraZpl } from '../../drivers/printers/zebra-zpl/definition.ts';
import { ConfigError } from '../../src/config/load.ts';
import type { DeviceConfig } from '../../src/config/types.ts';
import { useCleanups } from '../helpers/cleanups.ts';
import { tempDir } from '../helpers/daemon.ts';
import { deviceManagerRig } from '../helpers/device-manager-rig.ts';

const cleanups = useCleanups();

const printer = (options: Record<string, unknown>): DeviceConfig => ({
  id: 'draw-printer-1',
  driver: 'zebra-zpl',
  transport: { type: 'tcp', host: '127.0.0.1', port: 9 },
  options,
});

const WRIST = { description: 'wristband', dpmm: 8, width_mm: 25, height_mm: 250, zpl: '^XA^CI28^FO10,10^A0N,20,20^FH_^FD{{patient.name|30}} {{room|4}}^FS^XZ' };

describe('zebra-zpl device options', () => {
  it('names a site template that references an unknown field, and a bad id scheme', () => {
    expect(zebraZpl.optionProblems!(printer({ templates: { wrist: WRIST }, specimen_ids: { prefix: 'x', digits: 8 } }))).toEqual([
      { path: 'options.templates.wrist', message: expect.stringContaining('references unknown field "room"') },
      { path: 'options.specimen_ids.prefix', message: '1 to 6 upper-case letters or digits' },
    ]);
    expect(zebraZpl.optionProblems!(printer({ templates: { wrist: { dpmm: 8 } } })).map((p) => p.message)).toEqual([
      'zpl: required, the ZPL format as text',
      'width_mm: required, a number',
      'height_mm: required, a number',
    ]);
    expect(zebraZpl.optionProblems!(printer({ templates: { wrist: { ...WRIST, zpl: WRIST.zpl.replace(' {{room|4}}', '') } } }))).toEqual([]);
  });

  it('poctd check-config reports it with the device path', () => {
    const file = join(tempDir('poctd-cc-'), 'poctd.yaml');
    writeFileSync(
      file,
      `devices:\n  - id: draw-printer-1\n    driver: zebra-zpl\n    transport: { type: tcp, host: 10.0.0.41, port: 9100 }\n    options:\n      templates:\n        wrist: ${JSON.stringify(WRIST)}\n`,
    );
    let error: unknown;
    try {
      checkConfig(file, {});
    } catch (e) {
      error = e;
    }
    expect(error).toBeInstanceOf(ConfigError);
    // Found by the loader's driver checks, which `run` shares: placed in the file like every problem.
    expect((error as ConfigError).problems).toEqual([
      { path: 'devices[0].options.templates.wrist', message: expect.stringContaining('unknown field "room"'), line: 7, column: 9 },
    ]);
  });

  it('the device manager does not start a printer whose options have problems, and says why', async () => {
    const r = await deviceManagerRig({ devices: [printer({ templates: { wrist: WRIST } })], drivers, cleanups });
    expect(r.manager.list()).toEqual([]);
    expect(r.events.find((e) => e.type === 'config_error')?.message).toMatch(/options\.templates\.wrist: .*unknown field "room".*; device not started$/);
  });
});
