// Demo section: Discover-then-Name concept bottleneck. Real data: a ReLU-L1
// SAE on the CIFAR-10 fire22 features shared with the LE section, a CBM probe
// on its concept strengths against a plain linear probe on the features
// (held-out split), and concept names by the approach of ts/methods/sae.ts.
// fire22 is not CLIP space, so each concept is first carried into the
// STAND-IN CLIP space (strength-weighted mean of the images' centred stand-in
// embeddings) and named there. Synthetic: planted dictionary recovery.
import { mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { writeNpy } from '../io/npy.js';
import { gatherRows } from '../matrix.js';
import { conceptStrengths, loadTrainer, nameConcepts, readAtoms, trainSae, type ConceptName, type TrainMeta } from '../methods/sae.js';
import { accuracy, globalExplanations, splitTrainVal, toSparse, trainProbe } from '../methods/cbm.js';
import { bridgeDirections } from '../methods/sae-bridge.js';
import type { DemoContext, DemoSection } from './context.js';
import { cifarFeatures } from './data.js';
import { plantedMixtures } from '../random.js';

interface Probed {
  cbm: number;
  linear: number;
  W: Float32Array;
}

/** Test top-1 of a probe trained on the train rows of x (n × d). */
function probeAccuracy(x: Float32Array, d: number, labels: Int32Array, classes: number, split: { train: Uint32Array; val: Uint32Array }) {
  const Xtrain = toSparse(gatherRows({ data: x, rows: x.length / d, cols: d }, split.train, 'features'), split.train.length, d);
  const probe = trainProbe(Xtrain, Int32Array.from(split.train, (i) => labels[i]), classes, { epochs: 60, lr: 1e-2, batch: 64, seed: 1 });
  return { top1: accuracy(toSparse(x, labels.length, d), labels, probe.weights, classes, split.val).top1, W: probe.weights };
}

/** SAE on the train rows, then the CBM probe on its strengths and the linear probe on the features. */
async function trainAndProbe(ctx: DemoContext, dir: string, x: Float32Array, d: number, labels: Int32Array, classes: number,
  sae: { expansion: number; l1: number; lr: number; epochs: number; batch: number }) {
  const n = labels.length, split = splitTrainVal(n, 0.2, 0);
  mkdirSync(dir, { recursive: true });
  const trainPath = join(dir, 'train_features.npy'), allPath = join(dir, 'features.npy');
  writeNpy(trainPath, gatherRows({ data: x, rows: x.length / d, cols: d }, split.train, 'features'), [split.train.length, d]);
  writeNpy(allPath, x, [n, d]);
  const meta = await trainSae({
    features: trainPath, out: join(dir, 'sae'), ...sae, centre: true, overwrite: true, resampleEvery: 5, resampleInputs: split.train.length, seed: 0,
    signal: ctx.signal,
    onProgress: (p) => p.rowsDone === p.rowsTotal && p.epoch % 5 === 0 && ctx.log(`dncbm: SAE epoch ${p.epoch}/${p.epochs}, fvu ${p.stats.fvu.toFixed(3)}, l0 ${p.stats.l0.toFixed(1)}`),
  });
  const strengths = await conceptStrengths(loadTrainer(join(dir, 'sae')), allPath);
  const cbm = probeAccuracy(strengths.data, strengths.m, labels, classes, split);
  const linear = probeAccuracy(x, d, labels, classes, split);
  ctx.log(`dncbm: CBM top-1 ${cbm.top1.toFixed(3)}, linear ${linear.top1.toFixed(3)}`);
  const probed: Probed = { cbm: cbm.top1, linear: linear.top1, W: cbm.W };
  return { meta, strengths, probed, split };
}

function trainingLines(meta: TrainMeta, probed: Probed, nTrain: number, nTest: number): string[] {
  const last = meta.history.at(-1)!;
  return [
    `SAE (ReLU-L1, ${meta.config.m} concepts = ${meta.config.m / meta.config.d}× d, λ = ${Number(meta.config.l1.toPrecision(3))}, ${meta.epochsDone} epochs): ` +
    `FVU ${last.fvu.toFixed(3)}, mean l0 ${last.l0.toFixed(1)}, dead ${(100 * last.deadFraction).toFixed(1)}%.`, '',
    '| probe (no bias, Adam, same trainer) | held-out top-1 |', '|---|---|',
    `| CBM on SAE concept strengths | ${probed.cbm.toFixed(3)} |`,
    `| linear on the raw features | ${probed.linear.toFixed(3)} |`, '',
    `Split: ${nTrain} train (the SAE and probes see only these), ${nTest} held out.`,
  ];
}

async function realSection(ctx: DemoContext): Promise<DemoSection> {
  const f = await cifarFeatures(ctx);
  const dir = join(ctx.outDir, 'dncbm');
  const { meta, strengths, probed, split } = await trainAndProbe(ctx, dir, f.fire22, f.dim, f.labels, f.classes.length,
    { expansion: 4, l1: 1e-2, lr: 1e-3, epochs: 40, batch: 64 });
  const named = join(dir, 'clip-standin');
  mkdirSync(named, { recursive: true });
  writeNpy(join(named, 'decoder.npy'), bridgeDirections(strengths, f.clip, ctx.concepts.dim), [ctx.concepts.dim, strengths.m]);
  const names = await nameConcepts(named, ctx.concepts.vectors, ctx.concepts.names);
  const top = globalExplanations(probed.W, f.classes.length, strengths.m, 3);
  const lines = [
    `SqueezeNet fire22 features of the ${f.n} CIFAR-10 images shared with the LE section (cached in features/).`, '',
    ...trainingLines(meta, probed, split.train.length, split.val.length), '',
    `**Concept names are STAND-IN**: fire22 is not CLIP space, so each concept is carried into the stand-in CLIP space ` +
    `(strength-weighted mean of the images' centred stand-in embeddings: SqueezeNet ImageNet probabilities mapped onto LVIS CLIP text embeddings) ` +
    `and named by the nearest of ${ctx.concepts.names.length} Detic CLIP text embeddings (cosine), as DN-CBM names decoder directions.`, '',
    '| class | heaviest CBM concepts: name (cosine), weight |', '|---|---|',
    ...top.map((cs, c) => `| ${f.classes[c]} | ${cs.map((x) => `#${x.concept} ${nameOf(names[x.concept])}, ${x.weight.toFixed(3)}`).join('; ')} |`),
  ];
  return { title: 'Discover-then-Name (DN-CBM)', markdown: lines.join('\n') };
}

const nameOf = (n: ConceptName) => `${n.name} (${n.score.toFixed(3)})`;

const SYN_D = 32, SYN_ATOMS = 16;

/** Items = 1-2 planted unit atoms with positive weights + noise; the label is the first atom's id mod 4. */
const plantedItems = (rows: number, seed: number) => plantedMixtures(rows, SYN_D, SYN_ATOMS, seed);

async function syntheticSection(ctx: DemoContext): Promise<DemoSection> {
  const rows = 4096, { dict, x, labels } = plantedItems(rows, 1);
  const dir = join(ctx.outDir, 'dncbm');
  const { meta, probed, split } = await trainAndProbe(ctx, dir, x, SYN_D, labels, 4, { expansion: 4, l1: 2e-2, lr: 1e-2, epochs: 25, batch: 256 });
  const { atoms, m } = readAtoms(join(dir, 'sae'));
  const plantedNames = Array.from({ length: SYN_ATOMS }, (_, j) => `atom_${j}`);
  const names = await nameConcepts(join(dir, 'sae'), dict, plantedNames);
  let recovered = 0, namedRight = 0;
  for (let a = 0; a < SYN_ATOMS; a++) {
    let best = -1, arg = 0;
    for (let j = 0; j < m; j++) {
      let dot = 0;
      for (let c = 0; c < SYN_D; c++) dot += dict[a * SYN_D + c] * atoms[j * SYN_D + c];
      if (dot > best) best = dot, arg = j;
    }
    if (best > 0.98) recovered++, namedRight += names[arg].name === plantedNames[a] ? 1 : 0;
  }
  ctx.log(`dncbm: synthetic atoms recovered ${recovered}/${SYN_ATOMS}`);
  const lines = [
    `**SYNTHETIC**: ${rows} items, each 1-2 of ${SYN_ATOMS} planted unit atoms (d = ${SYN_D}, weights in [1, 2], noise σ = 0.01); class = first atom mod 4.`, '',
    ...trainingLines(meta, probed, split.train.length, split.val.length), '',
    `Planted atoms recovered (a decoder atom with cosine > 0.98): ${recovered}/${SYN_ATOMS}; of these named after their planted atom: ${namedRight}/${recovered}.`,
  ];
  return { title: 'Discover-then-Name (DN-CBM)', markdown: lines.join('\n') };
}

export function dncbmSection(ctx: DemoContext): Promise<DemoSection> {
  return ctx.concepts.source === 'real' ? realSection(ctx) : syntheticSection(ctx);
}
