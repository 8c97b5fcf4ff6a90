// The analyses the SpLiCE paper promises on top of decompositions:
// concept-level differences between two image sets (distribution shift
// monitoring), with percentile-bootstrap confidence intervals, and
// spurious-correlation detection (per class, the concepts most associated
// with it beyond the class concept itself). Both work on SpLiCE weight
// matrices, which are sparse: resampling touches only the nonzeros.
import { argError, ConceptLensError, requireInteger } from '../errors.js';
import { requireSeed, rng } from '../random.js';

/** n × c SpLiCE weights (row-major, non-negative, mostly zero). */
export interface WeightRows {
  data: Float32Array;
  rows: number;
  cols: number;
}

/** Options of {@link compareWeights} and {@link classAssociations}. */
export interface BootstrapOptions {
  /** Bootstrap resamples (default 1000). */
  resamples?: number;
  /** Two-sided confidence level of the percentile intervals (default 0.95). */
  confidence?: number;
  /** Seeds the resampling (default 0). */
  seed?: number;
}

/** A confidence interval [lo, hi]. */
export type Interval = [lo: number, hi: number];

/** How one concept's mean weight differs between two sets, from {@link compareWeights}. */
export interface ConceptShift {
  /** Concept name. */
  concept: string;
  /** Column of the concept. */
  index: number;
  /** Mean weight over set A, and its bootstrap interval. */
  meanA: number;
  ciA: Interval;
  /** Mean weight over set B, and its bootstrap interval. */
  meanB: number;
  ciB: Interval;
  /** meanB − meanA: positive when the concept is heavier in B. */
  change: number;
  /** Bootstrap interval of the change (A and B resampled independently). */
  ci: Interval;
  /** Fraction of A's and of B's images where the concept has non-zero weight. */
  presenceA: number;
  presenceB: number;
  /** Whether the change's interval excludes 0. */
  significant: boolean;
}

/** Result of {@link compareWeights}: every concept non-zero in either set, largest |change| first. */
export interface Comparison {
  nA: number;
  nB: number;
  resamples: number;
  confidence: number;
  shifts: ConceptShift[];
}

/** The nonzeros of chosen rows, per row, restricted to the concepts in `keep` (column → slot), as flat arrays. */
interface SparseSet {
  rows: number;
  ptr: Int32Array;
  slot: Int32Array;
  val: Float32Array;
}

function sparseRows(w: WeightRows, ids: ArrayLike<number>, keep: Int32Array): SparseSet {
  const ptr = new Int32Array(ids.length + 1), slots: number[] = [], vals: number[] = [];
  for (let r = 0; r < ids.length; r++) {
    const base = ids[r] * w.cols;
    for (let j = 0; j < w.cols; j++) {
      const v = w.data[base + j];
      if (v !== 0 && keep[j] >= 0) slots.push(keep[j]), vals.push(v);
    }
    ptr[r + 1] = slots.length;
  }
  return { rows: ids.length, ptr, slot: Int32Array.from(slots), val: Float32Array.from(vals) };
}

/** Per-slot means over the rows (or over `draw` of them, with repeats), into `out`. */
function slotMeans(s: SparseSet, out: Float64Array, draw?: Int32Array): void {
  out.fill(0);
  const n = draw ? draw.length : s.rows;
  for (let r = 0; r < n; r++) {
    const i = draw ? draw[r] : r;
    for (let e = s.ptr[i]; e < s.ptr[i + 1]; e++) out[s.slot[e]] += s.val[e];
  }
  for (let k = 0; k < out.length; k++) out[k] /= n;
}

function presence(s: SparseSet, slots: number): Float64Array {
  const out = new Float64Array(slots);
  for (let e = 0; e < s.slot.length; e++) out[s.slot[e]] += 1 / s.rows;
  return out;
}

/** The q-quantile of the sorted values (linear interpolation). */
function quantile(sorted: Float64Array, q: number): number {
  const pos = q * (sorted.length - 1), lo = Math.floor(pos), hi = Math.ceil(pos);
  return sorted[lo] + (sorted[hi] - sorted[lo]) * (pos - lo);
}

