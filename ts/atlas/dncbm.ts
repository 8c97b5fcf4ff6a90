// Discover-then-Name in the atlas: a sparse autoencoder over the layer's
// pooled features (trained on a seeded 80% of the images, checkpointed so an
// interrupted run resumes), its concepts named in the text-aligned space
// (carried there as the strength-weighted mean of the images' embeddings,
// since the layer is not CLIP space), and the concept-bottleneck probe on the
// classes with enough images, against a linear probe on the raw features.
import { mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { readMatrix } from '../io/matrix.js';
import { readNpy, writeNpy } from '../io/npy.js';
import { readJson } from '../io/text.js';
import { gatherRows, type Mat } from '../matrix.js';
import { accuracy, splitTrainVal, toSparse, trainProbe } from '../methods/cbm.js';
import { conceptStrengths, loadTrainer, nameConcepts, trainSae, type ConceptName } from '../methods/sae.js';
import { bridgeDirections } from '../methods/sae-bridge.js';
import { writeJson } from '../io/stages.js';
import { classCounts, type ProbeSet } from './probe.js';
import type { ConceptVocab } from './vocab.js';

/** SAE training settings of the atlas. */
export interface SaeSettings {
  expansion: number;
  l1: number;
  lr: number;
  epochs: number;
  batch: number;
}

/** The CBM probe over the classes with enough images. */
export interface CbmProbe {
  /** Probe class k is probe-set class classes[k]. */
  classes: number[];
  /** classes.length × m weights. */
  weights: Float32Array;
  /** Held-out images (all of probed classes) and the accuracies on them. */
  heldOut: number[];
  cbmTop1: number;
  linearTop1: number;
}

/** The SAE, its named concepts and the probe. */
export interface DncbmResult {
  /** images × m concept strengths. */
  strengths: Mat;
  /** units × m: how much concept j writes into unit u (the SAE decoder). */
  decoder: Mat;
  /** The concepts' directions in the text-aligned space, d × m (the naming input). */
  directions: Mat;
  names: ConceptName[];
  training: { fvu: number; l0: number; dead: number; epochs: number; m: number; expansion: number; l1: number; trainImages: number };
  probe?: CbmProbe;
}

interface Saved {
  names: ConceptName[];
  training: DncbmResult['training'];
  probe?: Omit<CbmProbe, 'weights'>;
}

/** A probe trained on the `train` rows of x (rows × d), its top-1 on the `test` rows. */
function probeOn(x: Float32Array, d: number, labels: Int32Array, classes: number, train: number[], test: number[]) {
  const probe = trainProbe(toSparse(gatherRows({ data: x, rows: labels.length, cols: d }, train, 'features'), train.length, d), Int32Array.from(train, (i) => labels[i]), classes, { epochs: 60, lr: 1e-2, batch: 64, seed: 1 });
  return { weights: probe.weights, top1: accuracy(toSparse(x, labels.length, d), labels, probe.weights, classes, test).top1 };
}

/** The probe on the classes with at least `minImages` images (none when fewer than 2 such classes, or no labelled image to fit or score). */
function cbmProbe(strengths: Mat, acts: Mat, probe: ProbeSet, split: { train: Uint32Array; val: Uint32Array }, minImages: number): CbmProbe | undefined {
  const counts = classCounts(probe), classes = counts.flatMap((n, c) => (n >= minImages ? [c] : []));
  if (classes.length < 2) return undefined;
  const compact = new Map(classes.map((c, k) => [c, k])), labels = Int32Array.from(probe.labels, (y) => compact.get(y) ?? -1);
  const train = Array.from(split.train).filter((i) => labels[i] >= 0), heldOut = Array.from(split.val).filter((i) => labels[i] >= 0);
  if (train.length === 0 || heldOut.length === 0) return undefined;  // nothing to fit or to score the probe on
  const cbm = probeOn(strengths.data, strengths.cols, labels, classes.length, train, heldOut);
  const linear = probeOn(acts.data, acts.cols, labels, classes.length, train, heldOut);
  return { classes, weights: cbm.weights, heldOut, cbmTop1: cbm.top1, linearTop1: linear.top1 };
}

/** Trains (or resumes) the SAE, names its concepts and fits the probe, into `dir`. */
export async function computeDncbm(dir: string, f: { acts: Mat; actsPath: string; clip: Mat }, vocab: ConceptVocab, probe: ProbeSet,
  o: SaeSettings & { minClassImages: number }, report: (d: number, t: number) => void, signal?: AbortSignal): Promise<void> {
  const split = splitTrainVal(f.acts.rows, 0.2, 0), trainPath = join(dir, 'train_features.npy'), train = Array.from(split.train);
  writeNpy(trainPath, gatherRows(f.acts, train, 'activations'), [train.length, f.acts.cols]);
  const meta = await trainSae({
    features: trainPath, out: join(dir, 'sae'), expansion: o.expansion, l1: o.l1, lr: o.lr, epochs: o.epochs, batch: o.batch,
    centre: true, resampleEvery: 5, resampleInputs: train.length, seed: 0, resume: true, signal,
    onProgress: (p) => report((p.epoch - 1) * p.rowsTotal + p.rowsDone, p.epochs * p.rowsTotal),
  });
  const s = await conceptStrengths(loadTrainer(join(dir, 'sae')), f.actsPath, { signal });
  const strengths = { data: s.data, rows: s.rows, cols: s.m };
  writeNpy(join(dir, 'strengths.npy'), s.data, [s.rows, s.m]);
  mkdirSync(join(dir, 'named'), { recursive: true });
  writeNpy(join(dir, 'named', 'decoder.npy'), bridgeDirections(s, f.clip.data, f.clip.cols), [f.clip.cols, s.m]);
  const names = await nameConcepts(join(dir, 'named'), vocab.vectors, vocab.names, { signal });
  const last = meta.history.at(-1)!;
  const saved: Saved = { names, training: { fvu: last.fvu, l0: last.l0, dead: last.deadFraction, epochs: meta.epochsDone, m: s.m, expansion: o.expansion, l1: o.l1, trainImages: train.length } };
  const p = cbmProbe(strengths, f.acts, probe, split, o.minClassImages);
  if (p) {
    const { weights, ...rest } = p;
    writeNpy(join(dir, 'probe_weights.npy'), weights, [p.classes.length, s.m]);
    saved.probe = rest;
  }
  writeJson(join(dir, 'dncbm.json'), saved);
}

const matrix = (path: string, what: string): Mat => readMatrix(path, { what });

/** The outputs written by {@link computeDncbm}. */
export function loadDncbm(dir: string): DncbmResult {
  const s = readJson<Saved>(join(dir, 'dncbm.json'));
  const probe = s.probe && { ...s.probe, weights: readNpy(join(dir, 'probe_weights.npy')).data as Float32Array };
  return {
    names: s.names, training: s.training, probe,
    strengths: matrix(join(dir, 'strengths.npy'), 'SAE concept strengths'),
    decoder: matrix(join(dir, 'sae', 'decoder.npy'), 'SAE decoder'),
    directions: matrix(join(dir, 'named', 'decoder.npy'), 'SAE concept directions'),
  };
}
