// What the atlas says about each unit: its top and lowly activating images,
// and what every method names it by, with the concepts that two or more
// methods agree on. Assembled from the stages' outputs; nothing is computed
// here that a stage caches.
import { argError, requireInteger } from '../errors.js';
import type { Mat } from '../matrix.js';
import type { ConceptWeight } from '../methods/splice.js';
import { lowlyActivating } from '../methods/falcon/scores.js';
import type { Firing } from '../methods/falcon/groups.js';
import type { GroupExplanation } from '../methods/falcon/report.js';
import type { Crop, UnitCrops } from './cams.js';
import type { DncbmResult } from './dncbm.js';
import type { LeResult, LeUnit } from './le.js';
import { meanWeights, type SpliceResult } from './splice.js';
import { nameKeys, readable } from './vocab.js';

/** Which units get pages: all, the n that vary most over the probe images, or a list. */
export type UnitSelection = 'all' | number | readonly number[];

/** The k images on which the unit is highest, highest first (ties by image). */
export function topImages(acts: Mat, unit: number, k: number): number[] {
  const ids = Array.from({ length: acts.rows }, (_, i) => i);
  const v = (i: number) => acts.data[i * acts.cols + unit];
  return ids.sort((a, b) => v(b) - v(a) || a - b).slice(0, k);
}

function variance(acts: Mat, u: number): number {
  let s = 0, ss = 0;
  for (let i = 0; i < acts.rows; i++) (s += acts.data[i * acts.cols + u]), (ss += acts.data[i * acts.cols + u] ** 2);
  return ss / acts.rows - (s / acts.rows) ** 2;
}

/** The selected units, ascending. */
export function selectUnits(acts: Mat, sel: UnitSelection): number[] {
  const all = Array.from({ length: acts.cols }, (_, u) => u);
  if (sel === 'all') return all;
  if (typeof sel === 'number') {
    requireInteger(sel, 'units', 1);
    const v = all.map((u) => variance(acts, u));
    return all.sort((a, b) => v[b] - v[a] || a - b).slice(0, sel).sort((a, b) => a - b);
  }
  const bad = sel.find((u) => !(Number.isInteger(u) && u >= 0 && u < acts.cols));
  if (bad !== undefined) throw argError('units', `unit numbers in [0, ${acts.cols}) (the layer's channels)`, bad);
  return [...new Set(sel)].sort((a, b) => a - b);
}

/** The methods the side-by-side view compares. */
export const METHODS = ['LE(Label)', 'LE(CLIP)', 'FALCON', 'SpLiCE', 'DN-CBM'] as const;
export type MethodName = (typeof METHODS)[number];

/** A concept as one method names it, with what the method measured (weight, score). */
export interface Named {
  name: string;
  detail: string;
  /** An LE term with a negative weight: the unit is lower where the concept is (never counted as agreement). */
  against?: boolean;
}

/** One SAE concept as it bears on a unit. */
export interface SaeLoading {
  concept: number;
  name: string;
  /** Cosine of the concept's direction and its name. */
  score: number;
  /** Decoder weight of the concept on the unit. */
  loading: number;
  /** loading × the concept's mean strength: its share in the unit's mean reconstruction. */
  contribution: number;
}

/** Everything the atlas shows about one unit. */
export interface UnitView {
  unit: number;
  top: { image: number; value: number }[];
  low: { image: number; value: number; similarity: number }[];
  crops: Crop[];
  leLabel?: LeUnit;
  leClip?: LeUnit;
  /** FALCON groups with this unit among their features. */
  groups: GroupExplanation[];
  /** Best interpretability of those groups (null: in no group). */
  falconScore: number | null;
  /** SpLiCE concepts of the top images (mean weights). */
  splice: ConceptWeight[];
  sae: SaeLoading[];
  /** Share of the top SAE concept in the unit's mean reconstruction (null: no SAE). */
  saeShare: number | null;
  /** Per method, the concepts it names the unit by. */
  named: Partial<Record<MethodName, Named[]>>;
  /** Plain names named by two or more methods, with those methods. */
  shared: { key: string; label: string; methods: MethodName[] }[];
}

/** The stages' outputs the views are made from (absent: the stage did not apply). */
export interface ViewInputs {
  acts: Mat;
  firing: Firing;
  top: number;
  low: number;
  le: { label?: LeResult; clip?: LeResult };
  splice?: SpliceResult;
  dncbm?: DncbmResult;
  /** FALCON's explained groups and the units' crops (absent on a layer without a spatial map). */
  groups?: GroupExplanation[];
  crops?: UnitCrops;
}

const leTerms = (e: LeUnit): Named[] => e.concepts.map((c, t) => ({ name: readable(c), detail: `weight ${e.weights[t].toFixed(3)}`, against: e.weights[t] < 0 }));

