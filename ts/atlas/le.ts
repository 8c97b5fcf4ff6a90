// Linear Explanations in the atlas: LE(Label) from the probe's class labels
// (plus one concept per source folder when there are several) and LE(CLIP)
// from the text-aligned embeddings through a calibrated sigmoid, each unit
// scored by simulation correlation on the test split against the single
// best concept. Stored in the reference CSV layout (le.csv) with le.json.
import { join } from 'node:path';
import type { Mat } from '../matrix.js';
import { singleBestScores } from '../methods/le/baseline.js';
import { calibrateSigmoid, conceptCosines, filterConcepts, labelConcepts, sigmoidConcepts } from '../methods/le/concepts.js';
import { readExplanationsCsv, writeExplanationsCsv } from '../methods/le/csv.js';
import { explainNeurons } from '../methods/le/explain.js';
import { correlationScores } from '../methods/le/simulate.js';
import { seededSplit, type Split } from '../methods/le/splits.js';
import { column, selectColumns, std } from '../methods/le/stats.js';
import { readJson } from '../io/text.js';
import { rng } from '../random.js';
import { writeJson } from '../io/stages.js';
import type { ProbeSet } from './probe.js';
import { classConceptRows, type ConceptVocab } from './vocab.js';

/** One unit's linear explanation and its scores. */
export interface LeUnit {
  unit: number;
  concepts: string[];
  weights: number[];
  bias: number;
  /** Simulation correlation on the test split. */
  sim: number;
  /** The single best concept's test correlation (the baseline). */
  baseline: number;
}

/** One LE variant over the selected units. */
export interface LeResult {
  units: LeUnit[];
  /** Selected units left out because they are constant on the training images. */
  constant: number[];
  /** How the concept matrix was made, for pages. */
  note: string;
}

/** The reference explainer's sigmoid, used when too few classes have a concept to calibrate on. */
const REFERENCE_SIGMOID = { a: 60, b: -0.09 };

interface Saved {
  constant: number[];
  note: string;
}

/** Explains the selected units of A by P; writes le.csv (scores as extra columns) and le.json. */
async function explainUnits(dir: string, A: Mat, units: readonly number[], P: Mat, names: string[], note: string, layer: string,
  report: (d: number, t: number) => void, signal?: AbortSignal): Promise<void> {
  const split: Split = seededSplit(A.rows, 0);
  const varying = units.filter((u) => std(column(A, u, split.train)) > 0);
  const sub = selectColumns(A, varying);
  const exps = await explainNeurons(sub, P, names, { split, layer, signal, onProgress: report });
  // The baseline picks from the concepts LE may use (those its filter keeps), so the two compare like for like.
  const sims = correlationScores(exps, P, names, sub, split.test), base = singleBestScores(sub, filterConcepts(P, names).P, split);
  writeExplanationsCsv(join(dir, 'le.csv'), exps.map((e, i) => ({
    ...e, unit: varying[i], extra: { 'sim correlation': String(sims[i]), 'single best correlation': String(base[i]) },
  })));
  writeJson(join(dir, 'le.json'), { constant: units.filter((u) => !varying.includes(u)), note } satisfies Saved);
}

/** LE(Label): the classes as one-hot concepts, plus one "source" concept per folder when there are several. */
export function computeLeLabel(dir: string, A: Mat, units: readonly number[], probe: ProbeSet, layer: string,
  report: (d: number, t: number) => void, signal?: AbortSignal): Promise<void> {
  const supers: Record<string, number[]> = {};
  if (probe.sources.length > 1)
    probe.sources.forEach((s, k) => (supers[`source ${s}`] = [...new Set(Array.from(probe.labels).filter((_, i) => probe.source[i] === k))]));
  const { P, names } = labelConcepts(probe.labels, probe.classes, supers);
  const note = `${probe.classes.length} class labels${probe.sources.length > 1 ? ` and ${probe.sources.length} source folders` : ''} as concepts (LE keeps those whose top-5 mean is ≥ 0.5: classes with fewer than 3 images drop out)`;
  return explainUnits(dir, A, units, P, names, note, layer, report, signal);
}

/**
 * (a, b) of LE(CLIP)'s sigmoid by `calibrateSigmoid` on (image, class concept) pairs: every image with its own class's
 * concept (positive) and as many seeded random images of other classes with it (negative). Balanced, because an image
 * has one class of many: on all pairs the fit puts the threshold above nearly every cosine and LE's filter then drops
 * almost every concept (16 of the 1,203 LVIS concepts over the assets' 2,000 images with the stand-in).
 */
function calibrate(cos: Mat, probe: ProbeSet, vocab: ConceptVocab): { a: number; b: number; classes: number } | undefined {
  const matched = classConceptRows(probe.classes, vocab.names).flatMap((rows, c) => (rows.length ? [{ c, j: rows[0] }] : []));
  if (matched.length < 2) return undefined;
  const pos: number[] = [], neg: number[] = [], rand = rng(0);
  for (const m of matched)
    for (let i = 0; i < cos.rows; i++) if (probe.labels[i] === m.c) pos.push(cos.data[i * cos.cols + m.j]);
  while (neg.length < pos.length) {
    const m = matched[Math.floor(rand() * matched.length)], i = Math.floor(rand() * cos.rows);
    if (probe.labels[i] !== m.c) neg.push(cos.data[i * cos.cols + m.j]);
  }
  const x = Float32Array.from([...pos, ...neg]), t = Float32Array.from(x, (_, k) => (k < pos.length ? 1 : 0));
  return { ...calibrateSigmoid({ data: x, rows: x.length, cols: 1 }, { data: t, rows: x.length, cols: 1 }), classes: matched.length };
}

/** LE(CLIP): P = sigmoid(a·(cos + b)) of image–concept cosines, (a, b) from {@link calibrate}, else the reference's (60, −0.09). */
export async function computeLeClip(dir: string, A: Mat, units: readonly number[], clip: Mat, vocab: ConceptVocab, probe: ProbeSet,
  o: { layer: string; spaceLabel: string }, report: (d: number, t: number) => void, signal?: AbortSignal): Promise<void> {
  const cos = await conceptCosines(clip, { data: vocab.vectors, rows: vocab.names.length, cols: vocab.d }, { signal });
  const fit = calibrate(cos, probe, vocab), { a, b } = fit ?? REFERENCE_SIGMOID;
  const how = fit ? `(a, b) = (${a.toFixed(2)}, ${b.toFixed(3)}) calibrated on images of the ${fit.classes} classes named by vocabulary concepts (as many other-class images as negatives)`
    : `the reference explainer's (a, b) = (${a}, ${b}): fewer than 2 classes are vocabulary concepts`;
  const note = `P = sigmoid(a·(cos + b)) of image–concept cosines in ${o.spaceLabel}, over ${vocab.label}; ${how}`;
  await explainUnits(dir, A, units, sigmoidConcepts(cos, a, b), vocab.names, note, o.layer, report, signal);
}

/** An LE stage's outputs. */
export function loadLe(dir: string): LeResult {
  const saved = readJson<Saved>(join(dir, 'le.json'));
  const units = readExplanationsCsv(join(dir, 'le.csv')).map((e) => ({
    unit: e.unit, concepts: e.concepts, weights: e.weights, bias: e.bias,
    sim: Number(e.extra['sim correlation']), baseline: Number(e.extra['single best correlation']),
  }));
  return { units, ...saved };
}
