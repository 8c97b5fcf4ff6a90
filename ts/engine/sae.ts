// sae_binding.cpp: the native sparse-autoencoder trainer. Its parameters and
// Adam moments live in one JS-owned Float32Array the engine updates in place.
import type { ProgressOptions } from '../abort.js';
import { engine, type FloatRows, type SaeConfig, type SaeStats, type NativeSaeTrainer } from './addon.js';
import { nativeCall, nativeSync } from './call.js';

export type { SaeConfig, SaeStats };

export class SaeEngine {
  private readonly t: NativeSaeTrainer;

  constructor(config: SaeConfig) {
    this.t = nativeSync(() => new (engine().SaeTrainer)(config));
  }

  /** The shape and hyperparameters stored in a checkpoint. */
  static readConfig(path: string): Required<SaeConfig> {
    return nativeSync(() => engine().readSaeConfig(path));
  }

  step(batch: FloatRows, rows: number, itemIds: Float64Array | null): Promise<SaeStats> {
    return nativeCall({}, () => this.t.step(batch, rows, itemIds));
  }

  /** Consecutive steps over `data` (already shuffled) in batches of `batch` rows. */
  trainEpoch(data: FloatRows, rows: number, batch: number, itemIds: Float64Array | null, opts: ProgressOptions = {}) {
    return nativeCall(opts, (onProgress, cancel) => this.t.trainEpoch(data, rows, batch, itemIds, onProgress, cancel));
  }

  /** Concept strengths f(x), rows × m. */
  encode(data: FloatRows, rows: number, batch: number, opts: ProgressOptions = {}): Promise<Float32Array> {
    return nativeCall(opts, (onProgress, cancel) => this.t.encode(data, rows, batch, onProgress, cancel));
  }

  params() {
    return nativeSync(() => this.t.params());
  }
  config(): Required<SaeConfig> {
    return this.t.config();
  }
  lastStats(): SaeStats {
    return this.t.lastStats();
  }
  dead(): Float64Array {
    return nativeSync(() => this.t.dead());
  }
  fired(): Float64Array {
    return nativeSync(() => this.t.fired());
  }
  resampleBegin(): void {
    nativeSync(() => this.t.resampleBegin());
  }
  resampleApply(): Float64Array {
    return nativeSync(() => this.t.resampleApply());
  }
  save(path: string): void {
    nativeSync(() => this.t.save(path));
  }
  load(path: string): void {
    nativeSync(() => this.t.load(path));
  }
  get steps(): number {
    return this.t.steps;
  }
}
