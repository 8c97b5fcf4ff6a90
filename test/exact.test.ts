import { test } from 'node:test';
import assert from 'node:assert/strict';
import { ExactTopK, exactSearch, PreparedRows, type ScanKernel } from '../ts/retrieval/exact.js';
import { engineInfo, measurePeaks } from '../ts/engine/info.js';
import { floatsToHalves as nativeFloatsToHalves, halvesToFloats as nativeHalvesToFloats } from '../ts/engine/fp16.js';
import { join } from 'node:path';
import type { ConceptLensError } from '../ts/errors.js';
import { readNpyHeader, writeNpy } from '../ts/io/npy.js';
import { bruteTopK, randn, tempDir } from './helpers.js';

function assertMatches(r: { ids: BigInt64Array; scores: Float32Array }, ref: { ids: number[][]; scores: number[][] }, k: number, tol: number) {
  ref.ids.forEach((ids, q) => {
    for (let j = 0; j < k; j++) {
      const got = Number(r.ids[q * k + j]), s = r.scores[q * k + j];
      assert.ok(Math.abs(s - ref.scores[q][j]) <= tol, `query ${q} rank ${j}: score ${s} vs ${ref.scores[q][j]}`);
      if (got !== ids[j]) assert.ok(Math.abs(s - ref.scores[q][j]) <= tol, `query ${q} rank ${j}: id ${got} vs ${ids[j]}`);
    }
  });
}

test('exact top-k equals brute force over shards, ip and cosine, unnormalised queries', async () => {
  const d = 32, n = 1500, nq = 9;
  const v = randn(n * d, 1), q = randn(nq * d, 2, 4);
  const kernels = ['sgemm', ...engineInfo().screening] as const;
  for (const kernel of kernels)
    for (const metric of ['ip', 'cosine'] as const) {
      for (const k of [1, 10, 1000]) {
        const s = new ExactTopK(q, nq, d, { k, metric, kernel });
        for (let r0 = 0; r0 < n; r0 += 400) await s.add(v.subarray(r0 * d, Math.min(n, r0 + 400) * d), Math.min(400, n - r0));
        const r = await s.result();
        assertMatches(r, bruteTopK(q, v, d, k, metric === 'cosine'), k, 1e-5 * (metric === 'ip' ? 30 : 1));
        assert.equal(r.scoredBy, kernel === 'sgemm' ? 'fp32' : kernel, `${kernel} reports what scored`);
      }
    }
  // 'auto' reports the format it took: the CPU's first, none for softmax scoring, which needs every score.
  const auto = await exactSearch(q, v, d, { k: 3 }), softmax = await exactSearch(q, v, d, { k: 3, softmaxTemperature: 10 });
  assert.deepEqual([auto.scoredBy, softmax.scoredBy], [engineInfo().screening[0] ?? 'fp32', 'fp32']);
});

test('progress is reported and the engine uses the fast BLAS kernels', async () => {
  const d = 16, n = 20000;
  const calls: number[][] = [];
  await exactSearch(randn(4 * d, 3), randn(n * d, 4), d, { k: 5, onProgress: (done, total) => calls.push([done, total]) });
  assert.ok(calls.length >= 1);
  assert.deepEqual(calls.at(-1), [n, n]);
  const info = engineInfo();
  if (info.avx512) assert.equal(info.blasCore, 'SkylakeX');
});

test('measurePeaks: a rate for each arithmetic the CPU runs, progress to the end, and an AbortSignal stops it', async () => {
  const ticks: number[][] = [];
  const p = await measurePeaks({ onProgress: (done, total) => ticks.push([done, total]) });
  const info = engineInfo();
  assert.equal(p.threads, info.computeThreads);
  assert.equal(p.fp32Isa, info.avx512 ? 'avx512' : p.fp32MacsPerS > 0 ? 'avx2' : '');
  assert.equal(p.int8MacsPerS > 0, info.screening.includes('int8'));
  assert.equal(p.int16MacsPerS > 0, info.screening.includes('int8'));  // the same AVX-512 VNNI runs the int16 Gram
  const last = ticks.at(-1)!;
  assert.equal(last[0], last[1]);
  await assert.rejects(measurePeaks({ signal: AbortSignal.abort() }), (e: Error) => e.name === 'AbortError');
  const ac = new AbortController();
  await assert.rejects(measurePeaks({ signal: ac.signal, onProgress: () => ac.abort() }), (e: Error) => e.name === 'AbortError');
});

