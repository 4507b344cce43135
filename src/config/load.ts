/**
 * Loading the YAML config: parse, substitute `${ENV}` references in string values, validate against
 * `schemas/config.schema.json`, run the checks a schema cannot express, merge over the defaults and
 * resolve relative paths. Every problem found is reported at once, each with its path in the file
 * (`devices[2].transport.path: required`) and, where known, its line and column.
 */
import { accessSync, constants as fsConstants, readFileSync, statSync } from 'node:fs';
import { dirname, isAbsolute, resolve as resolvePath } from 'node:path';
import { Ajv2020, type ErrorObject, type ValidateFunction } from 'ajv/dist/2020.js';
import { LineCounter, isAlias, isMap, isScalar, isSeq, parseDocument, type Document, type Node } from 'yaml';
import { transportKind, transportKinds } from '../transports/registry.ts';
import { isLoopbackHost } from '../util/hosts.ts';
import { packageFile } from '../util/package-files.ts';
import { assertTimeZone, hostTimeZone } from '../util/time.ts';
import type { DeviceConfig, PoctdConfig } from './types.ts';

// ---------------------------------------------------------------------------------------------
// Errors

export interface ConfigProblem {
  /** Where in the config, e.g. `devices[2].transport.path`; '' for the file as a whole. */
  path: string;
  message: string;
  /** 1-based position in the YAML text, when it could be located. */
  line?: number;
  column?: number;
}

/** `devices[0].id: required`, or just the message for whole-file problems. */
export function formatProblem(problem: ConfigProblem): string {
  return problem.path ? `${problem.path}: ${problem.message}` : problem.message;
}

/** A config that cannot be used. `message` lists every problem, one per line. */
export class ConfigError extends Error {
  readonly problems: ConfigProblem[];
  /** The config file, when the config came from one (set by `loadConfigFile`). */
  file?: string;

  constructor(problems: ConfigProblem[], file?: string) {
    super(problems.map(formatProblem).join('\n'));
    this.name = 'ConfigError';
    this.problems = problems;
    if (file !== undefined) this.file = file;
  }
}

// ---------------------------------------------------------------------------------------------
// Defaults

function deepFreeze<T>(value: T): T {
  if (value && typeof value === 'object') {
    for (const v of Object.values(value)) deepFreeze(v);
    Object.freeze(value);
  }
  return value;
}

/**
 * The embedded defaults (`poctd run` without a config file). Frozen; relative paths here are
 * resolved against the working directory by `parseConfig`.
 */
export const DEFAULT_CONFIG: Readonly<PoctdConfig> = deepFreeze<PoctdConfig>({
  site: 'poctd',
  timezone: hostTimeZone(),
  mqtt: {
    base_topic: 'poct',
    reject_unauthorized: true,
    keepalive_s: 30,
    reconnect_ms: 2000,
    embedded: { host: '127.0.0.1', port: 1883, ws_port: 8083 },
  },
  store: { path: './data/poctd.db' },
  privacy: { patient_id: 'hash' },
  log: { level: 'info' },
  health_interval_s: 60,
  devices: [],
  auto_detect: { interval_s: 2, allow: [] },
});

// ---------------------------------------------------------------------------------------------
// Paths

type Token = string | number;

const IDENT_RE = /^[A-Za-z_][A-Za-z0-9_-]*$/;

/** ['devices', 2, 'transport'] → `devices[2].transport`. */
function formatPath(tokens: readonly Token[]): string {
  let out = '';
  for (const t of tokens) {
    if (typeof t === 'number') out += `[${t}]`;
    else if (IDENT_RE.test(t)) out += out ? `.${t}` : t;
    else out += `[${JSON.stringify(t)}]`;
  }
  return out;
}

/** Ajv's instancePath (`/devices/2/transport`) → tokens, with array indexes as numbers. */
function pointerTokens(pointer: string, data: unknown): Token[] {
  if (pointer === '') return [];
  const tokens: Token[] = [];
  let node: unknown = data;
  for (const raw of pointer.slice(1).split('/')) {
    const key = raw.replace(/~1/g, '/').replace(/~0/g, '~');
    if (Array.isArray(node) && /^\d+$/.test(key)) {
      tokens.push(Number(key));
      node = node[Number(key)];
    } else {
      tokens.push(key);
      node = isPlainObject(node) ? node[key] : undefined;
    }
  }
  return tokens;
}

