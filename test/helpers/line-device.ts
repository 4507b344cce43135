import type { DriverDefinition, DriverSession, SessionHost } from '../../src/driver-sdk/index.ts';
import { NO_PARAMS } from '../../src/driver-sdk/index.ts';
import type { DeviceKind } from '../../src/records/device-state.ts';
import type { ByteTransport } from '../../src/transports/transport.ts';
import { glucoseDraft } from './records.ts';

/**
 * A made-up line protocol for the SDK's session-base tests, so they exercise the base and not a
 * real codec: the device sends `R <n>` (one result per line, a unit), `E` (a unit with nothing to
 * store) and `EOT`; the host answers `ACK <n>` / `NAK <n>`. For a printer: the host sends `JOB <x>`
 * and `STATUS?`, the device answers `DONE <x>` and `PAPER <0|1>`.
 */
export class LineDevice {
  end: ByteTransport | undefined;
  readonly received: string[] = [];
  private buffer = '';
  /** Called for each line the host sent. */
  onLine: ((line: string) => void) | undefined;

  attach(transport: ByteTransport): void {
    this.end = transport;
    transport.on('data', (chunk: Buffer) => {
      this.buffer += chunk.toString('latin1');
      let nl: number;
      while ((nl = this.buffer.indexOf('\n')) >= 0) {
        const line = this.buffer.slice(0, nl);
        this.buffer = this.buffer.slice(nl + 1);
        this.received.push(line);
        this.onLine?.(line);
      }
    });
  }

  detach(): void {
    this.end = undefined;
  }

  send(...lines: string[]): void {
    void this.end!.write(Buffer.from(lines.map((l) => `${l}\n`).join(''), 'latin1'));
  }
}

/** Splits received bytes into lines; returns the complete ones. */
export class LineFramer {
  private buffer = '';
  push(chunk: Buffer): string[] {
    this.buffer += chunk.toString('latin1');
    const lines = this.buffer.split('\n');
    this.buffer = lines.pop()!;
    return lines;
  }
}

/** The draft a line `R <n>` carries. */
export function lineDraft(n: number) {
  return glucoseDraft(n, { device: { ...glucoseDraft(n).device, id: 'line1', driver: 'line-device' } });
}

/** A driver definition around a session factory, for the session-base tests. */
export function lineDriver(kind: DeviceKind, createSession: (host: SessionHost) => DriverSession, device: LineDevice, commands: DriverDefinition['commands'] = {}): DriverDefinition {
  return {
    id: 'line-device',
    kind,
    vendor: 'Test',
    models: ['Line'],
    usb: [],
    transports: ['simulated'],
    commands: { status: { description: 'state', params: NO_PARAMS }, ...commands },
    decode: () => ({ drafts: {}, issues: [], device: {} }),
    createSession,
    simulator: { description: 'the line device', options: {}, load: async () => ({ create: () => device }) },
  };
}
