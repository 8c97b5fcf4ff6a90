/** `conceptlens sae` (train, name) and `conceptlens cbm` (train, eval): Discover-then-Name. */
import type { Command } from 'commander';
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { ConceptLensError } from '../errors.js';
import { writeFileAtomic } from '../io/atomic.js';
import { readFloatMatrix, readLabels } from '../io/matrix.js';
import { readNpy, readNpyRows, writeNpy } from '../io/npy.js';
import { readJson, readLines } from '../io/text.js';
import { conceptStrengths, featureHeader, loadTrainer, nameConcepts, readAtoms, trainSae, type ConceptName, type SaeKind } from '../methods/sae.js';
import {
  accuracy, contributions, coverage, globalExplanations, predict, toSparse, trainProbe, weightSparsity, type SparseRows,
} from '../methods/cbm.js';
import { progressBar } from './progress.js';
import { integer, number, oneOf } from './options.js';
import { act, aliasFlag, UsageError } from './run.js';
import { MAX_SEED } from '../random.js';

const NAMES = 'concept_names.json';
const PROBE = 'cbm_weights.npy';
const BASELINE = 'cbm_baseline_weights.npy';
const PROBE_META = 'cbm.json';

const explainItem = integer('--explain', 0);

/** Training labels: integers ≥ 0, one per feature row; the classes are 0..max. */
function trainLabels(path: string, rows: number, features: string): { labels: Int32Array; classes: number } {
  const labels = readLabels(path, { rows, rowsFrom: `one per row of ${features}` });
  return { labels, classes: labels.reduce((m, y) => Math.max(m, y), 0) + 1 };
}

async function strengths(dir: string, features: string, json: boolean, signal: AbortSignal): Promise<SparseRows> {
  const t = loadTrainer(dir);
  const bar = progressBar('encode', 'items', !json && process.stderr.isTTY);
  const s = await conceptStrengths(t, features, { signal, onProgress: (d, n) => bar.update(d, n) });
  bar.stop();
  return toSparse(s.data, s.rows, s.m);
}

function rawFeatures(path: string): SparseRows {
  const h = featureHeader(path);
  if (h.dtype !== 'float32') throw new ConceptLensError('ERR_DTYPE', `${path}: the baseline probe reads float32 features, got ${h.dtype}`);
  return toSparse(readNpyRows(h, 0, h.shape[0]) as Float32Array, h.shape[0], h.shape[1]);
}

function conceptNames(dir: string): string[] | undefined {
  const p = join(dir, NAMES);
  return existsSync(p) ? (readJson<ConceptName[]>(p)).map((c) => c.name) : undefined;
}

interface SaeTrainFlags {
  features: string; out: string; expansion?: number; kind?: SaeKind; k?: number; l1?: number; lr?: number; batch?: number;
  epochs: number; resampleEvery?: number; seed?: number; resume?: boolean; overwrite?: boolean; center?: boolean; json?: boolean;
}
interface CbmTrainFlags {
  checkpoint: string; features: string; labels: string; lambda: number; lr: number; epochs: number; batch: number; seed: number;
  baseline?: boolean; json?: boolean;
}
interface CbmEvalFlags {
  checkpoint: string; features: string; labels: string; explain?: number[]; top: number; json?: boolean;
}

