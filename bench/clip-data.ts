// Realistic bench data from the assets mirror: the real CLIP ViT-B/32 text
// embeddings of Detic's 2,148 concepts (LVIS, COCO, Objects365, OpenImages),
// unit rows, and seeded mixtures of them (CLIP's shared mean and outlier
// dimensions included, which random data lacks).
import { assetPath } from '../ts/assets.js';
import { readMatrix } from '../ts/io/matrix.js';
import { normaliseRows } from '../ts/matrix.js';
import { gaussian, rng } from '../ts/random.js';

export const DETIC_FILES = ['lvis_v1_clip_a+cname.npy', 'coco_clip_a+cname.npy', 'o365_clip_a+cnamefix.npy', 'oid_clip_a+cname.npy'];

/** The 2,148 concepts' unit CLIP text embeddings in the order of DETIC_FILES (rows × 512). */
export function deticConcepts(): { data: Float32Array; rows: number; d: number } {
  const parts = DETIC_FILES.map((f) => readMatrix(assetPath(`embeddings/detic/${f}`), { what: 'Detic CLIP text embeddings' }));
  const d = parts[0].cols, rows = parts.reduce((a, p) => a + p.rows, 0), data = new Float32Array(rows * d);
  let at = 0;
  for (const p of parts) data.set(p.data, at), (at += p.data.length);
  return { data: normaliseRows(data, d, { inPlace: true, zeroRows: 'error' }), rows, d };
}

/** n rows t·a + (1 − t)·b of two random concepts (t uniform in [lo, hi]) plus Gaussian noise, seeded. */
export function conceptMixtures(c: { data: Float32Array; rows: number; d: number }, n: number, seed: number, noise = 0.002, lo = 0, hi = 1): Float32Array {
  const rand = rng(seed), nrand = rng(seed + 1), d = c.d, out = new Float32Array(n * d);
  for (let i = 0; i < n; i++) {
    const a = Math.floor(rand() * c.rows), b = Math.floor(rand() * c.rows), t = lo + (hi - lo) * rand();
    for (let k = 0; k < d; k++) out[i * d + k] = t * c.data[a * d + k] + (1 - t) * c.data[b * d + k] + noise * gaussian(nrand);
  }
  return out;
}
