import { AsyncLocalStorage } from 'node:async_hooks';
import type { EventEmitter } from 'node:events';

/**
 * Which session a piece of running code belongs to. Everything a session does (its constructor,
 * start, commands, and each event its transport delivers to it) runs inside its context, and Node
 * carries that context into the timers and promises it makes. So an exception that escapes from a
 * session's timer, or a promise of its own that nobody awaits, can be traced back to the one
 * device whose session it is, and that device alone is stopped and restarted, instead of the
 * process dying with every other device.
 */
export interface SessionContext {
  readonly deviceId: string;
  /** Which start of the device's session (a restart makes a new one; a dead one's leftovers are told apart). */
  readonly generation: number;
}

export type SessionFaultHandler = (context: SessionContext, error: Error, origin: 'exception' | 'rejection') => void;

const sessions = new AsyncLocalStorage<SessionContext>();

/** Runs `fn` as code of the session `context` (timers and promises it makes stay so). */
export function runInSession<T>(context: SessionContext, fn: () => T): T {
  return sessions.run(context, fn);
}

/**
 * Makes every event `transport` emits run as code of the session `current()` names; an exception
 * a listener throws goes to `onThrow` instead of up through the socket (where it would end the
 * process). The transport is the device manager's own object for this one device.
 */
export function guardTransportEvents(transport: EventEmitter, current: () => SessionContext, onThrow: (context: SessionContext, error: Error) => void): void {
  const emit = transport.emit.bind(transport);
  transport.emit = (event: string | symbol, ...args: unknown[]): boolean => {
    const context = current();
    return sessions.run(context, () => {
      try {
        return emit(event, ...args);
      } catch (error) {
        onThrow(context, asError(error));
        return true;
      }
    });
  };
}

function asError(value: unknown): Error {
  return value instanceof Error ? value : new Error(String(value));
}

/**
 * Installs the process-wide handlers for errors nobody caught. One that arose in a session's
 * context goes to `onFault`; any other concerns the daemon as a whole and ends it as Node would
 * (stack on stderr, exit code 1), unless another handler (a test runner's) is there to take it.
 * Returns the uninstaller.
 */
export function installSessionFaultHandlers(onFault: SessionFaultHandler): () => void {
  const handle = (origin: 'exception' | 'rejection', eventName: 'uncaughtException' | 'unhandledRejection') => (reason: unknown) => {
    const error = asError(reason);
    const context = sessions.getStore();
    if (context) {
      onFault(context, error, origin);
      return;
    }
    if (process.listenerCount(eventName) > 1) return;
    process.stderr.write(`poctd: ${origin === 'exception' ? 'uncaught exception' : 'unhandled rejection'}: ${error.stack ?? error.message}\n`);
    process.exit(1);
  };
  const onException = handle('exception', 'uncaughtException');
  const onRejection = handle('rejection', 'unhandledRejection');
  process.on('uncaughtException', onException);
  process.on('unhandledRejection', onRejection);
  return () => {
    process.off('uncaughtException', onException);
    process.off('unhandledRejection', onRejection);
  };
}