function checkOptions(o: BootstrapOptions): { resamples: number; confidence: number; seed: number } {
  const resamples = o.resamples ?? 1000, confidence = o.confidence ?? 0.95;
  requireInteger(resamples, 'resamples', 10);
  if (!(confidence > 0 && confidence < 1)) throw argError('confidence', 'a number in (0, 1)', o.confidence);
  return { resamples, confidence, seed: requireSeed(o.seed ?? 0) };
}

function checkWeights(w: WeightRows, ids: ArrayLike<number>, what: string, cols: number): void {
  if (w.data.length !== w.rows * w.cols) throw new ConceptLensError('ERR_SHAPE', `${what}: ${w.data.length} values are not ${w.rows} × ${w.cols}`);
  if (w.cols !== cols) throw new ConceptLensError('ERR_SHAPE', `${what}: ${w.cols} concepts, expected ${cols} (one per concept name)`);
  if (ids.length < 2) throw new ConceptLensError('ERR_SHAPE', `${what}: ${ids.length} images; a bootstrap needs at least 2`);
  for (let r = 0; r < ids.length; r++)
    if (!(Number.isInteger(ids[r]) && ids[r] >= 0 && ids[r] < w.rows)) throw argError(`${what} row ${r}`, `an index in [0, ${w.rows})`, ids[r]);
}

/** Columns with a nonzero in any of the sets' chosen rows, mapped to dense slots (−1: never used). */
function activeColumns(sets: [WeightRows, ArrayLike<number>][], cols: number): { keep: Int32Array; columns: number[] } {
  const keep = new Int32Array(cols).fill(-1), columns: number[] = [];
  for (const [w, ids] of sets)
    for (let r = 0; r < ids.length; r++)
      for (let j = 0; j < cols; j++)
        if (w.data[ids[r] * cols + j] !== 0 && keep[j] < 0) keep[j] = columns.push(j) - 1;
  return { keep, columns };
}

const allRows = (n: number) => Int32Array.from({ length: n }, (_, i) => i);

/**
 * Concept-level differences between image sets A and B (distribution shift): per concept non-zero in either set,
 * the mean weight of each set and of the change meanB − meanA, each with a percentile-bootstrap interval (rows of A
 * and of B resampled independently with replacement, `resamples` times); a change is significant when its interval
 * excludes 0. `rowsA`/`rowsB` select rows (default all).
 * @throws ConceptLensError ERR_SHAPE when the sets have different concept counts, fewer than 2 rows, or the names
 * do not match the columns.
 */
export function compareWeights(a: WeightRows, b: WeightRows, names: readonly string[], opts: BootstrapOptions & { rowsA?: ArrayLike<number>; rowsB?: ArrayLike<number> } = {}): Comparison {
  const idsA = opts.rowsA ?? allRows(a.rows), idsB = opts.rowsB ?? allRows(b.rows);
  checkWeights(a, idsA, 'set A', names.length);
  checkWeights(b, idsB, 'set B', names.length);
  const { resamples, confidence, seed } = checkOptions(opts);
  const { keep, columns } = activeColumns([[a, idsA], [b, idsB]], a.cols);
  const k = columns.length, A = sparseRows(a, idsA, keep), B = sparseRows(b, idsB, keep);
  const meanA = new Float64Array(k), meanB = new Float64Array(k);
  slotMeans(A, meanA);
  slotMeans(B, meanB);
  // resamples × k replicate means of A, of B and of the change, concept-major so each concept's are contiguous.
  const repA = new Float64Array(k * resamples), repB = new Float64Array(k * resamples), repD = new Float64Array(k * resamples);
  const rand = rng(seed), ma = new Float64Array(k), mb = new Float64Array(k);
  const drawA = new Int32Array(A.rows), drawB = new Int32Array(B.rows);
  for (let r = 0; r < resamples; r++) {
    for (let i = 0; i < drawA.length; i++) drawA[i] = Math.floor(rand() * A.rows);
    for (let i = 0; i < drawB.length; i++) drawB[i] = Math.floor(rand() * B.rows);
    slotMeans(A, ma, drawA);
    slotMeans(B, mb, drawB);
    for (let s = 0; s < k; s++) repA[s * resamples + r] = ma[s], repB[s * resamples + r] = mb[s], repD[s * resamples + r] = mb[s] - ma[s];
  }
  const tail = (1 - confidence) / 2, presA = presence(A, k), presB = presence(B, k);
  const interval = (rep: Float64Array, s: number): Interval => {
    const v = rep.subarray(s * resamples, (s + 1) * resamples).sort();
    return [quantile(v, tail), quantile(v, 1 - tail)];
  };
  const shifts = columns.map((j, s): ConceptShift => {
    const ci = interval(repD, s);
    return {
      concept: names[j], index: j, meanA: meanA[s], ciA: interval(repA, s), meanB: meanB[s], ciB: interval(repB, s),
      change: meanB[s] - meanA[s], ci, presenceA: presA[s], presenceB: presB[s], significant: ci[0] > 0 || ci[1] < 0,
    };
  });
  shifts.sort((p, q) => Math.abs(q.change) - Math.abs(p.change) || p.index - q.index);
  return { nA: idsA.length, nB: idsB.length, resamples, confidence, shifts };
}

