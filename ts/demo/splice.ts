// Demo section: SpLiCE. Real data: STAND-IN CLIP-space embeddings of the
// first ImageNet samples decomposed over the Detic CLIP text embeddings.
// Synthetic: planted sparse mixtures of the synthetic concepts, and how much
// of each planted support the decomposition recovers.
import { readdirSync } from 'node:fs';
import { basename, join } from 'node:path';
import { assetPath } from '../assets.js';
import { writeFileAtomic } from '../io/atomic.js';
import { barChartSvg } from '../report/chart.js';
import { StandinImageTower } from '../encoders/standin.js';
import { preprocessBatch } from '../images/preprocess.js';
import { SpliceModel, type ConceptWeight, type Encoded } from '../methods/splice.js';
import type { DemoContext, DemoSection } from './context.js';
import { pick } from './data.js';
import { gaussian as gauss, rng } from '../random.js';

const IMAGES = 100;
const L1 = 0.25; // SpLiCE's default l1_penalty

const mean = (xs: ArrayLike<number>) => Array.from(xs).reduce((a, b) => a + b, 0) / xs.length;
const conceptList = (cs: ConceptWeight[]) => cs.map((c) => `${c.concept} (${c.weight.toFixed(3)})`).join(', ');

function summaryLines(enc: Encoded, seconds: number): string[] {
  return [`Mean l0 ${mean(enc.l0).toFixed(2)}, mean cosine(recomposition, embedding) ${mean(enc.cosine).toFixed(4)}, ` +
    `${(enc.n / seconds).toFixed(0)} samples/s (${enc.n} samples × ${enc.c} concepts, λ = ${L1}).`];
}

async function realSection(ctx: DemoContext): Promise<DemoSection> {
  const dir = assetPath('images/imagenet-samples');
  const files = readdirSync(dir).filter((f) => f.endsWith('.JPEG')).sort().slice(0, IMAGES);
  const tower = await StandinImageTower.load();
  let emb: Float32Array;
  try {
    const batch = await preprocessBatch(files.map((f) => join(dir, f)), tower.preprocess);
    if (batch.skipped.length) throw new Error(`${batch.skipped[0].path}: ${batch.skipped[0].reason}`);
    emb = (await tower.encode(batch.data, batch.shape)).data as Float32Array;
  } finally {
    await tower.close();
  }
  ctx.log(`splice: embedded ${files.length} ImageNet samples with the stand-in tower`);
  const { names, vectors, dim } = ctx.concepts;
  // No CLIP image mean exists for the stand-in's space: centre on these images' own mean.
  const imageMean = new Float32Array(dim);
  for (let i = 0; i < files.length; i++) for (let t = 0; t < dim; t++) imageMean[t] += emb[i * dim + t] / files.length;
  const model = SpliceModel.fromEmbeddings(names, vectors, dim, imageMean, { l1: L1 });
  const t0 = performance.now();
  const enc = await model.encode(emb, { signal: ctx.signal, onProgress: (d, t) => ctx.log(`splice: decomposing ${d}/${t}`) });
  const sec = (performance.now() - t0) / 1000;
  const dataset = model.topConcepts(await model.decomposeDataset(emb), 15);
  writeFileAtomic(join(ctx.outDir, 'splice_dataset.svg'), barChartSvg(`SpLiCE: mean concept weights over ${files.length} ImageNet samples (STAND-IN embeddings)`, dataset));
  const lines = [
    `**Embeddings: ${tower.label}.** ${files.length} ImageNet samples (the first ${files.length} files of images/imagenet-samples, sorted), ` +
    `decomposed over ${names.length} concepts (Detic CLIP ViT-B/32 text embeddings of LVIS, COCO and Objects365, centred as SpLiCE does); ` +
    `centred on the mean of these stand-in embeddings (no CLIP image mean applies to the stand-in space).`, '',
    ...summaryLines(enc, sec), '', '| image (true class) | top concepts (weight) |', '|---|---|',
  ];
  for (const i of [0, 1, 7, 30, 50, 99].filter((i) => i < enc.n)) {
    const label = basename(files[i], '.JPEG').replace(/^n\d+_/, '').replace(/_/g, ' ');
    lines.push(`| ${i}: ${label} | ${conceptList(model.topConcepts(enc.weights.subarray(i * enc.c, (i + 1) * enc.c), 5))} |`);
  }
  lines.push('', `Dataset decomposition (mean weights over all ${files.length} images): ${conceptList(dataset.slice(0, 10))}.`, '',
    '![SpLiCE dataset concepts](splice_dataset.svg)');
  return { title: 'SpLiCE (sparse concept decomposition)', markdown: lines.join('\n') };
}

