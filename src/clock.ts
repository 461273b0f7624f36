// The only place that reads the time; tests pass their own clock.

export interface Clock {
  /** Milliseconds since the Unix epoch. */
  now(): number;
  /** Runs `fn` once, `ms` from now, without keeping the process alive (background checks only). */
  after(ms: number, fn: () => void): void;
}

export const systemClock: Clock = {
  now: () => Date.now(),
  after: (ms, fn) => void setTimeout(fn, ms).unref(),
};
