// Worker thread that owns one onnxruntime session: `session.run` blocks the
// thread it runs on, so it runs here, batch by batch, posting progress and
// polling a shared cancel flag between batches.
import { parentPort, workerData } from 'node:worker_threads';
import * as ort from 'onnxruntime-node';
import type { RawTensor, WorkerInit, WorkerReply, WorkerRun } from './onnx-protocol.js';

const port = parentPort!;
const init = workerData as WorkerInit;

function batchOf(t: RawTensor, b0: number, b1: number): ort.Tensor {
  const per = t.dims.slice(1).reduce((a, b) => a * b, 1);
  const data = t.data.subarray(b0 * per, b1 * per);
  return new ort.Tensor(t.type as 'float32', data as Float32Array, [b1 - b0, ...t.dims.slice(1)]);
}

/** Concatenates per-batch outputs along the first axis. */
function concat(parts: ort.Tensor[]): RawTensor {
  const dims = [parts.reduce((n, p) => n + p.dims[0], 0), ...parts[0].dims.slice(1)];
  const Ctor = (parts[0].data as RawTensor['data']).constructor as new (n: number) => RawTensor['data'];
  const data = new Ctor(parts.reduce((n, p) => n + p.data.length, 0));
  let at = 0;
  for (const p of parts) {
    (data as Float32Array).set(p.data as Float32Array, at);
    at += p.data.length;
  }
  return { type: parts[0].type, dims, data };
}

async function run(session: ort.InferenceSession, msg: WorkerRun): Promise<Record<string, RawTensor>> {
  const feeds = Object.values(msg.feeds);
  const total = feeds[0]?.dims[0] ?? 0;
  const parts: Record<string, ort.Tensor[]> = Object.fromEntries(msg.outputs.map((o) => [o, []]));
  for (let b0 = 0; b0 < total; b0 += msg.batchSize) {
    if (msg.cancel && Atomics.load(msg.cancel, 0)) throw Object.assign(new Error('The operation was aborted'), { name: 'AbortError' });
    const b1 = Math.min(total, b0 + msg.batchSize);
    const batch = Object.fromEntries(Object.entries(msg.feeds).map(([k, t]) => [k, batchOf(t, b0, b1)]));
    const out = await session.run(batch, msg.outputs);
    for (const o of msg.outputs) parts[o].push(out[o]);
    port.postMessage({ id: msg.id, progress: [b1, total] } satisfies WorkerReply);
  }
  return Object.fromEntries(msg.outputs.map((o) => [o, concat(parts[o])]));
}

function errorReply(id: number, e: unknown): WorkerReply {
  const err = e instanceof Error ? e : new Error(String(e));
  return { id, error: { message: err.message, name: err.name } };
}

async function main(): Promise<void> {
  const options: ort.InferenceSession.SessionOptions = { graphOptimizationLevel: 'all' };
  if (init.threads) options.intraOpNumThreads = init.threads;
  let session: ort.InferenceSession;
  try {
    session = typeof init.model === 'string'
      ? await ort.InferenceSession.create(init.model, options)
      : await ort.InferenceSession.create(init.model, options);
  } catch (e) {
    port.postMessage(errorReply(0, e));
    return;
  }
  const meta = (names: readonly string[], md: readonly ort.InferenceSession.ValueMetadata[]) =>
    names.map((name, i) => {
      const m = md[i] as { isTensor: boolean; type?: string; shape?: (number | string)[] };
      return { name, type: m.isTensor ? m.type! : 'non-tensor', shape: m.isTensor ? m.shape! : [] };
    });
  port.postMessage({
    id: 0,
    ready: { inputs: meta(session.inputNames, session.inputMetadata), outputs: meta(session.outputNames, session.outputMetadata) },
  } satisfies WorkerReply);
  port.on('message', async (msg: WorkerRun | 'close') => {
    if (msg === 'close') {
      await session.release();
      port.close();
      return;
    }
    try {
      const result = await run(session, msg);
      port.postMessage({ id: msg.id, result } satisfies WorkerReply, Object.values(result).map((t) => t.data.buffer as ArrayBuffer));
    } catch (e) {
      port.postMessage(errorReply(msg.id, e));
    }
  });
}

void main();