/** One class's concepts beyond its own, from {@link classAssociations}. */
export interface ClassAssociation {
  /** Class id and name. */
  classId: number;
  className: string;
  /** Images of the class. */
  images: number;
  /** The concepts that are the class concept itself (left out), whether the images use them or not. */
  classConcepts: string[];
  /**
   * The concepts most heavier in the class than outside it, strongest first: `change` is the class mean minus the
   * mean over the other images, with its bootstrap interval; presenceB/presenceA are the fractions of class and
   * other images where the concept appears.
   */
  associated: ConceptShift[];
}

/** Lower case, '_' as space, without a parenthesised qualifier: 'Car_(automobile)' → 'car'. */
export const plainName = (s: string) => s.toLowerCase().replace(/_/g, ' ').replace(/\s*\([^)]*\)/g, '').trim();

/**
 * Spurious-correlation detection: for each class with at least `minImages` images, the concepts whose mean SpLiCE
 * weight is most raised in the class over the rest of the images (significant, positive changes by
 * {@link compareWeights}, at most `top`), leaving out the class concept itself: by default the concepts whose
 * {@link plainName} equals the class's, or `isClassConcept` when given. E.g. "water" for a bird class.
 * @throws ConceptLensError ERR_SHAPE when labels and rows differ in count.
 */
export function classAssociations(w: WeightRows, labels: ArrayLike<number>, classNames: readonly string[], conceptNames: readonly string[],
  opts: BootstrapOptions & { top?: number; minImages?: number; isClassConcept?: (classId: number, concept: number) => boolean } = {}): ClassAssociation[] {
  if (labels.length !== w.rows) throw new ConceptLensError('ERR_SHAPE', `labels: ${labels.length}, expected ${w.rows} (one per weight row)`);
  const top = opts.top ?? 5, minImages = opts.minImages ?? 5;
  const isClass = opts.isClassConcept ?? ((c: number, j: number) => plainName(conceptNames[j]) === plainName(classNames[c]));
  const out: ClassAssociation[] = [];
  classNames.forEach((className, c) => {
    const inside: number[] = [], outside: number[] = [];
    for (let i = 0; i < labels.length; i++) (labels[i] === c ? inside : outside).push(i);
    if (inside.length < minImages || outside.length < 2) return;
    const cmp = compareWeights(w, w, conceptNames, { ...opts, rowsA: outside, rowsB: inside });
    const associated = cmp.shifts.filter((s) => s.significant && s.change > 0 && !isClass(c, s.index)).slice(0, top);
    out.push({ classId: c, className, images: inside.length, classConcepts: conceptNames.filter((_, j) => isClass(c, j)), associated });
  });
  return out;
}
