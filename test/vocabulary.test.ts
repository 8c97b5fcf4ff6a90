import { after, test, type TestContext } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, readFileSync, rmSync, truncateSync, writeFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { gunzipSync, gzipSync } from 'node:zlib';
import { asyncBufferFromFile, parquetRead, type FileMetaData, type PageHeader } from 'hyparquet';
import { parquetWriteFile } from 'hyparquet-writer';
import { ByteWriter } from 'hyparquet-writer/src/bytewriter.js';
import { writePageHeader } from 'hyparquet-writer/src/datapage.js';
import { writeRleBitPackedHybrid } from 'hyparquet-writer/src/encoding.js';
import { writeMetadata } from 'hyparquet-writer/src/metadata.js';
import { writePlain } from 'hyparquet-writer/src/plain.js';
import { snappyCompress } from 'hyparquet-writer/src/snappy.js';
import type { ConceptLensError } from '../ts/errors.js';
import { ParquetColumn, runText } from '../ts/io/parquet.js';
import { npyBytes, readNpy, writeNpy } from '../ts/io/npy.js';
import { readLines } from '../ts/io/text.js';
import { LineFile } from '../ts/retrieval/texts.js';
import { Vocabulary, type VocabSearchResult } from '../ts/retrieval/vocabulary.js';
import { rng, tempDir as newTempDir, cliOk } from './helpers.js';
import { throttled } from '../ts/abort.js';
import { engineInfo } from '../ts/engine/info.js';

const made: string[] = [];
const tempDir = (prefix?: string) => {
  const d = newTempDir(prefix);
  made.push(d);
  return d;
};
after(() => made.forEach((d) => rmSync(d, { recursive: true, force: true })));

const D = 24;
const SIZES = [600, 7, 650];  // 1257 rows: k = 1000 spans shards
const SMALL_BLOCKS = 20 * D * 2;  // 20 fp16 rows per streamed block

/** Values n/256 with |n| <= 1024 are exact in fp16, so fp16 and fp32 shards hold the same numbers. */
function values(n: number, seed: number): number[] {
  const r = rng(seed);
  return Array.from({ length: n }, () => Math.round((r() * 2 - 1) * 1024) / 256);
}

/** fp32 -> fp16 bits for values exact in fp16 (independent of the library's decoder). */
function halfBits(x: number): number {
  if (x === 0) return Object.is(x, -0) ? 0x8000 : 0;
  if (!Number.isFinite(x)) return Number.isNaN(x) ? 0x7e00 : x > 0 ? 0x7c00 : 0xfc00;
  const s = x < 0 ? 0x8000 : 0, a = Math.abs(x), e = Math.floor(Math.log2(a));
  const m = (a / 2 ** e - 1) * 1024;
  assert.ok(e >= -14 && e <= 15 && Number.isInteger(m), `${x} is not exact in fp16`);
  return s | ((e + 15) << 10) | m;
}

interface Fixture {
  dir: string;
  rows: number[][];  // every row, all shards concatenated
  captions: string[];
  shardOf: number[];
}

type Layout = 'parquet' | 'captions.txt' | 'none';

/** A LAION-layout directory: text_emb_{i}.npy (+ metadata_{i}.parquet or captions.txt). */
function laionDir(opts: { sizes?: number[]; dtype?: 'float16' | 'float32'; layout?: Layout; captions?: string[]; seed?: number } = {}): Fixture {
  const sizes = opts.sizes ?? SIZES, dtype = opts.dtype ?? 'float16', layout = opts.layout ?? 'parquet';
  const dir = tempDir('vocab-test-');
  const rows: number[][] = [], shardOf: number[] = [];
  const total = sizes.reduce((a, b) => a + b, 0);
  const captions = opts.captions ?? Array.from({ length: total }, (_, i) => `concept ${i} é`);
  let g = 0;
  sizes.forEach((n, s) => {
    const flat = values(n * D, (opts.seed ?? 7) * 100 + s);
    for (let i = 0; i < n; i++) rows.push(flat.slice(i * D, (i + 1) * D)), shardOf.push(s);
    const data = dtype === 'float16' ? Uint16Array.from(flat, halfBits) : Float32Array.from(flat);
    writeNpy(join(dir, `text_emb_${s}.npy`), data, [n, D], dtype);
    if (layout === 'parquet')
      parquetWriteFile({ filename: join(dir, `metadata_${s}.parquet`), columnData: [
        { name: 'url', data: captions.slice(g, g + n).map((_, i) => `http://x/${g + i}`), type: 'STRING' },
        { name: 'caption', data: captions.slice(g, g + n), type: 'STRING' }] });
    g += n;
  });
  if (layout === 'captions.txt') writeFileSync(join(dir, 'captions.txt'), captions.join('\n') + '\n');
  return { dir, rows, captions, shardOf };
}

const norm = (x: number[]) => Math.sqrt(x.reduce((a, v) => a + v * v, 0));
const unit = (x: number[]) => x.map((v) => v / norm(x));
const dot = (a: number[], b: number[]) => a.reduce((s, v, j) => s + v * b[j], 0);

/** The published definitions in float64: normalise; subtract the mean row; normalise again when both. */
function transformed(rows: number[][], normalize: boolean, center: boolean): number[][] {
  let x = normalize ? rows.map(unit) : rows;
  if (center) {
    const mean = x[0].map((_, j) => x.reduce((a, r) => a + r[j], 0) / x.length);
    x = x.map((r) => r.map((v, j) => v - mean[j]));
    if (normalize) x = x.map(unit);
  }
  return x;
}

