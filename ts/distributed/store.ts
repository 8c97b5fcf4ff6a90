// The shard results store: a run directory on storage every worker sees,
// named by a hash of what the run computes (inputs' sizes and times, the
// parameters, the build), so rerunning the same command finds the same
// directory and the parts already done in it. Each part writes its arrays
// atomically, then a small done marker (also atomic) that vouches for them:
// a part counts as done exactly when its marker exists, so a job that runs
// twice, or a worker killed mid-write, changes nothing.
import { createHash } from 'node:crypto';
import { closeSync, existsSync, mkdirSync, openSync, readSync, rmSync, writeSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { commitTemp, tempPath, writeFileAtomic } from '../io/atomic.js';
import { npyHeader, readNpyHeader, type DType, type TypedArray } from '../io/npy.js';
import { readJson } from '../io/text.js';
import { fingerprint } from '../io/stages.js';
import { fileError } from '../errors.js';

/** What a part reports besides its files: small numbers and names, never arrays. */
export type PartSummary = Record<string, unknown>;

/** The done marker of one part. */
export interface PartDone<S extends PartSummary = PartSummary> {
  stage: string;
  part: number;
  /** host:pid of the worker that computed it. */
  worker: string;
  /** When the job was queued, started and finished (ms since the epoch). */
  queuedAt: number;
  startedAt: number;
  finishedAt: number;
  summary: S;
}

/** The run directory under workDir for a run of `kind` whose result is fixed by `identity`. */
export function runDirFor(workDir: string, kind: string, identity: unknown): string {
  const id = fingerprint({ kind, identity }).slice(0, 20);
  const dir = join(resolve(workDir), `${kind}-${id}`);
  mkdirSync(join(dir, 'parts'), { recursive: true });
  if (!existsSync(join(dir, 'run.json'))) writeFileAtomic(join(dir, 'run.json'), JSON.stringify({ kind, identity }, null, 1) + '\n');
  return dir;
}

/** The path of a file of one part: parts/<stage>-<part><suffix> in the run directory. */
export const partPath = (runDir: string, stage: string, part: number, suffix: string) =>
  join(runDir, 'parts', `${stage}-${String(part).padStart(6, '0')}${suffix}`);

const donePath = (runDir: string, stage: string, part: number) => partPath(runDir, stage, part, '.done.json');

/** The part's done marker, or undefined while it is not done. */
export function readDone<S extends PartSummary>(runDir: string, stage: string, part: number): PartDone<S> | undefined {
  const p = donePath(runDir, stage, part);
  return existsSync(p) ? readJson<PartDone<S>>(p) : undefined;
}

/** Marks the part done (after its files are in place). */
export function writeDone(runDir: string, d: PartDone): void {
  writeFileAtomic(donePath(runDir, d.stage, d.part), JSON.stringify(d) + '\n');
}

/** The sha256 (20 hex digits) of an array's bytes. */
export function hashArray(a: TypedArray): string {
  return createHash('sha256').update(new Uint8Array(a.buffer, a.byteOffset, a.byteLength)).digest('hex').slice(0, 20);
}

/**
 * Joins .npy parts (rows × cols of one dtype; 0-row parts may have any width) into `out`, through a temp file
 * renamed into place; returns the rows.
 */
export function concatNpy(out: string, parts: readonly string[], dtype: DType, cols: number): number {
  const headers = parts.map((p) => readNpyHeader(p));
  for (const h of headers)
    if (h.shape[0] > 0 && (h.dtype !== dtype || h.shape.length !== 2 || h.shape[1] !== cols))
      throw fileError(h.path, `${h.dtype} [${h.shape.join(', ')}], expected ${dtype} rows of width ${cols} like the other parts`);
  const rows = headers.reduce((a, h) => a + h.shape[0], 0);
  const tmp = tempPath(out), buf = Buffer.alloc(1 << 24);
  const fd = openSync(tmp, 'w');
  try {
    writeSync(fd, npyHeader([rows, cols], dtype));
    for (const h of headers) copyData(h.path, h.dataOffset, fd, buf);
  } catch (e) {
    closeSync(fd);
    rmSync(tmp, { force: true });
    throw e;
  }
  closeSync(fd);
  commitTemp(tmp, out);
  return rows;
}

function copyData(path: string, from: number, to: number, buf: Buffer): void {
  const fd = openSync(path, 'r');
  try {
    for (let pos = from; ;) {
      const n = readSync(fd, buf, 0, buf.length, pos);
      if (n === 0) return;
      writeSync(to, buf, 0, n);
      pos += n;
    }
  } finally {
    closeSync(fd);
  }
}