function isPlainObject(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

/** Line/column of the deepest YAML node on `tokens` (the key of a mapping entry, if any). */
function locate(doc: Document, lineCounter: LineCounter, tokens: readonly Token[]): { line: number; column: number } | undefined {
  let node: unknown = doc.contents;
  let at: Node | undefined = isScalar(node) || isMap(node) || isSeq(node) ? (node as Node) : undefined;
  for (const t of tokens) {
    if (isAlias(node)) node = node.resolve(doc);
    if (isMap(node)) {
      const pair = node.items.find((p) => {
        const k = isScalar(p.key) ? p.key.value : p.key;
        return String(k) === String(t);
      });
      if (!pair) break;
      at = (isScalar(pair.key) ? pair.key : (pair.value as Node | null)) ?? at;
      node = pair.value;
    } else if (isSeq(node) && typeof t === 'number') {
      const item = node.items[t];
      if (item === undefined) break;
      node = item;
      if (isScalar(item) || isMap(item) || isSeq(item) || isAlias(item)) at = item as Node;
    } else {
      break;
    }
  }
  const offset = at?.range?.[0];
  if (offset === undefined) return undefined;
  const pos = lineCounter.linePos(offset);
  return { line: pos.line, column: pos.col };
}

// ---------------------------------------------------------------------------------------------
// ${ENV} substitution

const VAR_RE = /^([A-Za-z_][A-Za-z0-9_]*)(?::-([\s\S]*))?$/;

/**
 * Replace `${NAME}` and `${NAME:-default}` in one string value (`:-` applies when NAME is unset or
 * empty); `$${` writes a literal `${`. Problems are pushed with `path`; returns the substituted text.
 */
function substituteInto(text: string, env: NodeJS.ProcessEnv, path: string, problems: ConfigProblem[]): string {
  if (!text.includes('${')) return text;
  let out = '';
  let i = 0;
  while (i < text.length) {
    const dollar = text.indexOf('$', i);
    if (dollar < 0) {
      out += text.slice(i);
      break;
    }
    out += text.slice(i, dollar);
    if (text.startsWith('$${', dollar)) {
      out += '${';
      i = dollar + 3;
      continue;
    }
    if (!text.startsWith('${', dollar)) {
      out += '$';
      i = dollar + 1;
      continue;
    }
    const close = text.indexOf('}', dollar + 2);
    if (close < 0) {
      problems.push({ path, message: 'unterminated "${" (write "$${" for a literal "${")' });
      return text;
    }
    const inner = text.slice(dollar + 2, close);
    const m = VAR_RE.exec(inner);
    if (!m) {
      problems.push({
        path,
        message: `invalid variable reference "\${${inner}}" (use \${NAME} or \${NAME:-default}; "$\${" for a literal "\${")`,
      });
      return text;
    }
    const name = m[1] as string;
    const fallback = m[2];
    const value = env[name];
    if (fallback !== undefined) {
      out += value === undefined || value === '' ? fallback : value;
    } else if (value === undefined) {
      problems.push({ path, message: `environment variable ${name} is not set` });
    } else {
      out += value;
    }
    i = close + 1;
  }
  return out;
}

/**
 * Substitute `${NAME}` / `${NAME:-default}` in one YAML string value. Throws a ConfigError naming
 * `path` when a variable without default is not set or a reference is malformed.
 */
export function substituteEnv(text: string, env: NodeJS.ProcessEnv = process.env, path = ''): string {
  const problems: ConfigProblem[] = [];
  const out = substituteInto(text, env, path, problems);
  if (problems.length > 0) throw new ConfigError(problems);
  return out;
}

const WHOLE_REF_RE = /^\$\{[^}]*\}$/;

interface Prepared {
  value: unknown;
  /** JSON pointers of strings that were exactly one `${...}` reference (may be coerced to numbers). */
  wholeRefs: Set<string>;
}