/** The first of each name (a method may give one name to several of its concepts). */
const distinct = (xs: Named[]) => xs.filter((x, k) => xs.findIndex((y) => y.name === x.name) === k);

function saeLoadings(d: DncbmResult, unit: number, meanStrength: Float64Array): SaeLoading[] {
  const m = d.decoder.cols, out: SaeLoading[] = [];
  for (let j = 0; j < m; j++) {
    const loading = d.decoder.data[unit * m + j], contribution = loading * meanStrength[j];
    if (contribution > 0) out.push({ concept: j, name: d.names[j].name, score: d.names[j].score, loading, contribution });
  }
  return out.sort((a, b) => b.contribution - a.contribution);
}

/** The plain names each method gives, and those two or more share. */
function agreement(named: Partial<Record<MethodName, Named[]>>): UnitView['shared'] {
  const by = new Map<string, { label: string; methods: Set<MethodName> }>();
  for (const method of METHODS)
    for (const c of (named[method] ?? []).filter((x) => !x.against))
      for (const k of nameKeys(c.name)) {
        const e = by.get(k) ?? { label: c.name, methods: new Set<MethodName>() };
        e.methods.add(method);
        by.set(k, e);
      }
  return [...by].filter(([, e]) => e.methods.size >= 2).map(([key, e]) => ({ key, label: e.label, methods: [...e.methods] }))
    .sort((a, b) => b.methods.length - a.methods.length || (a.key < b.key ? -1 : 1));
}

/** Mean strength of each SAE concept over the probe images. */
function meanStrengths(d: DncbmResult): Float64Array {
  const m = new Float64Array(d.strengths.cols);
  for (let k = 0; k < d.strengths.data.length; k++) m[k % d.strengths.cols] += d.strengths.data[k] / d.strengths.rows;
  return m;
}

/** Per method, the concepts it names the unit by (undefined: the method did not run). */
function namedBy(x: ViewInputs, v: Pick<UnitView, 'leLabel' | 'leClip' | 'groups' | 'splice' | 'sae'>): UnitView['named'] {
  return {
    'LE(Label)': v.leLabel && leTerms(v.leLabel),
    'LE(CLIP)': v.leClip && leTerms(v.leClip),
    FALCON: x.groups && distinct(v.groups.flatMap((g) => [...g.words.slice(0, 5), ...g.phrases.slice(0, 3)]
      .map((s) => ({ name: s.term, detail: `group ${g.group}: score ${s.score.toFixed(3)}` })))),
    SpLiCE: x.splice && v.splice.map((c) => ({ name: readable(c.concept), detail: `mean weight ${c.weight.toFixed(3)}` })),
    'DN-CBM': x.dncbm && distinct(v.sae.map((s) => ({ name: readable(s.name), detail: `#${s.concept}: contribution ${s.contribution.toFixed(3)}` }))).slice(0, 3),
  };
}

/** The view of each selected unit. */
export function unitViews(units: readonly number[], x: ViewInputs): UnitView[] {
  const byUnit = (r?: LeResult) => new Map((r?.units ?? []).map((e) => [e.unit, e]));
  const leLabel = byUnit(x.le.label), leClip = byUnit(x.le.clip), strength = x.dncbm && meanStrengths(x.dncbm);
  return units.map((unit) => {
    const topIds = topImages(x.acts, unit, x.top), value = (i: number) => x.acts.data[i * x.acts.cols + unit];
    const lowly = lowlyActivating(x.acts.data, x.firing, [unit], topIds, { limit: x.low, minSimilarity: 0 });
    const groups = (x.groups ?? []).filter((g) => g.features.includes(unit));
    const scores = groups.flatMap((g) => (g.interpretability === null ? [] : [g.interpretability]));
    const sae = x.dncbm ? saeLoadings(x.dncbm, unit, strength!) : [], total = sae.reduce((a, s) => a + s.contribution, 0);
    const v = {
      unit, top: topIds.map((image) => ({ image, value: value(image) })),
      low: lowly.images.map((image, k) => ({ image, value: value(image), similarity: lowly.similarities[k] })),
      crops: x.crops?.[unit] ?? [], leLabel: leLabel.get(unit), leClip: leClip.get(unit), groups,
      falconScore: scores.length ? Math.max(...scores) : null, sae, saeShare: x.dncbm ? (total > 0 ? sae[0].contribution / total : 0) : null,
      splice: x.splice ? x.splice.model.topConcepts(meanWeights(x.splice.weights, topIds), 6) : [],
    };
    const named = namedBy(x, v);
    return { ...v, named, shared: agreement(named) };
  });
}
