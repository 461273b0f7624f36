// A clock tests move by hand instead of sleeping.
import type { Clock } from '../../src/clock.js';

export class FakeClock implements Clock {
  constructor(private t = 1_800_000_000_000) {}
  now(): number {
    return this.t;
  }
  advance(ms: number): void {
    this.t += ms;
  }
}
