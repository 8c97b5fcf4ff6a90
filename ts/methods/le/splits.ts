// LE's seeded 70/10/20 train/val/test splits, recorded beside the outputs.
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { argError, ConceptLensError, fileError } from '../../errors.js';
import { checkDisjointIndices } from '../../matrix.js';
import { readNpy, writeNpy } from '../../io/npy.js';
import { readText } from '../../io/text.js';
import { requireSeed, rng } from '../../random.js';

/** Sample indices of the train, validation and test parts; each sorted ascending. */
export interface Split {
  train: Int32Array;
  val: Int32Array;
  test: Int32Array;
}
const PARTS = ['train', 'val', 'test'] as const;
type Part = (typeof PARTS)[number];
const MIN_PART = 3;

/**
 * 70/10/20 train/val/test by a seeded shuffle; each part sorted, as the reference stores it.
 * @throws ConceptLensError ERR_ARG for n not a whole count or a seed outside 0..2³¹−1, ERR_SHAPE for n < 30.
 */
export function seededSplit(n: number, seed: number): Split {
  if (!(Number.isInteger(n) && n >= 0)) throw argError('n', 'an integer number of samples', n);
  requireSeed(seed);
  const nTrain = Math.floor(0.7 * n), nVal = Math.floor(0.8 * n) - nTrain;
  if (Math.min(nTrain, nVal, n - nTrain - nVal) < MIN_PART)
    throw new ConceptLensError('ERR_SHAPE', `activations: ${n} samples are too few for a 70/10/20 split (need at least ${10 * MIN_PART} so that validation has ${MIN_PART})`);
  const ids = Array.from({ length: n }, (_, i) => i);
  const r = rng(seed);
  for (let i = n - 1; i > 0; i--) {
    const j = Math.floor(r() * (i + 1));
    [ids[i], ids[j]] = [ids[j], ids[i]];
  }
  const part = (a: number, b: number) => Int32Array.from(ids.slice(a, b)).sort();
  return { train: part(0, nTrain), val: part(nTrain, nTrain + nVal), test: part(nTrain + nVal, n) };
}

/**
 * Checks a split against n samples: integer indices in range, parts disjoint and large enough. `at` names a part in
 * errors: a prefix ('split' gives 'split train'), or a function of the part (its file, for a split read from one).
 */
export function validateSplit(s: Record<Part, ArrayLike<number>>, n: number, at: string | ((part: Part) => string) = 'split'): void {
  const where = typeof at === 'string' ? (p: Part) => `${at} ${p}` : at;
  if (typeof s !== 'object' || s === null) throw argError('split', 'train, val and test sample indices (e.g. from seededSplit)', s);
  for (const name of PARTS)
    if (!(ArrayBuffer.isView(s[name]) || Array.isArray(s[name]))) throw argError(where(name), 'an array of sample indices', s[name]);
  for (const name of PARTS)
    if (s[name].length < MIN_PART) throw new ConceptLensError('ERR_SHAPE', `${where(name)}: has ${s[name].length} samples; need at least ${MIN_PART}`);
  checkDisjointIndices(PARTS.map((name) => [where(name), s[name]]), n, 'sample index');
}

/** Reads DIR/{train,val,test}_ids.npy (integer arrays; floats only if integral) or .txt (one index a line). */
export function readSplit(dir: string, n: number): Split {
  const file = (name: Part) => {
    const npy = join(dir, `${name}_ids.npy`), txt = join(dir, `${name}_ids.txt`);
    if (existsSync(npy)) return npy;
    if (existsSync(txt)) return txt;
    throw fileError(dir, `missing ${name}_ids.npy (or .txt)`);
  };
  const read = (path: string): number[] => path.endsWith('.npy')
    ? Array.from(readNpy(path).data as ArrayLike<number | bigint>, Number)
    : readText(path).split(/\s+/).filter(Boolean).map(Number);
  const raw = { train: read(file('train')), val: read(file('val')), test: read(file('test')) };
  validateSplit(raw, n, file); // before Int32Array.from, which would truncate 420.5 to 420
  return { train: Int32Array.from(raw.train), val: Int32Array.from(raw.val), test: Int32Array.from(raw.test) };
}

/** Writes DIR/{train,val,test}_ids.npy (int64), creating DIR; {@link readSplit} reads them back. */
export function writeSplit(dir: string, s: Split): void {
  for (const name of PARTS) writeNpy(join(dir, `${name}_ids.npy`), BigInt64Array.from(s[name], BigInt), [s[name].length]);
}
