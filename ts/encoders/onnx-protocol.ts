// Messages between OnnxModel (main thread) and onnx-worker.ts.

/** Flat element storage of a {@link RawTensor}; float16 is held as its bits in a Uint16Array, int64 as BigInt64Array. */
export type TensorData = Float32Array | Uint16Array | Int32Array | BigInt64Array | Uint8Array | Int8Array | Float64Array;

/** A tensor as it crosses to and from the onnxruntime worker: `data` flat in C order with `dims`. */
export interface RawTensor {
  /** onnxruntime element type ('float32', 'float16', 'int64', ...). */
  type: string;
  dims: number[];
  data: TensorData;
}

/** A model input or output as onnxruntime reports it. */
export interface ValueInfo {
  /** Tensor name in the graph. */
  name: string;
  /** ort element type: float32, float16, int64, ... */
  type: string;
  /** Dimensions; symbolic ones (batch) are strings. */
  shape: (number | string)[];
}

export interface WorkerInit {
  /** Model file path, or model bytes (after adding tap outputs). */
  model: string | Uint8Array;
  threads?: number;
}

export interface WorkerRun {
  id: number;
  feeds: Record<string, RawTensor>;
  outputs: string[];
  batchSize: number;
  cancel: Int32Array | null;
}

export type WorkerReply =
  | { id: number; ready: { inputs: ValueInfo[]; outputs: ValueInfo[] } }
  | { id: number; progress: [number, number] }
  | { id: number; result: Record<string, RawTensor> }
  | { id: number; error: { message: string; name: string } };
