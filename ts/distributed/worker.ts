// A queue worker: takes sharded jobs from BullMQ and runs their handlers.
// Around every handler: the version check (a job from a coordinator of
// another version or engine build is refused, saying why), the idempotency
// check (a part whose done marker exists is not computed again), and the done
// marker written after the part's files. A worker that dies mid-job loses
// its lock; BullMQ's stalled-job check, run by the other workers every
// stalledInterval, gives the job to one of them. Errors travel as
// "[CODE] message" so the coordinator can rethrow them with their code; the
// ones a retry cannot fix are not retried.
import { hostname } from 'node:os';
import { setTimeout as sleep } from 'node:timers/promises';
import { UnrecoverableError, Worker, type Job } from 'bullmq';
import { toConceptLensError, type ErrorCode } from '../errors.js';
import { checkRedis, connectionOptions, parseQueueUrl, QUEUE_NAME } from './connection.js';
import type { JobData } from './coordinator.js';
import { handlerFor } from './jobs.js';
import { localStamp, requireStamp, type Stamp } from './stamp.js';
import { partPath, readDone, writeDone, type PartSummary } from './store.js';

/** Options of {@link startWorker}. */
export interface WorkerOptions {
  /** The queue's Redis: redis://HOST:PORT[/DB]. */
  queue: string;
  /** Jobs run at once (default 1; they share the engine's compute pool). */
  concurrency?: number;
  /** A job's lock, in ms (default 30,000): a worker silent this long is taken for dead and its job given to another. */
  lockDurationMs?: number;
  /** How often this worker looks for stalled jobs of dead workers, in ms (default 30,000). */
  stalledIntervalMs?: number;
  /** Times a job may stall (its worker die) before it fails (default 2). */
  maxStalledCount?: number;
  /** Waits this long before each job, in ms: tests and benches make jobs slow deterministically with it (default 0). */
  delayMs?: number;
  /** Called for each thing the worker does. */
  onEvent?: (e: WorkerEvent) => void;
}

/** What a worker reports: ready, and each job started, done, skipped (already done), failed or refused. */
export interface WorkerEvent {
  event: 'ready' | 'start' | 'done' | 'skip' | 'fail' | 'refuse' | 'error';
  /** host:pid. */
  worker: string;
  job?: string;
  kind?: string;
  /** The run directory of the job. */
  runDir?: string;
  part?: number;
  seconds?: number;
  error?: string;
}

/** A running worker. */
export interface QueueWorker {
  /** host:pid, as the coordinator's "workers seen" and the done markers name it. */
  readonly name: string;
  readonly stamp: Stamp;
  /** Stops taking jobs, lets the running ones finish, and disconnects. */
  close(): Promise<void>;
}

/** Codes a retry cannot change (the inputs or the build are wrong): the job fails at once. */
const FINAL: ReadonlySet<ErrorCode> = new Set(['ERR_ARG', 'ERR_SHAPE', 'ERR_DTYPE', 'ERR_NAN', 'ERR_QUEUE']);

function jobError(e: unknown): Error {
  const err = toConceptLensError(e), message = `[${err.code}] ${err.message}`;
  return FINAL.has(err.code) ? new UnrecoverableError(message) : new Error(message);
}

class Runner {
  readonly name = `${hostname()}:${process.pid}`;

  constructor(private readonly o: WorkerOptions) {}

  emit(e: Omit<WorkerEvent, 'worker'>): void {
    this.o.onEvent?.({ ...e, worker: this.name });
  }

  async process(job: Job<JobData>, signal?: AbortSignal): Promise<PartSummary> {
    const d = job.data, at = { job: job.id, kind: d.kind, runDir: d.runDir, part: d.part };
    try {
      requireStamp(d.stamp, this.name);
    } catch (e) {
      this.emit({ event: 'refuse', ...at, error: (e as Error).message });
      throw jobError(e);
    }
    const prior = readDone(d.runDir, d.kind, d.part);
    if (prior) {
      this.emit({ event: 'skip', ...at });
      return prior.summary;
    }
    this.emit({ event: 'start', ...at });
    if (this.o.delayMs) await sleep(this.o.delayMs);
    const startedAt = Date.now();
    try {
      const summary = await handlerFor(d.kind)(d.payload,
        { runDir: d.runDir, part: d.part, file: (suffix) => partPath(d.runDir, d.kind, d.part, suffix), signal });
      writeDone(d.runDir, { stage: d.kind, part: d.part, worker: this.name, queuedAt: job.timestamp, startedAt, finishedAt: Date.now(), summary });
      this.emit({ event: 'done', ...at, seconds: (Date.now() - startedAt) / 1000 });
      return summary;
    } catch (e) {
      const err = jobError(e);
      this.emit({ event: 'fail', ...at, error: err.message });
      throw err;
    }
  }
}

/** Connects to the queue (ERR_QUEUE when Redis does not answer) and takes jobs until closed. */
export async function startWorker(o: WorkerOptions): Promise<QueueWorker> {
  const target = parseQueueUrl(o.queue), stamp = localStamp();  // hashed before the first job, not during it
  await checkRedis(target);
  const runner = new Runner(o);
  const worker = new Worker<JobData, PartSummary>(QUEUE_NAME, (job, _token, signal) => runner.process(job, signal), {
    connection: connectionOptions(target, 'worker'), name: runner.name, concurrency: o.concurrency ?? 1,
    lockDuration: o.lockDurationMs ?? 30_000, stalledInterval: o.stalledIntervalMs ?? 30_000, maxStalledCount: o.maxStalledCount ?? 2,
  });
  // Connection errors while Redis restarts: the clients reconnect by themselves; report, do not crash.
  worker.on('error', (e) => runner.emit({ event: 'error', error: e.message }));
  await worker.waitUntilReady();
  runner.emit({ event: 'ready' });
  return { name: runner.name, stamp, close: () => worker.close() };
}
