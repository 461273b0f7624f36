// A store with every asynchronous call timed and counted in Metrics (storeCall), its behaviour unchanged.
import type { Metrics } from './metrics.js';

/**
 * Wraps any store object (e.g. a KvStore): each method call that returns a promise is recorded as one store call,
 * failed or not; `close` and synchronous members pass through untouched. The wrapper inherits from the store and
 * holds one timed function per method, made once: a method call costs a plain property read (a Proxy trap on every
 * read cost more than the timing itself, at one store call per proxied request).
 */
export function measuredStore<T extends object>(store: T, metrics: Metrics): T {
  const measured = Object.create(store) as T;
  for (const name of methodNames(store)) {
    if (name === 'close' || name === 'constructor') continue;
    const method = (store as Record<string, (...a: unknown[]) => unknown>)[name]!;
    Object.defineProperty(measured, name, {
      value: (...args: unknown[]) => {
        const start = performance.now();
        const result = method.apply(store, args);
        if (!(result instanceof Promise)) return result;
        const seconds = () => (performance.now() - start) / 1000;
        return result.then(
          (v: unknown) => (metrics.storeCall(true, seconds()), v),
          (err: unknown) => {
            metrics.storeCall(false, seconds());
            throw err;
          },
        );
      },
    });
  }
  return measured;
}

/** The names of an object's methods, its own and those of its classes. */
function methodNames(o: object): Set<string> {
  const names = new Set<string>();
  for (let p: object | null = o; p && p !== Object.prototype; p = Object.getPrototypeOf(p) as object | null) {
    for (const name of Object.getOwnPropertyNames(p)) {
      if (typeof Object.getOwnPropertyDescriptor(p, name)?.value === 'function') names.add(name);
    }
  }
  return names;
}