test('an AbortSignal stops a running search with an AbortError', async () => {
  const d = 256, n = 200000;
  const v = randn(n * d, 5), q = randn(64 * d, 6);
  const ac = new AbortController();
  // Aborted at the first tick: rejected whether or not the scan had passed its last check.
  await assert.rejects(exactSearch(q, v, d, { k: 10, signal: ac.signal, onProgress: () => ac.abort() }),
    (e: Error) => e.name === 'AbortError');
  // A scan of one tile ticks once, at its end, with nothing left to check the flag: the abort still rejects it.
  const late = new AbortController();
  await assert.rejects(exactSearch(q.subarray(0, 2 * d), v.subarray(0, 100 * d), d, { k: 10, signal: late.signal, onProgress: () => late.abort() }),
    (e: Error) => e.name === 'AbortError');
  const aborted = AbortSignal.abort();
  await assert.rejects(exactSearch(q, v, d, { k: 10, signal: aborted }), (e: Error) => e.name === 'AbortError');
});

test('bad input gets errors naming the argument, expected and actual value', async () => {
  const d = 8;
  const q = randn(2 * d, 7);
  assert.throws(() => new ExactTopK(new Float64Array(16) as unknown as Float32Array, 2, d, { k: 1 }), /queries: expected Float32Array, got Float64Array/);
  assert.throws(() => new ExactTopK(q, 3, d, { k: 1 }), /queries: expected 3×8 = 24 elements, got 16/);
  const bad = randn(4 * d, 8);
  bad[3] = NaN;
  assert.throws(() => new ExactTopK(bad, 4, d, { k: 1 }), (e: ConceptLensError) =>
    e.code === 'ERR_NAN' && /queries: expected finite values, found NaN or Inf at row 0, column 3/.test(e.message));
  const s = new ExactTopK(q, 2, d, { k: 5, metric: 'cosine' });
  const v = randn(10 * d, 9);
  v.fill(0, 3 * d, 4 * d);
  await assert.rejects(s.add(v, 10), /vocabulary: row 3 has zero norm, cosine is undefined/);
  const t = new ExactTopK(q, 2, d, { k: 5 });
  const inf = randn(10 * d, 10);
  inf[7 * d + 2] = Infinity;
  await assert.rejects(t.add(inf, 10), (e: ConceptLensError) => e.code === 'ERR_NAN' && /vocabulary: row 7 gives a non-finite score/.test(e.message));
  for (const kernel of ['int8', 'sgemm'] as const)  // the screened scan's rounding and the BLAS tiles give the same error
    await assert.rejects(new ExactTopK(q, 2, d, { k: 5, kernel }).add(inf, 10), (e: ConceptLensError) => e.code === 'ERR_NAN' && /row 7 gives a non-finite/.test(e.message));
  await assert.rejects(t.add(randn(10 * 4, 1), 10), /vectors: expected 10×8 = 80 elements, got 40/);
  for (const kernel of ['bf16', 'int8'] as const)
    assert.throws(() => new ExactTopK(q, 2, d, { k: 1, kernel, softmaxTemperature: 100 }), new RegExp(`kernel: '${kernel}' cannot compute softmax scoring`));
  assert.throws(() => new ExactTopK(q, 2, d, { k: 1, kernel: 'fast' as 'auto' }), /kernel: expected 'auto', 'sgemm', 'bf16' or 'int8', got 'fast'/);
  assert.throws(() => new ExactTopK(q, 2, d, { k: 1, device: 'cuda' }), /device: 'cuda' requested but (no CUDA device is available|this engine was built without CUDA)/);
  const few = new ExactTopK(q, 2, d, { k: 5 });
  await few.add(randn(3 * d, 11), 3);
  await assert.rejects(few.result(), { code: 'ERR_ARG', message: /k: expected at most 3 \(the rows scanned\), got 5/ });
  // Rows counted, not ids: 2 rows at ids 100 and 101 do not fill a top 5.
  const gap = new ExactTopK(q, 2, d, { k: 5 });
  await gap.add(randn(2 * d, 12), 2, { idOffset: 100 });
  await assert.rejects(gap.result(), { code: 'ERR_ARG', message: /k: expected at most 2 \(the rows scanned\), got 5/ });
});

