import { existsSync } from 'node:fs';
import { readFile } from 'node:fs/promises';
import { createRequire } from 'node:module';
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { Socket } from 'node:net';
import { basename, dirname, extname, join, normalize, sep } from 'node:path';
import type { Duplex } from 'node:stream';
import { OPERATOR_VERBS, ROLES, roleRules, type AccessList } from '../mqtt/access.ts';
import { TOPIC_SCHEMAS } from '../mqtt/topics.ts';
import { listenOn } from '../util/listen.ts';
import { packageFile } from '../util/package-files.ts';

/**
 * The dashboard's HTTP server: the page (`web/`), the browser builds of its libraries, the topic
 * map and the schemas the daemon itself uses (so the page has no copy of its own), a login check,
 * and the WebSocket upgrade at `<base>mqtt`, handed to the embedded broker. No build step: what
 * is served is the files as they are in the package.
 */

export interface DashboardServerOptions {
  host: string;
  port: number;
  /** Starts and ends with `/`. */
  basePath: string;
  baseTopic: string;
  site: string;
  /** The accounts of the embedded broker; absent with an external broker (no login check then). */
  access?: AccessList | undefined;
  /** The broker's WebSocket upgrade; absent with an external broker. */
  upgrade?: ((req: IncomingMessage, socket: Duplex, head: Buffer) => void) | undefined;
  /** Where the page connects with an external broker (`http.broker_url`). */
  brokerUrl?: string | undefined;
  /** Whether a page at this Origin may use the API (login) and the WebSocket. */
  allowOrigin: (origin: string, host: string | undefined) => boolean;
  /** `http.allowed_origins`: their host names are names of this dashboard too (a reverse proxy's). */
  allowedOrigins: readonly string[];
}

/** The page's libraries: URL name → package and file in it (browser ES module builds). */
const VENDOR: Readonly<Record<string, [string, ...string[]]>> = {
  'mqtt.esm.js': ['mqtt', 'dist', 'mqtt.esm.js'],
  'preact.mjs': ['preact', 'dist', 'preact.mjs'],
  'preact-hooks.mjs': ['preact', 'hooks', 'dist', 'hooks.mjs'],
  'htm.mjs': ['htm', 'dist', 'htm.mjs'],
  'uplot.mjs': ['uplot', 'dist', 'uPlot.esm.js'],
  'uplot.css': ['uplot', 'dist', 'uPlot.min.css'],
};

const require = createRequire(import.meta.url);

/** A file of an installed package, wherever npm put the package (hoisted or not). */
function vendorFile([pkg, ...rest]: [string, ...string[]]): string | undefined {
  let dir: string;
  try {
    dir = dirname(require.resolve(pkg));
  } catch {
    return undefined;
  }
  for (; dir !== dirname(dir); dir = dirname(dir)) {
    if (basename(dir) === pkg && existsSync(join(dir, 'package.json'))) return join(dir, ...rest);
  }
  return undefined;
}

const TYPES: Readonly<Record<string, string>> = {
  '.html': 'text/html; charset=utf-8',
  '.js': 'text/javascript; charset=utf-8',
  '.mjs': 'text/javascript; charset=utf-8',
  '.css': 'text/css; charset=utf-8',
  '.json': 'application/json; charset=utf-8',
  '.png': 'image/png',
  '.svg': 'image/svg+xml',
};

const LOGIN_FAILURE_DELAY_MS = 500;

const SECURITY_HEADERS = {
  // Scripts, styles and sockets from the daemon only (mqtt.js runs its timers in a blob: worker);
  // no framing (clickjacking on a command page).
  'content-security-policy': "default-src 'self'; connect-src 'self' ws: wss:; img-src 'self' data:; style-src 'self'; worker-src 'self' blob:; frame-ancestors 'none'",
  'x-frame-options': 'DENY',
  'x-content-type-options': 'nosniff',
  'referrer-policy': 'no-referrer',
};

/** The page's own files: a name under web/, never a path that climbs out of it. */
function webFile(name: string): string | undefined {
  const root = packageFile('web');
  const path = normalize(join(root, name));
  return path.startsWith(root + sep) && TYPES[extname(path)] ? path : undefined;
}

export class DashboardServer {
  private server: Server | undefined;
  private readonly sockets = new Set<Socket>();

  constructor(private readonly options: DashboardServerOptions) {}

  get port(): number | null {
    const address = this.server?.address();
    return typeof address === 'object' && address ? address.port : null;
  }

