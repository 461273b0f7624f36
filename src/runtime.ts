// Process-wide V8 settings for a process that serves the gateway; `serve` applies them before it listens.
import { setFlagsFromString } from 'node:v8';

/**
 * Turns off V8's allocation-site pretenuring. A proxy's per-request objects (stream state, tick objects,
 * closures) live for one request, but when many survive a few young-generation collections (start-up, a burst of
 * slow requests), V8 may decide that their allocation sites make long-lived objects and allocate them in the old
 * generation from then on. Each request's garbage then needs full collections and keeps younger objects alive
 * across scavenges, a state the process does not leave: in the bench it cost about 60 % more CPU per proxied
 * request in the processes where it set in (about half of them). V8 reads the flag when it decides, so setting it
 * at start-up is enough.
 */
export function tuneRuntime(): void {
  setFlagsFromString('--no-allocation-site-pretenuring');
}
