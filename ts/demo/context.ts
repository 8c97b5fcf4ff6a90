// What every demo section receives: where to write, and the data to run on:
// the real assets mirror when present, else a labelled synthetic set with
// planted concepts so the demo always runs.
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { assetsDir } from '../assets.js';
import { readNpy } from '../io/npy.js';
import { halvesToFloats } from '../engine/fp16.js';
import { gaussian, rng } from '../random.js';
import { readLines } from '../io/text.js';

export interface ConceptSet {
  /** 'real' (CLIP ViT-B/32 text embeddings from the assets mirror) or 'synthetic'. */
  source: 'real' | 'synthetic';
  names: string[];
  /** names.length × dim, fp32. */
  vectors: Float32Array;
  dim: number;
}

export interface DemoContext {
  outDir: string;
  assets?: string;
  concepts: ConceptSet;
  log: (line: string) => void;
  /** Why the data is synthetic, when it is: asked for, or no mirror found. */
  syntheticWhy?: string;
  /** Ctrl-C: every long step of a section stops on it. */
  signal?: AbortSignal;
  /** Results shared between sections (e.g. features computed once), by key. */
  memo: Map<string, Promise<unknown>>;
}

/** fn() once per context and key; later sections get the same promise. */
export function shared<T>(ctx: DemoContext, key: string, fn: () => Promise<T>): Promise<T> {
  if (!ctx.memo.has(key)) ctx.memo.set(key, fn());
  return ctx.memo.get(key) as Promise<T>;
}

export interface DemoSection {
  title: string;
  markdown: string;
}

/** Detic's embedding file per concept set (Objects365's is the 'fix' release, aligned with o365_names.txt). */
const DETIC: [set: string, file: string][] = [
  ['lvis_v1', 'lvis_v1_clip_a+cname.npy'], ['coco', 'coco_clip_a+cname.npy'], ['o365', 'o365_clip_a+cnamefix.npy'],
];

/** The real Detic CLIP text embeddings with names (OpenImages has no names, so it is left out). */
export function realConcepts(assets: string): ConceptSet | undefined {
  const dir = join(assets, 'embeddings', 'detic');
  if (!existsSync(dir)) return undefined;
  const names: string[] = [];
  const parts: Float32Array[] = [];
  for (const [set, file] of DETIC) {
    const emb = readNpy(join(dir, file));
    const data = emb.dtype === 'float16' ? halvesToFloats(emb.data as Uint16Array) : (emb.data as Float32Array);
    const setNames = readLines(join(dir, `${set}_names.txt`)).filter((l) => l.length > 0);
    if (setNames.length !== emb.shape[0]) throw new Error(`${set}: ${setNames.length} names for ${emb.shape[0]} embeddings`);
    names.push(...setNames);
    parts.push(data);
  }
  const dim = 512;
  const vectors = new Float32Array(names.length * dim);
  let o = 0;
  for (const p of parts) {
    vectors.set(p, o);
    o += p.length;
  }
  return { source: 'real', names, vectors, dim };
}

/** Random unit concept vectors named planted_i; sections plant mixtures of them. */
export function syntheticConcepts(count = 2000, dim = 512, seed = 7): ConceptSet {
  // ts/random.ts, not an ad-hoc LCG: a float LCG repeats within a few thousand
  // draws, which made hundreds of these 'random' concepts near-duplicates.
  const rand = rng(seed), gauss = () => gaussian(rand);
  const vectors = new Float32Array(count * dim);
  for (let i = 0; i < count; i++) {
    let n = 0;
    for (let j = 0; j < dim; j++) n += (vectors[i * dim + j] = gauss()) ** 2;
    for (let j = 0; j < dim; j++) vectors[i * dim + j] /= Math.sqrt(n);
  }
  return { source: 'synthetic', names: Array.from({ length: count }, (_, i) => `planted_${i}`), vectors, dim };
}

export function makeContext(outDir: string, log: (l: string) => void, forceSynthetic = false, signal?: AbortSignal): DemoContext {
  const assets = forceSynthetic ? undefined : assetsDir();
  const concepts = (assets && realConcepts(assets)) || syntheticConcepts();
  const syntheticWhy = concepts.source === 'real' ? undefined
    : forceSynthetic ? 'asked for with --synthetic' : 'no assets mirror found: set CONCEPTLENS_ASSETS for real data';
  return { outDir, assets: assets && existsSync(assets) ? assets : undefined, concepts, log, syntheticWhy, signal, memo: new Map() };
}