  /** The origins of this page as a browser on this machine names them. */
  origins(): string[] {
    const port = this.port;
    if (port === null) return [];
    const hosts = new Set(['127.0.0.1', 'localhost', '[::1]', this.options.host.includes(':') ? `[${this.options.host}]` : this.options.host]);
    return [...hosts].filter((h) => h !== '0.0.0.0' && h !== '[::]').map((h) => `http://${h}:${port}`);
  }

  get url(): string | null {
    const port = this.port;
    if (port === null) return null;
    const host = ['0.0.0.0', '::'].includes(this.options.host) ? '127.0.0.1' : this.options.host;
    return `http://${host.includes(':') ? `[${host}]` : host}:${port}${this.options.basePath}`;
  }

  async start(): Promise<void> {
    const server = createServer((req, res) => {
      this.handle(req, res).catch(() => {
        if (!res.headersSent) res.writeHead(500);
        res.end();
      });
    });
    server.on('connection', (socket) => {
      socket.setNoDelay(true);
      this.sockets.add(socket);
      socket.once('close', () => this.sockets.delete(socket));
    });
    server.on('upgrade', (req, socket, head) => this.onUpgrade(req, socket, head));
    this.server = server;
    await listenOn(server, this.options.port, this.options.host).catch((error: NodeJS.ErrnoException) => {
      const why = error.code === 'EADDRINUSE' ? 'the port is already in use (choose another http.port, or 0 to disable the dashboard)' : error.message;
      throw new Error(`dashboard: cannot listen on ${this.options.host}:${this.options.port}: ${why}`, { cause: error });
    });
  }

  async stop(): Promise<void> {
    const server = this.server;
    this.server = undefined;
    if (!server?.listening) return;
    for (const socket of this.sockets) socket.destroy();
    await new Promise<void>((resolve) => server.close(() => resolve()));
  }

  /**
   * A loopback dashboard answers only requests for its own names: a page of another site whose
   * name was made to resolve to 127.0.0.1 (DNS rebinding) would otherwise count as same-origin.
   * Bound to a wildcard address the names it is reached by are not known, and any is taken.
   */
  private hostAllowed(host: string | undefined): boolean {
    const bind = this.options.host;
    if (bind === '0.0.0.0' || bind === '::') return true;
    if (!host) return false;
    const port = this.port;
    const names = new Set([...this.origins(), ...this.options.allowedOrigins].map((o) => new URL(o).host));
    if (port !== null) names.add(`${bind.includes(':') ? `[${bind}]` : bind}:${port}`);
    return names.has(host.toLowerCase());
  }

  private onUpgrade(req: IncomingMessage, socket: Duplex, head: Buffer): void {
    if (!this.hostAllowed(req.headers.host)) {
      socket.end('HTTP/1.1 421 Misdirected Request\r\nConnection: close\r\n\r\n');
      return;
    }
    const path = new URL(req.url ?? '/', 'http://x').pathname;
    if (path !== `${this.options.basePath}mqtt` || !this.options.upgrade) {
      socket.end('HTTP/1.1 404 Not Found\r\nConnection: close\r\n\r\n');
      return;
    }
    // The broker checks the Origin too; refused here as well so nothing reaches it.
    const origin = req.headers.origin;
    if (origin !== undefined && !this.options.allowOrigin(origin, req.headers.host)) {
      socket.end('HTTP/1.1 403 Forbidden\r\nConnection: close\r\n\r\n');
      return;
    }
    this.options.upgrade(req, socket, head);
  }

  private async handle(req: IncomingMessage, res: ServerResponse): Promise<void> {
    if (!this.hostAllowed(req.headers.host)) return this.send(res, 421, 'not a name of this dashboard\n', { 'content-type': 'text/plain' });
    const base = this.options.basePath;
    const path = new URL(req.url ?? '/', 'http://x').pathname;
    if (path === base.slice(0, -1) && base !== '/') return this.send(res, 301, '', { location: base });
    if (!path.startsWith(base)) return this.send(res, 404, 'not found\n', { 'content-type': 'text/plain' });
    const rest = path.slice(base.length);

    if (rest === 'api/session') return this.session(req, res);
    if (req.method !== 'GET' && req.method !== 'HEAD') return this.send(res, 405, 'method not allowed\n', { allow: 'GET, HEAD' });
    if (rest === '' || rest === 'index.html') return this.file(res, webFile('index.html'));
    if (rest === 'api/topics.json') return this.json(res, this.topicMap());
    const schema = /^api\/schemas\/([a-z0-9-]+\.schema\.json)$/.exec(rest);
    if (schema) return this.file(res, packageFile('schemas', schema[1]!));
    const vendor = /^vendor\/([a-z.-]+)$/.exec(rest);
    if (vendor) {
      const file = VENDOR[vendor[1]!];
      // preact/hooks imports the bare name "preact", which a browser without an import map (an
      // inline script the page's CSP forbids) cannot resolve: point it at the file served beside it.
      const rewrite = vendor[1] === 'preact-hooks.mjs' ? (text: string) => text.replace(/from\s*"preact"/g, 'from"./preact.mjs"') : undefined;
      return this.file(res, file ? vendorFile(file) : undefined, rewrite);
    }
    if (rest.startsWith('app/')) return this.file(res, webFile(rest.slice('app/'.length)));
    return this.send(res, 404, 'not found\n', { 'content-type': 'text/plain' });
  }

