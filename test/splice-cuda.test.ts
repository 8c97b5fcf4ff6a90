// spliceDecompose's device option: 'cuda' runs the GPU FISTA solver
// (native/cuda/splice_cuda.cu) and matches the CPU working-set solver where a
// GPU is present; elsewhere it fails with the clear "no CUDA device" error.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { randn } from '../ts/random.js';
import { writeNpy } from '../ts/io/npy.js';
import { runCli, tempDir } from './helpers.js';
import { normaliseRows } from '../ts/matrix.js';
import { spliceDecompose, type NativeSpliceResult as SpliceResult } from '../ts/engine/splice.js';

const NO_GPU = /device: 'cuda' requested but (no CUDA device is available|this engine was built without CUDA)/;

const unitRows = (x: Float32Array, d: number) => normaliseRows(x, d);

const c = 300, d = 32, n = 6;
const C = unitRows(randn(c * d, 11), d);
// Samples: the sum of two dictionary rows plus noise, normalised.
const Z = unitRows(Float32Array.from({ length: n * d }, (_, k) => {
  const i = Math.floor(k / d), t = k % d;
  return C[(7 * i) * d + t] + 0.5 * C[(7 * i + 3) * d + t] + 0.05 * Math.sin(k);
}), d);

const decompose = (device: 'cpu' | 'cuda', tol: number) => spliceDecompose(C, c, d, Z, n, { l1: 0.1, tol, device }, null);

test("device 'cuda' matches the CPU solver, or names the missing GPU", async () => {
  const cpu = await decompose('cpu', 1e-6);
  let gpu: SpliceResult;
  try {
    gpu = await decompose('cuda', 1e-7);
  } catch (e) {
    assert.match((e as Error).message, NO_GPU);
    return;
  }
  for (let i = 0; i < n; i++) {
    assert.ok(Math.abs(gpu.objective[i] - cpu.objective[i]) <= 1e-6 * cpu.objective[i],
      `sample ${i}: GPU objective ${gpu.objective[i]} vs CPU ${cpu.objective[i]}`);
    assert.ok(gpu.gap[i] >= 0 && gpu.gap[i] <= 1e-7 * gpu.objective[i], `sample ${i}: gap ${gpu.gap[i]}`);
  }
});

test('an unknown device is refused by name', async () => {
  await assert.rejects(decompose('tpu' as 'cpu', 1e-6), { code: 'ERR_ARG', message: /options\.device: expected 'cpu' or 'cuda', got 'tpu'/ });
});

test('the command line names --device when no GPU answers it', async (t) => {
  const dir = tempDir('splice-cuda-');
  writeNpy(join(dir, 'C.npy'), C, [c, d]);
  writeNpy(join(dir, 'Z.npy'), Z, [n, d]);
  const r = await runCli(['splice', 'decompose', '--embeddings', join(dir, 'Z.npy'), '--concepts', join(dir, 'C.npy'), '--l1', '0.1', '--raw', '--device', 'cuda', '--out', join(dir, 'W.npy')]);
  if (r.code === 0) return t.skip('a GPU answered');
  assert.equal(r.code, 1, r.stderr);
  assert.match(r.stderr, /^error: --device: 'cuda' requested but (no CUDA device is available|this engine was built without CUDA)/);
});
