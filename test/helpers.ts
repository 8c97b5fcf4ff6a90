// Shared test helpers: seeded data, a float64 brute-force top-k, temp dirs.
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

export { rng, randn } from '../ts/random.js';

/** Brute-force top-k in float64; ties go to the lower id. */
export function bruteTopK(q: Float32Array, v: Float32Array | number[], d: number, k: number, cosine = false) {
  const nq = q.length / d, n = v.length / d;
  const ids: number[][] = [], scores: number[][] = [];
  for (let i = 0; i < nq; i++) {
    const s: number[] = [];
    let qn = 0;
    for (let c = 0; c < d; c++) qn += q[i * d + c] ** 2;
    for (let j = 0; j < n; j++) {
      let dot = 0, vn = 0;
      for (let c = 0; c < d; c++) {
        dot += q[i * d + c] * v[j * d + c];
        vn += v[j * d + c] ** 2;
      }
      s.push(cosine ? dot / Math.sqrt(qn * vn) : dot);
    }
    const order = s.map((_, j) => j).sort((a, b) => s[b] - s[a] || a - b).slice(0, k);
    ids.push(order);
    scores.push(order.map((j) => s[j]));
  }
  return { ids, scores };
}

export function tempDir(prefix = 'conceptlens-test-'): string {
  return mkdtempSync(join(tmpdir(), prefix));
}
