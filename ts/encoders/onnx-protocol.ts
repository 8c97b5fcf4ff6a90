// Messages between OnnxModel (main thread) and onnx-worker.ts.

export type TensorData = Float32Array | Uint16Array | Int32Array | BigInt64Array | Uint8Array | Int8Array | Float64Array;

export interface RawTensor {
  type: string;
  dims: number[];
  data: TensorData;
}

export interface ValueInfo {
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
