import { afterEach, describe, expect, it, vi } from 'vitest';
import { COMMANDS, main } from '../../cli/main.ts';

/** The command list: one entry per command, a command that reads its own argv gets it untouched. */
describe('cli command list', () => {
  const added: string[] = [];
  afterEach(() => {
    for (const name of added.splice(0)) COMMANDS.splice(COMMANDS.findIndex((c) => c.name === name), 1);
    vi.restoreAllMocks();
  });

  it('a command that parses its own argv (cli/<command>.ts taking argv) is one entry and gets every argument as given', async () => {
    const seen: string[][] = [];
    COMMANDS.push({ name: 'own-argv', summary: 'reads its own argv', ownArgv: true, run: ({ argv }) => (seen.push(argv), 7) });
    added.push('own-argv');
    expect(await main(['own-argv', '--printer', 'zebra-1', 'label.zpl', '-x', '--copies=2'])).toBe(7);
    expect(await main(['own-argv', '--help'])).toBe(7);
    expect(await main(['help', 'own-argv'])).toBe(7);
    expect(seen).toEqual([['--printer', 'zebra-1', 'label.zpl', '-x', '--copies=2'], ['--help'], ['--help']]);
  });

  it('a declared command gets its arguments and options parsed, and is listed in --help', async () => {
    let got: unknown;
    COMMANDS.push({
      name: 'declared',
      summary: 'a declared command',
      arguments: ['<thing>'],
      options: [{ flags: '--level <n>', description: 'a level' }, { flags: '--tag <t>', description: 'repeatable', repeatable: true }],
      run: (parsed) => ((got = { args: parsed.args, options: parsed.options }), 0),
    });
    added.push('declared');
    expect(await main(['declared', 'x', '--level', '3', '--tag', 'a', '--tag', 'b'])).toBe(0);
    expect(got).toEqual({ args: ['x'], options: { level: '3', tag: ['a', 'b'] } });
    const out: string[] = [];
    vi.spyOn(process.stdout, 'write').mockImplementation((s) => (out.push(String(s)), true));
    expect(await main(['--help'])).toBe(0);
    expect(out.join('')).toMatch(/^ {2}declared \[options\] <thing> +a declared command$/m);
  });

  it('every command has a unique name and a summary', () => {
    const names = COMMANDS.map((c) => c.name);
    expect(new Set(names).size).toBe(names.length);
    expect(COMMANDS.every((c) => c.summary.length > 0)).toBe(true);
    expect(names).toEqual(['run', 'replay', 'check-config', 'results', 'export', 'ports', 'simulate', 'label', 'user', 'acl', 'audit', 'drivers']);
  });
});