function escapePointer(key: string): string {
  return key.replace(/~/g, '~0').replace(/\//g, '~1');
}

/**
 * Walk the parsed tree: drop null-valued mapping entries (an empty `key:` means "use the default";
 * not inside driver `options` or `simulator`, which are passed on as written) and substitute
 * environment references in every string value.
 */
function prepareTree(root: unknown, env: NodeJS.ProcessEnv, problems: ConfigProblem[]): Prepared {
  const wholeRefs = new Set<string>();
  const walk = (v: unknown, tokens: Token[], pointer: string, freeForm: boolean): unknown => {
    if (typeof v === 'string') {
      const out = substituteInto(v, env, formatPath(tokens), problems);
      if (out !== v && WHOLE_REF_RE.test(v)) wholeRefs.add(pointer);
      return out;
    }
    if (Array.isArray(v)) return v.map((item, i) => walk(item, [...tokens, i], `${pointer}/${i}`, freeForm));
    if (isPlainObject(v)) {
      const out: Record<string, unknown> = {};
      for (const [k, item] of Object.entries(v)) {
        if (item === null && !freeForm) continue;
        const isFree = freeForm || ((k === 'options' || k === 'simulator') && tokens[0] === 'devices');
        out[k] = walk(item, [...tokens, k], `${pointer}/${escapePointer(k)}`, isFree);
      }
      return out;
    }
    return v;
  };
  return { value: walk(root, [], '', false), wholeRefs };
}

// ---------------------------------------------------------------------------------------------
// Schema validation

const SCHEMA_FILE = packageFile('schemas', 'config.schema.json');

interface SchemaNode {
  properties?: Record<string, unknown>;
  'x-messages'?: Record<string, string>;
  [k: string]: unknown;
}

let compiled: { validate: ValidateFunction; transportTypes: string[] } | undefined;

/**
 * The config schema with `$defs.transport` made from the transport registry: one discriminated
 * branch per registered kind, its options' schema either a definition already in the file (the
 * built-in kinds, documented there) or the kind's own. Compiled again when a kind was registered
 * since.
 */
function schemaValidator(): { validate: ValidateFunction; transportTypes: string[] } {
  const kinds = transportKinds();
  if (compiled && compiled.transportTypes.length === kinds.length) return compiled;
  const schema = JSON.parse(readFileSync(SCHEMA_FILE, 'utf8')) as { $defs: Record<string, unknown> };
  const branches = kinds.map((spec) => {
    let name: string;
    if ('$defsName' in spec.schema) {
      name = spec.schema.$defsName;
      if (!schema.$defs[name]) throw new Error(`transport kind "${spec.kind}": config.schema.json has no $defs.${name}`);
    } else {
      name = `transport:${spec.kind}`;
      schema.$defs[name] = spec.schema.inline;
    }
    return { $ref: `#/$defs/${name}` };
  });
  (schema.$defs.transport as { oneOf: unknown[] }).oneOf = branches;
  const ajv = new Ajv2020({ allErrors: true, verbose: true, discriminator: true });
  // Annotation: a human message per failing keyword, for patterns whose regex says little.
  ajv.addKeyword({ keyword: 'x-messages', schemaType: 'object' });
  const validate = ajv.compile(schema);
  compiled = { validate, transportTypes: kinds.map((k) => k.kind) };
  return compiled;
}

/** The transport kinds the config accepts (the registered ones). */
export function transportTypes(): string[] {
  return [...schemaValidator().transportTypes];
}

const TYPE_WORDS: Record<string, string> = {
  object: 'a mapping',
  array: 'a list',
  string: 'a string',
  integer: 'a whole number',
  number: 'a number',
  boolean: 'true or false',
  null: 'empty',
};

function editDistance(a: string, b: string): number {
  const prev = Array.from({ length: b.length + 1 }, (_, j) => j);
  for (let i = 1; i <= a.length; i++) {
    let diag = prev[0] as number;
    prev[0] = i;
    for (let j = 1; j <= b.length; j++) {
      const tmp = prev[j] as number;
      prev[j] = Math.min(tmp + 1, (prev[j - 1] as number) + 1, diag + (a[i - 1] === b[j - 1] ? 0 : 1));
      diag = tmp;
    }
  }
  return prev[b.length] as number;
}

function suggest(key: string, candidates: readonly string[]): string | undefined {
  let best: string | undefined;
  let bestD = Infinity;
  for (const c of candidates) {
    const d = editDistance(key.toLowerCase(), c.toLowerCase());
    if (d < bestD) {
      bestD = d;
      best = c;
    }
  }
  return best !== undefined && bestD <= Math.max(1, Math.floor(best.length / 3)) ? best : undefined;
}

/** Ajv errors → problems with config paths; `data` is what was validated. */
function schemaProblems(errors: readonly ErrorObject[], data: unknown, transportKinds: readonly string[]): { tokens: Token[]; message: string }[] {
  const out: { tokens: Token[]; message: string }[] = [];
  // Errors inside a failed anyOf are replaced by the anyOf's own message.
  const anyOfs = errors.filter((e) => e.keyword === 'anyOf').map((e) => ({ at: e.instancePath, schemaPath: `${e.schemaPath}/` }));
  for (const e of errors) {
    if (anyOfs.some((a) => a.at === e.instancePath && e.schemaPath.startsWith(a.schemaPath))) continue;
    const tokens = pointerTokens(e.instancePath, data);
    const parent = (e.parentSchema ?? {}) as SchemaNode;
    const custom = parent['x-messages']?.[e.keyword];
    const params = e.params as Record<string, unknown>;
    switch (e.keyword) {
      case 'required':
        out.push({ tokens: [...tokens, String(params.missingProperty)], message: 'required' });
        break;
      case 'additionalProperties': {
        const key = String(params.additionalProperty);
        const hint = suggest(key, Object.keys(parent.properties ?? {}));
        out.push({ tokens: [...tokens, key], message: hint ? `unknown key (did you mean "${hint}"?)` : 'unknown key' });
        break;
      }
      case 'discriminator': {
        // A missing `type` is reported by `required`; otherwise the tag is not one we know.
        const tagValue = params.tagValue;
        if (tagValue === undefined) break;
        out.push({ tokens: [...tokens, String(params.tag)], message: `must be one of ${transportKinds.join(', ')}` });
        break;
      }
      case 'enum':
        out.push({ tokens, message: `must be one of ${(params.allowedValues as unknown[]).map(String).join(', ')}` });
        break;
      case 'const':
        out.push({ tokens, message: `must be ${JSON.stringify(params.allowedValue)}` });
        break;
      case 'type': {
        const types = String(params.type).split(',');
        const words = types.map((t) => TYPE_WORDS[t] ?? t).join(' or ');
        out.push({ tokens, message: custom ?? (tokens.length === 0 ? `the config must be ${words}` : `must be ${words}`) });
        break;
      }
      case 'minLength':
        out.push({ tokens, message: custom ?? (params.limit === 1 ? 'must not be empty' : `must be at least ${String(params.limit)} characters`) });
        break;
      case 'maxLength':
        out.push({ tokens, message: custom ?? `must be at most ${String(params.limit)} characters` });
        break;
      case 'pattern':
        out.push({ tokens, message: custom ?? `must match ${String(params.pattern)}` });
        break;
      default:
        out.push({ tokens, message: custom ?? e.message ?? `fails ${e.keyword}` });
    }
  }
  return out;
}

// ---------------------------------------------------------------------------------------------
// Checks a schema cannot express

interface ParseContext {
  knownDrivers?: readonly string[];
  listenerIdentities?: Readonly<Record<string, readonly string[]>>;
  driverOptions?: Readonly<Record<string, DriverOptionSchemas>>;
  hostChecks?: boolean;
  baseDir: string;
}

function checkZone(zone: unknown, tokens: Token[], out: { tokens: Token[]; message: string }[]): void {
  if (typeof zone !== 'string' || zone === '') return;
  try {
    assertTimeZone(zone);
  } catch {
    out.push({ tokens, message: `unknown time zone ${JSON.stringify(zone)}` });
  }
}

const ANY_ADDRESS = new Set(['0.0.0.0', '::', '']);

function semanticProblems(cfg: Record<string, unknown>, ctx: ParseContext): { tokens: Token[]; message: string }[] {
  const out: { tokens: Token[]; message: string }[] = [];
  checkZone(cfg.timezone, ['timezone'], out);

  const mqtt = isPlainObject(cfg.mqtt) ? cfg.mqtt : {};
  if (typeof mqtt.url === 'string' && /^(mqtts?|wss?):\/\/\S+$/.test(mqtt.url)) {
    let ok = false;
    try {
      ok = new URL(mqtt.url).hostname !== '';
    } catch {
      ok = false;
    }
    if (!ok) out.push({ tokens: ['mqtt', 'url'], message: `not a valid URL: ${JSON.stringify(mqtt.url)}` });
  }
  if (typeof mqtt.cert === 'string' && mqtt.key === undefined) out.push({ tokens: ['mqtt', 'key'], message: 'required when cert is set' });
  if (typeof mqtt.key === 'string' && mqtt.cert === undefined) out.push({ tokens: ['mqtt', 'cert'], message: 'required when key is set' });
  const embedded = isPlainObject(mqtt.embedded) ? mqtt.embedded : {};
  if (typeof embedded.username === 'string' && embedded.password === undefined) {
    out.push({ tokens: ['mqtt', 'embedded', 'password'], message: 'required when username is set' });
  }
  if (typeof embedded.password === 'string' && embedded.username === undefined) {
    out.push({ tokens: ['mqtt', 'embedded', 'username'], message: 'required when password is set' });
  }
  if (typeof embedded.port === 'number' && embedded.port === embedded.ws_port) {
    out.push({ tokens: ['mqtt', 'embedded', 'ws_port'], message: `must differ from port (${embedded.port})` });
  }

  const known = ctx.knownDrivers ? [...ctx.knownDrivers].sort() : undefined;
  const unknownDriver = (driver: string): string =>
    `unknown driver ${JSON.stringify(driver)} (known: ${known && known.length > 0 ? known.join(', ') : 'none'})`;
  const autoDetect = isPlainObject(cfg.auto_detect) ? cfg.auto_detect : {};
  checkZone(autoDetect.timezone, ['auto_detect', 'timezone'], out);
  if (Array.isArray(autoDetect.allow)) {
    autoDetect.allow.forEach((rule: unknown, i: number) => {
      if (isPlainObject(rule) && known && typeof rule.driver === 'string' && rule.driver !== '' && !known.includes(rule.driver)) {
        out.push({ tokens: ['auto_detect', 'allow', i, 'driver'], message: unknownDriver(rule.driver) });
      }
    });
  }

  if (!Array.isArray(cfg.devices)) return out;
  const ids = new Map<string, number>();
  const serialPaths = new Map<string, number>();
  const listeners: ListenerEntry[] = [];

  cfg.devices.forEach((dev: unknown, i: number) => {
    if (!isPlainObject(dev)) return;
    const at = (...rest: Token[]): Token[] => ['devices', i, ...rest];
    if (typeof dev.id === 'string') {
      const first = ids.get(dev.id);
      if (first !== undefined) out.push({ tokens: at('id'), message: `duplicate of devices[${first}]` });
      else ids.set(dev.id, i);
    }
    if (known && typeof dev.driver === 'string' && dev.driver !== '' && !known.includes(dev.driver)) {
      out.push({ tokens: at('driver'), message: unknownDriver(dev.driver) });
    }
    checkZone(dev.timezone, at('timezone'), out);

    const t = dev.transport;
    if (!isPlainObject(t)) return;
    if (t.type === 'serial' && typeof t.path === 'string' && t.path !== '') {
      const first = serialPaths.get(t.path);
      if (first !== undefined) out.push({ tokens: at('transport', 'path'), message: `${t.path} is already used by devices[${first}]` });
      else serialPaths.set(t.path, i);
    }
    if (t.type === 'tcp-server' && typeof t.port === 'number') {
      out.push(...listenerProblems(listeners, { index: i, port: t.port, bind: typeof t.bind === 'string' ? t.bind : '127.0.0.1', dev, t }, ctx));
    }
    const kind = typeof t.type === 'string' ? transportKind(t.type) : undefined;
    for (const p of kind?.check?.(t) ?? []) {
      // A list item is named as `key[index]`.
      const item = /^(\w+)\[(\d+)\]$/.exec(p.field);
      out.push({ tokens: item ? at('transport', item[1]!, Number(item[2])) : at('transport', p.field), message: p.message });
    }
  });
  return out;
}

interface ListenerEntry {
  index: number;
  port: number;
  bind: string;
  dev: Record<string, unknown>;
  t: Record<string, unknown>;
}

function sendersOf(t: Record<string, unknown>): string[] {
  const s = t.sender;
  const list = typeof s === 'string' ? [s] : Array.isArray(s) ? s.filter((x): x is string => typeof x === 'string') : [];
  return list.map((x) => x.trim().toLowerCase()).filter((x) => x !== '');
}

/**
 * A tcp-server device beside the ones before it: devices on one port share one listener, so they
 * must agree on how it listens (bind, idle timeout, connection limit) and on the protocol (one
 * driver), and each must name callers no other device there names.
 */
function listenerProblems(before: ListenerEntry[], e: ListenerEntry, ctx: ParseContext): { tokens: Token[]; message: string }[] {
  const out: { tokens: Token[]; message: string }[] = [];
  const at = (...rest: Token[]): Token[] => ['devices', e.index, ...rest];
  const routes = typeof e.dev.driver === 'string' ? ctx.listenerIdentities?.[e.dev.driver] : undefined;
  if (ctx.listenerIdentities && e.t.sender !== undefined && !(routes ?? []).includes('sender')) {
    const which = Object.entries(ctx.listenerIdentities).filter(([, keys]) => keys.includes('sender')).map(([d]) => d);
    out.push({
      tokens: at('transport', 'sender'),
      message: `driver ${JSON.stringify(e.dev.driver)} does not route callers by sender (drivers that do: ${which.length > 0 ? which.join(', ') : 'none'})`,
    });
  }
  const samePort = before.filter((l) => l.port === e.port);
  before.push(e);
  const sharing = samePort.filter((l) => l.bind === e.bind);
  const otherBind = samePort.find((l) => l.bind !== e.bind && (ANY_ADDRESS.has(l.bind) || ANY_ADDRESS.has(e.bind)));
  if (otherBind) {
    out.push({
      tokens: at('transport', 'bind'),
      message: `port ${e.port} is listened on by devices[${otherBind.index}] with bind ${otherBind.bind}; devices that share a port must name the same bind`,
    });
    return out;
  }
  const first = sharing[0];
  if (!first) return out;
  if (first.dev.driver !== e.dev.driver) {
    out.push({
      tokens: at('driver'),
      message: `port ${e.port} is shared with devices[${first.index}] (driver ${String(first.dev.driver)}); devices that share a port must use one driver`,
    });
  }
  for (const key of ['idle_timeout_ms', 'max_connections', 'quiet_timeout_ms', 'max_connections_per_peer'] as const) {
    if (e.t[key] !== first.t[key]) {
      out.push({ tokens: at('transport', key), message: `must equal devices[${first.index}]'s (${String(first.t[key] ?? 'default')}): they share port ${e.port}` });
    }
  }
  const mine = sendersOf(e.t);
  if (mine.length === 0) {
    out.push({ tokens: at('transport', 'sender'), message: `required: port ${e.port} is shared with devices[${first.index}], so each device there names its sender` });
  }
  for (const l of sharing) {
    if (sendersOf(l.t).length === 0 && l === first) {
      // The first device's own missing sender is reported once, on the second device's entry.
      if (mine.length > 0) out.push({ tokens: at('transport', 'sender'), message: `devices[${l.index}] on port ${e.port} names no sender, so every caller would be it; name a sender on each device of a shared port` });
      continue;
    }
    const overlap = mine.find((s) => sendersOf(l.t).includes(s));
    if (overlap) out.push({ tokens: at('transport', 'sender'), message: `sender ${JSON.stringify(overlap)} is already devices[${l.index}]'s on port ${e.port}` });
  }
  return out;
}

// ---------------------------------------------------------------------------------------------
// Driver options and simulator options

const optionValidators = new WeakMap<object, ValidateFunction>();
let optionsAjv: Ajv2020 | undefined;

function optionValidator(schema: Readonly<Record<string, unknown>>): ValidateFunction {
  let validate = optionValidators.get(schema);
  if (!validate) {
    optionsAjv ??= new Ajv2020({ allErrors: true, verbose: true, strict: false });
    validate = optionsAjv.compile(schema);
    optionValidators.set(schema, validate);
  }
  return validate;
}

/** A simulator's options as a schema: its documented names, nothing else (its own parser checks the values). */
const simulatorSchemas = new Map<string, Record<string, unknown>>();
function simulatorSchema(driver: string, names: readonly string[]): Record<string, unknown> {
  let schema = simulatorSchemas.get(driver);
  if (!schema) {
    schema = { type: 'object', additionalProperties: false, properties: Object.fromEntries(names.map((n) => [n, true])) };
    simulatorSchemas.set(driver, schema);
  }
  return schema;
}

function optionProblems(cfg: Record<string, unknown>, ctx: ParseContext, kinds: readonly string[]): { tokens: Token[]; message: string }[] {
  const out: { tokens: Token[]; message: string }[] = [];
  if (!ctx.driverOptions || !Array.isArray(cfg.devices)) return out;
  const check = (schema: Readonly<Record<string, unknown>>, value: unknown, at: Token[]): void => {
    const validate = optionValidator(schema);
    if (validate(value)) return;
    for (const p of schemaProblems(validate.errors ?? [], value, kinds)) out.push({ tokens: [...at, ...p.tokens], message: p.message });
  };
  cfg.devices.forEach((dev: unknown, i: number) => {
    if (!isPlainObject(dev) || typeof dev.driver !== 'string') return;
    const schemas = ctx.driverOptions![dev.driver];
    if (!schemas) return;
    const before = out.length;
    if (schemas.options && dev.options !== undefined) check(schemas.options, dev.options, ['devices', i, 'options']);
    if (schemas.problems && out.length === before) {
      for (const p of schemas.problems(dev as unknown as DeviceConfig)) out.push({ tokens: ['devices', i, ...pathTokens(p.path)], message: p.message });
    }
    const t = dev.transport;
    if (schemas.simulatorOptions && isPlainObject(t) && t.type === 'simulated' && isPlainObject(t.simulator)) {
      // `timezone` is the device's own zone, which the daemon gives every simulator.
      check(simulatorSchema(dev.driver, [...schemas.simulatorOptions, 'timezone']), t.simulator, ['devices', i, 'transport', 'simulator']);
    }
  });
  return out;
}

// ---------------------------------------------------------------------------------------------
// What start-up would refuse on this host

const errnoText = (error: unknown): string => {
  const code = (error as NodeJS.ErrnoException).code;
  const words: Record<string, string> = { ENOENT: 'no such file', EACCES: 'permission denied', EISDIR: 'a directory, not a file', ENOTDIR: 'a path component is not a directory' };
  return code ? `${code}${words[code] ? ` (${words[code]})` : ''}` : (error as Error).message;
};

/** Why the database at `path` could not be opened (and made, with its blob directory), or undefined. */
function storePathProblem(path: string): string | undefined {
  if (path === ':memory:') return 'the daemon needs a database file, not :memory:';
  try {
    const stat = statSync(path);
    if (!stat.isFile()) return `${path} is not a file`;
    accessSync(path, fsConstants.R_OK | fsConstants.W_OK);
    accessSync(dirname(path), fsConstants.W_OK);
    return undefined;
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code !== 'ENOENT') return `cannot open ${path}: ${errnoText(error)}`;
  }
  // It does not exist yet: the first directory on the way that does must be one we may write in.
  for (let dir = dirname(path); ; dir = dirname(dir)) {
    try {
      if (!statSync(dir).isDirectory()) return `cannot make ${path}: ${dir} is not a directory`;
      accessSync(dir, fsConstants.W_OK);
      return undefined;
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code !== 'ENOENT') return `cannot make ${path}: ${dir}: ${errnoText(error)}`;
    }
    if (dir === dirname(dir)) return `cannot make ${path}`;
  }
}

