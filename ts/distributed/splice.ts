// Sharded SpLiCE decomposition: the embeddings' rows in parts, each solved
// on a worker (every sample's problem is its own, so a part's weights are
// the rows the whole solve would give), joined in order into the n × c
// weights. The summary means add every sample's figures in row order, as
// the local run does, so they are its means bit for bit.
import { resolve } from 'node:path';
import { readNpy, readNpyHeader, readNpyRows, writeNpy, type NpyHeader } from '../io/npy.js';
import { readMatrix, readVector } from '../io/matrix.js';
import { ConceptLensError, fileError } from '../errors.js';
import { requireFinite, toFloat32, type FloatData, type Mat } from '../matrix.js';
import { meanStats, requireNoMeanWhenRaw, sampleStats, solveSplice, spliceProblem, type SolveOptions, type SpliceMeans } from '../methods/splice.js';
import { Recent } from './cache.js';
import { fanOut, type QueueOptions } from './coordinator.js';
import type { JobKind, PartContext } from './jobs.js';
import { localStamp } from './stamp.js';
import { concatNpy, partPath, runDirFor } from './store.js';
import { fileIdentity, fingerprint } from '../io/stages.js';

type SolveParams = Pick<SolveOptions, 'l1' | 'solver' | 'tol' | 'maxIter' | 'rho'>;

interface SplicePayload extends SolveParams {
  embeddings: string;
  concepts: string;
  imageMean?: string;
  raw?: boolean;
  /** Rows [r0, r1) of the embeddings. */
  r0: number;
  r1: number;
}

const KIND = 'splice';
const conceptsRead = new Recent<Mat>(2);

/** Rows [r0, r1) of an embeddings .npy as fp32, checked finite (errors name the file's own row). */
function embeddingRows(h: NpyHeader, r0: number, r1: number): Float32Array {
  const z = toFloat32(readNpyRows(h, r0, r1 - r0) as FloatData), d = h.shape[1];
  try {
    requireFinite(z, d, `embeddings ${h.path} (from row ${r0})`);
  } catch (e) {
    throw new ConceptLensError('ERR_NAN', (e as Error).message);
  }
  return z;
}

async function splicePart(p: SplicePayload, ctx: PartContext): Promise<{ n: number }> {
  const c = conceptsRead.get(p.concepts, () => readMatrix(p.concepts, { what: 'concepts' }));
  const mean = p.imageMean ? readVector(p.imageMean, { what: 'image mean', length: c.cols }) : undefined;
  const prob = spliceProblem(c, embeddingRows(readNpyHeader(p.embeddings), p.r0, p.r1), { raw: p.raw, mean });
  const dec = await solveSplice(prob.dictionary, prob.samples, prob.d, { l1: p.l1, solver: p.solver, tol: p.tol, maxIter: p.maxIter, rho: p.rho, signal: ctx.signal });
  writeNpy(ctx.file('.npy'), dec.weights, [dec.n, dec.c]);
  const stats = sampleStats(prob, dec);
  writeNpy(ctx.file('.stats.npy'), stats, [stats.length]);
  return { n: dec.n };
}

/** The splice job kind. */
export const spliceJob: JobKind<SplicePayload> = { kind: KIND, handle: splicePart };

/** Options of {@link distributedSplice}. */
export interface DistributedSpliceOptions extends SolveParams, QueueOptions {
  /** n × d embeddings .npy (fp32, fp16 or fp64). */
  embeddings: string;
  /** c × d concept embeddings .npy. */
  concepts: string;
  /** The modality mean μ (d values), else the embeddings are only normalised. */
  imageMean?: string;
  /** Solve on the embeddings and concepts exactly as given. */
  raw?: boolean;
  /** Where the n × c float32 weights go. */
  out: string;
  /** Embeddings per job (default 4,096). */
  partRows?: number;
}

/** What {@link distributedSplice} wrote: the shape, and means over all samples. */
export interface SpliceRunResult extends SpliceMeans {
  n: number;
  c: number;
  d: number;
  out: string;
}

function header2d(path: string, what: string, cols?: number): NpyHeader {
  const h = readNpyHeader(path);
  if (h.shape.length !== 2) throw fileError(`${what} ${path}`, `expected a 2-D array (rows × columns), got shape [${h.shape.join(', ')}]`);
  if (cols !== undefined && h.shape[1] !== cols) throw new ConceptLensError('ERR_SHAPE', `${what} ${path}: expected ${cols} columns (the concepts' width), got ${h.shape[1]}`);
  return h;
}

/**
 * SpLiCE decompositions ({@link solveSplice}, as `splice decompose` runs it)
 * spread over the queue's workers in parts of rows; the weights written to
 * `out` are the local run's bit for bit. A rerun schedules only the parts not yet done.
 */
export async function distributedSplice(o: DistributedSpliceOptions): Promise<SpliceRunResult> {
  const c = header2d(o.concepts, 'concepts'), z = header2d(o.embeddings, 'embeddings', c.shape[1]), n = z.shape[0];
  requireNoMeanWhenRaw({ raw: o.raw, mean: o.imageMean });
  if (o.imageMean) readVector(o.imageMean, { what: 'image mean', length: c.shape[1], lengthFrom: `the width of ${o.concepts}` });
  const inputs = { embeddings: resolve(o.embeddings), concepts: resolve(o.concepts), imageMean: o.imageMean && resolve(o.imageMean), raw: o.raw };
  const solve = { l1: o.l1, solver: o.solver, tol: o.tol, maxIter: o.maxIter, rho: o.rho }, per = o.partRows ?? 4096;
  const files = [inputs.embeddings, inputs.concepts, ...(inputs.imageMean ? [inputs.imageMean] : [])];
  const runDir = runDirFor(o.workDir, KIND, { ...inputs, ...solve, per, files: fingerprint(files.map(fileIdentity)), stamp: localStamp() });
  const payloads = Array.from({ length: Math.ceil(n / per) }, (_, i) => ({ ...inputs, ...solve, r0: i * per, r1: Math.min(n, (i + 1) * per) }));
  await fanOut({ kind: KIND, runDir, payloads, label: (i) => `rows ${payloads[i].r0}..${payloads[i].r1 - 1} of ${o.embeddings}` }, o);
  const parts = (suffix: string) => payloads.map((_, i) => partPath(runDir, KIND, i, suffix));
  concatNpy(o.out, parts('.npy'), 'float32', c.shape[0]);
  const stats = function* () { for (const p of parts('.stats.npy')) yield readNpy(p).data as Float64Array; };
  return { n, c: c.shape[0], d: c.shape[1], out: o.out, ...meanStats(stats(), n) };
}
