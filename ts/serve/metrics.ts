// The service's Prometheus metrics (prom-client), in a registry of its own so
// that two services in one process, or a host app's metrics, never collide:
// requests and their latency by route and status, errors by code, and per
// queue the batch sizes and run times, the rows waiting, how long rows wait,
// and the requests dropped because their client went away.
import { collectDefaultMetrics, Counter, Gauge, Histogram, Registry } from 'prom-client';
import type { ServeErrorCode } from './errors.js';

/** What a batcher reports about its queue. */
export interface QueueObserver {
  /** Rows now waiting. */
  depth(rows: number): void;
  /** A request left the queue for a batch after waiting this long. */
  waited(seconds: number): void;
  /** A batch of `rows` rows ran for `seconds`. */
  ran(rows: number, seconds: number): void;
  /** A request was dropped because its client disconnected. */
  dropped(): void;
}

const SECONDS = [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30];
const ROWS = [1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024];

/** The service's metrics; {@link ServiceMetrics.registry} is what `/metrics` serves. */
export class ServiceMetrics {
  readonly registry: Registry;
  private readonly requests: Counter<'route' | 'method' | 'status'>;
  private readonly latency: Histogram<'route' | 'method'>;
  private readonly errors: Counter<'code'>;
  private readonly batchRows: Histogram<'queue'>;
  private readonly batchSeconds: Histogram<'queue'>;
  private readonly queueDepth: Gauge<'queue'>;
  private readonly queueWait: Histogram<'queue'>;
  private readonly drops: Counter<'queue'>;

  /** Metrics in `registry` (default a new one), with the process's default metrics unless `processMetrics` is false. */
  constructor(o: { registry?: Registry; processMetrics?: boolean } = {}) {
    const registers = [(this.registry = o.registry ?? new Registry())];
    if (o.processMetrics !== false) collectDefaultMetrics({ register: this.registry, prefix: 'conceptlens_' });
    this.requests = new Counter({ name: 'conceptlens_requests_total', help: 'HTTP requests answered', labelNames: ['route', 'method', 'status'], registers });
    this.latency = new Histogram({ name: 'conceptlens_request_duration_seconds', help: 'Time from request to answer', labelNames: ['route', 'method'], buckets: SECONDS, registers });
    this.errors = new Counter({ name: 'conceptlens_errors_total', help: 'Error answers by code', labelNames: ['code'], registers });
    this.batchRows = new Histogram({ name: 'conceptlens_batch_size', help: 'Rows per native call', labelNames: ['queue'], buckets: ROWS, registers });
    this.batchSeconds = new Histogram({ name: 'conceptlens_batch_duration_seconds', help: 'Time of one batch (native call and splitting)', labelNames: ['queue'], buckets: SECONDS, registers });
    this.queueDepth = new Gauge({ name: 'conceptlens_queue_depth', help: 'Rows waiting for a batch', labelNames: ['queue'], registers });
    this.queueWait = new Histogram({ name: 'conceptlens_queue_wait_seconds', help: 'Time a request waited for its batch', labelNames: ['queue'], buckets: SECONDS, registers });
    this.drops = new Counter({ name: 'conceptlens_dropped_total', help: 'Requests dropped because the client disconnected', labelNames: ['queue'], registers });
  }

  /** Records one answered request. */
  answered(route: string, method: string, status: number, seconds: number): void {
    this.requests.inc({ route, method, status: String(status) });
    this.latency.observe({ route, method }, seconds);
  }

  /** Records one error answer. */
  error(code: ServeErrorCode): void {
    this.errors.inc({ code });
  }

  /** The observer a batcher of queue `name` reports to. */
  queue(name: string): QueueObserver {
    const queue = { queue: name };
    this.queueDepth.set(queue, 0);
    return {
      depth: (rows) => this.queueDepth.set(queue, rows),
      waited: (seconds) => this.queueWait.observe(queue, seconds),
      ran: (rows, seconds) => {
        this.batchRows.observe(queue, rows);
        this.batchSeconds.observe(queue, seconds);
      },
      dropped: () => this.drops.inc(queue),
    };
  }
}
