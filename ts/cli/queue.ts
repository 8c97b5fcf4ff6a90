// The --queue and --work-dir options of the shard-parallel commands (search,
// embed, splice decompose, vocab build, falcon run and explain), and the one
// way they run: Redis checked before any local work (a wrong address fails
// at once, not after a long first stage), a status bar of the fan-outs.
import { InvalidArgumentError, type Command } from 'commander';
import { checkRedis, parseQueueUrl } from '../distributed/connection.js';
import type { QueueOptions } from '../distributed/coordinator.js';
import { statusBar } from '../distributed/progress.js';
import { UsageError } from './run.js';

/** The flags {@link addQueueOptions} declares. */
export interface QueueFlags {
  queue?: string;
  workDir?: string;
  json?: boolean;
  /** Job sizes of the commands that take them (--part-rows, --part-images): only with --queue too. */
  partRows?: number;
  partImages?: number;
}

/** Parses --queue as it is read, so a malformed URL is a usage error naming the option. */
export function queueUrl(value: string): string {
  try {
    parseQueueUrl(value);
  } catch {
    throw new InvalidArgumentError(`--queue: expected a URL redis://HOST:PORT[/DB], got '${value}'`);
  }
  return value;
}

/** Declares --queue (what `sharded` says is fanned out) and --work-dir (its default named by `workDirDefault`). */
export function addQueueOptions(cmd: Command, sharded: string, workDirDefault: string): Command {
  return cmd
    .option('--queue <url>', `fan out ${sharded} to \`conceptlens worker\`s on this Redis (redis://HOST:PORT[/DB]); same result as the local run`, queueUrl)
    .option('--work-dir <dir>', `with --queue: a directory every worker sees at the same path, for the run's files (default ${workDirDefault})`);
}

/**
 * Runs `fn` locally (no queue options) without --queue; with it, once Redis answers, with the queue's options
 * and a status bar on stderr (silent under --json, off a terminal and in CI). `workDir` is the default --work-dir.
 */
export async function withQueueStatus<T>(label: string, o: QueueFlags, at: { workDir?: string; signal: AbortSignal },
  fn: (q: QueueOptions | undefined) => Promise<T>): Promise<T> {
  if (!o.queue) {
    if (o.workDir) throw new UsageError('--work-dir: only with --queue (it holds the files of a sharded run)');
    for (const [flag, v] of [['--part-rows', o.partRows], ['--part-images', o.partImages]] as const)
      if (v !== undefined) throw new UsageError(`${flag}: only with --queue (it sizes the jobs of a sharded run)`);
    return fn(undefined);
  }
  const workDir = o.workDir ?? at.workDir;
  if (!workDir) throw new UsageError('--queue: give --work-dir, a directory every worker sees for the run\'s files');
  await checkRedis(parseQueueUrl(o.queue));
  const bar = statusBar(label, !o.json && process.stderr.isTTY && !process.env.CI);
  try {
    return await fn({ queue: o.queue, workDir, signal: at.signal, onStatus: bar.update });
  } finally {
    bar.stop();
  }
}