function hostProblems(cfg: Record<string, unknown>, baseDir: string): { tokens: Token[]; message: string }[] {
  const out: { tokens: Token[]; message: string }[] = [];
  const mqtt = isPlainObject(cfg.mqtt) ? cfg.mqtt : {};
  if (typeof mqtt.url === 'string') {
    for (const k of ['ca', 'cert', 'key'] as const) {
      const v = mqtt[k];
      if (typeof v !== 'string' || v === '') continue;
      const file = resolveFile(v, baseDir);
      try {
        accessSync(file, fsConstants.R_OK);
        if (!statSync(file).isFile()) out.push({ tokens: ['mqtt', k], message: `${file} is not a file` });
      } catch (error) {
        out.push({ tokens: ['mqtt', k], message: `cannot read ${file}: ${errnoText(error)}` });
      }
    }
  } else {
    const embedded = isPlainObject(mqtt.embedded) ? mqtt.embedded : {};
    const host = typeof embedded.host === 'string' ? embedded.host : DEFAULT_CONFIG.mqtt.embedded.host;
    if (!isLoopbackHost(host) && !(embedded.username && embedded.password)) {
      out.push({
        tokens: ['mqtt', 'embedded', 'host'],
        message: `the embedded broker would listen on ${host} with no credentials; set mqtt.embedded.username and mqtt.embedded.password, or keep host 127.0.0.1`,
      });
    }
  }
  const store = isPlainObject(cfg.store) ? cfg.store : {};
  const path = typeof store.path === 'string' ? resolveFile(store.path, baseDir) : resolveFile(DEFAULT_CONFIG.store.path, process.cwd());
  const problem = storePathProblem(path);
  if (problem) out.push({ tokens: ['store', 'path'], message: problem });
  return out;
}