export function registerSae(program: Command): void {
  const sae = program.command('sae').description('Discover-then-Name sparse autoencoder: train a concept dictionary, name it');
  sae.command('train')
    .description('train (or --resume) an SAE on a features .npy (fp32/fp16); writes DIR/sae.ckpt, decoder.npy (d × m), encoder.npy (m × d)')
    .requiredOption('--features <X.npy>', 'items × d features')
    .requiredOption('--out <DIR>', 'output directory')
    .option('--expansion <n>', 'latents per input dimension (default 8)', integer('--expansion'))
    .option('--kind <kind>', 'relu-l1 | topk | batchtopk (default relu-l1)', oneOf<SaeKind>('--kind', ['relu-l1', 'topk', 'batchtopk']))
    .option('--k <n>', 'active latents per item (topk, batchtopk; default 32)', integer('--k'))
    .option('--l1 <λ>', 'L1 coefficient (default 3e-5 for relu-l1, 0 for the TopK kinds)', number('--l1', { min: 0 }))
    .option('--lr <lr>', 'Adam learning rate (default 5e-4)', number('--lr', { min: 0, above: true }))
    .option('--batch <n>', 'batch size (default 4096)', integer('--batch'))
    .option('--epochs <n>', 'epochs over the file', integer('--epochs'), 200)
    .option('--resample-every <n>', 'resample dead latents every n epochs (0: never; default 10)', integer('--resample-every', 0))
    .option('--seed <n>', 'seed (default 0)', integer('--seed', 0, MAX_SEED))
    .option('--resume', 'continue from DIR/sae.ckpt (options given must match the recorded run)')
    .option('--overwrite', 'replace a trained SAE in DIR instead of refusing')
    .option('--center', 'start the tied bias at the feature mean (input mean centring) instead of 0')
    .addOption(aliasFlag('--centre', 'center'))
    .option('--json', 'print the final metadata as JSON')
    .action(act(async (o: SaeTrainFlags, { signal }) => {
      // A resumed run's kind is the recorded one (checked against the options there).
      if (o.k !== undefined && !o.resume && (o.kind ?? 'relu-l1') === 'relu-l1')
        throw new UsageError('--k: only with --kind topk or batchtopk (relu-l1 codes are made sparse by --l1)');
      const bar = progressBar('sae', 'items', !o.json && process.stderr.isTTY);
      const meta = await trainSae({
        features: o.features, out: o.out, expansion: o.expansion, kind: o.kind, k: o.k, l1: o.l1, lr: o.lr,
        batch: o.batch, epochs: o.epochs, resampleEvery: o.resampleEvery, seed: o.seed, resume: !!o.resume, overwrite: !!o.overwrite,
        centre: o.center, signal,
        onProgress: (p) => bar.update((p.epoch - 1) * p.rowsTotal + p.rowsDone, p.epochs * p.rowsTotal),
      });
      bar.stop();
      if (o.json) return console.log(JSON.stringify(meta));
      for (const h of meta.history)
        console.log(`epoch ${h.epoch}: loss ${h.loss.toPrecision(4)} mse ${h.mse.toPrecision(4)} fvu ${h.fvu.toFixed(4)} ` +
          `L0 ${h.l0.toFixed(1)} dead ${(100 * h.deadFraction).toFixed(1)}%${h.resampled ? ` resampled ${h.resampled}` : ''}`);
      console.log(`wrote ${['sae.ckpt', 'decoder.npy', 'encoder.npy', 'sae.json'].map((f) => join(o.out, f)).join(', ')}`);
    }));
  sae.command('name')
    .description('name each concept: argmax over the vocabulary of cos(text embedding, decoder column)')
    .requiredOption('--checkpoint <DIR>', 'SAE training directory')
    .requiredOption('--vocab <V.npy>', 'text embeddings, words × d (fp32/fp16)')
    .requiredOption('--names <names.txt>', 'one name per line, in the order of --vocab')
    .option('--show <n>', 'concepts to print', integer('--show', 0), 20)
    .option('--json', 'print all names as JSON')
    .action(act(async (o: { checkpoint: string; vocab: string; names: string; show: number; json?: boolean }, { signal }) => {
      const { d } = readAtoms(o.checkpoint);
      const names = readLines(o.names);
      const v = readFloatMatrix(o.vocab, { what: 'vocabulary', dtypes: ['float32', 'float16'], cols: d, colsFrom: `the SAE's width in ${o.checkpoint}`,
        rows: names.length, rowsFrom: `one per name of ${o.names}` });
      const named = await nameConcepts(o.checkpoint, v.data as Float32Array | Uint16Array, names, { signal });
      writeFileAtomic(join(o.checkpoint, NAMES), JSON.stringify(named));
      if (o.json) return console.log(JSON.stringify(named));
      for (const c of named.slice(0, o.show)) console.log(`${c.concept}\t${c.name}\t${c.score.toFixed(4)}`);
      console.log(`named ${named.length} concepts (mean cosine ${(named.reduce((a, c) => a + c.score, 0) / named.length).toFixed(4)}); wrote ${join(o.checkpoint, NAMES)}`);
    }));

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
    .option('--seed <n>', 'seed', integer('--seed', 0, MAX_SEED), 0)
    .option('--baseline', 'also train a plain linear probe on the raw features')
    .option('--json', 'JSON output')
    .action(act(async (o: CbmTrainFlags, { signal }) => {
      const X = await strengths(o.checkpoint, o.features, !!o.json, signal);
      const { labels, classes } = trainLabels(o.labels, X.rows, o.features);
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
    }));
  cbm.command('eval')
    .description('accuracy, weight sparsity, coverage and explanations of the trained probe on a labelled set')
    .requiredOption('--checkpoint <DIR>', 'SAE training directory (with cbm_weights.npy)')
    .requiredOption('--features <X.npy>', 'evaluation features')
    .requiredOption('--labels <Y.npy>', 'integer labels')
    .option('--explain <i...>', 'items to explain locally', (v: string, acc: number[] = []) => [...acc, explainItem(v)])
    .option('--top <n>', 'concepts per explanation', integer('--top'), 5)
    .option('--json', 'JSON output')
    .action(act(async (o: CbmEvalFlags, { signal }) => {
      const w = readFloatMatrix(join(o.checkpoint, PROBE), { what: 'CBM probe weights', dtypes: ['float32'] });
      const W = w.data as Float32Array, classes = w.rows;
      const X = await strengths(o.checkpoint, o.features, !!o.json, signal);
      if (w.cols !== X.cols) throw new ConceptLensError('ERR_SHAPE', `${join(o.checkpoint, PROBE)}: ${w.cols} columns, the SAE has ${X.cols} concepts; retrain the probe`);
      const labels = readLabels(o.labels, { rows: X.rows, rowsFrom: `one per row of ${o.features}`, classes });
      for (const i of o.explain ?? [])
        if (i >= X.rows) throw new ConceptLensError('ERR_ARG', `--explain: item ${i} is beyond the ${X.rows} rows of ${o.features}`);
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
      const pairs = (r: Record<string, number>, unit = '') => Object.entries(r).map(([k, v]) => `${k}${unit} ${v}`).join(', ');
      console.log(`weights with |w| at most a threshold, of ${W.length}: ${pairs(result.weightsAtMost as Record<string, number>, ':')}`);
      const cov = result.coverage as { positive: Record<string, number>; absolute: Record<string, number> };
      console.log(`coverage, mean 0-based position reaching each share of the contributions: positive ${pairs(cov.positive, ':')}; absolute ${pairs(cov.absolute, ':')}`);
      (result.global as Array<Array<{ name: string; weight: number }>>).forEach((l, c) =>
        console.log(`class ${c}: ${l.map((x) => `${x.name} (${x.weight.toFixed(3)})`).join(', ')}`));
      for (const l of result.local as Array<{ item: number; label: number; predicted: number; top: Array<{ name: string; contribution: number }> }>)
        console.log(`item ${l.item} (label ${l.label}, predicted ${l.predicted}): ${l.top.map((x) => `${x.name} ${x.contribution.toFixed(3)}`).join(', ')}`);
    }));
}
