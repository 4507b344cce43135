import { readFileSync } from 'node:fs';

/**
 * Bytes sent to the listener on `port` that it has not read yet: the receive queues of its
 * established connections, as the kernel reports them in /proc/net/tcp (and tcp6). A positive sign
 * that a paused (SIGSTOPped) broker was sent something it will never acknowledge. 0 on a system
 * without /proc.
 */
export function unreadBytesAt(port: number): number {
  let total = 0;
  for (const file of ['/proc/net/tcp', '/proc/net/tcp6']) {
    let table: string;
    try {
      table = readFileSync(file, 'utf8');
    } catch {
      continue;
    }
    for (const line of table.split('\n').slice(1)) {
      // sl local_address rem_address st tx_queue:rx_queue …, addresses and numbers in hex
      const [, local, , state, queues] = line.trim().split(/\s+/);
      if (!local || state !== '01' || !queues) continue; // 01: ESTABLISHED
      if (Number.parseInt(local.slice(local.lastIndexOf(':') + 1), 16) !== port) continue;
      total += Number.parseInt(queues.slice(queues.indexOf(':') + 1), 16);
    }
  }
  return total;
}