/** Score table nq × rows: ip, cosine, or FALCON's per-shard softmax(T·score). */
function scoreTable(queries: number[][], rows: number[][], metric: 'ip' | 'cosine', shardOf: number[], T = 0): number[][] {
  return queries.map((q) => {
    const s = rows.map((r) => (metric === 'cosine' ? dot(q, r) / (norm(q) * norm(r)) : dot(q, r)));
    if (!(T > 0)) return s;
    const lse = new Map<number, number>();
    for (const c of new Set(shardOf)) {
      const t = s.filter((_, i) => shardOf[i] === c).map((v) => T * v), m = Math.max(...t);
      lse.set(c, m + Math.log(t.reduce((a, v) => a + Math.exp(v - m), 0)));
    }
    return s.map((v, i) => Math.exp(T * v - lse.get(shardOf[i])!));
  });
}

/**
 * Each returned score equals the true k-th best score of its rank, and each
 * returned id has the returned score under the definition (robust to ties).
 * `ids` maps a table column to the original id.
 */
function assertTopK(r: VocabSearchResult, table: number[][], k: number, ids: number[] = table[0].map((_, i) => i), tol = 1e-5) {
  const col = new Map(ids.map((id, c) => [id, c]));
  table.forEach((s, q) => {
    const best = [...s].sort((a, b) => b - a);
    const seen = new Set<number>();
    for (let j = 0; j < k; j++) {
      const id = Number(r.ids[q * k + j]), got = r.scores[q * k + j], t = tol * Math.max(1, Math.abs(best[j]));
      assert.ok(Math.abs(got - best[j]) <= t, `query ${q} rank ${j}: score ${got}, expected ${best[j]}`);
      assert.ok(col.has(id) && !seen.has(id), `query ${q} rank ${j}: id ${id} is not a distinct vocabulary row`);
      assert.ok(Math.abs(s[col.get(id)!] - got) <= t, `query ${q} rank ${j}: id ${id} scores ${s[col.get(id)!]}, not ${got}`);
      seen.add(id);
    }
  });
}

function queries(nq: number, seed: number): { flat: Float32Array; rows: number[][] } {
  const flat = Float32Array.from(values(nq * D, seed), (v) => v * 3);  // not normalised
  return { flat, rows: Array.from({ length: nq }, (_, i) => Array.from(flat.subarray(i * D, (i + 1) * D))) };
}

const Q = queries(5, 99);

test('LAION fp16 shards + parquet captions: top-k equals brute force over the concatenation', async () => {
  const f = laionDir();
  const v = await Vocabulary.open(f.dir, { blockBytes: SMALL_BLOCKS });
  assert.equal(v.rows, 1257);
  assert.equal(v.dtype, 'float16');
  for (const metric of ['ip', 'cosine'] as const) {
    const table = scoreTable(Q.rows, f.rows, metric, f.shardOf);
    for (const k of [1, 10, 1000]) {
      const r = await v.search(Q.flat, { k, metric });
      assertTopK(r, table, k);
      assert.deepEqual(r.texts, Array.from(r.ids, (id) => f.captions[Number(id)]));
    }
  }
  const whole = await Vocabulary.open(f.dir);  // default 256 MiB blocks: one per shard
  assert.deepEqual(await whole.search(Q.flat, { k: 10 }), await v.search(Q.flat, { k: 10 }));
});

test('captions.txt layout with fp32 shards, and a single .npy with a names file', async () => {
  const f = laionDir({ dtype: 'float32', layout: 'captions.txt' });
  const v = await Vocabulary.open(f.dir, { blockBytes: SMALL_BLOCKS });
  assert.equal(v.dtype, 'float32');
  const r = await v.search(Q.flat, { k: 10, metric: 'cosine' });
  assertTopK(r, scoreTable(Q.rows, f.rows, 'cosine', f.shardOf), 10);
  assert.deepEqual(r.texts, Array.from(r.ids, (id) => f.captions[Number(id)]));

  const one = laionDir({ sizes: [50], layout: 'none' });
  writeFileSync(join(one.dir, 'names.txt'), one.captions.slice(0, 50).join('\n'));
  const n = await Vocabulary.open(join(one.dir, 'text_emb_0.npy'), { names: join(one.dir, 'names.txt') });
  const rn = await n.search(Q.flat, { k: 3 });
  assertTopK(rn, scoreTable(Q.rows, one.rows, 'ip', one.shardOf), 3);
  assert.equal(rn.texts?.[0], one.captions[Number(rn.ids[0])]);
});

