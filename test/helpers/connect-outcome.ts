import mqtt from 'mqtt';

/** What a client hears back from CONNECT: `connected`, or the refusal's return code (else its message). */
export async function connectOutcome(url: string, options: mqtt.IClientOptions = {}): Promise<'connected' | number | string> {
  const client = mqtt.connect(url, { reconnectPeriod: 0, connectTimeout: 5000, ...options });
  try {
    return await new Promise((resolve) => {
      client.once('connect', () => resolve('connected'));
      client.once('error', (e: Error & { code?: number | string }) => resolve(e.code ?? e.message));
    });
  } finally {
    client.end(true);
  }
}
