// `conceptlens worker --queue redis://HOST:PORT`: takes sharded jobs (from
// the --queue runs of search, falcon, embed, splice decompose, vocab build)
// until stopped. SIGTERM or Ctrl-C drains: the running jobs finish and are
// recorded, then the process exits 0; a second Ctrl-C exits at once (the
// job's lock then lapses and another worker takes it over).
import type { Command } from 'commander';
import { describeStamp } from '../distributed/stamp.js';
import { startWorker, type WorkerEvent } from '../distributed/worker.js';
import { integer } from './options.js';
import { act } from './run.js';
import { queueUrl } from './queue.js';

interface WorkerFlags {
  queue: string;
  concurrency: number;
  lockDuration: number;
  stalledInterval: number;
  delay: number;
  json?: boolean;
}

/** One line per event: JSON with --json, else a short sentence on stderr. */
function logEvent(e: WorkerEvent, json: boolean): void {
  if (json) return void console.log(JSON.stringify({ ...e, at: Date.now() }));
  const part = e.kind === undefined ? '' : `${e.kind} part ${e.part} (job ${e.job})`;
  const text = {
    ready: 'ready', start: `started ${part}`, done: `finished ${part} in ${e.seconds?.toFixed(2)} s`, skip: `${part} was already done`,
    fail: `${part} failed: ${e.error}`, refuse: `refused ${part}: ${e.error}`, error: `queue connection: ${e.error}`,
  }[e.event];
  console.error(`worker ${e.worker}: ${text}`);
}

async function work(o: WorkerFlags, signal: AbortSignal): Promise<void> {
  const w = await startWorker({
    queue: o.queue, concurrency: o.concurrency, lockDurationMs: o.lockDuration, stalledIntervalMs: o.stalledInterval, delayMs: o.delay,
    onEvent: (e) => logEvent(e, !!o.json),
  });
  if (!o.json) console.error(`worker ${w.name}: ${describeStamp(w.stamp)}, taking jobs from ${o.queue} (SIGTERM or Ctrl-C: finish the running jobs, then exit)`);
  await new Promise<void>((stop) => {
    process.once('SIGTERM', stop);
    signal.addEventListener('abort', () => stop(), { once: true });
  });
  await w.close();
  if (!o.json) console.error(`worker ${w.name}: stopped`);
}

export function registerWorker(program: Command): void {
  program.command('worker')
    .description('take sharded jobs from a BullMQ queue on Redis until stopped (SIGTERM or Ctrl-C: finish the running jobs, then exit)')
    .requiredOption('--queue <url>', 'the queue\'s Redis: redis://HOST:PORT[/DB]', queueUrl)
    .option('--concurrency <n>', 'jobs at once (they share the engine\'s compute threads)', integer('--concurrency', 1, 256), 1)
    .option('--lock-duration <ms>', 'a job\'s lock: a worker silent this long is taken for dead and its job given to another', integer('--lock-duration', 1000), 30000)
    .option('--stalled-interval <ms>', 'how often to look for jobs of dead workers', integer('--stalled-interval', 100), 30000)
    .option('--delay <ms>', 'wait this long before each job (tests and benchmarks: slow jobs, deterministically)', integer('--delay', 0), 0)
    .option('--json', 'print one JSON line per event (ready, start, done, skip, fail, refuse) on stdout')
    .action(act((o: WorkerFlags, { signal }) => work(o, signal)));
}
