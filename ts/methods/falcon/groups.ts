// FALCON step 2: the highly-activating threshold τ = mean(R̂) + 5·std(R̂) over
// all entries of the row-normalised representations, each image's set of
// features at or above τ, and feature groups = exact co-firing sets shared by
// more than 10 images (a single feature is a group of one).
import type { ProgressOptions } from '../../abort.js';
import { falconFiring } from '../../engine/falcon.js';
import { halvesToFloats } from '../../engine/fp16.js';
import { argError, ConceptLensError, requireInteger } from '../../errors.js';
import { readFloatMatrix } from '../../io/matrix.js';
import { checkDisjointIndices } from '../../matrix.js';
import { readJson } from '../../io/text.js';

/** N × D representations (fp32, or fp16 bits), row-major. */
export interface Representations {
  data: Float32Array | Uint16Array;
  rows: number;
  cols: number;
}

/** FALCON's highly-activating features per image, from {@link computeFiring}. */
export interface Firing {
  /** Images. */
  rows: number;
  /** Features. */
  cols: number;
  /** Mean and (unbiased, as torch.std) standard deviation of all entries of R̂. */
  mean: number;
  std: number;
  /** The threshold τ = mean + sigmas·std. */
  tau: number;
  /** 1/‖R[x]‖ per image (0 for a zero row): R̂[x, i] = R[x, i] · invNorms[x]. */
  invNorms: Float32Array;
  /** Per image, the ascending features with R̂[x, i] ≥ τ. */
  sets: number[][];
}

/** Group key → ascending image indices. */
export type Groups = Record<string, number[]>;

/** Standard deviations above the mean of R̂ that the threshold τ sits at (FALCON's 5). */
export const DEFAULT_SIGMAS = 5;
/** A group is kept when more than this many images share it. */
export const DEFAULT_MORE_THAN = 10;

/**
 * Reads an images × features .npy (float32 or float16, kept as stored), checked for shape and finiteness.
 * @throws ConceptLensError ERR_FILE, ERR_DTYPE, ERR_SHAPE or ERR_NAN naming the file.
 */
export function readRepresentations(path: string): Representations {
  const a = readFloatMatrix(path, { what: 'representations (images × features)', dtypes: ['float32', 'float16'] });
  return { data: a.data as Float32Array | Uint16Array, rows: a.rows, cols: a.cols };
}

/** The representations as fp32 (converting fp16). */
export function representationsF32(r: Representations): Float32Array {
  return r.data instanceof Float32Array ? r.data : halvesToFloats(r.data);
}

/**
 * Row-normalises the representations, sets τ = mean(R̂) + sigmas·std(R̂) over all entries (`sigmas` default
 * {@link DEFAULT_SIGMAS}) and lists each image's features at or above τ; runs in the native engine.
 */
export async function computeFiring(r: Representations, opts: ProgressOptions & { sigmas?: number } = {}): Promise<Firing> {
  const sigmas = opts.sigmas ?? DEFAULT_SIGMAS;
  if (!Number.isFinite(sigmas)) throw argError('sigmas', 'a finite number', sigmas);
  const f = await falconFiring(r.data, r.rows, r.cols, sigmas, opts);
  const sets: number[][] = [];
  for (let x = 0; x < r.rows; x++) sets.push(Array.from(f.features.subarray(f.offsets[x], f.offsets[x + 1])));
  return { rows: r.rows, cols: r.cols, mean: f.mean, std: f.std, tau: f.tau, invNorms: f.invNorms, sets };
}

/** The key of a feature group: its ascending feature indices joined by commas ("3,17"); {@link parseGroupKey} reverses it. */
export const groupKey = (features: number[]) => features.join(',');

/** Parses "i,j,..." into distinct ascending feature indices below `cols` (when given). */
export function parseGroupKey(key: string, cols?: number): number[] {
  const parts = key.split(',').map((s) => s.trim());
  const feats = parts.map(Number);
  const bad = parts.findIndex((s, i) => !/^\d+$/.test(s) || (cols !== undefined && feats[i] >= cols));
  if (bad >= 0)
    throw argError('group', `feature indices${cols !== undefined ? ` in [0, ${cols})` : ''} joined by commas (e.g. "3,17")`, key);
  if (feats.some((f, i) => i > 0 && f <= feats[i - 1])) throw argError('group', 'distinct ascending feature indices', key);
  return feats;
}

