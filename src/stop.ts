// Stopping `serve` and `demo` on SIGTERM, SIGINT and SIGHUP, and an admin command that is acting on the store: the one
// place that listens for them. Imported by the entry (main.ts) before anything else is loaded, so it holds no import
// but types.
import type { Logger } from 'pino';

const SIGNALS = ['SIGINT', 'SIGTERM', 'SIGHUP'] as const;

/** Why a stop was asked for: SIGTERM, SIGINT or SIGHUP (the abort reason of the signal stopOnSignal returns). */
export class StopRequested extends Error {
  constructor(readonly signal: NodeJS.Signals) {
    super(`${signal} while starting`);
  }
}

const stop = new AbortController();
let log: Pick<Logger, 'warn'> | undefined;

function onSignal(signal: NodeJS.Signals): void {
  // A second signal (Ctrl+C twice, a supervisor that repeats SIGTERM) changes nothing: the stop already under way
  // is bounded by the grace period, and cutting it short would leave the audit trail unsealed and its lock held.
  if (stop.signal.aborted) return void log?.warn({ signal }, 'already stopping');
  stop.abort(new StopRequested(signal));
}

/**
 * Listens for SIGTERM, SIGINT and SIGHUP from the very start of the process, before the gateway's modules are loaded
 * (about a second, more on a busy machine): a signal then is kept, and `serve` honours it as soon as it begins. Without a
 * handler, a container's pid 1 (the image runs node with no init) ignores SIGTERM and goes on to serve until the runtime
 * kills it at its stop timeout, and elsewhere the process dies at once, leaving the audit lock it may have taken for
 * the next start to wait out. SIGHUP (the terminal it runs in closed, or a `kill -HUP` meant as a reload, which the
 * gateway does not have) would otherwise kill it in the same way.
 */
export function listenForStop(): void {
  for (const signal of SIGNALS) process.on(signal, onSignal);
}

/** For `serve` and `demo`: the signal that aborts at the first SIGTERM, SIGINT or SIGHUP (perhaps already); later ones are logged to `logger`. */
export function stopOnSignal(logger: Pick<Logger, 'warn'>): AbortSignal {
  log = logger;
  return stop.signal;
}

/**
 * For every other command: the signals act as Node's default again (the process ends, by the signal); one that came
 * while the command line was loading is sent again, so it ends the process now as it would have then.
 */
export async function defaultOnSignal(): Promise<void> {
  // A signal caught is acted on in the event loop's poll phase, which loading modules may not have passed through
  // since: two setImmediate turns make sure one has (else it would be dropped with the handlers).
  for (let turn = 0; turn < 2; turn++) await new Promise((resolve) => setImmediate(resolve));
  for (const signal of SIGNALS) process.off(signal, onSignal);
  if (stop.signal.aborted) process.kill(process.pid, (stop.signal.reason as StopRequested).signal);
}

/** An admin command stopped by a signal (see interruption). */
export class Interrupted extends Error {
  constructor(readonly signal: NodeJS.Signals) {
    super(`stopped by ${signal}`);
  }
}

/**
 * For an admin command, from before its audit trail is opened until it is sealed again: the first SIGTERM, SIGINT or
 * SIGHUP (Ctrl+C, a closed terminal) aborts `signal` (its reason an Interrupted) rather than ending the process at once,
 * so that the command stops after the step under way, records the run and seals its trail; a second one ends the
 * process, as Node does. `done()` puts Node's default back.
 */
export function interruption(): { signal: AbortSignal; done(): void } {
  const stop = new AbortController();
  const done = () => {
    for (const signal of SIGNALS) process.off(signal, handler);
  };
  const handler = (signal: NodeJS.Signals) => {
    done();
    stop.abort(new Interrupted(signal));
  };
  for (const signal of SIGNALS) process.on(signal, handler);
  return { signal: stop.signal, done };
}