// ---------------------------------------------------------------------------------------------
// Parse, merge, resolve

export interface ParseConfigOptions {
  /** Variables for `${NAME}` substitution; default `process.env`. */
  env?: NodeJS.ProcessEnv;
  /** Directory that relative paths written in the config are resolved against; default the cwd. */
  baseDir?: string;
  /** Registered driver ids; when given, a device naming another driver is a problem. */
  knownDrivers?: readonly string[];
  /**
   * The listener identity keys each driver routes by (`{ astm: ['sender'] }`); when given, an
   * identity key on a device whose driver does not route by it is a problem.
   */
  listenerIdentities?: Readonly<Record<string, readonly string[]>>;
  /**
   * Per driver id, the JSON Schema of its devices' `options` and its simulator's option names;
   * when given, `devices[].options` and a simulated transport's `simulator` are checked with them.
   */
  driverOptions?: Readonly<Record<string, DriverOptionSchemas>>;
  /**
   * Also check what start-up would refuse on this host: TLS files that cannot be read, a store
   * path that cannot be opened, an embedded broker open to the network without credentials.
   */
  hostChecks?: boolean;
}

/** What the config loader needs of a driver to check its devices' options. */
export interface DriverOptionSchemas {
  options?: Readonly<Record<string, unknown>>;
  simulatorOptions?: readonly string[];
  /** What only the driver can tell of a device's options once they fit the schema (a label template naming an unknown field); paths relative to the device. */
  problems?: (device: DeviceConfig) => ReadonlyArray<{ path: string; message: string }>;
}

