// The coordinator of a sharded run: puts one BullMQ job per part on the
// queue (skipping the parts whose results are already in the run directory,
// so a restarted coordinator schedules only the rest), then watches until
// every part is done. Done means the part's marker is on shared storage, not
// what Redis says: Redis may restart empty (a lost job is queued again) or
// be gone (an error after redisTimeoutMs, naming what is kept). A part that
// fails on every try fails the run with its error and its shard named.
import { createHash } from 'node:crypto';
import { setTimeout as sleep } from 'node:timers/promises';
import { Queue } from 'bullmq';
import { throwIfAborted, type ProgressOptions } from '../abort.js';
import { abortError, ConceptLensError, ERROR_CODES, type ErrorCode } from '../errors.js';
import { checkRedis, connectionOptions, parseQueueUrl, QUEUE_NAME, queueError, type RedisTarget } from './connection.js';
import { localStamp, type Stamp } from './stamp.js';
import { readDone, type PartDone } from './store.js';

/** Where and how a sharded run goes through the job queue: what every `distributed…` call takes besides its own options. */
export interface QueueOptions extends Pick<ProgressOptions, 'signal'> {
  /** The queue's Redis: redis://HOST:PORT[/DB]. */
  queue: string;
  /**
   * A directory on storage every worker sees at the same path: the run directory (inputs the jobs need, per-part
   * results, done markers) is created under it, named by what the run computes, so rerunning finds it.
   */
  workDir: string;
  /** Tries per part before the run fails (default 3; a worker killed mid-job also costs one). */
  attempts?: number;
  /** How often the coordinator looks at the parts' results, in ms (default 500; at Redis every fourth time). */
  pollMs?: number;
  /** How long Redis may be unreachable mid-run before the run fails, in ms (default 30,000). */
  redisTimeoutMs?: number;
  /** Progress over all parts: called on every change (done, rate, ETA, workers seen). */
  onStatus?: (s: RunStatus) => void;
}

/** Where a sharded run stands, for {@link QueueOptions.onStatus}. */
export interface RunStatus {
  /** The run directory on shared storage. */
  runDir: string;
  /** The job kind of this fan-out (a run may have several stages). */
  stage: string;
  /** Parts done, of total. */
  done: number;
  total: number;
  /** Parts already done when this coordinator started (a rerun): not scheduled again. */
  resumed: number;
  /** Parts finished per second since this coordinator started. */
  rate: number;
  /** Seconds to go at that rate (null before the first part finishes). */
  etaSeconds: number | null;
  /** Workers seen: listening on the queue, or the authors of parts of this run. */
  workers: number;
  /** Jobs queued again because Redis lost them (a restart without persistence). */
  requeued: number;
}

/** What a job carries: who may run it, which handler, where its run lives, and its own (small) parameters. */
export interface JobData<P = unknown> {
  stamp: Stamp;
  kind: string;
  runDir: string;
  part: number;
  payload: P;
}

/** One fan-out: a job kind and one payload per part. */
export interface Stage<P> {
  /** The job kind (which handler the workers run); also names the parts' files. */
  kind: string;
  runDir: string;
  payloads: readonly P[];
  /** Names part i in messages ("shard 12 (text_emb_12.npy)"). */
  label(part: number): string;
}

const ACTIVE_STATES = new Set(['waiting', 'active', 'delayed', 'prioritized', 'waiting-children', 'paused']);
const DEFAULT_ATTEMPTS = 3;

/** A job's failure as the run's error: the worker's code (carried as "[CODE] message") and the part named. */
function partError(label: string, failedReason: string, tries: number): ConceptLensError {
  const m = /^\[(ERR_[A-Z]+)\] ([\s\S]*)$/.exec(failedReason);
  const code: ErrorCode = m && m[1] in ERROR_CODES ? (m[1] as ErrorCode) : 'ERR_QUEUE';
  return new ConceptLensError(code, `${label} failed after ${tries} ${tries === 1 ? 'try' : 'tries'}: ${m ? m[2] : failedReason}`);
}

class Coordinator<P> {
  private readonly queue: Queue;
  private readonly t0 = performance.now();
  private readonly workers = new Set<string>();
  private readonly done = new Set<number>();
  private readonly resumed: number;
  private lastRedis = Date.now();
  private requeued = 0;
  private readonly runKey: string;

  constructor(private readonly s: Stage<P>, private readonly o: QueueOptions, private readonly target: RedisTarget) {
    this.queue = new Queue(QUEUE_NAME, { connection: connectionOptions(target, 'coordinator') });
    this.queue.on('error', () => {});  // failures surface from the calls, which the watch loop times
    this.runKey = createHash('sha256').update(s.runDir).digest('hex').slice(0, 16);
    s.payloads.forEach((_, i) => this.markDone(i));
    this.resumed = this.done.size;
  }

  /** Job ids name the run directory (by a hash of its path: one computation in two work directories is two runs) and the part. */
  private jobId(part: number): string {
    return `${this.s.kind}-${this.runKey}-${part}`;
  }

  private outstanding(): number[] {
    return this.s.payloads.map((_, i) => i).filter((i) => !this.done.has(i));
  }

