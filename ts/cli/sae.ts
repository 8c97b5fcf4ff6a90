/** `conceptlens sae` (train, name) and `conceptlens cbm` (train, eval): Discover-then-Name. */
import type { Command } from 'commander';
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { writeFileAtomic } from '../io/atomic.js';
import { readNpy, readNpyRows, writeNpy } from '../io/npy.js';
import { conceptStrengths, featureHeader, loadTrainer, nameConcepts, trainSae, type ConceptName, type SaeKind } from '../methods/sae.js';
import {
  accuracy, contributions, coverage, globalExplanations, predict, toSparse, trainProbe, weightSparsity, type SparseRows,
} from '../methods/cbm.js';
import { progressBar } from './progress.js';
import { integer, number } from './options.js';

const NAMES = 'concept_names.json';
const PROBE = 'cbm_weights.npy';
const BASELINE = 'cbm_baseline_weights.npy';
const PROBE_META = 'cbm.json';

const explainItem = integer('--explain', 0);

function interrupt(): AbortSignal {
  const ac = new AbortController();
  process.once('SIGINT', () => ac.abort());
  return ac.signal;
}

function readLines(path: string): string[] {
  const lines = readFileSync(path, 'utf8').split(/\r\n|\r|\n/);
  if (lines.at(-1) === '') lines.pop();
  return lines;
}

function readLabels(path: string, rows: number): { labels: Int32Array; classes: number } {
  const a = readNpy(path);
  if (a.shape.length !== 1 || a.shape[0] !== rows)
    throw new Error(`${path}: expected ${rows} integer labels (1-D), got shape [${a.shape.join(', ')}] ${a.dtype}`);
  const labels = Int32Array.from(Array.from(a.data as ArrayLike<number | bigint>, Number));
  return { labels, classes: labels.reduce((m, y) => Math.max(m, y), 0) + 1 };
}

async function strengths(dir: string, features: string, json: boolean): Promise<SparseRows> {
  const t = loadTrainer(dir);
  const bar = progressBar('encode', 'items', !json && process.stderr.isTTY);
  const s = await conceptStrengths(t, features, { signal: interrupt(), onProgress: (d, n) => bar.update(d, n) });
  bar.stop();
  return toSparse(s.data, s.rows, s.m);
}

function rawFeatures(path: string): SparseRows {
  const h = featureHeader(path);
  if (h.dtype !== 'float32') throw new Error(`${path}: the baseline probe reads float32 features, got ${h.dtype}`);
  return toSparse(readNpyRows(h, 0, h.shape[0]) as Float32Array, h.shape[0], h.shape[1]);
}

function conceptNames(dir: string): string[] | undefined {
  const p = join(dir, NAMES);
  return existsSync(p) ? (JSON.parse(readFileSync(p, 'utf8')) as ConceptName[]).map((c) => c.name) : undefined;
}

