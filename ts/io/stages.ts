// Reusing computed outputs only for the inputs they were computed from.
// A fingerprint is the sha256 of a JSON description of the inputs (options,
// file identities, the image list, the fingerprints of earlier outputs): embed
// keys its checkpoint with one, and StageCache keys each stage of a
// multi-stage run (the atlas, `falcon run`) with one. A stage is done when its
// done.json holds the key of its inputs; a rerun loads done stages, resumes a
// stage started with the same key from what it left, and starts a stage whose
// inputs changed over, emptied (later stages fold its key into theirs, so they
// start over too); a stage of per-item outputs may name what they depend on
// apart from the items asked for, and is then resumed with other items.
import { createHash } from 'node:crypto';
import { existsSync, mkdirSync, readdirSync, rmSync, statSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { throwIfAborted } from '../abort.js';
import { writeFileAtomic } from './atomic.js';
import { readJson } from './text.js';

/** The sha256 (hex) of `value` as JSON: equal descriptions of inputs, equal keys. */
export function fingerprint(value: unknown): string {
  return createHash('sha256').update(JSON.stringify(value)).digest('hex');
}

/** Identity of a file for keys: its absolute path, size and modification time. */
export interface FileIdentity {
  path: string;
  size: number;
  mtimeMs: number;
}

/**
 * Identity of an input for keys: a file's {@link FileIdentity}; a folder's (a LAION shard directory, a store) is its
 * path and the identities of the files under it, so a file rewritten, added or removed inside changes it.
 */
export function fileIdentity(path: string): FileIdentity | { path: string; files: [string, number, number][] } {
  const st = statSync(path);
  if (!st.isDirectory()) return { path: resolve(path), size: st.size, mtimeMs: st.mtimeMs };
  const files = (readdirSync(path, { recursive: true }) as string[]).filter((f) => !f.split(/[\\/]/).some((p) => p.startsWith('.'))).sort()
    .flatMap((f): [string, number, number][] => {
      const s = statSync(join(path, f));
      return s.isFile() ? [[f, s.size, s.mtimeMs]] : [];
    });
  return { path: resolve(path), files };
}

/** Writes JSON atomically. */
export function writeJson(path: string, value: unknown): void {
  writeFileAtomic(path, JSON.stringify(value) + '\n');
}

/** Progress of a staged run: a stage's `done` of `total` steps, or that it was loaded from the cache. */
export interface StageProgress {
  /** Stage name ('probe', 'representations', …). */
  stage: string;
  done: number;
  total: number;
  /** True when the stage's outputs were reused from an earlier run. */
  cached?: boolean;
}

/** A stage's loaded outputs and the key that identifies them (later stages fold it into theirs). */
export interface Stage<T> {
  key: string;
  value: T;
}

/** How a stage went: computed (in `seconds`) or reused from an earlier run (which took `seconds`; NaN when not timed). */
export interface StageRecord {
  name: string;
  cached: boolean;
  seconds: number;
}

/** Options of a {@link StageCache}. */
export interface StageCacheOptions {
  /** Stage progress, and which stages were reused. */
  progress?: (p: StageProgress) => void;
  /** Checked before each stage. */
  signal?: AbortSignal;
  /**
   * Record each stage's time in its done.json (default true). Off where a resumed run must write the same bytes as
   * one never interrupted.
   */
  timed?: boolean;
}

/** Bumped when a stage's outputs change meaning, so older caches are recomputed rather than misread. */
const CACHE_VERSION = 1;

const keyOf = (name: string, inputs: unknown) => fingerprint({ v: CACHE_VERSION, name, inputs });
const record = (path: string) => (existsSync(path) ? readJson<{ key?: string; keep?: string; seconds?: number }>(path) : {});

/** Runs or reuses the stages of one run directory; each stage's records are in ROOT/stages/<name>/. */
export class StageCache {
  /** The stages run so far, in order. */
  readonly records: StageRecord[] = [];

  constructor(readonly root: string, private readonly o: StageCacheOptions = {}) {}

  /** The directory of stage `name`. */
  dir(name: string): string {
    return join(this.root, 'stages', name);
  }

  /** Reports progress of a running stage. */
  report(stage: string, done: number, total: number): void {
    this.o.progress?.({ stage, done, total });
  }

  /**
   * The outputs of stage `name` for `inputs`: `load(dir)` of the cached outputs when done.json matches, else after
   * `compute(dir)` writes them. Outputs are always read back through `load`, so a fresh and a cached run see the same.
   * A stage that starts over empties its directory and calls `clear` first: outputs it keeps elsewhere go too.
   * `keep`, for a stage whose outputs are per item (each independent of which items `inputs` asks for): what those
   * outputs depend on. A stage started with an equal `keep` is resumed, not emptied, though `inputs` differ, and
   * `compute` adds the items missing.
   */
  async run<T>(name: string, inputs: unknown, compute: (dir: string) => Promise<void>, load: (dir: string) => T, clear?: () => void,
    keep?: unknown): Promise<Stage<T>> {
    throwIfAborted(this.o.signal);
    const dir = this.dir(name), key = keyOf(name, inputs), done = record(join(dir, 'done.json'));
    if (done.key === key) {
      this.records.push({ name, cached: true, seconds: done.seconds ?? NaN });
      this.o.progress?.({ stage: name, done: 1, total: 1, cached: true });
      return { key, value: load(dir) };
    }
    const started = record(join(dir, 'started.json')), kept = keep === undefined ? undefined : keyOf(name, keep);
    if (started.key !== key && (kept === undefined || started.keep !== kept)) {
      rmSync(dir, { recursive: true, force: true });
      clear?.();
    }
    mkdirSync(dir, { recursive: true });
    writeJson(join(dir, 'started.json'), kept === undefined ? { key } : { key, keep: kept });
    const t0 = performance.now();
    await compute(dir);
    const seconds = (performance.now() - t0) / 1000;
    writeJson(join(dir, 'done.json'), this.o.timed === false ? { key } : { key, seconds });
    this.records.push({ name, cached: false, seconds });
    return { key, value: load(dir) };
  }
}