test('dedupe keeps first occurrences and maps ids back to the original rows', async () => {
  const total = SIZES.reduce((a, b) => a + b, 0);
  // c{j} first appears at row 3j (j < 350, all three shards); later rows repeat earlier captions.
  const captions = Array.from({ length: total }, (_, i) => `c${Math.floor(i / 3) % 350}`);
  const f = laionDir({ captions, layout: 'captions.txt' });
  const v = await Vocabulary.open(f.dir, { dedupe: true, blockBytes: SMALL_BLOCKS });
  assert.equal(v.rows, 350);
  const firsts = Array.from({ length: 350 }, (_, j) => 3 * j);
  const table = scoreTable(Q.rows, firsts.map((i) => f.rows[i]), 'ip', firsts.map((i) => f.shardOf[i]));
  for (const k of [1, 10, 350]) {
    const r = await v.search(Q.flat, { k });
    assertTopK(r, table, k, firsts);
    assert.deepEqual(r.texts, Array.from(r.ids, (id) => captions[Number(id)]));
  }
  await assert.rejects(v.search(Q.flat, { k: 351 }), /k: expected an integer from 1 to the vocabulary's 350 rows, got 351/);
});

test('normalise and centre (each metric) equal brute force on the transformed rows', async () => {
  const f = laionDir({ sizes: [300, 200] });
  for (const [normalize, center] of [[true, false], [false, true], [true, true]]) {
    const v = await Vocabulary.open(f.dir, { normalize, center, blockBytes: SMALL_BLOCKS });
    const x = transformed(f.rows, normalize, center);
    for (const metric of ['ip', 'cosine'] as const) {
      const r = await v.search(Q.flat, { k: 10, metric });
      assertTopK(r, scoreTable(Q.rows, x, metric, f.shardOf), 10);
    }
    // Centring is shift-invariant under softmax; the kernel sees the stored rows but the result must match.
    const sm = await v.search(Q.flat, { k: 10, softmaxTemperature: 3 });
    assertTopK(sm, scoreTable(Q.rows, x, 'ip', f.shardOf, 3), 10);
  }
});

test('chunk-local softmax is per shard (not per streamed block) and equals the definition', async () => {
  const f = laionDir();
  const v = await Vocabulary.open(f.dir, { blockBytes: SMALL_BLOCKS });
  for (const T of [1, 20]) {
    const r = await v.search(Q.flat, { k: 10, softmaxTemperature: T });
    assertTopK(r, scoreTable(Q.rows, f.rows, 'ip', f.shardOf, T), 10);
  }
});

test('store round trip: reopens without the source, same results, transforms and dedupe kept', async () => {
  const total = SIZES.reduce((a, b) => a + b, 0);
  const captions = Array.from({ length: total }, (_, i) => (i % 3 === 0 ? `dup ${i % 30}` : `ünïque ${i}`));
  const f = laionDir({ captions });
  const v = await Vocabulary.open(f.dir, { dedupe: true, normalize: true, center: true, blockBytes: SMALL_BLOCKS });
  const store = join(tempDir('vocab-store-'), 'store');
  await v.save(store);
  const before = await v.search(Q.flat, { k: 25, metric: 'cosine', softmaxTemperature: 5 });
  const lastText = await v.texts?.lookup([v.rows - 1]);
  const plain = await v.search(Q.flat, { k: 7 });
  rmSync(f.dir, { recursive: true });  // the store must not need the LAION files
  const s = await Vocabulary.open(store, { verify: true });
  assert.deepEqual([s.rows, s.sourceRows, s.dim, s.dtype, s.transforms], [v.rows, total, D, 'float16', { normalize: true, center: true }]);
  assert.deepEqual(await s.search(Q.flat, { k: 25, metric: 'cosine', softmaxTemperature: 5 }), before);
  assert.deepEqual(await s.search(Q.flat, { k: 7 }), plain);
  assert.deepEqual(await s.texts?.lookup([s.rows - 1]), lastText);
  const manifest = JSON.parse(readFileSync(join(store, 'manifest.json'), 'utf8'));
  assert.ok(manifest.shards.length > 3, 'streamed blocks are written as separate files');
  await s.save(store);  // replacing an existing store (here with itself, re-read first) is allowed
  assert.deepEqual(await (await Vocabulary.open(store)).search(Q.flat, { k: 7 }), plain);
  await assert.rejects(Vocabulary.open(store, { normalize: false }), /built with normalize=true, asked for normalize=false/);
});

test('a damaged store is refused, naming the file', async () => {
  const f = laionDir({ sizes: [40] });
  const store = join(tempDir('vocab-store-'), 'store');
  await (await Vocabulary.open(f.dir)).save(store);
  const vec = join(store, 'vectors_0.npy');
  const bytes = readFileSync(vec);
  bytes[bytes.length - 1] ^= 1;
  writeFileSync(vec, bytes);
  await assert.rejects(Vocabulary.open(store, { verify: true }), /vectors_0\.npy: sha256 [0-9a-f]+, the manifest records/);
  truncateSync(vec, bytes.length - 2);
  await assert.rejects(Vocabulary.open(store), /vectors_0\.npy: \d+ bytes, the manifest records \d+/);
  await assert.rejects((await Vocabulary.open(f.dir)).save(f.dir), /exists and is not a vocabulary store/);
});

test('prepare(): searches give the unprepared ids and scores; a store keeps the prepared copy and reopening reuses it', async () => {
  const f = laionDir();
  const v = await Vocabulary.open(f.dir, { blockBytes: SMALL_BLOCKS });
  const asks = [{ k: 7 }, { k: 25, metric: 'cosine' as const }, { k: 1000 }, { k: 5, metric: 'cosine' as const, softmaxTemperature: 5 }];
  const before = await Promise.all(asks.map((a) => v.search(Q.flat, a)));
  const shard2 = await v.scan(Q.flat, { k: 9, chunks: [2] });
  assert.equal(v.prepared === undefined, true, 'not prepared before prepare()');
  const prepared = await v.prepare();
  assert.equal(await v.prepare(), prepared, 'prepared once');
  assert.deepEqual([v.prepared?.source, prepared.rows, prepared.dim], ['computed', v.rows, D]);
  for (const [i, a] of asks.entries()) assert.deepEqual(await v.search(Q.flat, a), before[i], JSON.stringify(a));
  assert.deepEqual(await v.scan(Q.flat, { k: 9, chunks: [2] }), shard2);
  const store = join(tempDir('vocab-store-'), 'store');
  await v.save(store);
  const manifest = JSON.parse(readFileSync(join(store, 'manifest.json'), 'utf8'));
  for (const file of ['prepared_packed.npy', 'prepared_terms.npy']) assert.ok(manifest.files[file] && existsSync(join(store, file)), file);
  rmSync(f.dir, { recursive: true });
  const s = await Vocabulary.open(store, { verify: false });
  const again = await s.prepare();
  assert.equal(s.prepared?.source, 'store', 'the stored copy is reloaded, not recomputed');
  assert.deepEqual(await again.arrays(), await prepared.arrays());
  for (const [i, a] of asks.entries()) assert.deepEqual(await s.search(Q.flat, a), before[i], JSON.stringify(a));
  // A store written without the copy still opens; prepare() then computes it, and save({ prepare }) writes it.
  const plain = join(tempDir('vocab-store-'), 'store');
  await (await Vocabulary.open(store)).save(plain);
  assert.ok(!existsSync(join(plain, 'prepared_terms.npy')));
  const p = await Vocabulary.open(plain);
  assert.deepEqual(await p.search(Q.flat, asks[0]), before[0]);
  await p.prepare({ persist: true });  // written into the store in place
  assert.equal(p.prepared?.source, 'computed');
  assert.deepEqual(await p.search(Q.flat, asks[1]), before[1]);
  const r = await Vocabulary.open(plain, { verify: true });  // every file, the new ones too, matches the manifest
  await r.prepare();
  assert.equal(r.prepared?.source, 'store');
  assert.deepEqual(await r.search(Q.flat, asks[2]), before[2]);
  // A copy of an earlier packing (its manifest entry without `layout`, as stores before layout 2 were written) would
  // screen with wrong sums: prepare() computes the copy again, and persist replaces it with the current layout.
  const m = JSON.parse(readFileSync(join(plain, 'manifest.json'), 'utf8'));
  assert.equal(m.prepared.layout, engineInfo().screenLayout);
  delete m.prepared.layout;
  writeFileSync(join(plain, 'manifest.json'), JSON.stringify(m));
  const old = await Vocabulary.open(plain);
  await old.prepare({ persist: true });
  assert.equal(old.prepared?.source, 'computed', 'an earlier layout is not reused');
  assert.deepEqual(await old.search(Q.flat, asks[3]), before[3]);
  assert.equal(JSON.parse(readFileSync(join(plain, 'manifest.json'), 'utf8')).prepared.layout, engineInfo().screenLayout);
  const renewed = await Vocabulary.open(plain);
  await renewed.prepare();
  assert.equal(renewed.prepared?.source, 'store');
});

test('prepare() of de-duplicated and transformed vocabularies: the same results as the streamed scan', async () => {
  const total = SIZES.reduce((a, b) => a + b, 0);
  const captions = Array.from({ length: total }, (_, i) => (i % 3 === 0 ? `dup ${i % 30}` : `ünïque ${i}`));
  const f = laionDir({ captions, dtype: 'float32' });
  for (const o of [{ dedupe: true }, { dedupe: true, center: true }, { normalize: true }]) {
    const v = await Vocabulary.open(f.dir, { ...o, blockBytes: SMALL_BLOCKS });
    const asks = [{ k: 11 }, { k: 30, metric: 'cosine' as const }];
    const before = await Promise.all(asks.map((a) => v.search(Q.flat, a)));
    await v.prepare();
    for (const [i, a] of asks.entries()) assert.deepEqual(await v.search(Q.flat, a), before[i], `${JSON.stringify(o)} ${JSON.stringify(a)}`);
  }
});

test('a damaged prepared copy is refused, naming the file', async () => {
  const f = laionDir({ sizes: [40] });
  const store = join(tempDir('vocab-store-'), 'store');
  await (await Vocabulary.open(f.dir)).save(store, { prepare: true });
  const terms = join(store, 'prepared_terms.npy');
  const bytes = readFileSync(terms);
  bytes[bytes.length - 1] ^= 1;
  writeFileSync(terms, bytes);
  await assert.rejects(Vocabulary.open(store, { verify: true }), /prepared_terms\.npy: sha256 [0-9a-f]+, the manifest records/);
  const s = await Vocabulary.open(store, { verify: false });
  await assert.rejects(s.prepare(), { code: 'ERR_FILE', message: /prepared_terms\.npy: sha256 [0-9a-f]+, the manifest records [0-9a-f]+; the store is damaged/ });
});

test('bad inputs fail with errors that name the file', async (t: TestContext) => {
  await t.test('dimension mismatch between shards', async () => {
    const f = laionDir({ sizes: [10, 10], layout: 'none' });
    writeNpy(join(f.dir, 'text_emb_1.npy'), new Float32Array(10 * 8), [10, 8], 'float32');
    writeNpy(join(f.dir, 'text_emb_0.npy'), new Float32Array(10 * D), [10, D], 'float32');
    await assert.rejects(Vocabulary.open(f.dir), /text_emb_1\.npy: dimension 8, expected 24 \(that of .*text_emb_0\.npy\)/);
  });
  await t.test('no rows, no rows kept, or a block size that is not a whole number of bytes', async () => {
    const dir = tempDir('vocab-empty-');
    writeNpy(join(dir, 'e0.npy'), new Float32Array(0), [0, D]);
    await assert.rejects(Vocabulary.open(join(dir, 'e0.npy')), { code: 'ERR_SHAPE', message: /e0\.npy: has 0 rows; a vocabulary needs at least one/ });
    writeNpy(join(dir, 'v.npy'), new Float32Array(3 * D), [3, D]);
    await assert.rejects(Vocabulary.open(join(dir, 'v.npy'), { keepRows: new Float64Array(0) }), /v\.npy: keepRows: keeps no rows; expected at least one/);
    for (const blockBytes of [0, -5, 1.5])
      await assert.rejects(Vocabulary.open(join(dir, 'v.npy'), { blockBytes }), new RegExp(`blockBytes: expected an integer number of bytes >= 1, got ${blockBytes}`));
  });
  await t.test('shards are ordered numerically (text_emb_10 after text_emb_2)', async () => {
    const f = laionDir({ sizes: [2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2], layout: 'none' });
    const v = await Vocabulary.open(f.dir);
    assert.deepEqual(v.shards.map((s) => s.header.path.match(/text_emb_(\d+)/)![1]), Array.from({ length: 11 }, (_, i) => `${i}`));
  });
  const f = laionDir({ sizes: [30, 30] });
  const v = await Vocabulary.open(f.dir);
  await t.test('queries of the wrong dimension', async () => {
    await assert.rejects(v.search(new Float32Array(D + 1), { k: 1 }), /queries: 25 values are not a whole number of rows of the vocabulary's dimension 24/);
  });
  await t.test('k larger than the vocabulary', async () => {
    await assert.rejects(v.search(Q.flat, { k: 61 }), /k: expected an integer from 1 to the vocabulary's 60 rows, got 61/);
  });
  await t.test('NaN/Inf in a shard: search, transform and store all name the file, row and column', async () => {
    const g = laionDir({ sizes: [30, 30], dtype: 'float32', layout: 'none' });
    const x = Float32Array.from(g.rows.slice(30).flat());
    x[3 * D + 5] = NaN;
    writeNpy(join(g.dir, 'text_emb_1.npy'), x, [30, D], 'float32');
    const bad = await Vocabulary.open(g.dir);
    // The scan sees only a non-finite score; the error reads the row back to name the column.
    const named = (e: ConceptLensError) => e.code === 'ERR_NAN' && /text_emb_1\.npy: row 3, column 5 is NaN; expected finite values$/.test(e.message);
    await assert.rejects(bad.search(Q.flat, { k: 2 }), named);
    await assert.rejects(bad.save(join(g.dir, 'store')), named);
    await assert.rejects(Vocabulary.open(g.dir, { center: true }), named);
    const rewritten = await Vocabulary.open(g.dir, { normalize: true });  // ip over normalised rows: rows are rewritten
    await assert.rejects(rewritten.search(Q.flat, { k: 2 }), named);
    assert.equal(existsSync(join(g.dir, 'store')), false);
  });
  await t.test('a zero row under cosine', async () => {
    const g = laionDir({ sizes: [30, 30], dtype: 'float32', layout: 'none' });
    writeNpy(join(g.dir, 'text_emb_1.npy'), new Float32Array(30 * D).fill(1).fill(0, 4 * D, 5 * D), [30, D], 'float32');
    const z = await Vocabulary.open(g.dir);
    await assert.rejects(z.search(Q.flat, { k: 2, metric: 'cosine' }), /text_emb_1\.npy: row 4 has zero norm/);
    await assert.rejects(Vocabulary.open(g.dir, { normalize: true, center: true }), /text_emb_1\.npy: row 4 has norm 0, cannot L2-normalise/);
  });
  await t.test('truncated and Fortran-order .npy', async () => {
    const g = laionDir({ sizes: [30], layout: 'none' });
    const p = join(g.dir, 'text_emb_0.npy');
    const bytes = npyBytes(new Float32Array(30 * D), [30, D], 'float32');
    writeFileSync(p, bytes.subarray(0, bytes.length - 10));
    await assert.rejects(Vocabulary.open(g.dir), /text_emb_0\.npy: truncated/);
    writeFileSync(p, Buffer.from(bytes.toString('latin1').replace("'fortran_order': False", "'fortran_order': True "), 'latin1'));
    await assert.rejects(Vocabulary.open(g.dir), /text_emb_0\.npy: array is in Fortran order/);
  });
  await t.test('parquet without a caption column lists its columns', async () => {
    parquetWriteFile({ filename: join(f.dir, 'metadata_1.parquet'), columnData: [
      { name: 'TEXT', data: Array(30).fill('a'), type: 'STRING' }, { name: 'url', data: Array(30).fill('u'), type: 'STRING' }] });
    await assert.rejects(Vocabulary.open(f.dir), /metadata_1\.parquet: no 'caption' column; it has 'TEXT', 'url'/);
  });
  await t.test('caption count differs from the embedding rows', async () => {
    parquetWriteFile({ filename: join(f.dir, 'metadata_1.parquet'), columnData: [{ name: 'caption', data: Array(29).fill('a'), type: 'STRING' }] });
    await assert.rejects(Vocabulary.open(f.dir), /metadata_1\.parquet: 29 captions for 30 embedding rows/);
    rmSync(join(f.dir, 'metadata_1.parquet'));
    await assert.rejects(Vocabulary.open(f.dir), /metadata_1\.parquet: missing/);
    const g = laionDir({ sizes: [30, 30], layout: 'captions.txt', captions: Array(59).fill('x') });
    await assert.rejects(Vocabulary.open(g.dir), /captions\.txt: 59 captions for 60 embedding rows/);
  });
  await t.test('dedupe without texts, and a directory that is no vocabulary', async () => {
    const g = laionDir({ sizes: [5], layout: 'none' });
    await assert.rejects(Vocabulary.open(g.dir, { dedupe: true }), /dedupe needs captions or names/);
    await assert.rejects(Vocabulary.open(tempDir()), /neither a vocabulary store \(manifest\.json\) nor a LAION shard directory/);
  });
});

test('an AbortSignal stops a search with an AbortError', async () => {
  const f = laionDir({ sizes: [300, 300] });
  const v = await Vocabulary.open(f.dir, { blockBytes: SMALL_BLOCKS });
  const ac = new AbortController();
  const done: number[] = [];
  await assert.rejects(v.search(Q.flat, { k: 5, signal: ac.signal, onProgress: (d) => (done.push(d), ac.abort()) }), { name: 'AbortError' });
  assert.ok(done.length >= 1 && done[done.length - 1] < 600);
});

/** Runs the CLI in-process; returns stdout, or throws with the error it printed. */
const cli = cliOk;

test('CLI: vocab build then search writes int32 ids and float32 scores equal to the API', async () => {
  const f = laionDir();
  const dir = tempDir('vocab-cli-');
  writeNpy(join(dir, 'q.npy'), Q.flat, [5, D]);
  const store = join(dir, 'store');
  const built = JSON.parse(await cli(['vocab', 'build', '--from', f.dir, '--out', store, '--normalize', '--json']));
  assert.equal(built.rows, 1257);
  const summary = JSON.parse(await cli(['search', '--vocab', store, '--queries', join(dir, 'q.npy'), '--k', '10', '--out', join(dir, 'r'), '--json']));
  assert.deepEqual([summary.rows, summary.queries, summary.k], [1257, 5, 10]);
  const ids = readNpy(join(dir, 'r.ids.npy')), scores = readNpy(join(dir, 'r.scores.npy'));
  assert.deepEqual([ids.dtype, ids.shape, scores.dtype, scores.shape], ['int32', [5, 10], 'float32', [5, 10]]);
  const api = await (await Vocabulary.open(f.dir, { normalize: true })).search(Q.flat, { k: 10 });
  assert.deepEqual(Array.from(ids.data as Int32Array), Array.from(api.ids, Number));
  assert.deepEqual(scores.data, api.scores);
  writeNpy(join(dir, 'q8.npy'), new Float32Array(2 * 8), [2, 8]);
  await assert.rejects(cli(['search', '--vocab', store, '--queries', join(dir, 'q8.npy'), '--k', '3', '--out', join(dir, 'x')]),
    /q8\.npy: expected 24 columns \(the dimension of the vocabulary .*store\), got 8/);
  await assert.rejects(cli(['search', '--vocab', store, '--queries', join(dir, 'q.npy'), '--k', '3', '--index', 'faiss-flat', '--softmax-temperature', '2', '--out', join(dir, 'x')]),
    /--softmax-temperature: needs --index exact/);  const prepared = join(dir, 'prepared');
  await cli(['vocab', 'build', '--from', f.dir, '--out', prepared, '--prepare', '--json']);
  const v = await Vocabulary.open(prepared, { verify: true });
  await v.prepare();
  assert.equal(v.prepared?.source, 'store', 'vocab build --prepare writes the screening copy');
});

test('CLI: approximate indexes search the transformed, de-duplicated rows and return original ids and their texts', async () => {
  const total = SIZES.reduce((a, b) => a + b, 0);
  const captions = Array.from({ length: total }, (_, i) => `c${Math.floor(i / 3) % 350}`);
  const f = laionDir({ captions });
  const dir = tempDir('vocab-ann-');
  writeNpy(join(dir, 'q.npy'), Q.flat, [5, D]);
  const firsts = Array.from({ length: 350 }, (_, j) => 3 * j);
  const table = scoreTable(Q.rows, transformed(firsts.map((i) => f.rows[i]), true, true), 'ip', firsts.map(() => 0));
  const run = async (index: string) => {
    await cli(['search', '--vocab', f.dir, '--dedupe', '--normalize', '--center', '--queries', join(dir, 'q.npy'), '--k', '10', '--index', index, '--out', join(dir, index)]);
    const ids = readNpy(join(dir, `${index}.ids.npy`)).data as Int32Array, scores = readNpy(join(dir, `${index}.scores.npy`)).data as Float32Array;
    // The hits' texts, query by query: the captions of the original rows the ids name.
    assert.deepEqual(JSON.parse(readFileSync(join(dir, `${index}.texts.json`), 'utf8')),
      Array.from({ length: 5 }, (_, q) => Array.from(ids.subarray(q * 10, (q + 1) * 10), (id) => captions[id])), index);
    return { nq: 5, k: 10, ids: BigInt64Array.from(ids, BigInt), scores };
  };
  assertTopK(await run('faiss-flat'), table, 10, firsts);
  const exact = await run('exact'), hnsw = await run('hnsw');
  assertTopK(exact, table, 10, firsts);
  const hits = Array.from(hnsw.ids).filter((id, i) => exact.ids.slice(Math.floor(i / 10) * 10, Math.floor(i / 10) * 10 + 10).includes(id)).length;
  assert.ok(hits >= 45, `hnsw recall@10 ${hits / 50}`);
  // --no-texts: the same hits, no texts looked up or written.
  for (const index of ['exact', 'hnsw']) {
    await cli(['search', '--vocab', f.dir, '--dedupe', '--normalize', '--center', '--queries', join(dir, 'q.npy'), '--k', '10', '--index', index, '--no-texts', '--out', join(dir, `bare-${index}`)]);
    assert.ok(!existsSync(join(dir, `bare-${index}.texts.json`)), index);
    assert.deepEqual(readNpy(join(dir, `bare-${index}.ids.npy`)).data, readNpy(join(dir, `${index}.ids.npy`)).data, index);
  }
});

const DETIC = resolve(process.env.CONCEPTLENS_ASSETS ?? join(process.cwd(), '..', 'shared', 'assets'), 'embeddings', 'detic');

test('real CLIP text embeddings (Detic LVIS fp16 + names): cosine search equals brute force', async (t) => {
  const npy = join(DETIC, 'lvis_v1_clip_a+cname.npy'), names = join(DETIC, 'lvis_v1_names.txt');
  if (!existsSync(npy)) return t.skip(`Detic embeddings not found at ${DETIC}; set CONCEPTLENS_ASSETS`);
  const v = await Vocabulary.open(npy, { names });
  const raw = readNpy(npy), coco = readNpy(join(DETIC, 'coco_clip_a+cname.npy'));
  const dec = (a: Uint16Array) => Array.from(a, (h) => {
    const e = (h >> 10) & 31, m = h & 1023, s = h >> 15 ? -1 : 1;
    return e ? s * 2 ** (e - 15) * (1 + m / 1024) : s * 2 ** -14 * (m / 1024);
  });
  const d = v.dim, lv = dec(raw.data as Uint16Array), cq = dec(coco.data as Uint16Array);
  const rows = Array.from({ length: v.rows }, (_, i) => lv.slice(i * d, (i + 1) * d));
  const qs = [1, 2, 4].map((i) => cq.slice(i * d, (i + 1) * d));  // bicycle, car, airplane
  const r = await v.search(Float32Array.from(qs.flat()), { k: 5, metric: 'cosine' });
  assertTopK(r, scoreTable(qs, rows, 'cosine', rows.map(() => 0)), 5);
  assert.deepEqual([r.texts![0], r.texts![5], r.texts![10]], ['bicycle', 'car_(automobile)', 'airplane']);
});

/**
 * A Parquet file with one optional `caption` column written with DATA_PAGE (v1) pages, as pyarrow writes LAION's
 * metadata: `pageRows` rows a page, PLAIN or dictionary-encoded values, Snappy or no compression. Returns the byte
 * offset of each data page's body (to damage one in a test).
 */
function writeV1Parquet(path: string, captions: (string | null)[], o: { pageRows: number; dictionary?: boolean; codec: 'SNAPPY' | 'UNCOMPRESSED' }): number[] {
  const w = new ByteWriter(), enc = new TextEncoder(), bodies: number[] = [];
  const pack = (b: Uint8Array) => (o.codec === 'SNAPPY' ? snappyCompress(b) : b);
  const page = (header: object, body: Uint8Array) => {
    const z = pack(body);
    writePageHeader(w, { ...header, uncompressed_page_size: body.length, compressed_page_size: z.length } as PageHeader);
    bodies.push(w.offset);
    w.appendBytes(z);
  };
  w.appendBytes(enc.encode('PAR1'));
  const start = w.offset, dict = [...new Set(captions.filter((c): c is string => c !== null))];
  if (o.dictionary) {
    const b = new ByteWriter();
    writePlain(b, dict.map((t) => enc.encode(t)), 'BYTE_ARRAY', undefined);
    page({ type: 'DICTIONARY_PAGE', dictionary_page_header: { num_values: dict.length, encoding: 'PLAIN' } }, b.getBytes());
  }
  const dataStart = w.offset;
  for (let r0 = 0; r0 < captions.length; r0 += o.pageRows) {
    const rows = captions.slice(r0, r0 + o.pageRows), values = rows.filter((c): c is string => c !== null);
    const levels = new ByteWriter(), body = new ByteWriter();
    writeRleBitPackedHybrid(levels, rows.map((c) => (c === null ? 0 : 1)), 1);
    body.appendUint32(levels.offset);
    body.appendBytes(levels.getBytes());
    if (o.dictionary) {
      const width = Math.max(1, Math.ceil(Math.log2(dict.length)));
      body.appendUint8(width);
      writeRleBitPackedHybrid(body, values.map((t) => dict.indexOf(t)), width);
    } else writePlain(body, values.map((t) => enc.encode(t)), 'BYTE_ARRAY', undefined);
    page({ type: 'DATA_PAGE', data_page_header: { num_values: rows.length, encoding: o.dictionary ? 'RLE_DICTIONARY' : 'PLAIN',
      definition_level_encoding: 'RLE', repetition_level_encoding: 'RLE' } }, body.getBytes());
  }
  const size = BigInt(w.offset - start), metaStart = w.offset;
  writeMetadata(w, {
    version: 1, num_rows: BigInt(captions.length), created_by: 'conceptlens test',
    schema: [{ name: 'root', num_children: 1 }, { name: 'caption', type: 'BYTE_ARRAY', repetition_type: 'OPTIONAL', converted_type: 'UTF8' }],
    row_groups: [{ num_rows: BigInt(captions.length), total_byte_size: size, columns: [{ file_offset: BigInt(start), meta_data: {
      type: 'BYTE_ARRAY', encodings: o.dictionary ? ['PLAIN', 'RLE', 'RLE_DICTIONARY'] : ['PLAIN', 'RLE'], path_in_schema: ['caption'],
      codec: o.codec, num_values: BigInt(captions.length), total_uncompressed_size: size, total_compressed_size: size,
      data_page_offset: BigInt(dataStart), dictionary_page_offset: o.dictionary ? BigInt(start) : undefined } }] }],
  } as FileMetaData);
  w.appendUint32(w.offset - metaStart);
  w.appendBytes(enc.encode('PAR1'));
  writeFileSync(path, w.getBytes());
  return bodies;
}

/** Every value of the column through hyparquet's own reader (null as ''). */
async function hyparquetColumn(path: string): Promise<string[]> {
  let rows: unknown[][] = [];
  await parquetRead({ file: await asyncBufferFromFile(path), columns: ['caption'], compressors: { GZIP: (b: Uint8Array) => new Uint8Array(gunzipSync(b)) },
    onComplete: (r: unknown[][]) => { rows = r; } });
  return rows.map((r) => (r[0] == null ? '' : String(r[0])));
}

test('Parquet captions are read a page at a time: v1 and v2 pages, PLAIN and dictionary values, nulls and codecs equal hyparquet', async () => {
  const dir = tempDir('parquet-pages-');
  const texts = Array.from({ length: 2300 }, (_, i) => (i % 11 === 3 ? null : i % 5 === 0 ? `répété ${i % 7}` : `caption ${i} ${'x'.repeat(i % 23)}`));
  const files: string[] = [];
  for (const [codec, compressors] of [['SNAPPY', undefined], ['UNCOMPRESSED', undefined], ['GZIP', { GZIP: (b: Uint8Array) => new Uint8Array(gzipSync(b)) }]] as const) {
    const path = join(dir, `v2-${codec}.parquet`);
    parquetWriteFile({ filename: path, codec, compressors, rowGroupSize: [700, 900], pageSize: 4000, columnData: [{ name: 'caption', data: texts, type: 'STRING' }] });
    files.push(path);
  }
  const repeats = Array.from({ length: 2300 }, (_, i) => `rep ${i % 40}`);
  const dictPath = join(dir, 'v2-dict.parquet');
  parquetWriteFile({ filename: dictPath, pageSize: 2000, columnData: [{ name: 'caption', data: repeats, type: 'STRING' }] });
  files.push(dictPath);
  for (const dictionary of [false, true])
    for (const codec of ['SNAPPY', 'UNCOMPRESSED'] as const) {
      const path = join(dir, `v1-${dictionary}-${codec}.parquet`);
      writeV1Parquet(path, texts, { pageRows: 300, dictionary, codec });
      files.push(path);
    }
  const some = [0, 3, 299, 300, 301, 1111, 1400, 2299];
  for (const path of files) {
    const all = await hyparquetColumn(path), column = await ParquetColumn.open(path, 'caption');
    assert.equal(column.rows, 2300, path);
    assert.deepEqual(await column.strings(all.map((_, i) => i)), all, path);
    assert.deepEqual(await column.strings(some), some.map((i) => all[i]), path);
    const streamed: string[] = [];
    for await (const run of column.runs()) for (let i = 0; i < run.start.length; i++) streamed.push(runText(run, i));
    assert.deepEqual(streamed, all, path);
  }
  // Only the pages holding the rows asked for are decoded: damage to another page goes unnoticed until its rows are asked for.
  const damaged = join(dir, 'damaged.parquet');
  const bodies = writeV1Parquet(damaged, texts, { pageRows: 300, codec: 'SNAPPY' });
  const bytes = readFileSync(damaged);
  bytes[bodies[0]] ^= 0xff;  // the first page's Snappy length header
  writeFileSync(damaged, bytes);
  const column = await ParquetColumn.open(damaged, 'caption'), expected = await hyparquetColumn(files[0]);
  assert.deepEqual(await column.strings([1500, 2299]), [expected[1500], expected[2299]]);
  await assert.rejects(column.strings([5]), (e: ConceptLensError) => e.code === 'ERR_FILE' && /damaged\.parquet: column 'caption': damaged Snappy data/.test(e.message));
});

test('text-file captions: lines as readLines splits them (BOM, CRLF, bare CR, no final newline), any line read without the rest', async () => {
  const dir = tempDir('line-file-');
  const lines = Array.from({ length: 3000 }, (_, i) => (i % 97 === 0 ? '' : `line ${i} ${'é'.repeat(i % 5)}`));
  const breaks = ['\n', '\r\n', '\r'];
  const path = join(dir, 'captions.txt');
  // (A \r before an empty line would read as \r\n, one break: that empty line gets a \n before it.)
  writeFileSync(path, '\ufeff' + lines.map((l, i) => l + (i === lines.length - 1 ? '' : lines[i + 1] === '' ? '\n' : breaks[i % 3])).join(''));
  assert.deepEqual(readLines(path), lines);
  const file = LineFile.index(path);
  assert.equal(file.lines, 3000);
  assert.deepEqual(await file.read(lines.map((_, i) => i)), lines);
  const some = [0, 1, 1023, 1024, 1025, 2047, 2048, 2999];
  assert.deepEqual(await file.read(some), some.map((i) => lines[i]));
  const streamed: string[] = [];
  for await (const run of file.runs()) for (let i = 0; i < run.start.length; i++) streamed.push(runText(run, i));
  assert.deepEqual(streamed, lines);
  // A bad byte on line 2500 stops reads of that line and bulk reads, not lookups elsewhere.
  const bad = Buffer.from(readFileSync(path));
  const at = bad.indexOf(Buffer.from('line 2500 '));
  bad[at + 2] = 0xff;
  writeFileSync(path, bad);
  const damaged = LineFile.index(path);
  assert.deepEqual(await damaged.read([5, 1500]), [lines[5], lines[1500]]);
  await assert.rejects(damaged.read([2500]), /captions\.txt: not valid UTF-8 \(the line at byte \d+\)/);
  await assert.rejects(async () => { for await (const _ of damaged.runs()); }, /captions\.txt: not valid UTF-8/);
});

test('dedupe by 128-bit caption hashes keeps the first occurrence across shards, pages and nulls, as a Set of strings would', async () => {
  const total = SIZES.reduce((a, b) => a + b, 0);
  const captions = Array.from({ length: total }, (_, i) => (i % 13 === 0 ? '' : `c ${(i * 37) % 500} ${i % 4 === 0 ? 'ü' : ''}`));
  const f = laionDir({ captions });
  const seen = new Set<string>(), firsts: number[] = [];
  captions.forEach((c, i) => seen.has(c) || (seen.add(c), firsts.push(i)));
  const v = await Vocabulary.open(f.dir, { dedupe: true });
  assert.deepEqual(Array.from(v.ids!), firsts);
  const r = await v.search(Q.flat, { k: 10, metric: 'cosine' });
  assertTopK(r, scoreTable(Q.rows, firsts.map((i) => f.rows[i]), 'cosine', firsts.map((i) => f.shardOf[i])), 10, firsts);
  assert.deepEqual(r.texts, Array.from(r.ids, (id) => captions[Number(id)]));
});

test('many queries in one pass over the shards (odd and even query blocks), read by the engine or streamed in blocks, equal brute force', async () => {
  const f = laionDir({ sizes: [900, 650] });
  for (const nq of [37, 131]) {
    const q = queries(nq, 1000 + nq);
    const direct = await Vocabulary.open(f.dir);
    const streamed = await Vocabulary.open(f.dir, { keepRows: Float64Array.from({ length: 1550 }, (_, i) => i), blockBytes: SMALL_BLOCKS });
    for (const [metric, T] of [['cosine', 0], ['ip', 0], ['cosine', 40]] as const) {
      const table = scoreTable(q.rows, f.rows, metric, f.shardOf, T);
      const a = await direct.search(q.flat, { k: 6, metric, softmaxTemperature: T });
      assertTopK(a, table, 6);
      assertTopK(await streamed.search(q.flat, { k: 6, metric, softmaxTemperature: T }), table, 6);
    }
  }
});

test('progress of the JS-side block loops is throttled to one call per 100 ms, the last always (done = total)', async () => {
  const calls: [number, number][] = [], report = throttled((done, total) => void calls.push([done, total]));
  for (let i = 1; i <= 1000; i++) report(i, 1000);  // far under 100 ms: the first call and the last
  assert.deepEqual(calls, [[1, 1000], [1000, 1000]]);
  const dir = tempDir('vocab-progress-');
  writeNpy(join(dir, 'v.npy'), Float32Array.from({ length: 4000 * D }, (_, i) => Math.sin(i)), [4000, D]);
  for (const run of [(onProgress: (d: number) => void) => Vocabulary.open(join(dir, 'v.npy'), { blockBytes: 4 * D * 10, center: true, onProgress }),
    async (onProgress: (d: number) => void) => (await Vocabulary.open(join(dir, 'v.npy'), { blockBytes: 4 * D * 10 })).toFloat32({ onProgress })]) {
    const seen: number[] = [];
    await run((done) => void seen.push(done));
    assert.ok(seen.length < 400 && seen.every((x, i) => i === 0 || x > seen[i - 1]), `${seen.length} calls for 400 blocks, ascending`);
    assert.equal(seen[seen.length - 1], 4000);
  }
});
