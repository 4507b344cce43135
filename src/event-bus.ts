import { EventEmitter } from 'node:events';
import type { AnyRecord } from './records/kinds.ts';
import type { Availability, BridgeEvent, DeviceState } from './records/types.ts';

/** What the parts of the daemon tell each other. Extensions subscribe here, never to each other. */
export interface BusEvents {
  /** A commit stored new records (of any kind, in seq order). */
  recordsStored: { deviceId: string; records: AnyRecord[] };
  /**
   * A commit finished, whether or not it stored anything: counts by record kind name and how long
   * the writer took (the metrics endpoint's counters and latency histogram).
   */
  recordsCommitted: { deviceId: string; stored: Record<string, number>; duplicates: Record<string, number>; seconds: number };
  /** The broker acknowledged one stored record (it counts as published). */
  recordPublished: { deviceId: string; kind: string };
  deviceState: DeviceState;
  deviceAvailability: { deviceId: string; state: Availability };
  bridgeEvent: BridgeEvent;
  mqttConnected: { reconnect: boolean };
  mqttMessage: { topic: string; payload: Buffer };
  /** Someone asked for every retained message to be sent again (`bridge/request/republish`). */
  republish: Record<string, never>;
}

export class EventBus {
  private readonly emitter = new EventEmitter();

  constructor() {
    this.emitter.setMaxListeners(100);
  }

  emit<K extends keyof BusEvents>(event: K, payload: BusEvents[K]): void {
    this.emitter.emit(event, payload);
  }

  on<K extends keyof BusEvents>(event: K, listener: (payload: BusEvents[K]) => void): () => void {
    this.emitter.on(event, listener);
    return () => this.emitter.off(event, listener);
  }
}
