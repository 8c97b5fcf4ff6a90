// Tiny ONNX graphs built with onnx-proto, shaped like the Hugging Face /
// open_clip exports the encoders must accept.
import { createRequire } from 'node:module';
import type { onnx as OnnxNs } from 'onnx-proto';

const require = createRequire(import.meta.url);
const { onnx } = require('onnx-proto') as { onnx: typeof OnnxNs };
const FLOAT = 1, INT64 = 7, FLOAT16 = 10;

function valueInfo(name: string, elemType: number, dims: (number | string)[]): OnnxNs.IValueInfoProto {
  return {
    name,
    type: { tensorType: { elemType, shape: { dim: dims.map((d) => (typeof d === 'string' ? { dimParam: d } : { dimValue: d })) } } },
  };
}

function model(graph: OnnxNs.IGraphProto): Uint8Array {
  return onnx.ModelProto.encode({ irVersion: 7, opsetImport: [{ domain: '', version: 13 }], producerName: 'conceptlens-test', graph }).finish();
}

/** pixel_values [N,3,H,W] -> image_embeds = per-channel spatial mean [N,3], plus copies `pooled_output` and `embeds_fp16` (float16). */
export function meanPoolImageModel(h: number, w: number): Uint8Array {
  return model({
    name: 'image',
    node: [
      { opType: 'ReduceMean', input: ['pixel_values'], output: ['image_embeds'], attribute: [{ name: 'axes', type: 7, ints: [2, 3] }, { name: 'keepdims', type: 2, i: 0 }] },
      { opType: 'Identity', input: ['image_embeds'], output: ['pooled_output'] },
      { opType: 'Cast', input: ['image_embeds'], output: ['embeds_fp16'], attribute: [{ name: 'to', type: 2, i: FLOAT16 }] },
    ],
    input: [valueInfo('pixel_values', FLOAT, ['batch', 3, h, w])],
    output: [valueInfo('image_embeds', FLOAT, ['batch', 3]), valueInfo('pooled_output', FLOAT, ['batch', 3]), valueInfo('embeds_fp16', FLOAT16, ['batch', 3])],
  });
}

/**
 * input_ids, attention_mask [N,L] int64 -> text_embeds [N,D] = mean over the L
 * positions of table[id] * mask (masked sum / L).
 */
export function tokenTableTextModel(table: Float32Array, vocab: number, d: number, ctx: number | string): Uint8Array {
  return model({
    name: 'text',
    node: [
      { opType: 'Gather', input: ['table', 'input_ids'], output: ['tokens'] },
      { opType: 'Cast', input: ['attention_mask'], output: ['maskf'], attribute: [{ name: 'to', type: 2, i: FLOAT }] },
      { opType: 'Unsqueeze', input: ['maskf', 'axis2'], output: ['mask3'] },
      { opType: 'Mul', input: ['tokens', 'mask3'], output: ['masked'] },
      { opType: 'ReduceMean', input: ['masked'], output: ['text_embeds'], attribute: [{ name: 'axes', type: 7, ints: [1] }, { name: 'keepdims', type: 2, i: 0 }] },
    ],
    initializer: [
      { name: 'table', dims: [vocab, d], dataType: FLOAT, rawData: new Uint8Array(table.buffer, table.byteOffset, table.byteLength) },
      { name: 'axis2', dims: [1], dataType: INT64, int64Data: [2] },
    ],
    input: [valueInfo('input_ids', INT64, ['batch', ctx]), valueInfo('attention_mask', INT64, ['batch', ctx])],
    output: [valueInfo('text_embeds', FLOAT, ['batch', d])],
  });
}

/**
 * map [N,C,H,W] -> three representations of it, [N,C] each: `gap` (the
 * spatial mean: FALCON's analytic case), `mixed` = ReLU(gap · M) (channels
 * mixed after pooling) and `peak` (the spatial max).
 */
export function poolingHeadsModel(c: number, h: number, w: number, mix: Float32Array): Uint8Array {
  const reduce = (op: string, out: string) =>
    ({ opType: op, input: ['map'], output: [out], attribute: [{ name: 'axes', type: 7, ints: [2, 3] }, { name: 'keepdims', type: 2, i: 0 }] });
  return model({
    name: 'heads',
    node: [
      reduce('ReduceMean', 'gap'),
      { opType: 'MatMul', input: ['gap', 'mix'], output: ['linear'] },
      { opType: 'Relu', input: ['linear'], output: ['mixed'] },
      reduce('ReduceMax', 'peak'),
    ],
    initializer: [{ name: 'mix', dims: [c, c], dataType: FLOAT, rawData: new Uint8Array(mix.buffer, mix.byteOffset, mix.byteLength) }],
    input: [valueInfo('map', FLOAT, ['batch', c, h, w])],
    output: [valueInfo('gap', FLOAT, ['batch', c]), valueInfo('mixed', FLOAT, ['batch', c]), valueInfo('peak', FLOAT, ['batch', c])],
  });
}

/**
 * pixel_values [N,3,224,224] -> `map` [N,C,7,7] = ReLU(W · cells + b), the cells being 32×32 average pools of the
 * pixels, and `pooled` [N,C], its spatial mean: a FALCON target (tap `map`) that is also an image encoder into C
 * dimensions (the first output). W is C × 3 (row-major), b has C values.
 */
export function colourMapModel(w: Float32Array, b: Float32Array): Uint8Array {
  const c = b.length, raw = (a: Float32Array) => new Uint8Array(a.buffer, a.byteOffset, a.byteLength);
  return model({
    name: 'colours',
    node: [
      { opType: 'AveragePool', input: ['pixel_values'], output: ['cells'], attribute: [{ name: 'kernel_shape', type: 7, ints: [32, 32] }, { name: 'strides', type: 7, ints: [32, 32] }] },
      { opType: 'Conv', input: ['cells', 'w', 'b'], output: ['linear'] },
      { opType: 'Relu', input: ['linear'], output: ['map'] },
      { opType: 'ReduceMean', input: ['map'], output: ['pooled'], attribute: [{ name: 'axes', type: 7, ints: [2, 3] }, { name: 'keepdims', type: 2, i: 0 }] },
    ],
    initializer: [{ name: 'w', dims: [c, 3, 1, 1], dataType: FLOAT, rawData: raw(w) }, { name: 'b', dims: [c], dataType: FLOAT, rawData: raw(b) }],
    input: [valueInfo('pixel_values', FLOAT, ['batch', 3, 224, 224])],
    output: [valueInfo('pooled', FLOAT, ['batch', c])],
  });
}
