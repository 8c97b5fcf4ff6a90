// Named public models and vocabularies: where they come from (URL, sha256,
// size), where they live (the CONCEPTLENS_ASSETS offline mirror, else the
// cache: CONCEPTLENS_CACHE or ~/.cache/conceptlens), and a download that
// streams to a temp file, checks the sha256 and only then renames it in.
import { createHash } from 'node:crypto';
import { createReadStream, createWriteStream, existsSync, mkdirSync, renameSync, rmSync, statSync } from 'node:fs';
import { homedir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { assetsDir } from './assets.js';
import { throttled, type ProgressOptions } from './abort.js';
import { ConceptLensError, toConceptLensError } from './errors.js';

/** A named public asset: what it is, where it lives locally and where to download it. */
export interface AssetEntry {
  /** Name to look it up by (e.g. 'clip-bpe'). */
  name: string;
  kind: 'model' | 'vocabulary' | 'embeddings' | 'metadata';
  /** Path inside the mirror and the cache. */
  file: string;
  /** Public download URL; absent when no single public file matches (the mirror has it). */
  url?: string;
  /** Hex sha256 of the file; downloads and copies are checked against it. */
  sha256: string;
  /** Size of the file in bytes. */
  bytes: number;
  /** Where it comes from (the publishing project, or how it was assembled). */
  origin: string;
  /** SPDX licence identifier, or 'see origin'. */
  license: string;
}

const GH = 'https://github.com';
const DETIC = `${GH}/facebookresearch/Detic/raw/main/datasets/metadata`;
const LE = `${GH}/Trustworthy-ML-Lab/Linear-Explanations/raw/main/data/concept_sets`;

/** The named public assets known to conceptlens; sha256 and sizes are those of the files in the assets mirror. */
export const REGISTRY: readonly AssetEntry[] = [
  {
    name: 'squeezenet1.1', kind: 'model', file: 'models/squeezenet1.1/squeezenet1.1.onnx',
    sha256: '9ac240b315962a70f95c1ca800f274091de990a3241598a80859613694364410', bytes: 4947293,
    origin: 'assembled (opset 13, named tensors) from the onnx/models squeezenet1.1-7 weights in BruceDai/test-data; no single public file', license: 'Apache-2.0',
  },
  {
    name: 'clip-bpe', kind: 'vocabulary', file: 'clip/bpe_simple_vocab_16e6.txt.gz', url: `${GH}/openai/CLIP/raw/main/clip/bpe_simple_vocab_16e6.txt.gz`,
    sha256: '924691ac288e54409236115652ad4aa250f48203de50a9e4722a6ecd48d6804a', bytes: 1356917, origin: 'openai/CLIP', license: 'MIT',
  },
  {
    name: 'detic-lvis-clip', kind: 'embeddings', file: 'embeddings/detic/lvis_v1_clip_a+cname.npy', url: `${DETIC}/lvis_v1_clip_a+cname.npy`,
    sha256: '16059f1fe5f7d857273d16a1b7c6d6141a88d133e99a107be5065f42311da0f8', bytes: 1232000, origin: 'facebookresearch/Detic', license: 'Apache-2.0',
  },
  {
    name: 'detic-coco-clip', kind: 'embeddings', file: 'embeddings/detic/coco_clip_a+cname.npy', url: `${DETIC}/coco_clip_a+cname.npy`,
    sha256: '3186340bfc1eb67c2131a451cbf9f623fa236b0ef5a2441b2d9a93ba46051f85', bytes: 82048, origin: 'facebookresearch/Detic', license: 'Apache-2.0',
  },
  {
    name: 'detic-o365-clip', kind: 'embeddings', file: 'embeddings/detic/o365_clip_a+cnamefix.npy', url: `${DETIC}/o365_clip_a+cnamefix.npy`,
    sha256: '389a43e5c38eb22ca1b46a7328e57e7cd281b00c64250016be80d3c771711c13', bytes: 373888, origin: 'facebookresearch/Detic', license: 'Apache-2.0',
  },
  {
    name: 'detic-oid-clip', kind: 'embeddings', file: 'embeddings/detic/oid_clip_a+cname.npy', url: `${DETIC}/oid_clip_a+cname.npy`,
    sha256: 'b24dbd0adf6244ae769aa609c8541bb80c4d60380d0841b8da4d7091faf5fe0a', bytes: 512128, origin: 'facebookresearch/Detic', license: 'Apache-2.0',
  },
  {
    name: 'lvis-categories', kind: 'metadata', file: 'embeddings/detic/lvis_v1_train_cat_info.json', url: `${DETIC}/lvis_v1_train_cat_info.json`,
    sha256: '56abd7581b779fb62b167a52c76026839eabbfb5bfb12986e6170fbe0111fe40', bytes: 268947, origin: 'facebookresearch/Detic', license: 'Apache-2.0',
  },
  {
    name: 'splice-laion', kind: 'vocabulary', file: 'vocab/splice_laion.txt', url: `${GH}/AI4LIFE-GROUP/SpLiCE/raw/main/data/vocab/laion.txt`,
    sha256: 'aee8e260477dcfbc873f939955ffd472969859054ed46e245bbe8b37d10b508c', bytes: 262543, origin: 'AI4LIFE-GROUP/SpLiCE', license: 'see origin',
  },
  {
    name: 'splice-laion-bigrams', kind: 'vocabulary', file: 'vocab/splice_laion_bigrams.txt', url: `${GH}/AI4LIFE-GROUP/SpLiCE/raw/main/data/vocab/laion_bigrams.txt`,
    sha256: '6561525228843aa8b0d2b27e731c8c2b18dac0e4bdda40761933b0aecda1e67a', bytes: 141006, origin: 'AI4LIFE-GROUP/SpLiCE', license: 'see origin',
  },
  {
    name: 'splice-mscoco', kind: 'vocabulary', file: 'vocab/splice_mscoco.txt', url: `${GH}/AI4LIFE-GROUP/SpLiCE/raw/main/data/vocab/mscoco.txt`,
    sha256: 'ddd84fc591b2e49c1513cc3dcc199153df276a44686712e21a6efb7711e2d43b', bytes: 94795, origin: 'AI4LIFE-GROUP/SpLiCE', license: 'see origin',
  },
  {
    name: 'clipdissect-20k', kind: 'vocabulary', file: 'vocab/clipdissect_20k.txt', url: `${GH}/Trustworthy-ML-Lab/CLIP-dissect/raw/main/data/20k.txt`,
    sha256: '4ed6e5336d7760d281f7e72df31827da880c861363e820d8c65666b0f10d9ac0', bytes: 155418, origin: 'Trustworthy-ML-Lab/CLIP-dissect', license: 'see origin',
  },
  {
    name: 'imagenet-wordnet', kind: 'metadata', file: 'vocab/le_imagenet_label_to_wordnet_synset.txt', url: `${LE}/imagenet_label_to_wordnet_synset.txt`,
    sha256: '434bb6b8d39a314950d2c9aa57bb2a2f7d376e09a4069d4586a634a3eca8fc27', bytes: 134345, origin: 'Trustworthy-ML-Lab/Linear-Explanations', license: 'see origin',
  },
  {
    name: 'imagenet-superclasses', kind: 'metadata', file: 'vocab/le_imagenet_superclass_to_ids.json', url: `${LE}/imagenet_superclass_to_ids.json`,
    sha256: 'c1ac17ac701c9ef4a756b6f35395219f29cc90ab8c301485edcf5a203018b8c0', bytes: 55570, origin: 'Trustworthy-ML-Lab/Linear-Explanations', license: 'see origin',
  },
];

/** The entry named `name` in `registry` (default {@link ASSETS}); throws an Error listing the known names when there is none. */
export function findAsset(name: string, registry: readonly AssetEntry[] = REGISTRY): AssetEntry {
  const e = registry.find((a) => a.name === name);
  if (!e) throw new ConceptLensError('ERR_ARG', `unknown asset '${name}' (known: ${registry.map((a) => a.name).join(', ')})`);
  return e;
}

/** CONCEPTLENS_CACHE, else $XDG_CACHE_HOME/conceptlens, else ~/.cache/conceptlens. */
export function cacheDir(): string {
  if (process.env.CONCEPTLENS_CACHE) return resolve(process.env.CONCEPTLENS_CACHE);
  return join(process.env.XDG_CACHE_HOME ? resolve(process.env.XDG_CACHE_HOME) : join(homedir(), '.cache'), 'conceptlens');
}

/** Where a local copy of an asset is. */
export interface Located {
  path: string;
  /** 'mirror': the CONCEPTLENS_ASSETS offline mirror; 'cache': the download cache ({@link cacheDir}). */
  source: 'mirror' | 'cache';
}

/** The mirror's copy when present, else the cache's; undefined when neither has it. */
export function locateAsset(e: AssetEntry): Located | undefined {
  const mirror = assetsDir();
  if (mirror && existsSync(join(mirror, e.file))) return { path: join(mirror, e.file), source: 'mirror' };
  const cached = join(cacheDir(), e.file);
  return existsSync(cached) ? { path: cached, source: 'cache' } : undefined;
}

/** Local path of an asset; the error says how to get it. */
export function assetFile(name: string): string {
  const e = findAsset(name);
  const at = locateAsset(e);
  if (!at) throw new ConceptLensError('ERR_FILE', `asset '${name}' is neither in the mirror (CONCEPTLENS_ASSETS) nor in the cache ${cacheDir()}: run \`conceptlens assets pull ${name}\``);
  return at.path;
}

export async function sha256File(path: string): Promise<string> {
  const h = createHash('sha256');
  await pipeline(createReadStream(path), h);
  return h.digest('hex');
}

/** A local copy of an asset with its hash checked. */
export interface Verified extends Located {
  /** Whether `sha256` matches the registry's. */
  ok: boolean;
  /** Hex sha256 of the local file. */
  sha256: string;
}

/** Hashes the local copy; undefined when there is none. */
export async function verifyAsset(e: AssetEntry): Promise<Verified | undefined> {
  const at = locateAsset(e);
  if (!at) return undefined;
  const sha256 = await sha256File(at.path);
  return { ...at, sha256, ok: sha256 === e.sha256 };
}

/** Options of {@link pullAsset}; progress is bytes downloaded of the Content-Length. */
export interface PullOptions extends ProgressOptions {
  /** Download even when the mirror or the cache already holds a verified copy. */
  force?: boolean;
}

/**
 * Makes the asset available locally: a verified copy in the mirror or cache
 * is used as it is; otherwise it is downloaded into the cache.
 */
export async function pullAsset(e: AssetEntry, opts: PullOptions = {}): Promise<Verified> {
  if (!opts.force) {
    const have = await verifyAsset(e);
    if (have?.ok) return have;
  }
  if (!e.url) throw new ConceptLensError('ERR_FILE', `asset '${e.name}' has no public download (${e.origin}); get it from the assets mirror (CONCEPTLENS_ASSETS)`);
  const path = join(cacheDir(), e.file);
  await download(e.url, path, e.sha256, opts);
  return { path, source: 'cache', sha256: e.sha256, ok: true };
}

/** Streams url into a temp file beside `dest` while hashing; renames it in only when the sha256 matches. */
export async function download(url: string, dest: string, sha256: string, opts: ProgressOptions = {}): Promise<void> {
  mkdirSync(dirname(dest), { recursive: true });
  const tmp = `${dest}.download-${process.pid}`;
  try {
    const res = await fetch(url, { signal: opts.signal, redirect: 'follow' }).catch((e: Error & { cause?: { code?: string; message?: string } }) => {
      if (e.name === 'AbortError') throw e;
      throw new ConceptLensError('ERR_FILE', `download ${url}: ${e.cause?.code ?? e.cause?.message ?? e.message} (no network? the assets mirror, CONCEPTLENS_ASSETS, works offline)`, { cause: e });
    });
    if (!res.ok || !res.body) throw new ConceptLensError('ERR_FILE', `download ${url}: HTTP ${res.status} ${res.statusText}`);
    const total = Number(res.headers.get('content-length') ?? 0);
    const hash = createHash('sha256');
    let done = 0;
    const progress = throttled(opts.onProgress);
    const body = Readable.fromWeb(res.body as import('node:stream/web').ReadableStream<Uint8Array>);
    body.on('data', (chunk: Buffer) => {
      hash.update(chunk);
      done += chunk.length;
      progress(done, Math.max(total, done + 1));  // the length may be unknown or short (compressed): the end comes below
    });
    await pipeline(body, createWriteStream(tmp), { signal: opts.signal });
    progress(done, done);
    const got = hash.digest('hex');
    if (got !== sha256) throw new ConceptLensError('ERR_FILE', `download ${url}: sha256 mismatch: expected ${sha256}, got ${got} (${done} bytes); the file was not kept`);
    renameSync(tmp, dest);
  } catch (e) {
    throw toConceptLensError(e);
  } finally {
    rmSync(tmp, { force: true });
  }
}

/** Size of the local copy, for listings. */
export function localBytes(at: Located | undefined): number | undefined {
  return at ? statSync(at.path).size : undefined;
}