/** Exact-set grouping of the images' firing sets; keeps groups with more than `moreThan` images. */
export function groupImages(sets: number[][], moreThan = DEFAULT_MORE_THAN): Groups {
  if (!Array.isArray(sets)) throw argError('sets', 'an array of firing sets, one per image', sets);
  // Unordered or fractional indices would make keys that name no group of features.
  sets.forEach((set, x) => {
    if (!Array.isArray(set) || set.some((f, i) => !Number.isInteger(f) || f < 0 || (i > 0 && f <= set[i - 1])))
      throw argError(`sets[${x}]`, 'distinct ascending feature indices (integers >= 0)', set);
  });
  requireInteger(moreThan, 'moreThan', 0);
  const all = new Map<string, number[]>();
  sets.forEach((set, x) => {
    if (set.length === 0) return;
    const key = groupKey(set);
    const list = all.get(key);
    if (list) list.push(x);
    else all.set(key, [x]);
  });
  const groups: Groups = {};
  for (const [key, images] of all) if (images.length > moreThan) groups[key] = images;
  return groups;
}

/**
 * Reads a groups.json as {@link groupImages} makes it for `images` images: group key → distinct integer image
 * indices, no image in two groups (an image fires one feature set).
 * @throws ConceptLensError ERR_FILE naming the file, the group and the entry.
 */
export function readGroups(path: string, images: number): Groups {
  const groups = readJson<unknown>(path);
  if (typeof groups !== 'object' || groups === null || Array.isArray(groups))
    throw argError(path, 'an object mapping group keys ("3,17") to arrays of image indices', groups, 'ERR_FILE');
  const lists = Object.entries(groups).map(([key, ids]): [string, unknown[]] => {
    if (!Array.isArray(ids)) throw argError(`${path}: group "${key}"`, 'an array of image indices', ids, 'ERR_FILE');
    return [`${path}: group "${key}"`, ids];
  });
  checkDisjointIndices(lists, images, 'image index', 'ERR_FILE');
  return groups as Groups;
}

/** The highly activating images of a group; an absent or empty group is an error (prefixed by `where`, the groups' file). */
export function groupMembers(groups: Groups, key: string, where?: string): number[] {
  const images = groups[key];
  if (!images || images.length === 0) {
    const known = Object.keys(groups);
    throw new ConceptLensError('ERR_ARG', `${where ? `${where}: ` : ''}group "${key}": no images fire exactly this feature set (known groups: ${known.length === 0 ? 'none' :
      known.slice(0, 10).map((k) => `"${k}"`).join(', ') + (known.length > 10 ? `, … ${known.length - 10} more` : '')})`);
  }
  return images;
}

/**
 * The images that fire exactly group `key`'s features, which must be those the groups file `where` lists: the file
 * records the representations' groups (what {@link groupImages} finds), so another list means it was made from other
 * representations or at another threshold. `source` names the representations and threshold in the error.
 */
export function listedMembers(listed: number[], firing: Firing, key: string, where: string, source: string): number[] {
  const found = firing.sets.flatMap((set, x) => (groupKey(set) === key ? [x] : []));
  const inFile = new Set(listed), fires = new Set(found);
  const extra = listed.find((x) => !fires.has(x)), missing = found.find((x) => !inFile.has(x));
  if (extra === undefined && missing === undefined) return found;
  const which = extra !== undefined ? `image ${extra} is listed but does not fire exactly it` : `image ${missing} fires it but is not listed`;
  throw new ConceptLensError('ERR_ARG', `${where}: group "${key}" lists ${listed.length} images, but ${source} has ${found.length} that fire ` +
    `exactly this feature set (${which}); give the file \`falcon groups\` wrote for these representations and --sigmas`);
}