/** The driver facts the config loader checks devices against (everything but the code). */
interface CheckableDriver {
  id: string;
  listenerIdentities?: readonly string[];
  optionsSchema?: Readonly<Record<string, unknown>>;
  optionProblems?: (device: DeviceConfig) => ReadonlyArray<{ path: string; message: string }>;
  simulator?: { options: Readonly<Record<string, string>> };
}

/**
 * The options `run` and `check-config` both load a config with, so that `check-config` refuses
 * everything start-up would: known drivers, listener identities, each driver's options schema and
 * its simulator's options, and the host checks.
 */
export function daemonConfigOptions(drivers: readonly CheckableDriver[]): ParseConfigOptions {
  return {
    knownDrivers: drivers.map((d) => d.id),
    listenerIdentities: listenerIdentitiesOf(drivers),
    driverOptions: Object.fromEntries(
      drivers.map((d) => [
        d.id,
        {
          ...(d.optionsSchema ? { options: d.optionsSchema } : {}),
          ...(d.optionProblems ? { problems: d.optionProblems } : {}),
          ...(d.simulator ? { simulatorOptions: Object.keys(d.simulator.options) } : {}),
        },
      ]),
    ),
    hostChecks: true,
  };
}

/** `ParseConfigOptions.listenerIdentities` from the registered drivers. */
export function listenerIdentitiesOf(drivers: readonly { id: string; listenerIdentities?: readonly string[] }[]): Record<string, readonly string[]> {
  return Object.fromEntries(drivers.map((d) => [d.id, d.listenerIdentities ?? []]));
}

