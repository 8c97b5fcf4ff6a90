import { test } from 'node:test';
import assert from 'node:assert/strict';
import { writeFileSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { parseNpy, readNpy, readNpyHeader, readNpyRows, writeNpy, npyBytes } from '../ts/io/npy.js';
import { tempDir } from './helpers.js';

test('npy round trip for every dtype, with row-range reads', () => {
  const dir = tempDir();
  const cases = [
    new Float32Array([1.5, -2, 3, 4, 5, 6]),
    new Uint16Array([0x3c00, 0x4000, 0xc000, 0, 1, 0x7bff]),
    new Int32Array([1, -2, 3, -4, 5, -6]),
    new BigInt64Array([1n, -2n, 3n, 4n, 5n, 2n ** 40n]),
    new Float64Array([0.1, 0.2, 0.3, 0.4, 0.5, 0.6]),
  ];
  for (const data of cases) {
    const p = join(dir, `${data.constructor.name}.npy`);
    writeNpy(p, data, [3, 2]);
    const back = readNpy(p);
    assert.deepEqual(back.shape, [3, 2]);
    assert.deepEqual(Array.from(back.data as ArrayLike<unknown>), Array.from(data as ArrayLike<unknown>));
    const h = readNpyHeader(p);
    assert.equal(h.dataOffset % 64, 0, 'data is 64-byte aligned like numpy writes it');
    assert.deepEqual(Array.from(readNpyRows(h, 1, 2) as ArrayLike<unknown>), Array.from(data.slice(2, 6) as ArrayLike<unknown>));
    // Rows past the end are a bad range, not a truncated file; a negative size is no shape.
    assert.throws(() => readNpyRows(h, 2, 2), { code: 'ERR_ARG', message: /^rows: expected a range within the 3 rows of .*, got '2\.\.4'$/ });
    assert.throws(() => readNpyRows(h, -1, 1), { code: 'ERR_ARG', message: /^rows: expected a range within the 3 rows/ });
    assert.throws(() => readNpyRows(h, 0, -1), { code: 'ERR_ARG', message: /^rows: expected a range within the 3 rows of .*, got '0\.\.-1'$/ });
    assert.throws(() => writeNpy(p, data, [-3, -2]), { code: 'ERR_ARG', message: /^shape: expected integer sizes >= 0, got -3$/ });
    // Bytes already in memory: aligned (a view of them) or one byte off (a copy), and cut short.
    const bytes = readFileSync(p), shifted = new Uint8Array(bytes.length + 1);
    shifted.set(bytes, 1);
    for (const at of [new Uint8Array(bytes), shifted.subarray(1)]) {
      const parsed = parseNpy(p, at);
      assert.deepEqual(parsed.shape, [3, 2]);
      assert.deepEqual(Array.from(parsed.data as ArrayLike<unknown>), Array.from(data as ArrayLike<unknown>));
    }
    assert.throws(() => parseNpy(p, bytes.subarray(0, bytes.length - 1)), /truncated: shape \[3, 2\]/);
  }
});

test('npy header written the way numpy parses it', () => {
  const b = npyBytes(new Float32Array(6), [2, 3]);
  const text = b.toString('latin1', 10, 10 + b.readUInt16LE(8));
  assert.match(text, /^\{'descr': '<f4', 'fortran_order': False, 'shape': \(2, 3\), \} *\n$/);
});

test('npy: Fortran order, truncation, bad magic, unsupported dtype and missing files are named errors', () => {
  const dir = tempDir();
  const good = npyBytes(new Float32Array(6), [2, 3]);
  const fortran = Buffer.from(good.toString('latin1').replace("'fortran_order': False", "'fortran_order': True "), 'latin1');
  writeFileSync(join(dir, 'f.npy'), fortran);
  assert.throws(() => readNpy(join(dir, 'f.npy')), /f\.npy: array is in Fortran order; expected C order/);
  writeFileSync(join(dir, 't.npy'), good.subarray(0, good.length - 5));
  assert.throws(() => readNpy(join(dir, 't.npy')), /t\.npy: truncated: shape \[2, 3\] float32 needs \d+ bytes, file has \d+/);
  writeFileSync(join(dir, 'm.npy'), Buffer.from('hello world, not numpy'));
  assert.throws(() => readNpy(join(dir, 'm.npy')), /m\.npy: not a \.npy file/);
  const big = Buffer.from(good.toString('latin1').replace("'<f4'", "'>f4'"), 'latin1');
  writeFileSync(join(dir, 'b.npy'), big);
  assert.throws(() => readNpy(join(dir, 'b.npy')), /unsupported dtype '>f4'/);
  assert.throws(() => readNpy(join(dir, 'missing.npy')), /missing\.npy: no such file or directory/);
});

test('npy reads the real fp16 Detic embeddings', (t) => {
  const p = join(process.env.CONCEPTLENS_ASSETS ?? '../shared/assets', 'embeddings/detic/coco_clip_a+cname.npy');
  let raw: Buffer;
  try {
    raw = readFileSync(p);
  } catch {
    t.skip(`assets not found at ${p}`);
    return;
  }
  const a = readNpy(p);
  assert.equal(a.dtype, 'float16');
  assert.deepEqual(a.shape, [80, 512]);
  assert.equal((a.data as Uint16Array).byteLength, raw.length - readNpyHeader(p).dataOffset);
});
