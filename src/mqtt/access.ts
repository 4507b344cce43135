/**
 * Who may read and publish what on the broker: the roles, their topic rules (relative to the base
 * topic, so one table serves the embedded broker, the dashboard and the Mosquitto ACL generator),
 * the users from the config and how their passwords are checked.
 *
 * Everything not granted is refused. Only the daemon's own account publishes state, results,
 * events and responses, and only it may publish with the retain flag.
 */
import { createHmac, randomBytes, scryptSync, timingSafeEqual } from 'node:crypto';
import { chmodSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import type { AccessRole, AccessUser, PoctdConfig } from '../config/types.ts';
import { RECORD_KIND_NAMES, RECORD_KINDS } from '../records/kinds.ts';

export const ROLES = ['viewer', 'clinician', 'operator', 'integration', 'admin'] as const;
export type Role = (typeof ROLES)[number] & AccessRole;

/** A user as the config gives it (`access.users[]`): a `hashed_password`, or a `password` from `${ENV}`. */
export type AccessUserConfig = AccessUser;

/** Device commands the operator role may send (the meters' and printers' everyday verbs: a label's preview, its job list, cancelling a queued job and settling an uncertain one are part of printing). */
export const OPERATOR_VERBS = ['download', 'clock/sync', 'print', 'preview', 'jobs', 'cancel', 'confirm', 'status'] as const;

/** What every role reads: the bench's state, never patient data. */
const STATE_TOPICS = [
  'bridge/state',
  'bridge/info',
  'bridge/devices',
  'bridge/health',
  'bridge/event',
  'device/+',
  'device/+/availability',
] as const;

/** Record topics from the kind table (`device/+/result`, and each kind added later). */
export function recordTopics(): string[] {
  return RECORD_KIND_NAMES.map((name) => `device/+/${RECORD_KINDS[name].topic}`);
}

export interface RoleRules {
  /** Filters (relative to the base) whose messages the role receives as published. */
  read: string[];
  /** Filters whose messages the role receives with the patient fields removed (embedded broker only). */
  readRedacted: string[];
  /** Filters the role may publish on (never retained). */
  publish: string[];
}

/** The access matrix. The README's table and the tests are written from this. */
export function roleRules(role: Role): RoleRules {
  const records = recordTopics();
  switch (role) {
    case 'viewer':
      return { read: [...STATE_TOPICS], readRedacted: records, publish: [] };
    case 'clinician':
      return { read: [...STATE_TOPICS, ...records], readRedacted: [], publish: [] };
    case 'operator':
      return {
        read: [...STATE_TOPICS, ...OPERATOR_VERBS.map((v) => `device/+/response/${v}`)],
        readRedacted: records,
        publish: OPERATOR_VERBS.map((v) => `device/+/request/${v}`),
      };
    case 'integration':
      return {
        read: [...STATE_TOPICS, ...records, 'bridge/response/results/replay'],
        readRedacted: [],
        publish: ['bridge/request/results/replay'],
      };
    case 'admin':
      return {
        read: [...STATE_TOPICS, ...records, 'bridge/response/#', 'device/+/response/#'],
        readRedacted: [],
        publish: ['bridge/request/#', 'device/+/request/#'],
      };
  }
}

/** The union of several roles' rules; a topic read in full by one role is not redacted. */
export function rulesOf(roles: readonly Role[]): RoleRules {
  const read = new Set<string>();
  const redacted = new Set<string>();
  const publish = new Set<string>();
  for (const role of roles) {
    const r = roleRules(role);
    r.read.forEach((f) => read.add(f));
    r.readRedacted.forEach((f) => redacted.add(f));
    r.publish.forEach((f) => publish.add(f));
  }
  for (const f of read) redacted.delete(f);
  return { read: [...read], readRedacted: [...redacted], publish: [...publish] };
}

/** MQTT filter matching: `+` one level, `#` the rest (and the parent level). */
export function filterMatches(filter: string, topic: string): boolean {
  const f = filter.split('/');
  const t = topic.split('/');
  for (let i = 0; i < f.length; i++) {
    if (f[i] === '#') return true;
    if (i >= t.length) return false;
    if (f[i] !== '+' && f[i] !== t[i]) return false;
  }
  return f.length === t.length;
}

/** Whether some topic matches both filters (a subscription that can receive anything a rule grants). */
export function filtersOverlap(a: string, b: string): boolean {
  const x = a.split('/');
  const y = b.split('/');
  for (let i = 0; ; i++) {
    const p = x[i];
    const q = y[i];
    if (p === '#' || q === '#') return true;
    if (p === undefined || q === undefined) return p === q;
    if (p !== '+' && q !== '+' && p !== q) return false;
  }
}

/** Topic names may not hold wildcards; a level that is empty is allowed by MQTT but not by us. */
function isPlainTopic(topic: string): boolean {
  return !/[+#]/.test(topic) && !topic.split('/').includes('');
}

export type ReadDecision = 'full' | 'redacted' | 'none';

/**
 * Device verbs whose answer shows patient data (a label preview is a picture of the patient's
 * name and MRN): the answer goes to the user who asked and to the daemon, not to every role that
 * may read the verb's responses. Matched by the request's transaction, which the broker notes.
 */
export const REQUESTER_ONLY_VERBS: readonly string[] = ['preview'];

/** `device/<id>/request|response/<verb>` under `base`, for a verb of REQUESTER_ONLY_VERBS. */
export function requesterOnlyTopic(base: string, topic: string): { device: string; direction: 'request' | 'response'; verb: string } | undefined {
  if (!topic.startsWith(`${base}/device/`)) return undefined;
  const parts = topic.slice(base.length + 1).split('/');
  if (parts.length < 4) return undefined;
  const [, device, direction] = parts;
  const verb = parts.slice(3).join('/');
  if ((direction !== 'request' && direction !== 'response') || !REQUESTER_ONLY_VERBS.includes(verb)) return undefined;
  return { device: device!, direction, verb };
}

/**
 * One connected identity's permissions, relative to `base`. The daemon's own principal may do
 * anything under the base (and nothing else may touch `$SYS`).
 */
export class Principal {
  private readonly rules: RoleRules;

  constructor(
    readonly name: string,
    readonly roles: readonly Role[],
    private readonly base: string,
    readonly isDaemon = false,
  ) {
    this.rules = rulesOf(roles);
  }

  /** Whether some messages reach this principal only redacted. */
  get redacts(): boolean {
    return this.rules.readRedacted.length > 0;
  }

  private relative(topic: string): string | undefined {
    return topic.startsWith(`${this.base}/`) ? topic.slice(this.base.length + 1) : undefined;
  }

  mayPublish(topic: string, retain: boolean): boolean {
    if (topic.startsWith('$')) return false;
    if (this.isDaemon) return true;
    if (retain || !isPlainTopic(topic)) return false;
    const rel = this.relative(topic);
    return rel !== undefined && this.rules.publish.some((f) => filterMatches(f, rel));
  }

  /** How a message on `topic` reaches this principal. */
  read(topic: string): ReadDecision {
    if (this.isDaemon) return topic.startsWith('$') ? 'none' : 'full';
    const rel = this.relative(topic);
    if (rel === undefined) return 'none';
    if (this.rules.read.some((f) => filterMatches(f, rel))) return 'full';
    if (this.rules.readRedacted.some((f) => filterMatches(f, rel))) return 'redacted';
    return 'none';
  }

  /** A subscription is granted when it can receive something this principal may read. */
  maySubscribe(filter: string): boolean {
    if (this.isDaemon) return !filter.startsWith('$');
    // `#` and `+/...` at the top would cover `$SYS`-like topics too; they are still granted and
    // the forward check drops what is not readable.
    const base = this.base.split('/');
    const f = filter.split('/');
    for (let i = 0; i < base.length; i++) {
      if (f[i] === '#') return true;
      if (f[i] === undefined || (f[i] !== '+' && f[i] !== base[i])) return false;
    }
    const rel = f.slice(base.length).join('/');
    if (rel === '') return false;
    return [...this.rules.read, ...this.rules.readRedacted].some((g) => filtersOverlap(g, rel));
  }
}

/** The JSON object a payload holds; undefined for anything else (not JSON, an array, a scalar). */
export function jsonObject(payload: Buffer): Record<string, unknown> | undefined {
  let value: unknown;
  try {
    value = JSON.parse(payload.toString('utf8'));
  } catch {
    return undefined;
  }
  return typeof value === 'object' && value !== null && !Array.isArray(value) ? (value as Record<string, unknown>) : undefined;
}

/**
 * A record with its patient fields removed, for a role that sees results without patient ids.
 * Undefined when the payload is not a record this table knows: such a message is then not
 * forwarded at all (fail closed).
 */
export function redactRecord(payload: Buffer): Buffer | undefined {
  const record = jsonObject(payload);
  if (!record) return undefined;
  const schema = record.schema;
  const kind = RECORD_KIND_NAMES.map((n) => RECORD_KINDS[n]).find((k) => k.schema === schema);
  if (!kind) return undefined;
  const copy = structuredClone(record) as Record<string, unknown>;
  for (const path of kind.privateFields) {
    // The field stays, as null: the shape the `omit` privacy policy gives, which the schema allows.
    let node: Record<string, unknown> | undefined = copy;
    for (const key of path.slice(0, -1)) {
      const next: unknown = node?.[key];
      node = typeof next === 'object' && next !== null ? (next as Record<string, unknown>) : undefined;
    }
    const last = path[path.length - 1]!;
    if (node && last in node) node[last] = null;
  }
  return Buffer.from(JSON.stringify(copy));
}

// -------------------------------------------------------------------------------------------
// Passwords

const SCRYPT = { N: 16384, r: 8, p: 1, keyLength: 32 } as const;

/** A salted scrypt hash: `scrypt$N$r$p$salt$hash`, salt and hash in base64. */
export function hashPassword(password: string, salt: Buffer = randomBytes(16)): string {
  const hash = scryptSync(password, salt, SCRYPT.keyLength, { N: SCRYPT.N, r: SCRYPT.r, p: SCRYPT.p });
  return ['scrypt', SCRYPT.N, SCRYPT.r, SCRYPT.p, salt.toString('base64'), hash.toString('base64')].join('$');
}

const HASH_RE = /^scrypt\$(\d+)\$(\d+)\$(\d+)\$([A-Za-z0-9+/=]+)\$([A-Za-z0-9+/=]+)$/;

/** Why a stored hash cannot be used, or undefined when it can. */
export function passwordHashProblem(stored: string): string | undefined {
  const m = HASH_RE.exec(stored);
  if (!m) return 'must be scrypt$N$r$p$salt$hash (make one with `poctd user add`)';
  const [n, r, p] = [Number(m[1]), Number(m[2]), Number(m[3])];
  if (n < 1024 || (n & (n - 1)) !== 0 || n > 1_048_576) return 'N must be a power of two from 1024 to 1048576';
  if (r < 1 || r > 32 || p < 1 || p > 16) return 'r must be 1..32 and p 1..16';
  if (Buffer.from(m[5]!, 'base64').length < 16) return 'the hash is too short';
  return undefined;
}

export function verifyPassword(password: string, stored: string): boolean {
  const m = HASH_RE.exec(stored);
  if (!m || passwordHashProblem(stored)) return false;
  const expected = Buffer.from(m[5]!, 'base64');
  const N = Number(m[1]);
  const r = Number(m[2]);
  const actual = scryptSync(password, Buffer.from(m[4]!, 'base64'), expected.length, {
    N,
    r,
    p: Number(m[3]),
    maxmem: 256 * N * r + 1024 * 1024,
  });
  return timingSafeEqual(actual, expected);
}

/** Constant-time comparison of two plain strings (the daemon's own and `${ENV}` passwords). */
export function samePassword(a: string, b: string): boolean {
  const x = Buffer.from(a);
  const y = Buffer.from(b);
  return x.length === y.length && timingSafeEqual(x, y);
}

// -------------------------------------------------------------------------------------------
// The accounts a broker knows

/** What the schema cannot say about `access.users`, each naming its entry. */
export function accessProblems(users: readonly AccessUserConfig[], daemonName: string): string[] {
  const problems: string[] = [];
  const seen = new Set<string>();
  users.forEach((user, i) => {
    const at = `access.users[${i}]`;
    if (user.name === daemonName) problems.push(`${at}.name: "${user.name}" is the daemon's own account (mqtt.embedded.username)`);
    else if (seen.has(user.name)) problems.push(`${at}.name: "${user.name}" is listed twice`);
    seen.add(user.name);
    if ((user.hashed_password === undefined) === (user.password === undefined)) {
      problems.push(`${at}: give exactly one of hashed_password (poctd user add) or password (from \${ENV})`);
    } else if (user.hashed_password !== undefined) {
      const why = passwordHashProblem(user.hashed_password);
      if (why) problems.push(`${at}.hashed_password: ${why}`);
    }
  });
  return problems;
}

export interface Account {
  name: string;
  roles: readonly Role[];
  isDaemon: boolean;
  check(password: string): boolean;
}

/**
 * The accounts of one daemon: its own (which the daemon connects with) and the configured users.
 * A verified login is remembered (as a keyed digest) for the process's life, so a dashboard
 * reconnecting every few seconds does not pay for scrypt each time.
 */
export class AccessList {
  private readonly accounts = new Map<string, Account>();
  private readonly verified = new Map<string, string>();
  private readonly cacheKey = randomBytes(32);

  constructor(
    readonly base: string,
    daemon: { name: string; password: string },
    users: readonly AccessUserConfig[],
  ) {
    const problem = accessProblems(users, daemon.name)[0];
    if (problem) throw new Error(problem);
    this.accounts.set(daemon.name, { name: daemon.name, roles: [], isDaemon: true, check: (pw) => samePassword(pw, daemon.password) });
    for (const user of users) {
      const { hashed_password: hash, password } = user;
      const check = hash !== undefined ? (pw: string) => this.checkHash(user.name, pw, hash) : (pw: string) => password !== undefined && samePassword(pw, password);
      this.accounts.set(user.name, { name: user.name, roles: [...user.roles], isDaemon: false, check });
    }
  }

  private checkHash(name: string, password: string, hash: string): boolean {
    // What is remembered is a keyed digest, never the password itself.
    const digest = createHmac('sha256', this.cacheKey).update(password).digest('base64');
    const known = this.verified.get(name);
    if (known !== undefined) return samePassword(known, digest);
    const ok = verifyPassword(password, hash);
    if (ok) this.verified.set(name, digest);
    return ok;
  }

  /** The principal for a login, or undefined when the name or the password is wrong. */
  authenticate(name: string | undefined, password: string | undefined): Principal | undefined {
    if (name === undefined || password === undefined) return undefined;
    const account = this.accounts.get(name);
    if (!account || !account.check(password)) return undefined;
    return new Principal(account.name, account.roles, this.base, account.isDaemon);
  }

  /** Configured users (not the daemon), for the ACL generator and the page's role display. */
  get users(): Account[] {
    return [...this.accounts.values()].filter((a) => !a.isDaemon);
  }
}

// -------------------------------------------------------------------------------------------
// Mosquitto

/**
 * A Mosquitto ACL file giving each user its roles' topics and the daemon all of the base. Mosquitto
 * cannot rewrite payloads, so a role that reads results only without patient ids gets no result
 * topic there at all (fail closed); Mosquitto has no rule on the retain flag either, and poctd
 * ignores a retained request whoever sent it.
 */
export function mosquittoAcl(base: string, daemonUser: string, users: ReadonlyArray<{ name: string; roles: readonly Role[] }>): string {
  const lines = [
    '# Generated by `poctd acl --mosquitto`: one block per user, topics the roles grant.',
    '# Anything not listed is refused. Reload Mosquitto (SIGHUP) after a change.',
    '',
    `user ${daemonUser}`,
    `topic readwrite ${base}/#`,
  ];
  for (const user of users) {
    const rules = rulesOf(user.roles);
    lines.push('', `# roles: ${user.roles.join(', ')}`, `user ${user.name}`);
    for (const f of rules.read) lines.push(`topic read ${base}/${f}`);
    for (const f of rules.publish) lines.push(`topic write ${base}/${f}`);
  }
  return lines.join('\n') + '\n';
}

// -------------------------------------------------------------------------------------------
// The embedded broker's accounts for one daemon

/** Where the zero-config operator's password lives: beside the database, readable by its owner only. */
export function localOperatorFile(storePath: string): string {
  return join(dirname(storePath), 'local-operator.secret');
}

/** The local operator's password, made on the first start and kept for the next ones. */
export function localOperatorPassword(file: string): string {
  try {
    const kept = readFileSync(file, 'utf8').trim();
    if (kept.length >= 16) return kept;
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code !== 'ENOENT') throw error;
  }
  mkdirSync(dirname(file), { recursive: true });
  const password = randomBytes(18).toString('base64url');
  writeFileSync(file, `${password}\n`, { mode: 0o600 });
  chmodSync(file, 0o600);
  return password;
}

export const LOCAL_OPERATOR = 'operator';

export interface DaemonAccess {
  list: AccessList;
  /** The daemon's own login on its broker. */
  daemon: { name: string; password: string };
  /** Users from the config (not the daemon, not the local operator). */
  configuredUsers: number;
  /** Set when the zero-config operator account was made: its name and password file. */
  localOperator?: { name: string; file: string };
}

/** The accounts of the embedded broker as the config gives them. */
export function daemonAccess(config: PoctdConfig): DaemonAccess {
  const embedded = config.mqtt.embedded;
  const daemon = {
    name: embedded.username ?? 'poctd',
    // Nobody else needs it: a fresh secret per start, never written anywhere.
    password: embedded.password ?? randomBytes(32).toString('base64url'),
  };
  const configured = config.access?.users ?? [];
  const users: AccessUser[] = [...configured];
  let localOperator: DaemonAccess['localOperator'];
  if (configured.length === 0 && config.access?.local_operator !== false && daemon.name !== LOCAL_OPERATOR) {
    const file = localOperatorFile(config.store.path);
    users.push({ name: LOCAL_OPERATOR, roles: ['operator'], password: localOperatorPassword(file) });
    localOperator = { name: LOCAL_OPERATOR, file };
  }
  const result: DaemonAccess = {
    list: new AccessList(config.mqtt.base_topic, daemon, users),
    daemon,
    configuredUsers: configured.length,
  };
  if (localOperator) result.localOperator = localOperator;
  return result;
}
