// `conceptlens search`: top-k vocabulary rows for each query embedding,
// written as PREFIX.ids.npy (int32, or int64 past 2^31 rows) and
// PREFIX.scores.npy (float32), both Q × K, best first, and the hits' texts
// as PREFIX.texts.json (Q arrays of K) when the vocabulary has texts.
import type { Command } from 'commander';
import { ConceptLensError } from '../errors.js';
import { readMatrix } from '../io/matrix.js';
import { writeNpy } from '../io/npy.js';
import { writeFileAtomic } from '../io/atomic.js';
import { Vocabulary, type VocabSearchResult } from '../retrieval/vocabulary.js';
import type { Metric } from '../retrieval/exact.js';
import { buildIndex, INDEX_KINDS, type IndexKind } from '../retrieval/ann.js';
import { addSourceOptions, bar, sourceOptions, type SourceFlags } from './vocab.js';
import { integer, number, oneOf } from './options.js';
import { act, UsageError } from './run.js';
import { distributedSearch } from '../distributed/search.js';
import { addQueueOptions, withQueueStatus, type QueueFlags } from './queue.js';

interface SearchFlags extends SourceFlags, QueueFlags {
  vocab: string;
  queries: string;
  k: number;
  index: 'exact' | IndexKind;
  metric: Metric;
  softmaxTemperature?: number;
  nprobe?: number;
  efSearch?: number;
  allowMissing?: boolean;
  texts: boolean;
  out: string;
}

/** The approximate indexes' search settings, refused where --index would ignore them. */
function annSettings(o: SearchFlags): { nprobe?: number; efSearch?: number; allowMissing?: boolean } {
  const ignored = (flag: string, applies: string) => new UsageError(`${flag}: applies to ${applies}, got --index ${o.index}`);
  if (o.nprobe !== undefined && !o.index.includes('ivf')) throw ignored('--nprobe', '--index faiss-ivf and faiss-ivfpq');
  if (o.efSearch !== undefined && o.index !== 'hnsw') throw ignored('--ef-search', '--index hnsw');
  if (o.allowMissing && o.index === 'exact') throw ignored('--allow-missing', 'the approximate indexes (exact search always finds k)');
  return { nprobe: o.nprobe, efSearch: o.efSearch, allowMissing: o.allowMissing };
}

function readQueries(path: string, v: Vocabulary): Float32Array {
  return readMatrix(path, { what: 'queries', dtypes: ['float32', 'float16'], cols: v.dim, colsFrom: `the dimension of the vocabulary ${v.source}` }).data;
}

async function annSearch(v: Vocabulary, queries: Float32Array, o: SearchFlags, signal: AbortSignal): Promise<VocabSearchResult> {
  if (o.softmaxTemperature) throw new UsageError(`--softmax-temperature: needs --index exact (softmax is per shard), got --index ${o.index}`);
  if (o.k > v.rows) throw new ConceptLensError('ERR_ARG', `k: expected an integer from 1 to the vocabulary's ${v.rows} rows, got ${o.k}`);
  const index = await buildIndex(o.index as IndexKind, await v.toFloat32({ signal }), v.dim, { metric: o.metric, signal });
  const r = await index.search(queries, o.k, { ...annSettings(o), signal });
  const ids = r.ids.map((id) => (id < 0n ? -1n : BigInt(v.originalId(Number(id)))));
  const texts = v.texts && o.texts ? await v.texts.lookup(Array.from(r.ids, (id) => Math.max(0, Number(id)))) : undefined;
  return { nq: queries.length / v.dim, k: o.k, ids, scores: r.scores, texts: texts?.map((t, i) => (r.ids[i] < 0n ? '' : t)) };
}

