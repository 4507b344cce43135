import { isIP } from 'node:net';

/**
 * Host rules the config check, the embedded broker and the dashboard share. A module of their
 * own so that the config check and the dashboard do not load aedes and ws to get them.
 */

export function isLoopbackHost(host: string): boolean {
  if (host === 'localhost') return true;
  if (isIP(host) === 4) return host.startsWith('127.');
  if (isIP(host) === 6) return host === '::1';
  return false;
}

/** `http://host:port` of a page, as browsers send it in `Origin`, equals the request's `Host`. */
export function sameOrigin(origin: string, host: string | undefined): boolean {
  if (!host) return false;
  try {
    const u = new URL(origin);
    return (u.protocol === 'http:' || u.protocol === 'https:') && u.host === host.toLowerCase();
  } catch {
    return false;
  }
}
