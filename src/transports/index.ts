import type { HidTransportExtras } from './hid.ts';
import { HidTransport } from './hid.ts';
import { SerialTransport } from './serial.ts';
import { TcpClientTransport, TcpServerTransport } from './tcp.ts';
import type { ByteTransport, SerialTransportOptions, TransportOptions } from './transport.ts';

export type { ByteTransport, TransportKind, TransportOptions } from './transport.ts';
export { HidTransport, HidUnavailableError, loadNodeHid, type HidDeviceHandle, type HidOpener } from './hid.ts';
export { memoryPair, MemoryTransport } from './memory.ts';
export { backoffDelay, ReconnectingTransport } from './reconnecting.ts';
export { SerialTransport } from './serial.ts';
export { TcpClientTransport, TcpServerTransport } from './tcp.ts';

export type SerialDefaults = Omit<SerialTransportOptions, 'type' | 'path'>;

/**
 * Builds the transport a device's config asks for. For serial, the driver's line settings
 * (`serialDefaults`) apply unless the user's config sets the same field. `simulated` is not built
 * here: the session manager wires a simulator to a `memoryPair()` itself, so this throws.
 */
export function createTransport(
  options: TransportOptions,
  defaults?: SerialDefaults,
  extras: { hid?: HidTransportExtras } = {},
): ByteTransport {
  switch (options.type) {
    case 'serial': {
      const merged: SerialTransportOptions = { ...(defaults ?? {}), ...withoutUndefined(options) };
      return new SerialTransport(merged);
    }
    case 'tcp':
      return new TcpClientTransport(options);
    case 'tcp-server':
      return new TcpServerTransport(options);
    case 'hid':
      return new HidTransport(options, extras.hid);
    case 'simulated':
      throw new Error('simulated transports are built by the session manager with memoryPair(), not by createTransport()');
    default: {
      const unknown: never = options;
      throw new Error(`unknown transport type ${JSON.stringify((unknown as { type?: unknown }).type)}`);
    }
  }
}

/** A config parser may leave `baud_rate: undefined`; that must not hide the driver's default. */
function withoutUndefined<T extends object>(value: T): T {
  return Object.fromEntries(Object.entries(value).filter(([, v]) => v !== undefined)) as T;
}

/**
 * Waits until a transport's link is up (`open` event), for callers that need a device rather than
 * just an active transport. Resolves at once when it already is; rejects after `timeoutMs` with the
 * transport's last error in the message when it has one.
 */
export function waitForOpen(transport: ByteTransport, timeoutMs: number): Promise<void> {
  if (transport.isOpen) return Promise.resolve();
  return new Promise<void>((resolve, reject) => {
    const onOpen = (): void => {
      clearTimeout(timer);
      resolve();
    };
    const timer = setTimeout(() => {
      transport.off('open', onOpen);
      const last = (transport as { lastError?: Error }).lastError;
      reject(new Error(`${transport.description}: not open after ${timeoutMs} ms${last ? ` (${last.message})` : ''}`));
    }, timeoutMs);
    transport.once('open', onOpen);
  });
}
