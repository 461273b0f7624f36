// A clock tests move by hand instead of sleeping.
import type { Clock } from '../../src/clock.js';

export class FakeClock implements Clock {
  private timers: { at: number; fn: () => void }[] = [];
  constructor(private t = 1_800_000_000_000) {}
  now(): number {
    return this.t;
  }
  after(ms: number, fn: () => void): void {
    this.timers.push({ at: this.t + ms, fn });
  }
  /** Moves time on, running what came due. */
  advance(ms: number): void {
    this.t += ms;
    const due = this.timers.filter((x) => x.at <= this.t);
    this.timers = this.timers.filter((x) => x.at > this.t);
    for (const x of due) x.fn();
  }
}
