// Seeded random numbers (mulberry32), so splits, shuffles, planted data and
// benchmark inputs are reproducible run to run.
import { argError } from './errors.js';

/** The largest seed: seeds are integers in 0..2³¹−1 (README), as the CLI's --seed options take them. */
export const MAX_SEED = 2 ** 31 - 1;

/**
 * A seed as given, or an error naming `name` (ERR_ARG). Checked where a seed enters a public function, because
 * {@link rng} would quietly reduce it mod 2³²: NaN runs seed 0, 1.5 seed 1, −1 seed 2³²−1.
 */
export function requireSeed(seed: number, name = 'seed'): number {
  if (!(Number.isInteger(seed) && seed >= 0 && seed <= MAX_SEED)) throw argError(name, `an integer in 0..${MAX_SEED}`, seed);
  return seed;
}

/** Uniform numbers in [0, 1). */
export function rng(seed: number): () => number {
  let s = seed >>> 0;
  return () => {
    s = (s + 0x6d2b79f5) >>> 0;
    let t = Math.imul(s ^ (s >>> 15), 1 | s);
    t = (t + Math.imul(t ^ (t >>> 7), 61 | t)) ^ t;
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/** One standard normal (Box–Muller) from a uniform source. */
export function gaussian(rand: () => number): number {
  return Math.sqrt(-2 * Math.log(1 - rand())) * Math.cos(2 * Math.PI * rand());
}

/** n normals with standard deviation `scale`. */
export function randn(n: number, seed: number, scale = 1): Float32Array {
  const rand = rng(seed);
  const out = new Float32Array(n);
  for (let i = 0; i < n; i++) out[i] = scale * gaussian(rand);
  return out;
}

/** How {@link plantedMixtures} draws an item. */
export interface PlantedOptions {
  /** Gaussian noise per coordinate (default 0.01). */
  noise?: number;
  /** Labels are the first atom's id mod `classes` (default 4). */
  classes?: number;
  /** Atoms per item, uniform in [lo, hi] (default [1, 2]). */
  active?: [number, number];
  /** Each atom's weight, uniform in [lo, hi) (default [1, 2)). */
  weight?: [number, number];
  /** The atoms (atoms × d, unit rows) instead of random directions, e.g. real CLIP concept embeddings. */
  dictionary?: Float32Array;
}

/**
 * Planted sparse data: `atoms` random unit directions of width d (or the given dictionary's rows); each item sums a
 * few of them with positive weights plus Gaussian noise (see {@link PlantedOptions}). Seeded: the same call gives the
 * same data.
 */
export function plantedMixtures(rows: number, d: number, atoms: number, seed: number, o: PlantedOptions = {}) {
  const { noise = 0.01, classes = 4, active: [lo, hi] = [1, 2], weight: [w0, w1] = [1, 2] } = o;
  if (o.dictionary && o.dictionary.length !== atoms * d)
    throw new Error(`dictionary: expected ${atoms} × ${d} = ${atoms * d} values, got ${o.dictionary.length}`);
  const rand = rng(seed), dict = o.dictionary ?? new Float32Array(atoms * d), x = new Float32Array(rows * d), labels = new Int32Array(rows);
  for (let j = 0; j < atoms && !o.dictionary; j++) {
    let nn = 0;
    for (let c = 0; c < d; c++) nn += (dict[j * d + c] = gaussian(rand)) ** 2;
    for (let c = 0; c < d; c++) dict[j * d + c] /= Math.sqrt(nn);
  }
  for (let i = 0; i < rows; i++) {
    const k = lo + Math.floor(rand() * (hi - lo + 1));
    for (let a = 0; a < k; a++) {
      const j = Math.floor(rand() * atoms), w = w0 + (w1 - w0) * rand();
      if (a === 0) labels[i] = j % classes;
      for (let c = 0; c < d; c++) x[i * d + c] += w * dict[j * d + c];
    }
    for (let c = 0; c < d; c++) x[i * d + c] += noise * gaussian(rand);
  }
  return { dict, x, labels };
}
