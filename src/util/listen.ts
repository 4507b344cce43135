import type { Server } from 'node:net';

/**
 * Listens on `host:port`: resolves once bound, rejects with the server's own error (EADDRINUSE,
 * EACCES, …) instead of it being thrown as an uncaught 'error' event. Callers say what to change.
 */
export function listenOn(server: Server, port: number, host: string): Promise<void> {
  return new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen(port, host, () => {
      server.off('error', reject);
      resolve();
    });
  });
}
