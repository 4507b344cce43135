import type { IncomingMessage } from 'node:http';
import type { Duplex } from 'node:stream';
import { DashboardServer } from '../http/server.ts';
import type { AccessList } from '../mqtt/access.ts';
import { isLoopbackHost } from '../util/hosts.ts';
import type { Extension, Services } from './extension.ts';

export const DASHBOARD_DEFAULTS = { host: '127.0.0.1', port: 8080, base_path: '/' } as const;

export interface DashboardBroker {
  access: AccessList;
  configuredUsers: number;
  upgrade: (req: IncomingMessage, socket: Duplex, head: Buffer) => void;
}

/**
 * The dashboard page over HTTP (`http.*`). With the embedded broker the page's MQTT goes through
 * this server's WebSocket upgrade; with an external broker the page connects to `http.broker_url`.
 */
export class Dashboard implements Extension {
  readonly name = 'dashboard';
  private server: DashboardServer | undefined;

  constructor(
    private readonly services: Services,
    private readonly broker: DashboardBroker | undefined,
    private readonly allowOrigin: (origin: string, host: string | undefined) => boolean,
  ) {}

  /** The page's origins (for the broker's WebSocket listener), none before it listens. */
  origins(): string[] {
    return this.server?.origins() ?? [];
  }

  get url(): string | null {
    return this.server?.url ?? null;
  }

  async start(): Promise<void> {
    const { config, log } = this.services;
    const http = { ...DASHBOARD_DEFAULTS, ...config.http };
    if (http.port === 0) return;
    if (!this.broker && !config.http?.broker_url) {
      log.info('dashboard: off (an external broker and no http.broker_url for the page to connect to)');
      return;
    }
    if (!isLoopbackHost(http.host) && this.broker && this.broker.configuredUsers === 0) {
      throw new Error(`dashboard: refusing to listen on ${http.host} without users; add access.users (poctd user add), or keep http.host 127.0.0.1`);
    }
    this.server = new DashboardServer({
      host: http.host,
      port: http.port,
      basePath: http.base_path,
      baseTopic: config.mqtt.base_topic,
      site: config.site,
      access: this.broker?.access,
      upgrade: this.broker?.upgrade,
      brokerUrl: config.http?.broker_url,
      allowOrigin: this.allowOrigin,
      allowedOrigins: config.http?.allowed_origins ?? [],
    });
    await this.server.start();
    log.info({ url: this.server.url }, `dashboard: ${this.server.url}`);
  }

  async stop(): Promise<void> {
    await this.server?.stop();
    this.server = undefined;
  }
}
