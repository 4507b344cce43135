import { parseArgs } from 'node:util';
import { ROLES, hashPassword } from '../src/mqtt/access.ts';
import { UsageError } from './command-line.ts';

export interface CommandIo {
  stdin: NodeJS.ReadableStream & { isTTY?: boolean };
  stdout: { write(text: string): unknown };
  stderr: { write(text: string): unknown };
}

const MIN_PASSWORD = 8;

/** The first line of stdin (a pipe: `printf '%s' "$PW" | poctd user add …`), never echoed by us. */
async function readPassword(io: CommandIo): Promise<string> {
  if (io.stdin.isTTY) io.stderr.write('password (input is shown; pipe it in to keep it off the screen): ');
  let text = '';
  for await (const chunk of io.stdin) {
    text += chunk.toString();
    if (text.includes('\n')) break;
  }
  return text.split(/\r?\n/)[0] ?? '';
}

/**
 * `poctd user add NAME --role ROLE [--role ROLE …]`: reads the password from stdin and prints
 * the `access.users` entry with its salted scrypt hash, to paste into the config. The password
 * never goes on the command line (where `ps` shows it).
 */
export async function userCommand(args: string[], io: CommandIo = process): Promise<number> {
  const { positionals, values } = parseArgs({ args, allowPositionals: true, options: { role: { type: 'string', multiple: true } } });
  const [verb, name] = positionals;
  if (verb !== 'add') throw new UsageError(verb ? `user: unknown action "${verb}" (only "add")` : 'user needs an action: add NAME --role ROLE');
  if (!name || !/^[A-Za-z0-9_.@-]{1,64}$/.test(name)) throw new UsageError("user add: NAME must be 1 to 64 letters, digits, '_', '.', '@' or '-'");
  const roles = values.role ?? [];
  if (roles.length === 0) throw new UsageError(`user add: give at least one --role (${ROLES.join(', ')})`);
  const unknown = roles.find((r) => !(ROLES as readonly string[]).includes(r));
  if (unknown !== undefined) throw new UsageError(`user add: unknown role "${unknown}" (${ROLES.join(', ')})`);
  const password = await readPassword(io);
  if (password.length < MIN_PASSWORD) {
    io.stderr.write(`poctd user add: the password (first line of stdin) must have at least ${MIN_PASSWORD} characters\n`);
    return 1;
  }
  const entry = `    - { name: ${name}, roles: [${[...new Set(roles)].join(', ')}], hashed_password: "${hashPassword(password)}" }`;
  io.stdout.write(`# under access.users in the config:\n${entry}\n`);
  return 0;
}


