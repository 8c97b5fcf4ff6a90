// `conceptlens vocab build`: a vocabulary source (.npy + names, LAION shard
// directory) -> the compact store that reopens without re-parsing; and the
// source options that `search` shares.
import type { Command } from 'commander';
import { Vocabulary, type OpenOptions } from '../retrieval/vocabulary.js';
import { progressBar } from './progress.js';
import { act, aliasFlag, UsageError } from './run.js';
import { distributedVocabBuild } from '../distributed/dedupe.js';
import { addQueueOptions, withQueueStatus, type QueueFlags } from './queue.js';

export interface SourceFlags {
  names?: string;
  normalize?: boolean;
  center?: boolean;
  dedupe?: boolean;
  verify?: boolean;
  json?: boolean;
}

export function addSourceOptions(cmd: Command): Command {
  return cmd
    .option('--names <file>', 'texts for a single .npy, one per line')
    .option('--normalize', 'L2-normalise every row')
    .option('--center', 'subtract the mean row (of the normalised rows with --normalize; rows are re-normalised after)')
    .addOption(aliasFlag('--centre', 'center'))
    .option('--dedupe', 'keep the first row of each repeated caption (ids still refer to the original rows)')
    .option('--verify', 'check a store against the sha256 its manifest records, whatever its size')
    .option('--no-verify', 'skip that check (by default only stores up to 256 MiB are checked on open)');
}

export function sourceOptions(f: SourceFlags): Pick<OpenOptions, 'names' | 'normalize' | 'center' | 'dedupe' | 'verify'> {
  return { names: f.names, normalize: f.normalize, center: f.center, dedupe: f.dedupe, verify: f.verify };
}

/** A progress bar, silent under --json. */
export const bar = (json: boolean | undefined, label: string, unit: string) =>
  json ? progressBar(label, unit, false) : progressBar(label, unit);

interface BuildFlags extends SourceFlags, QueueFlags {
  from: string;
  out: string;
  prepare?: boolean;
}

/** The store of `o.from` written to `o.out`; with --queue (and --dedupe, the one pass there is to shard) de-duplicated on the workers. */
async function writeStore(o: BuildFlags, signal: AbortSignal, onProgress: (done: number, total: number) => void): Promise<Vocabulary> {
  if (o.queue && !o.dedupe) throw new UsageError('--queue: only the --dedupe pass is sharded; without --dedupe there is nothing to shard (drop --queue)');
  return withQueueStatus('dedupe', o, { workDir: `${o.out}.runs`, signal }, async (q) => {
    if (q) {
      const v = await distributedVocabBuild(o.from, o.out, { normalize: o.normalize, center: o.center, ...q, onProgress });
      if (o.prepare) await (await Vocabulary.open(o.out, { verify: false })).prepare({ persist: true, signal, onProgress });
      return v;
    }
    const v = await Vocabulary.open(o.from, { ...sourceOptions(o), signal, onProgress });
    await v.save(o.out, { signal, onProgress, prepare: o.prepare });
    return v;
  });
}

async function build(o: BuildFlags, signal: AbortSignal): Promise<void> {
  const t0 = performance.now();
  const p = bar(o.json, 'vocab', 'rows');
  try {
    const v = await writeStore(o, signal, p.update);
    const summary = { store: o.out, rows: v.rows, sourceRows: v.sourceRows, dim: v.dim, dtype: v.dtype,
      transforms: v.transforms, texts: !!v.texts, seconds: (performance.now() - t0) / 1000 };
    p.stop();
    if (o.json) console.log(JSON.stringify(summary));
    else console.error(`wrote ${o.out}: ${v.rows} rows (of ${v.sourceRows}) × ${v.dim} ${v.dtype}`);
  } finally {
    p.stop();
  }
}

export function registerVocab(program: Command): void {
  const vocab = program.command('vocab').description('build concept vocabularies (stores that search, serve and sharded runs reopen)');
  addQueueOptions(addSourceOptions(vocab.command('build')
    .description('write the compact store of a .npy or a LAION shard directory (text_emb_{i}.npy + metadata_{i}.parquet | captions_{i}.txt | captions.txt)')
    .requiredOption('--from <src>', 'a .npy file or a LAION shard directory')
    .requiredOption('--out <store>', 'store directory to create (an older store there is replaced, only once the new one is complete)'))
    .option('--prepare', "also write the rows' screening copy (rounded once, with its bounds), so searches that keep the store resident reuse it")
    .option('--json', 'print a JSON summary'),
  'the --dedupe pass (needs --dedupe: without it there is nothing to shard)', 'OUT.runs')
    .action(act((o: BuildFlags, { signal }) => build(o, signal)));
}