function deepMerge(base: unknown, over: unknown): unknown {
  if (over === undefined) return structuredClone(base);
  if (isPlainObject(base) && isPlainObject(over)) {
    const out: Record<string, unknown> = structuredClone(base);
    for (const [k, v] of Object.entries(over)) out[k] = deepMerge(base[k], v);
    return out;
  }
  return structuredClone(over);
}

function resolveFile(p: string, dir: string): string {
  if (p === ':memory:' || isAbsolute(p)) return p;
  return resolvePath(dir, p);
}

/** Coerce strings that were a whole `${VAR}` to the number/boolean the schema wants. */
function coerceRefs(errors: readonly ErrorObject[], data: unknown, wholeRefs: Set<string>): boolean {
  let changed = false;
  for (const e of errors) {
    if (e.keyword !== 'type' || !wholeRefs.has(e.instancePath)) continue;
    const tokens = pointerTokens(e.instancePath, data);
    const key = tokens.pop();
    let parent: unknown = data;
    for (const t of tokens) parent = (parent as Record<string | number, unknown>)[t];
    if (key === undefined || parent === null || typeof parent !== 'object') continue;
    const container = parent as Record<string | number, unknown>;
    const s = container[key];
    if (typeof s !== 'string') continue;
    const want = String((e.params as { type: unknown }).type);
    const trimmed = s.trim();
    let value: unknown;
    if ((want.includes('integer') || want.includes('number')) && /^[-+]?(\d+\.?\d*|\.\d+)([eE][-+]?\d+)?$/.test(trimmed)) {
      value = Number(trimmed);
    } else if (want.includes('boolean') && /^(true|false)$/i.test(trimmed)) {
      value = trimmed.toLowerCase() === 'true';
    }
    if (value !== undefined) {
      container[key] = value;
      changed = true;
    }
  }
  return changed;
}

/**
 * Parse and validate YAML config text. An empty document gives the defaults. Throws ConfigError
 * listing every problem. Relative paths the file sets (store.path, mqtt.ca/cert/key) are resolved
 * against `baseDir`; the default store path is resolved against the working directory.
 */
