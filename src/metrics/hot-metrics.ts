// Metrics updated on every proxied request, exposed through a prom-client Registry like the others.
// prom-client's own Histogram and Counter check and hash the label object on every observation, a few µs per request
// at proxy rates; these find a series by its (at most two) label values in two map lookups, without building a key.
import type { Metric, Registry } from 'prom-client';

/** One sample as the Registry reads it. */
interface Line {
  labels: Record<string, string | number>;
  value: number;
  metricName?: string;
}

interface Series {
  labels: Record<string, string>;
  /** Observations per bucket (not cumulative), the last one for +Inf; a counter has only that one. */
  counts: number[];
  /** A histogram's sum of observed values. */
  sum: number;
}

abstract class HotMetric {
  readonly aggregator = 'sum';
  /** By the first label value, then the second ('' for a metric with fewer labels). */
  private readonly series = new Map<string, Map<string, Series>>();

  protected constructor(
    readonly name: string,
    readonly help: string,
    readonly type: 'counter' | 'histogram',
    private readonly labelNames: readonly string[],
    protected readonly bounds: readonly number[],
    registry: Registry,
  ) {
    if (labelNames.length > 2) throw new TypeError(`${name}: at most two labels`);
    // As prom-client: a metric without labels has its one series from the start.
    if (labelNames.length === 0) this.seriesOf();
    registry.registerMetric(this as unknown as Metric);
  }

  /** The series of these label values, in the order of the label names. */
  protected seriesOf(first = '', second = ''): Series {
    let inner = this.series.get(first);
    if (!inner) this.series.set(first, (inner = new Map()));
    let s = inner.get(second);
    if (!s) {
      const values = [first, second];
      s = { labels: Object.fromEntries(this.labelNames.map((n, i) => [n, values[i]!])), counts: new Array<number>(this.bounds.length + 1).fill(0), sum: 0 };
      inner.set(second, s);
    }
    return s;
  }

  protected abstract values(s: Series): Line[];

  /** Read by Registry.metrics(), in the shape of prom-client's own metrics. */
  async get(): Promise<{ name: string; help: string; type: string; aggregator: string; values: Line[] }> {
    return { name: this.name, help: this.help, type: this.type, aggregator: this.aggregator, values: [...this.series.values()].flatMap((inner) => [...inner.values()]).flatMap((s) => this.values(s)) };
  }
}

export class HotCounter extends HotMetric {
  constructor(name: string, help: string, labelNames: readonly string[], registry: Registry) {
    super(name, help, 'counter', labelNames, [], registry);
  }

  /** One more, for the label values in the order of the label names. */
  inc(first?: string, second?: string): void {
    this.seriesOf(first, second).counts[0]! += 1;
  }

  protected values(s: Series): Line[] {
    return [{ labels: s.labels, value: s.counts[0]! }];
  }
}

export class HotHistogram extends HotMetric {
  constructor(name: string, help: string, labelNames: readonly string[], bounds: readonly number[], registry: Registry) {
    super(name, help, 'histogram', labelNames, bounds, registry);
  }

  /** One observation, for the label values in the order of the label names. */
  observe(value: number, first?: string, second?: string): void {
    const s = this.seriesOf(first, second);
    let i = 0;
    while (i < this.bounds.length && value > this.bounds[i]!) i++;
    s.counts[i]! += 1;
    s.sum += value;
  }

  protected values(s: Series): Line[] {
    let cumulative = 0;
    const line = (le: Record<string, string | number>, value: number, suffix: string): Line => ({ labels: { ...le, ...s.labels }, value, metricName: `${this.name}${suffix}` });
    const count = s.counts.reduce((a, b) => a + b, 0);
    return [
      ...this.bounds.map((le, i) => line({ le }, (cumulative += s.counts[i]!), '_bucket')),
      line({ le: '+Inf' }, count, '_bucket'),
      line({}, s.sum, '_sum'),
      line({}, count, '_count'),
    ];
  }
}