  /** What the page needs to know about the API: the daemon's own topic map and role table. */
  private topicMap(): unknown {
    return {
      site: this.options.site,
      base_topic: this.options.baseTopic,
      // The page connects here; a relative URL goes through this server (and any proxy in front).
      broker: this.options.brokerUrl ?? (this.options.upgrade ? 'mqtt' : null),
      topics: TOPIC_SCHEMAS,
      roles: Object.fromEntries(ROLES.map((r) => [r, roleRules(r)])),
      operator_verbs: OPERATOR_VERBS,
    };
  }

  /**
   * POST {username, password} → the user's roles, so the page shows only the actions they allow
   * (the broker enforces them whatever the page shows). 401 for a wrong login.
   */
  private async session(req: IncomingMessage, res: ServerResponse): Promise<void> {
    if (req.method !== 'POST') return this.send(res, 405, 'method not allowed\n', { allow: 'POST' });
    const origin = req.headers.origin;
    if (origin !== undefined && !this.options.allowOrigin(origin, req.headers.host)) return this.send(res, 403, 'origin not allowed\n');
    const body = await readBody(req, 4096).catch(() => undefined);
    let login: { username?: unknown; password?: unknown } = {};
    try {
      login = JSON.parse(body ?? '') as typeof login;
    } catch {
      return this.send(res, 400, 'expected JSON {"username","password"}\n');
    }
    if (typeof login.username !== 'string' || typeof login.password !== 'string') return this.send(res, 400, 'expected JSON {"username","password"}\n');
    if (!this.options.access) {
      // An external broker checks the login itself; the page learns the roles from what it may do.
      return this.json(res, { username: login.username, roles: null });
    }
    const principal = this.options.access.authenticate(login.username, login.password);
    if (!principal || principal.isDaemon) {
      // A refusal costs the guesser half a second (scrypt already costs this process ~50 ms).
      await new Promise((resolve) => setTimeout(resolve, LOGIN_FAILURE_DELAY_MS));
      return this.send(res, 401, 'bad username or password\n');
    }
    return this.json(res, { username: principal.name, roles: principal.roles });
  }

  private async file(res: ServerResponse, path: string | undefined, rewrite?: (text: string) => string): Promise<void> {
    if (!path) return this.send(res, 404, 'not found\n', { 'content-type': 'text/plain' });
    let body: Buffer | string;
    try {
      body = await readFile(path);
      if (rewrite) body = rewrite(body.toString('utf8'));
    } catch {
      return this.send(res, 404, 'not found\n', { 'content-type': 'text/plain' });
    }
    this.send(res, 200, body, { 'content-type': TYPES[extname(path)] ?? 'application/octet-stream', 'cache-control': 'no-cache' });
  }

  private json(res: ServerResponse, value: unknown): void {
    this.send(res, 200, JSON.stringify(value), { 'content-type': TYPES['.json']!, 'cache-control': 'no-store' });
  }

  private send(res: ServerResponse, status: number, body: string | Buffer, headers: Record<string, string> = {}): void {
    res.writeHead(status, { ...SECURITY_HEADERS, ...headers });
    res.end(body);
  }
}

function readBody(req: IncomingMessage, limit: number): Promise<string> {
  return new Promise((resolve, reject) => {
    let text = '';
    req.on('data', (chunk: Buffer) => {
      text += chunk.toString();
      if (text.length > limit) {
        reject(new Error('too large'));
        req.destroy();
      }
    });
    req.on('end', () => resolve(text));
    req.on('error', reject);
  });
}