/** Planted: each sample a positive mixture of 3-6 dictionary atoms plus a little noise. */
function mixturesOfConcepts(model: SpliceModel, n: number, seed: number): { x: Float32Array; support: number[][] } {
  const rand = rng(seed), d = model.d, x = new Float32Array(n * d), support: number[][] = [];
  for (let i = 0; i < n; i++) {
    const s = pick(model.c, 3 + Math.floor(rand() * 4), rand);
    support.push(s);
    for (const j of s) {
      const w = 0.5 + rand();
      for (let t = 0; t < d; t++) x[i * d + t] += w * model.dictionary[j * d + t];
    }
    for (let t = 0; t < d; t++) x[i * d + t] += 0.01 * gauss(rand);
  }
  return { x, support };
}

async function syntheticSection(ctx: DemoContext): Promise<DemoSection> {
  const { names, vectors, dim } = ctx.concepts;
  const model = SpliceModel.fromEmbeddings(names, vectors, dim, new Float32Array(dim), { l1: 0.05 });
  const { x, support } = mixturesOfConcepts(model, IMAGES, 11);
  const t0 = performance.now();
  const enc = await model.encode(x, { signal: ctx.signal });
  const sec = (performance.now() - t0) / 1000;
  let planted = 0, found = 0, hit = 0, topHit = 0;
  support.forEach((s, i) => {
    const w = enc.weights.subarray(i * enc.c, (i + 1) * enc.c);
    const nonzero = new Set(model.topConcepts(w, enc.c).map((c) => c.index));
    const top = new Set(model.topConcepts(w, s.length).map((c) => c.index));
    planted += s.length, found += nonzero.size;
    hit += s.filter((j) => nonzero.has(j)).length, topHit += s.filter((j) => top.has(j)).length;
  });
  const recall = hit / planted, precision = hit / found, topRecall = topHit / planted;
  ctx.log(`splice: synthetic support recall ${recall.toFixed(3)}`);
  const lines = [
    `**SYNTHETIC**: ${IMAGES} planted mixtures of 3-6 of ${names.length} random concept directions (d = ${dim}, weights in [0.5, 1.5], noise σ = 0.01), λ = 0.05.`, '',
    `Mean l0 ${mean(enc.l0).toFixed(2)}, mean cosine ${mean(enc.cosine).toFixed(4)}, ${(enc.n / sec).toFixed(0)} samples/s.`, '',
    '| measure | value |', '|---|---|',
    `| support recall (planted concepts with nonzero weight) | ${recall.toFixed(3)} |`,
    `| support precision (nonzero weights that were planted) | ${precision.toFixed(3)} |`,
    `| top-k recall (planted among the k heaviest, k = planted count) | ${topRecall.toFixed(3)} |`,
    '', `Sample 0: planted ${support[0].map((j) => names[j]).join(', ')}; found ${conceptList(model.topConcepts(enc.weights.subarray(0, enc.c), 8))}.`,
  ];
  return { title: 'SpLiCE (sparse concept decomposition)', markdown: lines.join('\n') };
}

export function spliceSection(ctx: DemoContext): Promise<DemoSection> {
  return ctx.concepts.source === 'real' ? realSection(ctx) : syntheticSection(ctx);
}
