// A store with every asynchronous call timed and counted in Metrics (storeCall), its behaviour unchanged.
import type { Metrics } from './metrics.js';

/**
 * Wraps any store object (e.g. a KvStore): each method call that returns a promise is recorded as one store call,
 * failed or not; `close` and synchronous members pass through untouched.
 */
export function measuredStore<T extends object>(store: T, metrics: Metrics): T {
  const wrapped = new Map<PropertyKey, unknown>();
  return new Proxy(store, {
    get(target, prop) {
      const value: unknown = Reflect.get(target, prop, target);
      if (typeof value !== 'function' || prop === 'close' || prop === 'constructor') return value;
      let fn = wrapped.get(prop);
      if (!fn) {
        fn = (...args: unknown[]) => {
          const start = performance.now();
          const result: unknown = (value as (...a: unknown[]) => unknown).apply(target, args);
          if (!(result instanceof Promise)) return result;
          const seconds = () => (performance.now() - start) / 1000;
          return result.then(
            (v) => (metrics.storeCall(true, seconds()), v),
            (err: unknown) => {
              metrics.storeCall(false, seconds());
              throw err;
            },
          );
        };
        wrapped.set(prop, fn);
      }
      return fn;
    },
  });
}