export function parseConfig(yamlText: string, opts: ParseConfigOptions = {}): PoctdConfig {
  const env = opts.env ?? process.env;
  const baseDir = opts.baseDir ?? process.cwd();
  const lineCounter = new LineCounter();
  const doc = parseDocument(yamlText, { lineCounter, prettyErrors: false, uniqueKeys: true });

  if (doc.errors.length > 0) {
    // One mistake makes the parser complain several times on the same line; keep the first.
    const byLine = new Map<number, ConfigProblem>();
    const sourceLines = yamlText.split(/\r?\n/);
    for (const err of doc.errors) {
      const pos = err.linePos?.[0] ?? lineCounter.linePos(err.pos[0]);
      if (byLine.has(pos.line)) continue;
      let text =
        err.code === 'MULTIPLE_DOCS'
          ? 'the file must hold a single YAML document (remove the second "---")'
          : (err.message.split('\n')[0] ?? err.message).replace(/ at line \d+, column \d+:?$/, '');
      const src = sourceLines[pos.line - 1] ?? '';
      if (/[{[][^'"]*\$\{/.test(src)) text += ' (inside { } or [ ], quote values that use ${...}: "${NAME}")';
      byLine.set(pos.line, { path: '', message: `YAML syntax error at line ${pos.line}, column ${pos.col}: ${text}`, line: pos.line, column: pos.col });
    }
    throw new ConfigError([...byLine.values()]);
  }

  let raw: unknown;
  try {
    raw = doc.toJS({ maxAliasCount: 100 });
  } catch (err) {
    throw new ConfigError([{ path: '', message: `YAML error: ${(err as Error).message}` }]);
  }
  if (raw === null || raw === undefined) raw = {};

  const problems: ConfigProblem[] = [];
  const { value: data, wholeRefs } = prepareTree(raw, env, problems);
  // Env problems carry formatted paths; give them positions too.
  for (const p of problems) Object.assign(p, locateFormatted(doc, lineCounter, p.path));

  const { validate, transportTypes: kinds } = schemaValidator();
  let valid = validate(data);
  if (!valid && wholeRefs.size > 0 && coerceRefs(validate.errors ?? [], data, wholeRefs)) valid = validate(data);

  const found = valid ? [] : schemaProblems(validate.errors ?? [], data, kinds);
  if (isPlainObject(data)) {
    const ctx: ParseContext = { knownDrivers: opts.knownDrivers, listenerIdentities: opts.listenerIdentities, driverOptions: opts.driverOptions, hostChecks: opts.hostChecks, baseDir };
    found.push(...semanticProblems(data, ctx));
    found.push(...optionProblems(data, ctx, kinds));
    if (opts.hostChecks) found.push(...hostProblems(data, baseDir));
  }
  const seen = new Set(problems.map(formatProblem));
  // A value whose variable is missing would only add a confusing second complaint.
  const envPaths = new Set(problems.map((p) => p.path));
  for (const f of found) {
    const p: ConfigProblem = { path: formatPath(f.tokens), message: f.message, ...locate(doc, lineCounter, f.tokens) };
    const key = formatProblem(p);
    if (seen.has(key) || envPaths.has(p.path)) continue;
    seen.add(key);
    problems.push(p);
  }

  if (problems.length > 0) {
    // In file order; problems without a position keep theirs at the end.
    const order = problems.map((p, i) => ({ p, i }));
    order.sort((a, b) => (a.p.line ?? Infinity) - (b.p.line ?? Infinity) || (a.p.column ?? 0) - (b.p.column ?? 0) || a.i - b.i);
    throw new ConfigError(order.map((o) => o.p));
  }

  const user = data as Record<string, unknown>;
  const defaults = structuredClone(DEFAULT_CONFIG) as PoctdConfig;
  defaults.store.path = resolveFile(defaults.store.path, process.cwd());
  const config = deepMerge(defaults, user) as PoctdConfig;

  const userStore = user.store as { path?: string } | undefined;
  if (typeof userStore?.path === 'string') config.store.path = resolveFile(userStore.path, baseDir);
  if (config.log.file) config.log.file.path = resolveFile(config.log.file.path, baseDir);
  for (const k of ['ca', 'cert', 'key'] as const) {
    const v = config.mqtt[k];
    if (typeof v === 'string') config.mqtt[k] = resolveFile(v, baseDir);
  }
  for (const rule of config.auto_detect.allow) if (rule.usb !== undefined) rule.usb = rule.usb.toLowerCase();
  for (const dev of config.devices as DeviceConfig[]) {
    const t = dev.transport;
    if (t.type === 'hid') {
      if (t.vendor_id !== undefined) t.vendor_id = t.vendor_id.toLowerCase();
      if (t.product_id !== undefined) t.product_id = t.product_id.toLowerCase();
    }
  }
  return config;
}

/** The tokens of a formatted path (`options.templates["a b"].zpl`, `devices[0].options`). */
function pathTokens(path: string): Token[] {
  const tokens: Token[] = [];
  const re = /([A-Za-z_][A-Za-z0-9_-]*)|\[(\d+)\]|\["((?:[^"\\]|\\.)*)"\]|\./g;
  for (let m = re.exec(path); m; m = re.exec(path)) {
    if (m[1] !== undefined) tokens.push(m[1]);
    else if (m[2] !== undefined) tokens.push(Number(m[2]));
    else if (m[3] !== undefined) tokens.push(JSON.parse(`"${m[3]}"`) as string);
  }
  return tokens;
}

/** Position for a problem whose path is already formatted (env substitution problems). */
function locateFormatted(doc: Document, lineCounter: LineCounter, path: string): { line?: number; column?: number } {
  return locate(doc, lineCounter, pathTokens(path)) ?? {};
}

/** Read and parse a config file; relative paths in it are relative to its directory. */
export function loadConfigFile(path: string, opts: Omit<ParseConfigOptions, 'baseDir'> & { baseDir?: string } = {}): PoctdConfig {
  let text: string;
  try {
    text = readFileSync(path, 'utf8');
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    const message = code === 'ENOENT' ? `file not found: ${path}` : `cannot read ${path}: ${code ?? (err as Error).message}`;
    throw new ConfigError([{ path: '', message }], path);
  }
  try {
    return parseConfig(text, { ...opts, baseDir: opts.baseDir ?? dirname(resolvePath(path)) });
  } catch (err) {
    if (err instanceof ConfigError) err.file = path;
    throw err;
  }
}

// ---------------------------------------------------------------------------------------------
// Redaction

const SECRET_KEY_RE = /^(password|passwd|passphrase|secret|token|key|private_key|api_key|apikey)$|_(password|secret|token|key)$/i;

/** A deep copy with passwords, keys, tokens and URL credentials replaced by '***' (for bridge/info). */
export function redactConfig(config: PoctdConfig): PoctdConfig {
  const walk = (v: unknown): unknown => {
    if (Array.isArray(v)) return v.map(walk);
    if (isPlainObject(v)) {
      const out: Record<string, unknown> = {};
      for (const [k, item] of Object.entries(v)) {
        out[k] = SECRET_KEY_RE.test(k) && item !== undefined && item !== null && item !== '' ? '***' : walk(item);
      }
      return out;
    }
    if (typeof v === 'string' && /^[a-z][a-z0-9+.-]*:\/\/[^/\s]*:[^/\s]*@/i.test(v)) {
      try {
        const u = new URL(v);
        if (u.password) {
          u.password = '***';
          return u.toString();
        }
      } catch {
        // not a URL after all
      }
    }
    return v;
  };
  return walk(config) as PoctdConfig;
}