export function registerSae(program: Command): void {
  const sae = program.command('sae').description('Discover-then-Name sparse autoencoder: train a concept dictionary, name it');
  sae.command('train')
    .description('train (or --resume) an SAE on a features .npy (fp32/fp16); writes DIR/sae.ckpt, decoder.npy (d × m), encoder.npy (m × d)')
    .requiredOption('--features <X.npy>', 'items × d features')
    .requiredOption('--out <DIR>', 'output directory')
    .option('--expansion <n>', 'latents per input dimension', integer('--expansion'), 8)
    .option('--kind <kind>', 'relu-l1 | topk | batchtopk', 'relu-l1')
    .option('--k <n>', 'active latents per item (topk, batchtopk)', integer('--k'), 32)
    .option('--l1 <λ>', 'L1 coefficient', number('--l1'), 3e-5)
    .option('--lr <lr>', 'Adam learning rate', number('--lr'), 5e-4)
    .option('--batch <n>', 'batch size', integer('--batch'), 4096)
    .option('--epochs <n>', 'epochs over the file', integer('--epochs'), 200)
    .option('--resample-every <n>', 'resample dead latents every n epochs (0: never)', integer('--resample-every', 0), 10)
    .option('--seed <n>', 'seed', integer('--seed', 0), 0)
    .option('--resume', 'continue from DIR/sae.ckpt')
    .option('--centre', 'start the tied bias at the feature mean (input mean centring) instead of 0')
    .option('--json', 'print the final metadata as JSON')
    .action(async (o) => {
      const bar = progressBar('sae', 'items', !o.json && process.stderr.isTTY);
      const meta = await trainSae({
        features: o.features, out: o.out, expansion: o.expansion, kind: o.kind as SaeKind, k: o.k, l1: o.l1, lr: o.lr,
        batch: o.batch, epochs: o.epochs, resampleEvery: o.resampleEvery, seed: o.seed, resume: Boolean(o.resume), centre: Boolean(o.centre),
        signal: interrupt(),
        onProgress: (p) => bar.update((p.epoch - 1) * p.rowsTotal + p.rowsDone, p.epochs * p.rowsTotal),
      });
      bar.stop();
      if (o.json) return console.log(JSON.stringify(meta));
      for (const h of meta.history)
        console.log(`epoch ${h.epoch}: loss ${h.loss.toPrecision(4)} mse ${h.mse.toPrecision(4)} fvu ${h.fvu.toFixed(4)} ` +
          `L0 ${h.l0.toFixed(1)} dead ${(100 * h.deadFraction).toFixed(1)}%${h.resampled ? ` resampled ${h.resampled}` : ''}`);
      console.log(`wrote ${o.out}/{sae.ckpt, decoder.npy, encoder.npy, sae.json}`);
    });
  sae.command('name')
    .description('name each concept: argmax over the vocabulary of cos(text embedding, decoder column)')
    .requiredOption('--checkpoint <DIR>', 'SAE training directory')
    .requiredOption('--vocab <V.npy>', 'text embeddings, words × d (fp32/fp16)')
    .requiredOption('--names <names.txt>', 'one name per line, in the order of --vocab')
    .option('--show <n>', 'concepts to print', integer('--show', 0), 20)
    .option('--json', 'print all names as JSON')
    .action(async (o) => {
      const v = readNpy(o.vocab);
      if (v.shape.length !== 2 || (v.dtype !== 'float32' && v.dtype !== 'float16'))
        throw new Error(`${o.vocab}: expected a 2-D float32/float16 array, got ${v.dtype} [${v.shape.join(', ')}]`);
      const names = await nameConcepts(o.checkpoint, v.data as Float32Array | Uint16Array, readLines(o.names), { signal: interrupt() });
      writeFileAtomic(join(o.checkpoint, NAMES), JSON.stringify(names));
      if (o.json) return console.log(JSON.stringify(names));
      for (const c of names.slice(0, o.show)) console.log(`${c.concept}\t${c.name}\t${c.score.toFixed(4)}`);
      console.log(`named ${names.length} concepts (mean cosine ${(names.reduce((a, c) => a + c.score, 0) / names.length).toFixed(4)}); wrote ${join(o.checkpoint, NAMES)}`);
    });

  const cbm = program.command('cbm').description('sparse concept-bottleneck probe on SAE concept strengths');
  cbm.command('train')
    .description('linear probe (no bias) on f(x): cross-entropy + λ_p·mean|W|, Adam, 90/10 train/validation split')
    .requiredOption('--checkpoint <DIR>', 'SAE training directory')
    .requiredOption('--features <X.npy>', 'training features')
    .requiredOption('--labels <Y.npy>', 'integer labels')
    .option('--lambda <λp>', 'sparsity coefficient', number('--lambda'), 1e-4)
    .option('--lr <lr>', 'Adam learning rate', number('--lr'), 1e-3)
    .option('--epochs <n>', 'epochs', integer('--epochs'), 20)
    .option('--batch <n>', 'batch size', integer('--batch'), 512)
    .option('--seed <n>', 'seed', integer('--seed', 0), 0)
    .option('--baseline', 'also train a plain linear probe on the raw features')
    .option('--json', 'JSON output')
    .action(async (o) => {
      const X = await strengths(o.checkpoint, o.features, o.json);
      const { labels, classes } = readLabels(o.labels, X.rows);
      const opts = { lambda: o.lambda, lr: o.lr, epochs: o.epochs, batch: o.batch, seed: o.seed };
      const probe = trainProbe(X, labels, classes, opts);
      writeNpy(join(o.checkpoint, PROBE), probe.weights, [classes, X.cols]);
      const out: Record<string, unknown> = { classes, concepts: X.cols, valTop1: probe.valTop1, bestEpoch: probe.bestEpoch, options: opts };
      if (o.baseline) {
        const base = trainProbe(rawFeatures(o.features), labels, classes, { ...opts, lambda: 0 });
        writeNpy(join(o.checkpoint, BASELINE), base.weights, [classes, base.dim]);
        out.baselineValTop1 = base.valTop1;
      }
      writeFileAtomic(join(o.checkpoint, PROBE_META), JSON.stringify(out, null, 1));
      console.log(o.json ? JSON.stringify(out) : `CBM probe: validation top-1 ${(100 * probe.valTop1).toFixed(2)}%` +
        (o.baseline ? `; plain linear probe ${(100 * (out.baselineValTop1 as number)).toFixed(2)}%` : ''));
    });
  cbm.command('eval')
    .description('accuracy, weight sparsity, coverage and explanations of the trained probe on a labelled set')
    .requiredOption('--checkpoint <DIR>', 'SAE training directory (with cbm_weights.npy)')
    .requiredOption('--features <X.npy>', 'evaluation features')
    .requiredOption('--labels <Y.npy>', 'integer labels')
    .option('--explain <i...>', 'items to explain locally', (v: string, acc: number[] = []) => [...acc, explainItem(v)])
    .option('--top <n>', 'concepts per explanation', integer('--top'), 5)
    .option('--json', 'JSON output')
    .action(async (o) => {
      const X = await strengths(o.checkpoint, o.features, o.json);
      const w = readNpy(join(o.checkpoint, PROBE));
      const W = w.data as Float32Array, classes = w.shape[0];
      const { labels } = readLabels(o.labels, X.rows);
      const names = conceptNames(o.checkpoint);
      const label = (j: number) => (names ? `${names[j]}#${j}` : `concept ${j}`);
      const result: Record<string, unknown> = {
        ...accuracy(X, labels, W, classes),
        weightsAtMost: weightSparsity(W),
        coverage: coverage(X, W, classes),
        global: globalExplanations(W, classes, X.cols, o.top).map((l) => l.map((c) => ({ ...c, name: label(c.concept) }))),
        local: (o.explain ?? []).map((i: number) => {
          const c = predict(X, i, W, classes);
          return { item: i, label: labels[i], predicted: c, top: contributions(X, i, W, c).slice(0, o.top).map((x) => ({ ...x, name: label(x.concept) })) };
        }),
      };
      if (existsSync(join(o.checkpoint, BASELINE))) {
        const b = readNpy(join(o.checkpoint, BASELINE));
        result.baseline = accuracy(rawFeatures(o.features), labels, b.data as Float32Array, classes);
      }
      if (o.json) return console.log(JSON.stringify(result));
      console.log(`top-1 ${(100 * (result.top1 as number)).toFixed(2)}%  top-5 ${(100 * (result.top5 as number)).toFixed(2)}%` +
        (result.baseline ? `  (plain linear probe top-1 ${(100 * (result.baseline as { top1: number }).top1).toFixed(2)}%)` : ''));
      console.log('weights with |w| <=', JSON.stringify(result.weightsAtMost), `of ${W.length}`);
      console.log('coverage (0-based positions, mean):', JSON.stringify(result.coverage));
      (result.global as Array<Array<{ name: string; weight: number }>>).forEach((l, c) =>
        console.log(`class ${c}: ${l.map((x) => `${x.name} (${x.weight.toFixed(3)})`).join(', ')}`));
      for (const l of result.local as Array<{ item: number; label: number; predicted: number; top: Array<{ name: string; contribution: number }> }>)
        console.log(`item ${l.item} (label ${l.label}, predicted ${l.predicted}): ${l.top.map((x) => `${x.name} ${x.contribution.toFixed(3)}`).join(', ')}`);
    });
}