test('fp16 storage gives the brute-force answer on the rounded values', async () => {
  const d = 24, n = 900, k = 20;
  const v = randn(n * d, 12), q = randn(3 * d, 13);
  const h = nativeFloatsToHalves(v);
  const rounded = nativeHalvesToFloats(h);
  assert.ok(rounded.some((x, i) => x !== v[i]), 'fp16 storage really rounds');
  assertMatches(await exactSearch(q, h, d, { k }), bruteTopK(q, rounded, d, k), k, 1e-5);
});

test('rows the engine reads from a file (an .npy) give what the same rows give from memory', async () => {
  const d = 24, n = 1200, nq = 19, dir = tempDir('exact-file-');
  const v = randn(n * d, 5), q = randn(nq * d, 6, 3);
  for (const [dtype, data] of [['float32', v], ['float16', nativeFloatsToHalves(v)]] as const) {
    const path = join(dir, `${dtype}.npy`);
    writeNpy(path, data, [n, d], dtype);
    const h = readNpyHeader(path);
    const runs: [ScanKernel, number][] = [['sgemm', 0], ['sgemm', 30], ...engineInfo().screening.map((s): [ScanKernel, number] => [s, 0])];
    for (const [kernel, softmaxTemperature] of runs) {
      const fromFile = new ExactTopK(q, nq, d, { k: 8, metric: 'cosine', kernel, softmaxTemperature });
      await fromFile.addFile({ path, dataOffset: h.dataOffset, dtype, cols: d, first: 100, rows: 1000 }, { idOffset: 100 });
      const fromMemory = new ExactTopK(q, nq, d, { k: 8, metric: 'cosine', kernel, softmaxTemperature });
      await fromMemory.add(data.subarray(100 * d, 1100 * d), 1000, { idOffset: 100 });
      assert.deepEqual(await fromFile.result(), await fromMemory.result(), `${dtype} ${kernel} T=${softmaxTemperature}`);
    }
  }
  const s = new ExactTopK(q, nq, d, { k: 3 });
  await assert.rejects(s.addFile({ path: join(dir, 'float32.npy'), dataOffset: 128, dtype: 'float32', cols: d, first: 0, rows: n + 5 }),
    (e: ConceptLensError) => e.code === 'ERR_FILE' && /float32\.npy: ends at byte \d+, expected \d+ \(truncated\?\)/.test(e.message));
});

