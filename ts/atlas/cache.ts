// The atlas's stage cache. Each stage writes into OUT/stages/<name>/ and is
// done when its done.json holds the key of the inputs it was computed from
// (options, file identities and the keys of the stages it read). A rerun
// loads done stages; a stage interrupted with the same key resumes from what
// it left (embedding checkpoints, SAE checkpoints, FALCON's per-group files);
// a stage whose inputs changed starts over in an emptied directory.
import { createHash } from 'node:crypto';
import { existsSync, mkdirSync, rmSync, statSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { throwIfAborted } from '../abort.js';
import { writeFileAtomic } from '../io/atomic.js';
import { readJson } from '../io/text.js';

/** Bumped when a stage's outputs change meaning, so older caches are recomputed rather than misread. */
const CACHE_VERSION = 1;

/** Progress of an atlas run: a stage's `done` of `total` steps, or that it was loaded from the cache. */
export interface AtlasProgress {
  /** Stage name ('activations', 'le-clip', 'falcon groups', …). */
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

/** How a stage went: computed (in `seconds`) or reused from an earlier run (which took `seconds`). */
export interface StageRecord {
  name: string;
  cached: boolean;
  seconds: number;
}

/** Identity of an input file for cache keys: its absolute path, size and modification time. */
export function fileIdentity(path: string): { path: string; size: number; mtimeMs: number } {
  const st = statSync(path);
  return { path: resolve(path), size: st.size, mtimeMs: st.mtimeMs };
}

/** Writes JSON atomically. */
export function writeJson(path: string, value: unknown): void {
  writeFileAtomic(path, JSON.stringify(value) + '\n');
}

const keyOf = (name: string, inputs: unknown) => createHash('sha256').update(JSON.stringify({ v: CACHE_VERSION, name, inputs })).digest('hex');
const record = (path: string) => (existsSync(path) ? readJson<{ key?: string; seconds?: number }>(path) : {});

/** Runs or reuses the stages of one atlas directory, reporting progress. */
export class StageCache {
  /** The stages run so far, in order. */
  readonly records: StageRecord[] = [];

  constructor(readonly root: string, private readonly progress: (p: AtlasProgress) => void = () => {}, private readonly signal?: AbortSignal) {}

  /** The directory of stage `name`. */
  dir(name: string): string {
    return join(this.root, 'stages', name);
  }

  /** Reports progress of a running stage. */
  report(stage: string, done: number, total: number): void {
    this.progress({ stage, done, total });
  }

  /**
   * The outputs of stage `name` for `inputs`: `load(dir)` of the cached outputs when done.json matches, else after
   * `compute(dir)` writes them. Outputs are always read back through `load`, so a fresh and a cached run see the same.
   */
  async run<T>(name: string, inputs: unknown, compute: (dir: string) => Promise<void>, load: (dir: string) => T): Promise<Stage<T>> {
    throwIfAborted(this.signal);
    const dir = this.dir(name), key = keyOf(name, inputs), done = record(join(dir, 'done.json'));
    if (done.key === key) {
      this.records.push({ name, cached: true, seconds: done.seconds ?? NaN });
      this.progress({ stage: name, done: 1, total: 1, cached: true });
      return { key, value: load(dir) };
    }
    if (record(join(dir, 'started.json')).key !== key) rmSync(dir, { recursive: true, force: true });
    mkdirSync(dir, { recursive: true });
    writeJson(join(dir, 'started.json'), { key });
    const t0 = performance.now();
    await compute(dir);
    const seconds = (performance.now() - t0) / 1000;
    writeJson(join(dir, 'done.json'), { key, seconds });
    this.records.push({ name, cached: false, seconds });
    return { key, value: load(dir) };
  }
}
