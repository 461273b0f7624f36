// Metrics updated on every proxied request, exposed through a prom-client Registry like the others.
// prom-client's own Histogram and Counter check and hash the label object on every observation, a few µs per request
// at proxy rates; these find a series by its label values once and afterwards only add.
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
  private readonly series = new Map<string, Series>();

  protected constructor(
    readonly name: string,
    readonly help: string,
    readonly type: 'counter' | 'histogram',
    private readonly labelNames: readonly string[],
    protected readonly bounds: readonly number[],
    registry: Registry,
  ) {
    // As prom-client: a metric without labels has its one series from the start.
    if (labelNames.length === 0) this.seriesOf([]);
    registry.registerMetric(this as unknown as Metric);
  }

  /** The series of these label values, in the order of the label names. */
  protected seriesOf(values: readonly string[]): Series {
    const key = values.length === 1 ? values[0]! : values.join('\u0000');
    let s = this.series.get(key);
    if (!s) {
      s = { labels: Object.fromEntries(this.labelNames.map((n, i) => [n, values[i]!])), counts: new Array<number>(this.bounds.length + 1).fill(0), sum: 0 };
      this.series.set(key, s);
    }
    return s;
  }

  protected abstract values(s: Series): Line[];

  /** Read by Registry.metrics(), in the shape of prom-client's own metrics. */
  async get(): Promise<{ name: string; help: string; type: string; aggregator: string; values: Line[] }> {
    return { name: this.name, help: this.help, type: this.type, aggregator: this.aggregator, values: [...this.series.values()].flatMap((s) => this.values(s)) };
  }
}

export class HotCounter extends HotMetric {
  constructor(name: string, help: string, labelNames: readonly string[], registry: Registry) {
    super(name, help, 'counter', labelNames, [], registry);
  }

  inc(labelValues: readonly string[]): void {
    this.seriesOf(labelValues).counts[0]! += 1;
  }

  protected values(s: Series): Line[] {
    return [{ labels: s.labels, value: s.counts[0]! }];
  }
}

export class HotHistogram extends HotMetric {
  constructor(name: string, help: string, labelNames: readonly string[], bounds: readonly number[], registry: Registry) {
    super(name, help, 'histogram', labelNames, bounds, registry);
  }

  observe(labelValues: readonly string[], value: number): void {
    const s = this.seriesOf(labelValues);
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
