// Naming SAE concepts trained outside the text space (e.g. on a CNN layer's
// features): each concept is carried into the space of the images' text-aligned
// embeddings (CLIP, or the stand-in) as the strength-weighted mean of the
// images' centred embeddings, where DN-CBM's nearest-word naming applies.

/**
 * Concept j's direction in the embedding space: Σ_i strength_ij (emb_i − mean emb), for strengths (rows × m) and
 * embeddings (rows × d) of the same images; returned d × m, the decoder.npy layout `nameConcepts` reads.
 */
export function bridgeDirections(s: { data: Float32Array; rows: number; m: number }, emb: Float32Array, d: number): Float32Array {
  const mean = new Float64Array(d);
  for (let i = 0; i < s.rows; i++) for (let t = 0; t < d; t++) mean[t] += emb[i * d + t] / s.rows;
  const dirs = new Float32Array(d * s.m);
  for (let i = 0; i < s.rows; i++)
    for (let j = 0; j < s.m; j++) {
      const w = s.data[i * s.m + j];
      if (w !== 0) for (let t = 0; t < d; t++) dirs[t * s.m + j] += w * (emb[i * d + t] - mean[t]);
    }
  return dirs;
}
