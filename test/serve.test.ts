// The service on a real loopback port: exact answers under concurrent
// single-query load, the batcher (coalescing, per-request k and metric,
// drops, back-pressure), the error contract, the token, SpLiCE and image
// routes, the Fastify plugin under a prefix, and the CLI draining on SIGTERM.
// Batches are made deterministic with a long max delay: a batch then leaves
// only when it is full or the server drains. No assertion is about time.
import { after, test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import Fastify from 'fastify';
import sharp from 'sharp';
import { floatsToHalves, halvesToFloats } from '../ts/engine/fp16.js';
import { openImageTower } from '../ts/encoders/standin.js';
import { writeNpy } from '../ts/io/npy.js';
import { SpliceModel } from '../ts/methods/splice.js';
import { preprocessImage } from '../ts/images/preprocess.js';
import { createServer, type CreateServerOptions } from '../ts/serve/server.js';
import { conceptlensPlugin } from '../ts/serve/plugin.js';
import { bruteTopK, randn, runCli, tempDir } from './helpers.js';
import { meanPoolImageModel } from './onnx-graphs.js';

const BIN = join(import.meta.dirname, '..', '..', 'bin', 'conceptlens.js');
const D = 32, N = 3000, NAMES = Array.from({ length: N }, (_, i) => `concept ${i}`);
const VOCAB = randn(N * D, 1), QUERIES = randn(64 * D, 2);
const LONG = 60_000; // a max delay no test reaches: batches leave when full, or when the server drains

const dirs: string[] = [];
after(() => dirs.forEach((d) => rmSync(d, { recursive: true, force: true })));
const scratch = () => {
  const d = tempDir('serve-test-');
  dirs.push(d);
  return d;
};

const query = (i: number, q = QUERIES, d = D) => Array.from(q.subarray(i * d, (i + 1) * d));

interface Answer {
  status: number;
  body: any; // eslint-disable-line @typescript-eslint/no-explicit-any -- JSON answers, checked field by field
  headers: Headers;
}

/** A server on a free loopback port, closed after the file's tests. */
async function start(o: CreateServerOptions) {
  const server = await createServer({ port: 0, processMetrics: false, ...o });
  const url = await server.listen();
  let closed = false;
  const close = async () => {
    if (!closed) (closed = true), await server.close();
  };
  after(close);
  return { url, close, ...client(url) };
}

function client(url: string, token?: string) {
  const auth: Record<string, string> = token ? { authorization: `Bearer ${token}` } : {};
  const send = async (path: string, init: RequestInit = {}): Promise<Answer> => {
    const r = await fetch(url + path, { ...init, headers: { ...auth, ...(init.headers as Record<string, string>) } });
    const text = await r.text();
    return { status: r.status, body: text.startsWith('{') ? JSON.parse(text) : text, headers: r.headers };
  };
  return {
    send,
    post: (path: string, body: unknown, signal?: AbortSignal) =>
      send(path, { method: 'POST', body: JSON.stringify(body), headers: { 'content-type': 'application/json' }, signal }),
    postRows: (path: string, rows: Float32Array, nrows: number, headers: Record<string, string> = {}) =>
      send(path, { method: 'POST', body: new Uint8Array(rows.slice().buffer), headers: { 'content-type': 'application/octet-stream', 'x-rows': String(nrows), ...headers } }),
    /** A value of /metrics: the sample of `name` whose labels include `label`. */
    metric: async (name: string, label = ''): Promise<number> => {
      const text = (await send('/metrics')).body as string;
      const line = text.split('\n').find((l) => l.startsWith(name) && (l[name.length] === '{' || l[name.length] === ' ') && l.includes(label));
      return line ? Number(line.split(' ').pop()) : 0;
    },
  };
}

async function until(check: () => Promise<boolean>): Promise<void> {
  while (!(await check())) await new Promise((r) => setTimeout(r, 10));
}

/** Hits of one query equal a float64 brute force: same ids, scores to fp32 accuracy. */
function assertExact(got: { ids: number[]; scores: number[] }, q: Float32Array, v: Float32Array, d: number, k: number, cosine: boolean, what: string) {
  const want = bruteTopK(q, v, d, k, cosine);
  assert.deepEqual(got.ids, want.ids[0], `${what}: ids`);
  got.scores.forEach((s, j) => assert.ok(Math.abs(s - want.scores[0][j]) <= 1e-5 * Math.max(1, Math.abs(want.scores[0][j])), `${what}: score ${j}`));
}

const mainVocab = { name: 'main', vectors: VOCAB, dim: D, names: NAMES };

test('concurrent single-query requests coalesce into one batch and each equals brute force (ip and cosine, own k)', async () => {
  const s = await start({ vocabularies: [mainVocab], batching: { maxBatch: 24, maxDelayMs: LONG } });
  const asks = Array.from({ length: 24 }, (_, i) => ({ i, k: [1, 5, 10][i % 3], metric: i % 2 ? 'cosine' : 'ip' }));
  const answers = await Promise.all(asks.map((a) => s.post('/v1/search', { queries: [query(a.i)], k: a.k, metric: a.metric })));
  answers.forEach((r, j) => {
    const a = asks[j];
    assert.equal(r.status, 200, JSON.stringify(r.body));
    assert.deepEqual(r.body.texts[0], r.body.ids[0].map((id: number) => NAMES[id]));
    assertExact({ ids: r.body.ids[0], scores: r.body.scores[0] }, QUERIES.subarray(a.i * D, (a.i + 1) * D), VOCAB, D, a.k, a.metric === 'cosine', `request ${j}`);
  });
  assert.equal(await s.metric('conceptlens_batch_size_count', 'search:main'), 1);
  assert.equal(await s.metric('conceptlens_batch_size_sum', 'search:main'), 24);
});

test('float32 bodies answer as JSON does; vocabularies by name; fp16 storage scores its rounded rows', async () => {
  const half = randn(500 * 16, 3), q16 = randn(3 * 16, 4);
  const s = await start({ vocabularies: [mainVocab, { name: 'half', vectors: half, dim: 16, storage: 'fp16' }], batching: { maxDelayMs: 1 } });
  const json = await s.post('/v1/search', { queries: [query(0), query(1)], k: 4, vocab: 'main', texts: false });
  const bin = await s.postRows('/v1/search?k=4&vocab=main&texts=false', QUERIES.subarray(0, 2 * D), 2);
  assert.equal(bin.status, 200);
  assert.deepEqual(bin.body, json.body);
  assert.equal(json.body.texts, undefined);
  const r = await s.post('/v1/search', { queries: [query(0, q16, 16), query(1, q16, 16), query(2, q16, 16)], k: 6, vocab: 'half', metric: 'cosine' });
  const rounded = halvesToFloats(floatsToHalves(half));
  for (let i = 0; i < 3; i++)
    assertExact({ ids: r.body.ids[i], scores: r.body.scores[i] }, q16.subarray(i * 16, (i + 1) * 16), rounded, 16, 6, true, `fp16 query ${i}`);
  assert.equal(r.body.texts, undefined); // this vocabulary has no names
});

test('bad input gets 400 (or 413/415/404/501) with {error: {code, message}} naming the field', async () => {
  const s = await start({ vocabularies: [mainVocab], limits: { bodyBytes: 64 * 1024, maxRows: 8, maxK: 100 } });
  const expect = async (p: Promise<Answer>, status: number, code: string, field: RegExp) => {
    const r = await p;
    assert.equal(r.status, status, JSON.stringify(r.body));
    assert.equal(r.body.error.code, code);
    assert.match(r.body.error.message, field);
  };
  const q = query(0), nan = QUERIES.slice(0, D);
  nan[5] = NaN;
  await expect(s.post('/v1/search', { queries: [q.slice(1)] }), 400, 'ERR_SHAPE', /^queries\[0\]: expected 32 values .*got 31/);
  await expect(s.send('/v1/search', { method: 'POST', body: '{"queries": [[1, 2', headers: { 'content-type': 'application/json' } }), 400, 'ERR_JSON', /^body: /);
  await expect(s.post('/v1/search', { queries: [[...q.slice(1), null]] }), 400, 'ERR_ARG', /^queries\[0\]\[31\]: must be number/);
  await expect(s.postRows('/v1/search', nan, 1), 400, 'ERR_NAN', /^queries: row 0, column 5 is NaN/);
  await expect(s.postRows('/v1/search', nan.subarray(1), 1), 400, 'ERR_SHAPE', /^queries: expected 1 rows × 32 .* = 128 bytes, got 124/);
  await expect(s.send('/v1/search', { method: 'POST', body: Buffer.alloc(128), headers: { 'content-type': 'application/octet-stream' } }), 400, 'ERR_ARG', /^x-rows header/);
  await expect(s.post('/v1/search', { queries: [q], k: 0 }), 400, 'ERR_ARG', /^k: must be >= 1/);
  await expect(s.post('/v1/search', { queries: [q], k: 101 }), 400, 'ERR_ARG', /^k: must be <= 100/);
  await expect(s.post('/v1/search', { queries: [q], k: 2.5 }), 400, 'ERR_ARG', /^k: must be integer/);
  await expect(s.post('/v1/search', { queries: [q], metric: 'l2' }), 400, 'ERR_ARG', /^metric: .*\(ip, cosine\)/);
  await expect(s.post('/v1/search', { queries: [q], vocab: 'nope' }), 400, 'ERR_ARG', /^vocab: expected one of 'main', got 'nope'/);
  await expect(s.post('/v1/search', { queries: [q], kk: 3 }), 400, 'ERR_ARG', /^body: .*additional properties \('kk'\)/);
  await expect(s.post('/v1/search', { k: 3 }), 400, 'ERR_ARG', /^queries: must have required property/);
  await expect(s.post('/v1/search', { queries: Array(9).fill(q) }), 400, 'ERR_ARG', /^queries: must NOT have more than 8 items/);
  await expect(s.post('/v1/search', { queries: [Array(8000).fill(0.123456789)] }), 413, 'ERR_TOO_LARGE', /^body: /);
  await expect(s.send('/v1/search', { method: 'POST', body: 'hello', headers: { 'content-type': 'text/plain' } }), 415, 'ERR_MEDIA_TYPE', /^content-type: /);
  await expect(s.send('/v1/nope'), 404, 'ERR_NOT_FOUND', /GET \/v1\/nope/);
  await expect(s.send('/v1/nope', { method: 'POST', body: '{bad', headers: { 'content-type': 'application/json' } }), 404, 'ERR_NOT_FOUND', /POST \/v1\/nope/);
  await expect(s.post('/v1/search', { queries: [[...q.slice(1), 1e39]] }), 400, 'ERR_ARG', /^queries\[0\]\[31\]: expected a value within float32's range .*got 1e\+39/);
  await expect(s.post('/v1/splice/decompose', { embeddings: [q] }), 501, 'ERR_NOT_CONFIGURED', /SpLiCE/);
  await expect(s.send('/v1/embed/image', { method: 'POST', body: Buffer.alloc(4), headers: { 'content-type': 'image/png' } }), 501, 'ERR_NOT_CONFIGURED', /model/);
  assert.equal((await s.post('/v1/search', { queries: [q], k: 3 })).status, 200, 'the server still answers');
  assert.equal(await s.metric('conceptlens_errors_total', 'code="ERR_SHAPE"'), 2);
});

test('with a token every route but /health needs Authorization: Bearer (401 otherwise)', async () => {
  const s = await start({ vocabularies: [mainVocab], token: 's3cret' });
  const body = JSON.stringify({ queries: [query(0)] });
  const search = (authorization?: string) =>
    s.send('/v1/search', { method: 'POST', body, headers: { 'content-type': 'application/json', ...(authorization ? { authorization } : {}) } });
  for (const bad of [undefined, 'Bearer wrong', 'Bearer s3cret2', 'Basic czNjcmV0', 's3cret']) {
    const r = await search(bad);
    assert.equal(r.status, 401, String(bad));
    assert.equal(r.body.error.code, 'ERR_AUTH');
    assert.equal(r.headers.get('www-authenticate'), 'Bearer');
  }
  assert.equal((await search('Bearer s3cret')).status, 200);
  for (const path of ['/metrics', '/ready', '/openapi.json', '/no-such-route']) assert.equal((await s.send(path)).status, 401, path);
  assert.equal((await s.send('/health')).status, 200);
  assert.equal((await client(s.url, 's3cret').send('/metrics')).status, 200);
});

test('a full queue answers 503 with Retry-After, not a crash; closing answers every accepted request', async () => {
  const s = await start({ vocabularies: [mainVocab], batching: { maxBatch: 64, maxDelayMs: LONG, maxQueue: 3 }, limits: { maxRows: 3 } });
  const accepted = [0, 1, 2].map((i) => s.post('/v1/search', { queries: [query(i)], k: 3 }));
  await until(async () => (await s.send('/ready')).status === 503);
  for (const rows of [1, 3]) {
    const r = await s.post('/v1/search', { queries: Array(rows).fill(query(3)) });
    assert.equal(r.status, 503);
    assert.equal(r.body.error.code, 'ERR_OVERLOADED');
    assert.ok(Number(r.headers.get('retry-after')) >= 1);
  }
  await s.close(); // drains: the waiting batch leaves at once
  (await Promise.all(accepted)).forEach((r, i) => {
    assert.equal(r.status, 200);
    assertExact({ ids: r.body.ids[0], scores: r.body.scores[0] }, QUERIES.subarray(i * D, (i + 1) * D), VOCAB, D, 3, false, `accepted ${i}`);
  });
});

test('under pressure (here: any heap at all) requests get 503 with Retry-After while /health answers', async () => {
  const s = await start({ vocabularies: [mainVocab], underPressure: { maxHeapUsedBytes: 1 }, batching: { maxDelayMs: 0 } });
  const search = () => s.post('/v1/search', { queries: [query(0)] });
  await until(async () => (await search()).status === 503); // pressure is sampled once a second
  const r = await search();
  assert.equal(r.status, 503);
  assert.equal(r.body.error.code, 'ERR_OVERLOADED');
  assert.ok(Number(r.headers.get('retry-after')) >= 1);
  assert.equal((await s.send('/health')).status, 200);
});

test('a client that disconnects is dropped from its batch without disturbing the others', async () => {
  const s = await start({ vocabularies: [mainVocab], batching: { maxBatch: 3, maxDelayMs: LONG } });
  const depth = () => s.metric('conceptlens_queue_depth', 'search:main');
  const gone = new AbortController();
  const dropped = s.post('/v1/search', { queries: [query(9)] }, gone.signal);
  await until(async () => (await depth()) === 1);
  gone.abort();
  await assert.rejects(dropped, { name: 'AbortError' });
  await until(async () => (await depth()) === 0);
  // A client that leaves once its batch has left the queue: the batch runs on, the others get their answers.
  const late = new AbortController();
  const leaving = s.post('/v1/search', { queries: [query(10)] }, late.signal);
  await until(async () => (await depth()) === 1);
  const stay = [11, 12].map((i) => s.post('/v1/search', { queries: [query(i)], k: 7 }));
  await until(async () => (await depth()) === 0);
  late.abort();
  await leaving.catch(() => undefined);
  (await Promise.all(stay)).forEach((r, j) =>
    assertExact({ ids: r.body.ids[0], scores: r.body.scores[0] }, QUERIES.subarray((11 + j) * D, (12 + j) * D), VOCAB, D, 7, false, `stayed ${j}`));
  assert.equal(await s.metric('conceptlens_batch_size_sum', 'search:main'), 3, 'the dropped request never reached a batch');
});

test('SpLiCE: each row as the model decomposes it, several λ in one batch, JSON or float32', async () => {
  const d = 16, c = 40, names = Array.from({ length: c }, (_, j) => `c${j}`);
  const model = SpliceModel.fromEmbeddings(names, randn(c * d, 5), d, randn(d, 6, 0.1), { l1: 0.1 });
  const emb = randn(4 * d, 7), row = (i: number) => Array.from(emb.subarray(i * d, (i + 1) * d));
  const s = await start({ splice: { model }, batching: { maxBatch: 4, maxDelayMs: LONG } });
  const asks = [{ rows: [0, 1], l1: undefined }, { rows: [2], l1: 0.05 }, { rows: [3], l1: 0.1 }];
  const answers = await Promise.all(asks.map((a) => s.post('/v1/splice/decompose', { embeddings: a.rows.map(row), l1: a.l1, top: 5 })));
  assert.equal(await s.metric('conceptlens_batch_size_count', 'splice'), 1);
  for (const [j, a] of asks.entries()) {
    assert.equal(answers[j].status, 200, JSON.stringify(answers[j].body));
    for (const [r, i] of a.rows.entries()) {
      const want = await model.encode(emb.subarray(i * d, (i + 1) * d), { l1: a.l1 ?? 0.1 });
      const got = answers[j].body.decompositions[r];
      assert.equal(got.l0, want.l0[0]);
      assert.ok(Math.abs(got.cosine - want.cosine[0]) < 1e-6);
      assert.deepEqual(got.concepts.map((x: { concept: string }) => x.concept), model.topConcepts(want.weights, 5).map((x) => x.concept));
      got.concepts.forEach((x: { index: number; weight: number }) => assert.ok(Math.abs(x.weight - want.weights[x.index]) < 1e-5));
    }
  }
  const [bin, json] = await Promise.all([
    s.postRows('/v1/splice/decompose?top=5', emb.subarray(0, 2 * d), 2),
    s.post('/v1/splice/decompose', { embeddings: [row(0), row(1)], top: 5 }),
  ]);
  assert.equal(bin.status, 200);
  assert.deepEqual(json.body, bin.body);
});

test('images: embed and explain through an ONNX model; an image that does not decode fails alone', async () => {
  const dir = scratch(), onnx = join(dir, 'image.onnx');
  writeFileSync(onnx, meanPoolImageModel(16, 16));
  const concepts = Float32Array.from([1, 0, 0, 0, 1, 0, 0, 0, 1, 1, 1, 0, 0, 1, 1, 1, 0, 1]);
  const model = SpliceModel.fromEmbeddings(['red', 'green', 'blue', 'yellow', 'cyan', 'magenta'], concepts, 3, new Float32Array(3), { l1: 0.01 });
  const s = await start({
    vocabularies: [{ name: 'colours', vectors: concepts, dim: 3, names: ['red', 'green', 'blue', 'yellow', 'cyan', 'magenta'] }],
    splice: { model }, model: { path: onnx, maxBatch: 3 }, batching: { maxDelayMs: LONG },
  });
  const png = (r: number, g: number, b: number) => sharp({ create: { width: 24, height: 20, channels: 3, background: { r, g, b } } }).png().toBuffer();
  const images = [await png(250, 20, 10), Buffer.from('not an image'), await png(10, 20, 250)];
  const answers = await Promise.all(images.map((body) => s.send('/v1/embed/image', { method: 'POST', body, headers: { 'content-type': 'image/png' } })));
  assert.equal(await s.metric('conceptlens_batch_size_count', 'image'), 1);
  assert.equal(answers[1].status, 400);
  assert.equal(answers[1].body.error.code, 'ERR_FILE');
  assert.match(answers[1].body.error.message, /^image: /);
  const tower = await openImageTower({ model: onnx });
  try {
    for (const i of [0, 2]) {
      const want = await tower.encode(await preprocessImage(images[i], tower.preprocess), [1, 3, 16, 16]);
      assert.equal(answers[i].status, 200);
      answers[i].body.embedding.forEach((v: number, t: number) => assert.ok(Math.abs(v - want.data[t]) < 1e-6));
    }
  } finally {
    await tower.close();
  }
  // Explain: one image queues alone, so let the batches go at once by draining after the request is in.
  const explained = s.send('/v1/explain/image?top=3&k=2', { method: 'POST', body: images[0], headers: { 'content-type': 'image/png' } });
  await until(async () => (await s.metric('conceptlens_queue_depth', 'image')) === 1);
  await s.close();
  const r = await explained;
  assert.equal(r.status, 200, JSON.stringify(r.body));
  assert.equal(r.body.nearest.vocab, 'colours');
  assert.equal(r.body.nearest.texts[0][0], 'red');
  assert.equal(r.body.decomposition.concepts[0].concept, 'red');
  assert.equal(r.body.embedding.length, 3);
  // Without a SpLiCE model or a vocabulary, options for them are refused rather than ignored.
  const bare = await start({ model: { path: onnx } });
  for (const [query, message] of [['l1=0.5', /^l1: this server has no SpLiCE model/], ['vocab=colours', /^vocab: this server has no vocabulary/]] as const) {
    const x = await bare.send(`/v1/explain/image?${query}`, { method: 'POST', body: images[0], headers: { 'content-type': 'image/png' } });
    assert.equal(x.status, 400, JSON.stringify(x.body));
    assert.match(x.body.error.message, message);
  }
  assert.equal((await bare.send('/v1/explain/image', { method: 'POST', body: images[0], headers: { 'content-type': 'image/png' } })).status, 200);
  await bare.close();
});

test('/ready, /metrics and the OpenAPI document', async () => {
  const s = await start({ vocabularies: [mainVocab], batching: { maxDelayMs: 0 } });
  assert.equal((await s.post('/v1/search', { queries: [query(0)] })).status, 200);
  const ready = await s.send('/ready');
  assert.deepEqual(ready.body.vocabularies, [{ name: 'main', rows: N, dim: D, texts: true }]);
  const metrics = (await s.send('/metrics')).body as string;
  for (const name of ['conceptlens_requests_total', 'conceptlens_request_duration_seconds_bucket', 'conceptlens_batch_size_bucket',
    'conceptlens_queue_depth', 'conceptlens_queue_wait_seconds_bucket', 'conceptlens_errors_total', 'conceptlens_dropped_total'])
    assert.ok(metrics.includes(name), name);
  const doc = (await s.send('/openapi.json')).body;
  assert.match(doc.openapi, /^3\./);
  for (const path of ['/v1/search', '/v1/splice/decompose', '/v1/embed/image', '/v1/explain/image', '/health', '/ready', '/metrics'])
    assert.ok(doc.paths[path], path);
  assert.ok(doc.paths['/v1/search'].post.requestBody.content['application/octet-stream']);
});

test('the Fastify plugin mounts the routes under a prefix in an app of one\'s own', async () => {
  const app = Fastify();
  app.get('/hello', async () => ({ hello: 'world' }));
  await app.register(conceptlensPlugin, { prefix: '/lens', vocabularies: [mainVocab], processMetrics: false, batching: { maxDelayMs: 0 } });
  await app.listen({ host: '127.0.0.1', port: 0 });
  after(() => app.close());
  const c = client(`http://127.0.0.1:${(app.server.address() as { port: number }).port}`);
  assert.deepEqual((await c.send('/hello')).body, { hello: 'world' });
  const r = await c.post('/lens/v1/search', { queries: [query(5)], k: 4, metric: 'cosine' });
  assertExact({ ids: r.body.ids[0], scores: r.body.scores[0] }, QUERIES.subarray(5 * D, 6 * D), VOCAB, D, 4, true, 'plugin');
  assert.equal((await c.send('/lens/health')).status, 200);
  assert.equal((await c.post('/lens/v1/search', { queries: [[1]] })).body.error.code, 'ERR_SHAPE');
});

test('serve CLI: a config file with two vocabularies; SIGTERM drains every accepted request, then exits 0', async () => {
  const dir = scratch(), small = randn(300 * 8, 8), smallQ = randn(2 * 8, 9);
  writeNpy(join(dir, 'main.npy'), VOCAB, [N, D]);
  writeNpy(join(dir, 'small.npy'), small, [300, 8]);
  writeFileSync(join(dir, 'names.txt'), NAMES.join('\n') + '\n');
  writeFileSync(join(dir, 'serve.json'), JSON.stringify({
    vocabularies: [{ name: 'main', path: 'main.npy', names: 'names.txt' }, { name: 'small', path: 'small.npy' }],
    batching: { maxBatch: 64, maxDelayMs: LONG },
  }));
  const child = spawn(process.execPath, [BIN, 'serve', '--config', join(dir, 'serve.json'), '--port', '0'],
    { env: { ...process.env, CONCEPTLENS_TOKEN: 'tok' }, stdio: ['ignore', 'pipe', 'pipe'] });
  let stdout = '', stderr = '';
  child.stdout.on('data', (b) => (stdout += b));
  child.stderr.on('data', (b) => (stderr += b));
  const exited = new Promise<number | null>((resolve) => child.on('exit', resolve));
  await until(async () => /listening on/.test(stdout) || child.exitCode !== null);
  const url = /listening on (http:\/\/127\.0\.0\.1:\d+)/.exec(stdout)?.[1];
  assert.ok(url, `stdout: ${stdout}\nstderr: ${stderr}`);
  const c = client(url, 'tok');
  const mains = [0, 1, 2].map((i) => c.post('/v1/search', { queries: [query(i)], k: 5, vocab: 'main' }));
  const smalls = [0, 1].map((i) => c.post('/v1/search', { queries: [query(i, smallQ, 8)], k: 3, vocab: 'small', metric: 'cosine' }));
  await until(async () => (await c.metric('conceptlens_queue_depth', 'search:main')) + (await c.metric('conceptlens_queue_depth', 'search:small')) === 5);
  child.kill('SIGTERM');
  (await Promise.all(mains)).forEach((r, i) => {
    assert.equal(r.status, 200);
    assert.deepEqual(r.body.texts[0], r.body.ids[0].map((id: number) => NAMES[id]));
    assertExact({ ids: r.body.ids[0], scores: r.body.scores[0] }, QUERIES.subarray(i * D, (i + 1) * D), VOCAB, D, 5, false, `main ${i}`);
  });
  (await Promise.all(smalls)).forEach((r, i) =>
    assertExact({ ids: r.body.ids[0], scores: r.body.scores[0] }, smallQ.subarray(i * 8, (i + 1) * 8), small, 8, 3, true, `small ${i}`));
  assert.equal(await exited, 0, stderr);
  assert.match(stderr, /SIGTERM: draining[\s\S]*drained/);
  await assert.rejects(fetch(`${url}/health`), 'no longer listening');
});

test('configuration errors name the option (library and CLI)', async () => {
  await assert.rejects(createServer({}), /options: expected at least one vocabulary/);
  await assert.rejects(createServer({ vocabularies: [mainVocab], batching: { maxQueue: 2 } }), /batching\.maxQueue: expected at least limits\.maxRows \(256\)/);
  await assert.rejects(createServer({ vocabularies: [mainVocab], batching: { maxDelayMs: -1 } }), /batching\.maxDelayMs: must be >= 0/);
  await assert.rejects(createServer({ vocabularies: [mainVocab, mainVocab] }), /vocabularies\[1\]\.name: expected a name no other vocabulary has, got 'main'/);
  await assert.rejects(createServer({ vocabularies: [mainVocab], token: '' }), /token: expected a non-empty string/);
  // A misspelt option is refused, not ignored: 'tokn' would have served without authentication.
  await assert.rejects(createServer({ vocabularies: [mainVocab], tokn: 'secret' } as never), { code: 'ERR_ARG', message: /^options: unknown option 'tokn' \(known: vocabularies, .*token/ });
  await assert.rejects(createServer({ vocabularies: [{ ...mainVocab, nmes: 'n.txt' }] } as never), { code: 'ERR_ARG', message: /^vocabularies 'main': unknown option 'nmes'/ });
  await assert.rejects(createServer({ vocabularies: [{ ...mainVocab, storage: 'int8' }] } as never), { code: 'ERR_ARG', message: /vocabularies 'main'\.storage: expected 'fp32' or 'fp16', got 'int8'/ });
  const r = await runCli(['serve', '--vocab', 'v.npy', '--concepts', 'c.npy']);
  assert.equal(r.code, 2);
  assert.match(r.stderr, /--concept-names and --image-mean/);
  const bad = scratch();
  writeFileSync(join(bad, 'serve.json'), JSON.stringify({ vocabularies: [{ name: 'v', path: 'v.npy' }], batching: { maxBatch: 0 } }));
  const c = await runCli(['serve', '--config', join(bad, 'serve.json')]);
  assert.equal(c.code, 1);
  assert.match(c.stderr, /serve\.json: batching\.maxBatch: must be >= 1/);
  // A flag's value out of a range the library checks is named as the flag; nothing to serve, or an unknown host, is said so.
  writeNpy(join(bad, 'v.npy'), new Float32Array(4 * 8).fill(0.5), [4, 8]);
  for (const [args, code, message] of [
    [['--vocab', join(bad, 'v.npy'), '--max-queue', '10'], 2, /^error: --max-queue: expected at least limits\.maxRows \(256\)/],
    [[], 2, /^error: nothing to serve: give --vocab/],
    [['--vocab', join(bad, 'v.npy'), '--host', 'no-such-host.invalid'], 1, /^error: host, port: cannot listen on no-such-host\.invalid:0 \(no such host\)/],
  ] as const) {
    const x = await runCli(['serve', '--port', '0', ...args]);
    assert.equal(x.code, code, x.stderr);
    assert.match(x.stderr, message);
  }
});