  /** Queues the parts that have no job, and replaces finished jobs whose part has no result (failed before, or deleted). */
  private async schedule(parts: number[]): Promise<void> {
    const states = await Promise.all(parts.map((i) => this.queue.getJobState(this.jobId(i))));
    const add = parts.filter((_, j) => !ACTIVE_STATES.has(states[j]));
    await Promise.all(parts.filter((_, j) => states[j] === 'failed' || states[j] === 'completed').map((i) => this.queue.remove(this.jobId(i))));
    const stamp = localStamp();
    await this.queue.addBulk(add.map((part) => ({
      name: this.s.kind,
      data: { stamp, kind: this.s.kind, runDir: this.s.runDir, part, payload: this.s.payloads[part] } satisfies JobData<P>,
      opts: {
        jobId: this.jobId(part), attempts: this.o.attempts ?? DEFAULT_ATTEMPTS, backoff: { type: 'exponential', delay: 1000 },
        // Finished jobs stay a day: a 'completed' job whose marker is not visible yet (storage caching) is awaited, not requeued.
        removeOnComplete: { age: 24 * 3600 }, removeOnFail: { age: 7 * 24 * 3600 },
      },
    })));
  }

  async run(): Promise<PartDone[]> {
    try {
      await this.schedule(this.outstanding()).catch((e) => {
        throw queueError(`Redis at ${this.target.shown} failed while the jobs were queued (${(e as Error).message})`, e);
      });
      this.report();
      for (let tick = 1; this.done.size < this.s.payloads.length; tick++) {
        await sleep(this.o.pollMs ?? 500, undefined, { signal: this.o.signal }).catch(() => { throw abortError(); });
        await this.watch(tick);
        this.report();
      }
    } catch (e) {
      await this.withdraw();
      throw e;
    } finally {
      await this.close();
    }
    return this.s.payloads.map((_, i) => readDone(this.s.runDir, this.s.kind, i)!);
  }

  /** One look at the markers (the truth); every fourth, at Redis too, for failures, lost jobs and workers. */
  private async watch(tick: number): Promise<void> {
    const parts = this.outstanding();
    if (tick % 4 !== 0) return void parts.forEach((i) => this.markDone(i));
    let states: string[];
    try {
      states = await Promise.all(parts.map((i) => this.queue.getJobState(this.jobId(i))));
      for (const w of await this.queue.getWorkers()) this.workers.add(w.rawname?.split(':w:').pop() ?? w.addr);
      this.lastRedis = Date.now();
    } catch (e) {
      this.requireRedis(e);
      states = parts.map(() => 'gone');
    }
    // States are read before markers: a job finished (and removed) before its state was read has its marker by now.
    const lost: number[] = [];
    for (const [j, i] of parts.entries()) {
      if (this.markDone(i)) continue;
      if (states[j] === 'failed') await this.fail(i);
      if (states[j] === 'unknown') lost.push(i);
    }
    if (lost.length) {
      this.requeued += lost.length;
      await this.schedule(lost).catch((e) => this.requireRedis(e));
    }
  }

  /** Counts the part done when its marker is there (and its author among the workers seen). */
  private markDone(part: number): boolean {
    const d = readDone(this.s.runDir, this.s.kind, part);
    if (d) this.done.add(part), this.workers.add(d.worker);
    return !!d;
  }

  private async fail(part: number): Promise<never> {
    const job = await this.queue.getJob(this.jobId(part)).catch(() => undefined);
    throw partError(this.s.label(part), job?.failedReason ?? 'failed (its record is gone)', job?.attemptsMade ?? 0);
  }

  /** Redis being away is tolerated for redisTimeoutMs (it may be restarting), then fails the run saying what is kept. */
  private requireRedis(e: unknown): void {
    if (e instanceof ConceptLensError) throw e;
    const away = Date.now() - this.lastRedis, limit = this.o.redisTimeoutMs ?? 30_000;
    if (away < limit) return;
    throw queueError(`lost Redis at ${this.target.shown} for ${(away / 1000).toFixed(0)} s (${(e as Error).message}): `
      + `${this.done.size} of ${this.s.payloads.length} parts are done and kept in ${this.s.runDir}; rerun the same command to finish the rest`, e);
  }

  private report(): void {
    const seconds = (performance.now() - this.t0) / 1000, fresh = this.done.size - this.resumed;
    const rate = fresh / Math.max(seconds, 1e-3), left = this.s.payloads.length - this.done.size;
    this.o.onStatus?.({
      runDir: this.s.runDir, stage: this.s.kind, done: this.done.size, total: this.s.payloads.length, resumed: this.resumed,
      rate, etaSeconds: fresh > 0 ? left / rate : null, workers: this.workers.size, requeued: this.requeued,
    });
  }

  /** On failure or abort: takes this run's waiting jobs off the queue (best effort; running ones finish and are kept). */
  private async withdraw(): Promise<void> {
    const all = Promise.all(this.outstanding().map((i) => this.queue.remove(this.jobId(i)).catch(() => 0)));
    await Promise.race([all, sleep(2000)]);
  }

  /** Closes the queue's clients; with Redis gone, close() may never settle, so they are then dropped (not awaited). */
  private async close(): Promise<void> {
    const closed = await Promise.race([this.queue.close().then(() => true, () => false), sleep(2000, false)]);
    if (!closed) void this.queue.disconnect().catch(() => {});
  }
}

/**
 * Runs one job per payload on the queue's workers and waits for all of them;
 * returns every part's done marker. Parts already done in the run directory
 * are not scheduled again.
 */
export async function fanOut<P>(stage: Stage<P>, o: QueueOptions): Promise<PartDone[]> {
  throwIfAborted(o.signal);
  const target = parseQueueUrl(o.queue);
  await checkRedis(target);
  return new Coordinator(stage, o, target).run();
}
