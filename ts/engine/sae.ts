// sae_binding.cpp: the native sparse-autoencoder trainer. Its parameters and
// Adam moments live in one JS-owned Float32Array the engine updates in place.
import type { ProgressOptions } from '../abort.js';
import { engine, type FloatRows, type SaeConfig, type SaeStats, type NativeSaeTrainer } from './addon.js';
import { nativeCall, nativeSync } from './call.js';

export type { SaeConfig, SaeStats };

/**
 * The native sparse-autoencoder trainer (exported as `SaeTrainer`): parameters and Adam moments live in one
 * JS-owned Float32Array that the engine updates in place. Calls that touch its state while a step, epoch or
 * encode runs are refused with ERR_BUSY. {@link createTrainer} and {@link trainSae} are the usual way in.
 */
export class SaeEngine {
  private readonly t: NativeSaeTrainer;

  constructor(config: SaeConfig) {
    this.t = nativeSync(() => new (engine().SaeTrainer)(config));
  }

  /** The shape and hyperparameters stored in a checkpoint. */
  static readConfig(path: string): Required<SaeConfig> {
    return nativeSync(() => engine().readSaeConfig(path));
  }

  /**
   * One Adam step on `batch` (rows × d, fp32 or fp16 bits); `itemIds` (one per row, or null) name rows in the
   * ERR_NAN error a non-finite feature raises.
   */
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

  /**
   * Live views into the engine's storage, updated in place by later steps: `encoder` m × d (row j: latent j),
   * `encoderBias` m, `decoder` m × d (row j: atom j, unit norm), `bias` d (the input centre).
   */
  params() {
    return nativeSync(() => this.t.params());
  }
  /** The shape and hyperparameters in effect, defaults filled in. */
  config(): Required<SaeConfig> {
    return this.t.config();
  }
  /** Statistics of the most recent step; safe to call while an epoch runs. */
  lastStats(): SaeStats {
    return this.t.lastStats();
  }
  /** Indices of the latents that have not fired since the last resample (or the start). */
  dead(): Float64Array {
    return nativeSync(() => this.t.dead());
  }
  /** Per latent, how many items it fired on since the last resample (or the start); length m. */
  fired(): Float64Array {
    return nativeSync(() => this.t.fired());
  }
  /**
   * Starts collecting resampling candidates from the steps that follow: a loss²-weighted sample of centred
   * inputs, one slot per currently dead latent. Finish with {@link SaeEngine.resampleApply}.
   */
  resampleBegin(): void {
    nativeSync(() => this.t.resampleBegin());
  }
  /**
   * Re-seeds the dead latents from the collected inputs (unit atom, scaled encoder row, zeroed moments), resets
   * the firing counts and returns the indices re-seeded.
   * @throws ConceptLensError ERR_ARG when {@link SaeEngine.resampleBegin} was not called or no step ran since.
   */
  resampleApply(): Float64Array {
    return nativeSync(() => this.t.resampleApply());
  }
  /** Writes a checkpoint (parameters, moments and training state) atomically: a temp file, then rename. */
  save(path: string): void {
    nativeSync(() => this.t.save(path));
  }
  /**
   * Restores a checkpoint written by {@link SaeEngine.save}, so training resumes bit for bit.
   * @throws ConceptLensError ERR_FILE when it is not an SAE checkpoint, ERR_SHAPE when its shape or kind differs.
   */
  load(path: string): void {
    nativeSync(() => this.t.load(path));
  }
  /** Steps taken so far. */
  get steps(): number {
    return this.t.steps;
  }
}
