// Process-wide V8 settings for a process that serves the gateway. Importing this module keeps the shape of Node's tick
// objects (below), so entry points import it before anything else; `serve` applies tuneRuntime before it listens.
import { createHook } from 'node:async_hooks';
import { setFlagsFromString } from 'node:v8';

/** The tick object kept for the life of the process (see keepTickShape). */
const keptTicks: object[] = [];

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

/**
 * Keeps one of Node's tick objects (made by every `process.nextTick`, several per proxied request) for the life of
 * the process. Node builds them with an object literal whose keys are symbols; V8 remembers the shapes such a
 * literal goes through only weakly, so a full collection at a moment when no tick object is alive (an idle
 * moment, between bursts) throws them away and the next tick object gets new ones. After a few of those, the
 * literal's property stores in `nextTick` become megamorphic for good and every tick object is built through the
 * runtime: about 1 µs each instead of a few ns, 2–6 % of a proxy's CPU time. One tick object kept alive keeps
 * its shapes, so they are never thrown away. It has to happen before the first such collection, hence when this module
 * is first imported (loading the gateway's modules already runs some).
 */
function keepTickShape(): void {
  // Enabled only around one nextTick and disabled outside its own callback, so no async hook (nor promise hook) is
  // left running.
  const hook = createHook({
    init(_id, type, _trigger, resource) {
      if (type === 'TickObject' && keptTicks.length === 0) keptTicks.push(resource);
    },
  });
  hook.enable();
  process.nextTick(() => {});
  hook.disable();
}

keepTickShape();
