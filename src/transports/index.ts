import type { ByteTransport } from './transport.ts';

export type { ByteTransport, TransportKind, TransportOptions, TransportOptionsByKind } from './transport.ts';
export { HidTransport, HidUnavailableError, loadNodeHid, type HidDeviceHandle, type HidOpener } from './hid.ts';
export { memoryPair, MemoryTransport } from './memory.ts';
export { backoffDelay, ReconnectingTransport } from './reconnecting.ts';
export { SerialTransport } from './serial.ts';
export { TcpClientTransport, TcpServerTransport } from './tcp.ts';
export {
  buildTransport,
  registerTransportKind,
  transportKind,
  transportKinds,
  type BuiltTransport,
  type SerialDefaults,
  type TransportBuildContext,
  type TransportKindSpec,
} from './registry.ts';

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
