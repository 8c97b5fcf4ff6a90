// sae_binding.cpp: the native sparse-autoencoder trainer. Its parameters and
// Adam moments live in one JS-owned Float32Array the engine updates in place.
import type { ProgressOptions } from '../abort.js';
import { engine, type NativeMatrix, type NativeSaeConfig, type NativeSaeStats, type NativeSaeTrainer } from './addon.js';
import { nativeCall, nativeSync } from './call.js';

export type { NativeSaeConfig, NativeSaeStats };

export class SaeEngine {
  private readonly t: NativeSaeTrainer;

  constructor(config: NativeSaeConfig) {
    this.t = nativeSync(() => new (engine().SaeTrainer)(config));
  }

  /** The shape and hyperparameters stored in a checkpoint. */
  static readConfig(path: string): Required<NativeSaeConfig> {
    return nativeSync(() => engine().readSaeConfig(path));
  }

  step(batch: NativeMatrix, rows: number, itemIds: Float64Array | null): Promise<NativeSaeStats> {
    return nativeCall({}, () => this.t.step(batch, rows, itemIds));
  }

  /** Consecutive steps over `data` (already shuffled) in batches of `batch` rows. */
  trainEpoch(data: NativeMatrix, rows: number, batch: number, itemIds: Float64Array | null, opts: ProgressOptions = {}) {
    return nativeCall(opts, (onProgress, cancel) => this.t.trainEpoch(data, rows, batch, itemIds, onProgress, cancel));
  }

  /** Concept strengths f(x), rows × m. */
  encode(data: NativeMatrix, rows: number, batch: number, opts: ProgressOptions = {}): Promise<Float32Array> {
    return nativeCall(opts, (onProgress, cancel) => this.t.encode(data, rows, batch, onProgress, cancel));
  }

  params() {
    return nativeSync(() => this.t.params());
  }
  config(): Required<NativeSaeConfig> {
    return this.t.config();
  }
  lastStats(): NativeSaeStats {
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
