import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { spawnSync } from 'node:child_process';
import { createServer, type Server } from 'node:http';
import { existsSync, readdirSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import type { AddressInfo } from 'node:net';
import { REGISTRY, cacheDir, findAsset, pullAsset, sha256File, verifyAsset, type AssetEntry } from '../ts/assets-registry.js';
import { assetsDir } from '../ts/assets.js';
import { tempDir } from './helpers.js';

const mirror = assetsDir(); // read before the tests below point CONCEPTLENS_ASSETS elsewhere

/** A local server: GET /file returns `payload` (in 3 chunks), anything else 404; counts requests. */
async function serve(payload: Buffer): Promise<{ server: Server; base: string; hits: () => number }> {
  let hits = 0;
  const server = createServer((req, res) => {
    hits++;
    if (req.url !== '/file') return res.writeHead(404).end('no');
    res.writeHead(200, { 'content-length': payload.length });
    const third = Math.ceil(payload.length / 3);
    res.write(payload.subarray(0, third));
    res.write(payload.subarray(third, 2 * third));
    res.end(payload.subarray(2 * third));
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  return { server, base: `http://127.0.0.1:${(server.address() as AddressInfo).port}`, hits: () => hits };
}

function entry(url: string, payload: Buffer, sha256 = createHash('sha256').update(payload).digest('hex')): AssetEntry {
  return { name: 'test-asset', kind: 'vocabulary', file: 'test/asset.bin', url, sha256, bytes: payload.length, origin: 'test', license: 'none' };
}

test('pull downloads into the cache through a temp file, checks sha256, then serves the cached copy', async () => {
  process.env.CONCEPTLENS_CACHE = tempDir();
  process.env.CONCEPTLENS_ASSETS = tempDir(); // an empty mirror
  const payload = Buffer.from(Array.from({ length: 300_001 }, (_, i) => (i * 31) & 255));
  const { server, base, hits } = await serve(payload);
  try {
    const e = entry(`${base}/file`, payload);
    const progress: number[][] = [];
    const got = await pullAsset(e, { onProgress: (d, t) => progress.push([d, t]) });
    assert.equal(got.path, join(cacheDir(), 'test/asset.bin'));
    assert.deepEqual(readFileSync(got.path), payload);
    assert.deepEqual(progress.at(-1), [payload.length, payload.length]);
    assert.deepEqual(readdirSync(join(cacheDir(), 'test')), ['asset.bin']); // no temp file left
    assert.equal((await pullAsset(e)).source, 'cache');
    assert.equal(hits(), 1); // the verified cached copy is not fetched again

    writeFileSync(got.path, 'tampered');
    assert.equal((await verifyAsset(e))?.ok, false);
    await pullAsset(e); // a bad local copy is replaced
    assert.equal(hits(), 2);
    assert.equal((await verifyAsset(e))?.ok, true);
  } finally {
    server.close();
  }
});

test('a sha256 mismatch is an error naming both hashes, and nothing is kept', async () => {
  process.env.CONCEPTLENS_CACHE = tempDir();
  process.env.CONCEPTLENS_ASSETS = tempDir();
  const payload = Buffer.from('the real bytes');
  const { server, base } = await serve(payload);
  try {
    const wrong = '0'.repeat(64);
    const actual = createHash('sha256').update(payload).digest('hex');
    await assert.rejects(pullAsset(entry(`${base}/file`, payload, wrong)), (err: Error) =>
      err.message.includes('sha256 mismatch') && err.message.includes(wrong) && err.message.includes(actual));
    assert.ok(!existsSync(join(cacheDir(), 'test')) || readdirSync(join(cacheDir(), 'test')).length === 0);
    await assert.rejects(pullAsset(entry(`${base}/missing`, payload)), /HTTP 404/);
  } finally {
    server.close();
  }
});

test('mirror-only assets and unknown names explain themselves', async () => {
  process.env.CONCEPTLENS_ASSETS = tempDir();
  process.env.CONCEPTLENS_CACHE = tempDir();
  await assert.rejects(pullAsset(findAsset('squeezenet1.1')), /no public download.*assets mirror/);
  assert.throws(() => findAsset('clip-vit-h'), /unknown asset 'clip-vit-h' \(known: squeezenet1.1, clip-bpe/);
});

test('every registry entry matches its mirrored file (size and sha256)', async (t) => {
  if (!mirror) return t.skip('needs the assets mirror (CONCEPTLENS_ASSETS)');
  for (const e of REGISTRY) {
    const p = join(mirror, e.file);
    assert.equal(statSync(p).size, e.bytes, e.name);
    assert.equal(await sha256File(p), e.sha256, e.name);
  }
  assert.equal(new Set(REGISTRY.map((e) => e.name)).size, REGISTRY.length);
});

test('assets list says where the mirror is, and that it is missing when CONCEPTLENS_ASSETS names nothing', () => {
  const bin = join(import.meta.dirname, '..', '..', 'bin', 'conceptlens.js'), gone = join(tempDir(), 'no-mirror');
  const run = (...args: string[]) => spawnSync(process.execPath, [bin, 'assets', 'list', ...args], { encoding: 'utf8', env: { ...process.env, CONCEPTLENS_ASSETS: gone } });
  assert.deepEqual(JSON.parse(run('--json').stdout).mirror, { path: gone, found: false });
  assert.equal(run().stdout.split('\n')[0], `mirror: ${gone} (not found: set CONCEPTLENS_ASSETS to the assets mirror)`);
});