/** Writes the result's files; returns their paths. */
function writeResult(prefix: string, r: VocabSearchResult, v: Vocabulary): { ids: string; scores: string; texts?: string } {
  const files = { ids: `${prefix}.ids.npy`, scores: `${prefix}.scores.npy`, texts: r.texts && `${prefix}.texts.json` };
  writeNpy(files.ids, v.sourceRows < 2 ** 31 ? Int32Array.from(r.ids, Number) : r.ids, [r.nq, r.k]);
  writeNpy(files.scores, r.scores, [r.nq, r.k]);
  if (r.texts) writeFileAtomic(files.texts!, JSON.stringify(Array.from({ length: r.nq }, (_, q) => r.texts!.slice(q * r.k, (q + 1) * r.k))));
  return files;
}

async function search(o: SearchFlags, signal: AbortSignal): Promise<void> {
  if (o.queue && o.index !== 'exact') throw new UsageError(`--queue: shards the exact search, got --index ${o.index}`);
  annSettings(o);
  const v = await Vocabulary.open(o.vocab, { ...sourceOptions(o), signal });
  const queries = readQueries(o.queries, v);
  const exact = { k: o.k, metric: o.metric, softmaxTemperature: o.softmaxTemperature, texts: o.texts };
  const p = bar(o.json, 'search', 'rows');
  const t0 = performance.now();
  let r: VocabSearchResult;
  try {
    r = await withQueueStatus('search', o, { workDir: `${o.out}.runs`, signal }, (q) => q ? distributedSearch(v, queries, { ...exact, ...q })
      : o.index === 'exact' ? v.search(queries, { ...exact, signal, onProgress: p.update }) : annSearch(v, queries, o, signal));
  } finally {
    p.stop();
  }
  const seconds = (performance.now() - t0) / 1000;
  const files = writeResult(o.out, r, v);
  const summary = { vocab: o.vocab, index: o.index, metric: o.metric, rows: v.rows, queries: r.nq, k: r.k, seconds, queriesPerSecond: r.nq / seconds, ...files };
  if (o.json) console.log(JSON.stringify(summary));
  else console.error(`${r.nq} queries × top ${r.k} of ${v.rows} rows in ${seconds.toFixed(3)} s -> ${Object.values(files).filter(Boolean).join(', ')}`);
}

export function registerSearch(program: Command): void {
  addQueueOptions(addSourceOptions(program.command('search')
    .description('top-k vocabulary rows for each query embedding')
    .requiredOption('--vocab <path>', 'a .npy, a LAION shard directory, or a store from `vocab build`')
    .requiredOption('--queries <file>', 'queries .npy, Q × D float32 or float16')
    .requiredOption('--k <k>', 'results per query', integer('--k'))
    .option('--index <kind>', `search index: exact | ${INDEX_KINDS.join(' | ')}`, oneOf('--index', ['exact', ...INDEX_KINDS]), 'exact')
    .option('--metric <metric>', 'similarity: ip | cosine', oneOf('--metric', ['ip', 'cosine']), 'ip')
    .option('--softmax-temperature <T>', "FALCON's chunk-local softmax(T·score) within each shard (exact only)", number('--softmax-temperature', { min: 0, above: true }))
    .option('--nprobe <n>', 'faiss-ivf, faiss-ivfpq: inverted lists probed per query (default √nlist)', integer('--nprobe'))
    .option('--ef-search <n>', 'hnsw: candidates kept while searching (default 64)', integer('--ef-search'))
    .option('--no-texts', 'skip looking up the hits\' texts (no PREFIX.texts.json): LAION captions are read from parquet, hit by hit')
    .option('--allow-missing', 'approximate indexes: write id -1 (score -inf) where fewer than k neighbours were found, instead of an error')
    .requiredOption('--out <prefix>', 'writes PREFIX.ids.npy and PREFIX.scores.npy, and PREFIX.texts.json (the hits\' texts) when the vocabulary has texts'))
    .option('--json', 'print a JSON summary (rows, queries, seconds, queries/s)'), 'one job per shard of the exact search', 'PREFIX.runs')
    .action(act((o: SearchFlags, { signal }) => search(o, signal)));
}