test('a prepared copy gives the unprepared scan\'s ids and scores bit for bit: ip and cosine, fp32 and fp16, shards, ties, k = rows', async () => {
  const d = 40, n = 1300, nq = 21;
  const v = randn(n * d, 21, 1);
  for (let j = 0; j < n; j++) v[j * d + 5] = v[j * d + 5] * 6 + 2;  // a shifted outlier dimension: a fitted frame
  v.copyWithin(700 * d, 100 * d, 160 * d);  // 60 duplicated rows: exact ties, lower id first
  const q = randn(nq * d, 22, 3);
  q.set(v.subarray(100 * d, 101 * d), 0);  // a query that hits the duplicates hardest
  for (const data of [v, nativeFloatsToHalves(v)]) {
    const prepared = await PreparedRows.prepare(data, d);
    assert.deepEqual([prepared.rows, prepared.dim, prepared.format], [n, d, engineInfo().screening[0] ?? null]);
    for (const metric of ['ip', 'cosine'] as const)
      for (const k of [1, 10, n]) {
        for (const kernel of ['auto', 'sgemm', ...engineInfo().screening] as ScanKernel[]) {
          const want = await exactSearch(q, data, d, { k, metric, kernel });
          assert.deepEqual(await exactSearch(q, data, d, { k, metric, kernel, prepared }), want, `${data.constructor.name} ${metric} k=${k} ${kernel}`);
        }
        // In shards, each its rows [first, first + rows) of the copy.
        const shards = new ExactTopK(q, nq, d, { k, metric }), whole = new ExactTopK(q, nq, d, { k, metric });
        for (const [a, b] of [[0, 333], [333, 1000], [1000, n]])
          await shards.addPrepared(prepared, data.subarray(a * d, b * d), { first: a, idOffset: a });
        await whole.add(data, n);
        assert.deepEqual(await shards.result(), await whole.result(), `${data.constructor.name} ${metric} k=${k} in shards`);
      }
  }
});

test('a prepared copy rebuilt from its arrays scans the same; arrays that do not fit are refused, naming them', async () => {
  const d = 24, n = 500;
  const v = randn(n * d, 31), q = randn(4 * d, 32);
  const prepared = await PreparedRows.prepare(v, d);
  const a = await prepared.arrays();
  assert.equal(prepared.screeningBytes, a.packed.byteLength);
  const again = await PreparedRows.fromArrays(a);
  assert.deepEqual(await again.arrays(), a);
  assert.deepEqual(await exactSearch(q, v, d, { k: 9, metric: 'cosine', prepared: again }), await exactSearch(q, v, d, { k: 9, metric: 'cosine' }));
  await assert.rejects(PreparedRows.fromArrays({ ...a, inv: new Float64Array(n) as unknown as Float32Array }),
    { code: 'ERR_DTYPE', message: /prepared\.inv: expected Float32Array, got Float64Array/ });
  await assert.rejects(PreparedRows.fromArrays({ ...a, inv: a.inv.subarray(1) }), { code: 'ERR_SHAPE', message: /prepared\.inv: expected 500 elements, got 499/ });
  if (a.format) {
    const err = a.err.slice();
    err[3] = NaN;
    await assert.rejects(PreparedRows.fromArrays({ ...a, err }), /prepared vocabulary: expected 500 finite terms >= 0 per row/);
    await assert.rejects(PreparedRows.fromArrays({ ...a, packed: a.packed.subarray(4) }), { code: 'ERR_SHAPE', message: /prepared\.packed: expected \d+ elements/ });
    // Copies packed by another engine version would screen with wrong sums.
    assert.equal(a.layout, engineInfo().screenLayout);
    await assert.rejects(PreparedRows.fromArrays({ ...a, layout: 1 }),
      { code: 'ERR_ARG', message: /^prepared\.layout: expected 3 \(this engine's packing\), got 1; prepare the rows again$/ });
  }
  const s = new ExactTopK(q, 4, d, { k: 3 });
  await assert.rejects(s.addPrepared({ screen: { native: {} } } as unknown as PreparedRows, v), { code: 'ERR_DTYPE', message: /prepared: expected a PreparedVocab/ });
  await assert.rejects(s.addPrepared(prepared, v.subarray(0, 10 * d), { first: n - 5 }), /rows \[495, 505\) are not all in the 500 prepared rows/);
  const z = v.slice();
  z.fill(0, 7 * d, 8 * d);
  const zp = await PreparedRows.prepare(z, d);  // a zero row: fine for ip, named under cosine
  assert.deepEqual(await exactSearch(q, z, d, { k: 5, prepared: zp }), await exactSearch(q, z, d, { k: 5 }));
  await assert.rejects(exactSearch(q, z, d, { k: 5, metric: 'cosine', prepared: zp }), /vocabulary: row 7 has zero norm, cosine is undefined/);
});
