// The dynamic batcher: requests from any connection wait in one queue per
// model or vocabulary and leave it together, as one native call. A scan of a
// vocabulary costs nearly the same for one query as for a hundred (the rows
// are read, and rounded for screening, once per call), so coalescing is where
// the throughput comes from.
//
// One batch per queue is in flight at a time: the next one forms while it
// runs, so batches grow with the load and the engine's cores are never split
// between calls of the same queue. A batch leaves when it holds `maxBatch`
// rows, or when its oldest request has waited `maxDelayMs` (at once while
// draining). The queue is bounded in rows: past `maxQueue`, submit() refuses
// with 503 and a Retry-After estimated from the last batch's time, so memory
// never grows with the load. A request whose client disconnects leaves the
// queue at once; if its batch is already running, only its answer is lost.
import { abortError } from '../errors.js';
import type { BatchingOptions } from './config.js';
import { overloaded } from './errors.js';
import type { QueueObserver } from './metrics.js';

/** Runs one batch: an answer, or an error of that item alone, per item, in order. */
export type BatchRunner<I, R> = (items: readonly I[]) => Promise<readonly (R | Error)[]>;

interface Entry<I, R> {
  item: I;
  rows: number;
  since: number;
  resolve(r: R): void;
  reject(e: unknown): void;
  detach(): void;
}

/** A queue of requests answered in batches by one runner; see the module notes. */
export class Batcher<I, R> {
  private readonly queue: Entry<I, R>[] = [];
  private rows = 0;
  private running?: Promise<void>;
  private timer?: NodeJS.Timeout;
  private flushing = false;
  private lastSeconds = 0;

  constructor(readonly name: string, private readonly run: BatchRunner<I, R>, readonly policy: BatchingOptions,
    private readonly observer: QueueObserver) {}

  /** Rows waiting. */
  get depth(): number {
    return this.rows;
  }

  /** True when a request of one more row would be refused. */
  get full(): boolean {
    return this.rows >= this.policy.maxQueue;
  }

  /**
   * Queues an item of `rows` rows; resolves with its answer. Rejects with 503 (HttpError ERR_OVERLOADED) when the
   * queue cannot take it, and with ERR_ABORTED when `signal` aborts before the item's batch runs.
   */
  submit(item: I, rows: number, signal?: AbortSignal): Promise<R> {
    if (signal?.aborted) return Promise.reject(abortError());
    if (this.rows + rows > this.policy.maxQueue) return Promise.reject(this.refusal());
    return new Promise<R>((resolve, reject) => {
      const entry: Entry<I, R> = { item, rows, since: performance.now(), resolve, reject, detach: () => {} };
      if (signal) {
        const onAbort = () => this.drop(entry);
        signal.addEventListener('abort', onAbort, { once: true });
        entry.detach = () => signal.removeEventListener('abort', onAbort);
      }
      this.queue.push(entry);
      this.setRows(this.rows + rows);
      this.schedule();
    });
  }

  /** From now on batches leave without waiting for `maxDelayMs` (shutting down). */
  flush(): void {
    this.flushing = true;
    this.schedule();
  }

  /** Resolves when no batch runs; after flush(), when nothing waits either (every batch leaves at once). */
  async idle(): Promise<void> {
    while (this.running) await this.running;
  }

  private refusal() {
    const batches = Math.ceil(this.rows / this.policy.maxBatch) + 1;
    return overloaded(`${this.name}: the queue is full (${this.rows} rows waiting, at most ${this.policy.maxQueue}); retry later`,
      batches * this.lastSeconds);
  }

  private setRows(rows: number): void {
    this.rows = rows;
    this.observer.depth(rows);
  }

  private drop(entry: Entry<I, R>): void {
    this.observer.dropped();
    const at = this.queue.indexOf(entry);
    if (at < 0) return; // already in a running batch: its answer goes nowhere, the others are untouched
    this.queue.splice(at, 1);
    this.setRows(this.rows - entry.rows);
    entry.reject(abortError());
    this.schedule();
  }

  private schedule(): void {
    if (this.running || this.queue.length === 0) return;
    const wait = this.flushing ? 0 : this.queue[0].since + this.policy.maxDelayMs - performance.now();
    if (this.rows >= this.policy.maxBatch || wait <= 0) return this.dispatch();
    clearTimeout(this.timer);
    this.timer = setTimeout(() => this.schedule(), wait);
  }

  private dispatch(): void {
    clearTimeout(this.timer);
    const batch = this.take();
    this.running = this.execute(batch).finally(() => {
      this.running = undefined;
      this.schedule();
    });
  }

  /** The oldest entries whose rows fit in maxBatch (at least one), in order. */
  private take(): Entry<I, R>[] {
    let n = 0, rows = 0;
    while (n < this.queue.length && (n === 0 || rows + this.queue[n].rows <= this.policy.maxBatch)) rows += this.queue[n++].rows;
    const batch = this.queue.splice(0, n), now = performance.now();
    this.setRows(this.rows - rows);
    for (const e of batch) this.observer.waited((now - e.since) / 1000);
    return batch;
  }

  private async execute(batch: Entry<I, R>[]): Promise<void> {
    const t0 = performance.now();
    try {
      const answers = await this.run(batch.map((e) => e.item));
      batch.forEach((e, i) => (answers[i] instanceof Error ? e.reject(answers[i]) : e.resolve(answers[i] as R)));
    } catch (err) {
      for (const e of batch) e.reject(err);
    } finally {
      for (const e of batch) e.detach();
      this.lastSeconds = (performance.now() - t0) / 1000;
      this.observer.ran(batch.reduce((s, e) => s + e.rows, 0), this.lastSeconds);
    }
  }
}
