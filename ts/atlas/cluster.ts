// The small numerics behind DN-CBM's meta-cluster view: k-means (k-means++
// seeding, seeded) on unit-norm concept directions, and a two-component PCA
// to lay the concepts out on a page.
import { rng } from '../random.js';

function dist2(x: Float32Array, i: number, c: Float64Array, k: number, d: number): number {
  let s = 0;
  for (let t = 0; t < d; t++) s += (x[i * d + t] - c[k * d + t]) ** 2;
  return s;
}

/** Cluster of each of the n rows of x (n × d) among k, by Lloyd's iterations from a seeded k-means++ start. */
export function kmeans(x: Float32Array, n: number, d: number, k: number, seed = 0, iterations = 30): Int32Array {
  const rand = rng(seed), c = new Float64Array(k * d), assign = new Int32Array(n);
  const near = new Float64Array(n).fill(Infinity);
  for (let m = 0; m < k; m++) {
    // k-means++: the next centre is drawn with probability proportional to the squared distance to the nearest one.
    const total = near.reduce((a, v) => a + (Number.isFinite(v) ? v : 1), 0);
    let r = rand() * total, pick = 0;
    for (; pick < n - 1; pick++) if ((r -= Number.isFinite(near[pick]) ? near[pick] : 1) <= 0) break;
    for (let t = 0; t < d; t++) c[m * d + t] = x[pick * d + t];
    for (let i = 0; i < n; i++) near[i] = Math.min(near[i], dist2(x, i, c, m, d));
  }
  for (let it = 0; it < iterations; it++) {
    for (let i = 0; i < n; i++) {
      let best = 0;
      for (let m = 1; m < k; m++) if (dist2(x, i, c, m, d) < dist2(x, i, c, best, d)) best = m;
      assign[i] = best;
    }
    const sums = new Float64Array(k * d), counts = new Float64Array(k);
    for (let i = 0; i < n; i++) {
      counts[assign[i]]++;
      for (let t = 0; t < d; t++) sums[assign[i] * d + t] += x[i * d + t];
    }
    for (let m = 0; m < k; m++) if (counts[m] > 0) for (let t = 0; t < d; t++) c[m * d + t] = sums[m * d + t] / counts[m];
  }
  return assign;
}

/** The first two principal-component coordinates of the rows of x (n × d), by power iteration with deflation. */
export function pca2(x: Float32Array, n: number, d: number): [Float64Array, Float64Array] {
  const mean = new Float64Array(d);
  for (let i = 0; i < n; i++) for (let t = 0; t < d; t++) mean[t] += x[i * d + t] / n;
  const centred = Float64Array.from(x, (v, k) => v - mean[k % d]);
  const rand = rng(1), out: Float64Array[] = [];
  for (let comp = 0; comp < 2; comp++) {
    let v = Float64Array.from({ length: d }, () => rand() - 0.5);
    for (let it = 0; it < 100; it++) {
      const scores = new Float64Array(n), next = new Float64Array(d);
      for (let i = 0; i < n; i++) for (let t = 0; t < d; t++) scores[i] += centred[i * d + t] * v[t];
      for (let i = 0; i < n; i++) for (let t = 0; t < d; t++) next[t] += scores[i] * centred[i * d + t];
      const norm = Math.hypot(...next) || 1;
      v = next.map((a) => a / norm);
    }
    const proj = new Float64Array(n);
    for (let i = 0; i < n; i++) for (let t = 0; t < d; t++) proj[i] += centred[i * d + t] * v[t];
    for (let i = 0; i < n; i++) for (let t = 0; t < d; t++) centred[i * d + t] -= proj[i] * v[t];
    out.push(proj);
  }
  return [out[0], out[1]];
}
