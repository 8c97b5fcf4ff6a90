// Bad input across every command family, class by class (issue 15's
// reliability classes): no crash, no silent wrong answer, nothing destroyed,
// clear errors. Each case runs the CLI as `conceptlens …` would (in process),
// and asserts the exit code (2 usage, 1 failure), that the message names the
// argument or file with what was expected and found, and that outputs written
// before the failing run are byte-identical after it.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, mkdirSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { spawnSync } from 'node:child_process';
import { readNpy, writeNpy } from '../ts/io/npy.js';
import { floatsToHalves } from '../ts/engine/fp16.js';
import { accuracy, toSparse } from '../ts/methods/cbm.js';
import { assetsDir } from '../ts/assets.js';
import { writeSyntheticLaion } from '../ts/methods/falcon/synthetic.js';
import { buildIndex, exactSearch, ImageEncoder, solveSplice, trainSae } from '../ts/index.js';
import { mergeTopK } from '../ts/distributed/search.js';
import { Vocabulary } from '../ts/retrieval/vocabulary.js';
import { randn, runCli, tempDir, cliOk, fileSnapshot } from './helpers.js';

/** Runs the CLI, expecting it to fail with `code`, and returns stderr, which must match every pattern. */
async function fails(args: string[], code: 1 | 2, ...patterns: RegExp[]): Promise<string> {
  const r = await runCli(args);
  assert.equal(r.code, code, `exit ${r.code} (expected ${code}) for ${args.join(' ')}\n${r.stderr}`);
  for (const p of patterns) assert.match(r.stderr, p);
  assert.doesNotMatch(r.stderr, /Usage:|    at /, 'one error line: no usage dump, no stack');
  return r.stderr;
}


const BIN = join(import.meta.dirname, '..', '..', 'bin', 'conceptlens.js');
const D = 16;

/** Concept probabilities, activations that are sums of two concepts, names, labels: a small LE problem on disk. */
function leFiles(dir: string, n = 200, c = 12, units = 3) {
  const P = Float32Array.from(randn(n * c, 1), (v) => 1 / (1 + Math.exp(-3 * v)));
  const A = new Float32Array(n * units);
  for (let i = 0; i < n; i++) for (let u = 0; u < units; u++) A[i * units + u] = P[i * c + u] + 0.5 * P[i * c + u + 3] + 0.01 * Math.sin(i + u);
  writeNpy(join(dir, 'P.npy'), P, [n, c]);
  writeNpy(join(dir, 'A.npy'), A, [n, units]);
  writeFileSync(join(dir, 'names.txt'), Array.from({ length: c }, (_, k) => `concept ${k}`).join('\n') + '\n');
  return { P, A, n, c, units };
}

test('0-row inputs and absurd sizes are refused with what they need, never a crash', async () => {
  const dir = tempDir();
  writeNpy(join(dir, 'C.npy'), randn(20 * D, 2), [20, D]);
  writeNpy(join(dir, 'Z0.npy'), new Float32Array(0), [0, D]);
  for (const extra of [[], ['--raw'], ['--solver', 'fista']])
    await fails(['splice', 'path', '--embeddings', join(dir, 'Z0.npy'), '--concepts', join(dir, 'C.npy'), '--target-l0', '3', ...extra], 1,
      /samples: has 0 rows; a path needs at least one sample/);
  await fails(['splice', 'path', '--embeddings', join(dir, 'C.npy'), '--concepts', join(dir, 'C.npy'), '--target-l0', '3', '--l0-tol', '0'], 2,
    /--l0-tol: expected a finite number > 0, got '0'/);
  writeNpy(join(dir, 'X.npy'), randn(64 * D, 3), [64, D]);
  await fails(['sae', 'train', '--features', join(dir, 'X.npy'), '--out', join(dir, 'sae'), '--expansion', '1000000000', '--epochs', '1'], 1,
    /an SAE with d = 16, m = 16000000000 and batch 4096 needs [\d.]+ GiB; this machine has [\d.]+ GiB/);
  await fails(['embed', '--standin', '--images', dir, '--out', join(dir, 'e.npy'), '--threads', '1e9'], 2,
    /--threads: expected an integer in 1\.\.1024, got '1e9'/);
  // A model file that is not there is named by its option before anything runs.
  for (const args of [['embed', '--model', join(dir, 'none.onnx'), '--images', dir, '--out', join(dir, 'e.npy')],
    ['splice', 'images', '--model', dir, '--images', dir, '--concepts', join(dir, 'C.npy'), '--concept-names', join(dir, 'n.txt'), '--l1', '0.2', '--out', join(dir, 's')]])
    await fails(args, 2, new RegExp(`--model: expected an existing file, got '${dir}(/none\\.onnx)?' \\((no such file|not a file)\\)`));
  assert.ok(!existsSync(join(dir, 'sae')), 'nothing written by the refused runs');
});

test('a matrix whose width does not fit its partner is an error, never a reshape', async () => {
  const dir = tempDir();
  writeNpy(join(dir, 'X.npy'), randn(256 * 32, 4), [256, 32]);
  await cliOk(['sae', 'train', '--features', join(dir, 'X.npy'), '--out', join(dir, 'sae'), '--expansion', '2', '--epochs', '1', '--batch', '64']);
  writeNpy(join(dir, 'V.npy'), randn(200 * 16, 5), [200, 16]);
  writeFileSync(join(dir, 'names.txt'), Array.from({ length: 200 }, (_, i) => `w${i}`).join('\n'));
  await fails(['sae', 'name', '--checkpoint', join(dir, 'sae'), '--vocab', join(dir, 'V.npy'), '--names', join(dir, 'names.txt')], 1,
    /vocabulary .*V\.npy: expected 32 columns \(the SAE's width in .*sae\), got 16/);
  writeNpy(join(dir, 'Q.npy'), randn(3 * 8, 6), [3, 8]);
  await fails(['search', '--vocab', join(dir, 'V.npy'), '--queries', join(dir, 'Q.npy'), '--k', '2', '--out', join(dir, 'r')], 1,
    /queries .*Q\.npy: expected 16 columns \(the dimension of the vocabulary .*V\.npy\), got 8/);
});

test('NaN or Inf in activations, concepts, image means and labels is an error naming the file, row and column', async () => {
  const dir = tempDir(), { P, A, n, c, units } = leFiles(dir);
  A[17 * units + 2] = NaN;
  writeNpy(join(dir, 'A_nan.npy'), A, [n, units]);
  await fails(['le', 'explain', '--activations', join(dir, 'A_nan.npy'), '--concepts', join(dir, 'P.npy'), '--concept-names', join(dir, 'names.txt'),
    '--out', join(dir, 'le.csv')], 1, /activations .*A_nan\.npy: row 17, column 2 is NaN; expected finite values/);
  P[5 * c + 4] = Infinity;
  writeNpy(join(dir, 'P_inf.npy'), P, [n, c]);
  await fails(['le', 'explain', '--activations', join(dir, 'A.npy'), '--concepts', join(dir, 'P_inf.npy'), '--concept-names', join(dir, 'names.txt'),
    '--out', join(dir, 'le.csv')], 1, /concepts .*P_inf\.npy: row 5, column 4 is Infinity/);
  writeNpy(join(dir, 'Z.npy'), randn(4 * D, 7), [4, D]);
  writeNpy(join(dir, 'C.npy'), randn(20 * D, 8), [20, D]);
  const mean = randn(D, 9);
  mean[3] = NaN;
  writeNpy(join(dir, 'mean.npy'), mean, [D]);
  await fails(['splice', 'decompose', '--embeddings', join(dir, 'Z.npy'), '--concepts', join(dir, 'C.npy'), '--image-mean', join(dir, 'mean.npy'),
    '--l1', '0.1', '--out', join(dir, 'W.npy')], 1, /image mean .*mean\.npy: row 0, column 3 is NaN/);
  writeNpy(join(dir, 'y.npy'), Float32Array.from({ length: n }, (_, i) => (i === 9 ? NaN : i % 2)), [n]);
  writeNpy(join(dir, 'head_W.npy'), randn(2 * units, 10), [2, units]);
  writeNpy(join(dir, 'head_b.npy'), new Float32Array(2), [2]);
  await cliOk(['le', 'explain', '--activations', join(dir, 'A.npy'), '--concepts', join(dir, 'P.npy'), '--concept-names', join(dir, 'names.txt'),
    '--out', join(dir, 'le.csv'), '--quiet']);
  await fails(['le', 'ablate', '--explanations', join(dir, 'le.csv'), '--concepts', join(dir, 'P.npy'), '--concept-names', join(dir, 'names.txt'),
    '--activations', join(dir, 'A.npy'), '--head-weight', join(dir, 'head_W.npy'), '--head-bias', join(dir, 'head_b.npy'), '--labels', join(dir, 'y.npy'),
    '--splits', join(dir, 'le.splits')], 1, /labels .*y\.npy: label 9 is NaN; expected an integer in \[0, 2\)/);
  assert.ok(!existsSync(join(dir, 'W.npy')));
  // A vocabulary's NaN, found by the scan (fp32 and fp16 storage) or by the store's check, is named the same way.
  const V = randn(30 * D, 11);
  V[12 * D + 6] = NaN;
  writeNpy(join(dir, 'V.npy'), V, [30, D]);
  writeNpy(join(dir, 'Vh.npy'), floatsToHalves(V), [30, D], 'float16');
  writeNpy(join(dir, 'Q.npy'), randn(2 * D, 12), [2, D]);
  for (const v of ['V.npy', 'Vh.npy'])
    await fails(['search', '--vocab', join(dir, v), '--queries', join(dir, 'Q.npy'), '--k', '2', '--out', join(dir, 'r')], 1,
      new RegExp(`${v.replace('.', '\\.')}: row 12, column 6 is NaN; expected finite values`));
  await fails(['vocab', 'build', '--from', join(dir, 'V.npy'), '--out', join(dir, 'store')], 1, /V\.npy: row 12, column 6 is NaN/);
});

test('duplicate concept names are an error wherever names are looked up', async () => {
  const dir = tempDir();
  leFiles(dir);
  writeFileSync(join(dir, 'dup.txt'), Array.from({ length: 12 }, (_, k) => (k === 7 ? 'concept 2' : `concept ${k}`)).join('\n'));
  await fails(['le', 'explain', '--activations', join(dir, 'A.npy'), '--concepts', join(dir, 'P.npy'), '--concept-names', join(dir, 'dup.txt'),
    '--out', join(dir, 'le.csv')], 1, /dup\.txt: line 8 repeats 'concept 2' of line 3; names must be unique/);
});

test('bad sizes, penalties, temperatures, labels and seeds are errors', async () => {
  const dir = tempDir();
  // A header claiming a negative shape.
  const npy = Buffer.from(readFileSync((writeNpy(join(dir, 'ok.npy'), new Float32Array(8), [2, 4]), join(dir, 'ok.npy'))).toString('latin1')
    .replace("'shape': (2, 4)", "'shape': (-2, 4)"), 'latin1');
  writeFileSync(join(dir, 'neg.npy'), npy);
  writeNpy(join(dir, 'C.npy'), randn(20 * 4, 1), [20, 4]);
  await fails(['splice', 'decompose', '--embeddings', join(dir, 'neg.npy'), '--concepts', join(dir, 'C.npy'), '--l1', '0.1', '--out', join(dir, 'W.npy')], 1,
    /neg\.npy: corrupt \.npy header: shape entry '-2' is not a non-negative integer/);
  writeNpy(join(dir, 'X.npy'), randn(64 * 8, 2), [64, 8]);
  const train = ['sae', 'train', '--features', join(dir, 'X.npy'), '--out', join(dir, 'sae'), '--epochs', '1'];
  await fails([...train, '--lr', '-0.001'], 2, /--lr: expected a finite number > 0, got '-0\.001'/);
  await fails([...train, '--l1', '-1'], 2, /--l1: expected a finite number >= 0, got '-1'/);
  await fails([...train, '--seed', '-1'], 2, /--seed: expected an integer in 0\.\.2147483647, got '-1'/);
  await fails([...train, '--seed', '99999999999'], 2, /--seed: expected an integer in 0\.\.2147483647/);
  // Ranges only the data sets are found late, but are still usage errors naming the option.
  await fails([...train, '--kind', 'topk', '--k', '1000'], 2, /^error: --k: expected an integer in 1\.\.64 \(the latents\), got 1000/);
  writeNpy(join(dir, 'Q.npy'), randn(2 * 4, 3), [2, 4]);
  await fails(['search', '--vocab', join(dir, 'C.npy'), '--queries', join(dir, 'Q.npy'), '--k', '500', '--out', join(dir, 'r')], 2,
    /^error: --k: expected an integer from 1 to the vocabulary's 20 rows, got 500/);
  await fails(['splice', 'decompose', '--embeddings', join(dir, 'ok.npy'), '--concepts', join(dir, 'C.npy'), '--l1', '-0.5', '--out', join(dir, 'W.npy')], 2,
    /--l1: expected a finite number >= 0, got '-0\.5'/);
  for (const sigmas of ['-2', '0'])  // the threshold must sit above the mean
    await fails(['falcon', 'groups', '--representations', join(dir, 'X.npy'), '--out', join(dir, 'g.json'), '--sigmas', sigmas], 2,
      new RegExp(`--sigmas: expected a finite number > 0, got '${sigmas}'`));
  leFiles(dir);
  const scoring = ['--explanations', join(dir, 'le.csv'), '--concepts', join(dir, 'P.npy'), '--concept-names', join(dir, 'names.txt'), '--activations', join(dir, 'A.npy')];
  await fails(['le', 'ablate', ...scoring, '--head-weight', 'x', '--head-bias', 'x', '--labels', 'x', '--temperature', '0'], 2,
    /--temperature: expected a finite number > 0, got '0'/);
  await fails(['le', 'ablate', ...scoring, '--head-weight', 'x', '--head-bias', 'x', '--labels', 'x', '--mode', 'fast'], 2,
    /--mode: expected one of optim, norm, got 'fast'/);
  // Labels: not integers, or outside the probe's classes.
  writeNpy(join(dir, 'F.npy'), randn(40 * 8, 3), [40, 8]);
  await cliOk(['sae', 'train', '--features', join(dir, 'F.npy'), '--out', join(dir, 'cbm'), '--expansion', '2', '--epochs', '1', '--batch', '16']);
  writeNpy(join(dir, 'half.npy'), Float32Array.from({ length: 40 }, (_, i) => (i === 4 ? 1.5 : i % 3)), [40]);
  await fails(['cbm', 'train', '--checkpoint', join(dir, 'cbm'), '--features', join(dir, 'F.npy'), '--labels', join(dir, 'half.npy')], 1,
    /labels .*half\.npy: label 4 is 1\.5; expected an integer/);
  writeNpy(join(dir, 'y.npy'), Int32Array.from({ length: 40 }, (_, i) => i % 3), [40]);
  await cliOk(['cbm', 'train', '--checkpoint', join(dir, 'cbm'), '--features', join(dir, 'F.npy'), '--labels', join(dir, 'y.npy'), '--epochs', '1']);
  writeNpy(join(dir, 'y12.npy'), Int32Array.from({ length: 40 }, (_, i) => (i === 6 ? 12 : i % 3)), [40]);
  await fails(['cbm', 'eval', '--checkpoint', join(dir, 'cbm'), '--features', join(dir, 'F.npy'), '--labels', join(dir, 'y12.npy')], 1,
    /label 6 is 12; expected an integer in \[0, 3\)/);
});

test('accuracy counts a tie as wrong: an all-zero probe scores 0, not 100%', () => {
  const X = toSparse(randn(10 * 4, 1), 10, 4), labels = Int32Array.from({ length: 10 }, (_, i) => i % 3);
  assert.deepEqual(accuracy(X, labels, new Float32Array(3 * 4), 3), { top1: 0, top5: 1 });
});

test('an approximate index asked for more neighbours than it returns says so', async () => {
  const dir = tempDir();
  writeNpy(join(dir, 'V.npy'), randn(2000 * D, 11), [2000, D]);
  writeNpy(join(dir, 'Q.npy'), randn(4 * D, 12), [4, D]);
  await fails(['search', '--vocab', join(dir, 'V.npy'), '--queries', join(dir, 'Q.npy'), '--k', '1500', '--index', 'faiss-ivf', '--out', join(dir, 'r')], 1,
    /k: the faiss-ivf index found only \d+ of the k = 1500 neighbours of query 0 with nprobe \d+; raise nprobe or lower k .*\(on the command line: --nprobe, --k, --allow-missing\)/);
  assert.ok(!existsSync(join(dir, 'r.ids.npy')));
  // The CLI takes what the message suggests: every list probed finds them all; --allow-missing writes -1 ids.
  const search = ['search', '--vocab', join(dir, 'V.npy'), '--queries', join(dir, 'Q.npy'), '--k', '1500', '--index', 'faiss-ivf'];
  await cliOk([...search, '--nprobe', '1000000', '--out', join(dir, 'all')]);
  assert.ok((readNpy(join(dir, 'all.ids.npy')).data as Int32Array).every((id) => id >= 0));
  await cliOk([...search, '--allow-missing', '--out', join(dir, 'some')]);
  const some = readNpy(join(dir, 'some.ids.npy')).data as Int32Array;
  assert.ok(some.includes(-1) && some.some((id) => id >= 0));
  await fails(['search', '--vocab', join(dir, 'V.npy'), '--queries', join(dir, 'Q.npy'), '--k', '5', '--ef-search', '10', '--out', join(dir, 'x')], 2,
    /--ef-search: applies to --index hnsw, got --index exact/);
});

test('options a mode ignores are refused: resume with other hyperparameters, --standin with --layer, --k for relu-l1, job sizes without --queue', async () => {
  const dir = tempDir();
  writeNpy(join(dir, 'X.npy'), randn(128 * 8, 2), [128, 8]);
  const train = ['sae', 'train', '--features', join(dir, 'X.npy'), '--out', join(dir, 'sae'), '--expansion', '2', '--batch', '32'];
  await cliOk([...train, '--epochs', '1']);
  const before = fileSnapshot(join(dir, 'sae'));
  for (const [flag, value] of [['--lr', '0.01'], ['--l1', '0.5'], ['--kind', 'topk'], ['--batch', '16'], ['--expansion', '4']])
    await fails([...train.filter((a, i, all) => a !== flag && all[i - 1] !== flag), flag, value, '--epochs', '2', '--resume'], 1,
      new RegExp(`${flag.slice(2)}: the run in .*sae was trained with`));
  await fails([...train, '--epochs', '2'], 1, /holds a trained SAE \(sae\.ckpt\); pass --resume to continue it, or --overwrite to replace it/);
  // Other features (here the same shape, other values) are refused too; a moved copy of the same file resumes.
  writeNpy(join(dir, 'X2.npy'), randn(128 * 8, 9), [128, 8]);
  await fails([...train.map((a) => (a === join(dir, 'X.npy') ? join(dir, 'X2.npy') : a)), '--epochs', '2', '--resume'], 1,
    /features: the run in .*sae was trained on .*X\.npy \(128×8 float32, sha256 of its ends [0-9a-f]{16}\); --resume got .*X2\.npy/);
  assert.deepEqual(fileSnapshot(join(dir, 'sae')), before, 'refused runs left the trained SAE untouched');
  assert.deepEqual(fileSnapshot(join(dir, 'sae')), before, 'refused runs left the trained SAE untouched');
  await fails(['embed', '--standin', '--layer', 'fire22', '--images', dir, '--out', join(dir, 'e.npy')], 2,
    /--standin: the stand-in tower takes no --layer/);
  await fails([...train, '--out', join(dir, 'sae2'), '--k', '4'], 2, /--k: only with --kind topk or batchtopk/);
  writeNpy(join(dir, 'C.npy'), randn(20 * 8, 3), [20, 8]);
  await fails(['splice', 'decompose', '--embeddings', join(dir, 'X.npy'), '--concepts', join(dir, 'C.npy'), '--l1', '0.25', '--part-rows', '5',
    '--out', join(dir, 'W.npy')], 2, /--part-rows: only with --queue \(it sizes the jobs of a sharded run\)/);
  assert.ok(!existsSync(join(dir, 'sae2')) && !existsSync(join(dir, 'W.npy')));
});

test('text inputs: a BOM and CRLF are read, undecodable bytes are an error; LAION gaps and damaged stores are refused', async () => {
  const dir = tempDir(), { c } = leFiles(dir);
  writeFileSync(join(dir, 'bom.txt'), '\uFEFF' + Array.from({ length: c }, (_, k) => `concept ${k}`).join('\r\n') + '\r\n');
  await cliOk(['le', 'explain', '--activations', join(dir, 'A.npy'), '--concepts', join(dir, 'P.npy'), '--concept-names', join(dir, 'bom.txt'),
    '--out', join(dir, 'le.csv'), '--quiet']);
  assert.match(readFileSync(join(dir, 'le.csv'), 'utf8'), /,concept 0,|,concept 1,|,concept 2,/);
  writeFileSync(join(dir, 'bad.txt'), Buffer.concat([Buffer.from('concept 0\nconc'), Buffer.from([0xff, 0xfe]), Buffer.from('ept\n')]));
  await fails(['le', 'explain', '--activations', join(dir, 'A.npy'), '--concepts', join(dir, 'P.npy'), '--concept-names', join(dir, 'bad.txt'),
    '--out', join(dir, 'le2.csv')], 1, /bad\.txt: not valid UTF-8 \(first bad byte at offset 14\)/);
  const piped = spawnSync(process.execPath, [BIN, 'tokenize'], { input: Buffer.from([0x61, 0x0a, 0xff, 0xfe, 0x0a]), encoding: 'utf8' });
  assert.equal(piped.status, 1, piped.stderr);
  assert.match(piped.stderr, /^error: standard input: not valid UTF-8 \(first bad byte at offset 2\)/);

  const laion = join(dir, 'laion');
  mkdirSync(laion);
  await writeSyntheticLaion(laion, { rows: 30, dim: 8, shardRows: 10, seed: 1, captions: 'txt' });
  writeNpy(join(dir, 'q.npy'), randn(2 * 8, 1), [2, 8]);
  const { renameSync } = await import('node:fs');
  renameSync(join(laion, 'text_emb_1.npy'), join(laion, 'text_emb_5.npy'));
  await fails(['search', '--vocab', laion, '--queries', join(dir, 'q.npy'), '--k', '2', '--out', join(dir, 'r')], 1,
    /laion: shard text_emb_1\.npy is missing \(found text_emb_2\.npy next\); shards are numbered 0\.\.n-1 without gaps/);
  renameSync(join(laion, 'text_emb_5.npy'), join(laion, 'text_emb_1.npy'));

  const store = join(dir, 'store');
  await cliOk(['vocab', 'build', '--from', laion, '--out', store]);
  const vec = join(store, 'vectors_0.npy'), bytes = readFileSync(vec);
  bytes[bytes.length - 3] ^= 0x40;  // same size, different data
  writeFileSync(vec, bytes);
  await fails(['search', '--vocab', store, '--queries', join(dir, 'q.npy'), '--k', '2', '--out', join(dir, 'r')], 1,
    /vectors_0\.npy: sha256 [0-9a-f]+, the manifest records [0-9a-f]+; the store is damaged/);
  assert.ok(!existsSync(join(dir, 'r.ids.npy')));
});

test('nothing destroyed: a failed run leaves earlier outputs byte-identical', async () => {
  const dir = tempDir();
  // vocab build over a good store, from a source with a NaN row.
  const good = randn(50 * D, 1), bad = Float32Array.from(good);
  bad[20 * D + 3] = NaN;
  writeNpy(join(dir, 'good.npy'), good, [50, D]);
  writeNpy(join(dir, 'bad.npy'), bad, [50, D]);
  await cliOk(['vocab', 'build', '--from', join(dir, 'good.npy'), '--out', join(dir, 'store')]);
  let before = fileSnapshot(join(dir, 'store'));
  await fails(['vocab', 'build', '--from', join(dir, 'bad.npy'), '--out', join(dir, 'store')], 1, /bad\.npy: row 20, column 3 is NaN; expected finite values/);
  assert.deepEqual(fileSnapshot(join(dir, 'store')), before);
  assert.deepEqual(readdirSync(dir).sort(), ['bad.npy', 'good.npy', 'store'], 'no temp directories left');

  // le explain: its CSV and recorded splits stay as they were when a later run fails.
  leFiles(dir);
  await cliOk(['le', 'explain', '--activations', join(dir, 'A.npy'), '--concepts', join(dir, 'P.npy'), '--concept-names', join(dir, 'names.txt'),
    '--out', join(dir, 'le', 'le.csv'), '--quiet']);
  before = fileSnapshot(join(dir, 'le'));
  writeNpy(join(dir, 'A_const.npy'), new Float32Array(200 * 3).fill(1), [200, 3]);
  await fails(['le', 'explain', '--activations', join(dir, 'A_const.npy'), '--concepts', join(dir, 'P.npy'), '--concept-names', join(dir, 'names.txt'),
    '--out', join(dir, 'le', 'le.csv'), '--seed', '4'], 1, /activations: unit 0 is constant/);
  assert.deepEqual(fileSnapshot(join(dir, 'le')), before);

  // sae train on an empty feature file next to a trained SAE.
  writeNpy(join(dir, 'X.npy'), randn(64 * 8, 2), [64, 8]);
  await cliOk(['sae', 'train', '--features', join(dir, 'X.npy'), '--out', join(dir, 'sae'), '--expansion', '2', '--epochs', '1', '--batch', '32']);
  before = fileSnapshot(join(dir, 'sae'));
  writeNpy(join(dir, 'X0.npy'), new Float32Array(0), [0, 8]);
  await fails(['sae', 'train', '--features', join(dir, 'X0.npy'), '--out', join(dir, 'sae'), '--epochs', '1', '--overwrite'], 1, /X0\.npy: has 0 rows/);
  assert.deepEqual(fileSnapshot(join(dir, 'sae')), before);

  // embed --out naming a directory: refused before any work, no temp files.
  mkdirSync(join(dir, 'outdir'));
  await fails(['embed', '--standin', '--images', join(dir, 'le'), '--out', join(dir, 'outdir')], 1, /outdir: is a directory; the --out embeddings is a file path/);
  assert.deepEqual(readdirSync(join(dir, 'outdir')), []);
  assert.ok(!readdirSync(dir).some((f) => f.includes('.partial') || f.includes('.ckpt')));
});

test('splice images: a run that fails after embedding leaves the earlier embeddings.npy as it was', async (t) => {
  const assets = assetsDir();
  if (!assets || !existsSync(join(assets, 'images', 'imagenet-samples'))) return t.skip('no assets mirror (set CONCEPTLENS_ASSETS)');
  const dir = tempDir(), images = join(dir, 'imgs'), out = join(dir, 'out');
  mkdirSync(images);
  const samples = join(assets, 'images', 'imagenet-samples');
  for (const f of readdirSync(samples).sort().slice(0, 3)) writeFileSync(join(images, f), readFileSync(join(samples, f)));
  mkdirSync(out);
  writeFileSync(join(out, 'embeddings.npy'), 'earlier output');
  writeNpy(join(dir, 'C.npy'), randn(5 * 64, 3), [5, 64]);  // 64-d concepts: the stand-in embeds in 512-d
  writeFileSync(join(dir, 'names.txt'), 'a\nb\nc\nd\ne\n');
  await fails(['splice', 'images', '--images', images, '--standin', '--concepts', join(dir, 'C.npy'), '--concept-names', join(dir, 'names.txt'),
    '--l1', '0.25', '--out', out], 1, /concepts have d = 64 but the image embeddings have 512/);
  assert.equal(readFileSync(join(out, 'embeddings.npy'), 'utf8'), 'earlier output');
  assert.deepEqual(readdirSync(out), ['embeddings.npy'], 'no temp files left');
});

test('clear errors: a directory for a file and a file for a directory, malformed JSON, an unknown option: one line naming the path or option', async () => {
  const dir = tempDir();
  leFiles(dir);
  for (const out of ['A.npy', join('A.npy', 'sub')])
    await fails(['sae', 'train', '--features', join(dir, 'A.npy'), '--out', join(dir, out)], 1,
      new RegExp(`${join(dir, 'A.npy').replace(/[/.]/g, '\\$&')}: is a file; expected a directory for the SAE training's outputs`));
  await fails(['le', 'explain', '--activations', join(dir, 'A.npy'), '--concepts', join(dir, 'P.npy'), '--concept-names', dir, '--out', join(dir, 'x.csv')], 1,
    new RegExp(`${dir.replace(/[/.]/g, '\\$&')}: is a directory; expected a text file`));
  // A missing names file is said in the words every reader uses (as a missing .npy is).
  await fails(['le', 'explain', '--activations', join(dir, 'A.npy'), '--concepts', join(dir, 'P.npy'), '--concept-names', join(dir, 'gone.txt'), '--out', join(dir, 'x.csv')], 1,
    /gone\.txt: no such file or directory/);
  writeNpy(join(dir, 'R.npy'), randn(30 * 8, 1), [30, 8]);
  writeFileSync(join(dir, 'groups.json'), '{"1": [1, 2');
  writeNpy(join(dir, 'E.npy'), randn(30 * 4, 2), [30, 4]);
  await fails(['falcon', 'explain', '--group', '1', '--representations', join(dir, 'R.npy'), '--groups', join(dir, 'groups.json'),
    '--image-embeddings', join(dir, 'E.npy'), '--captions', join(dir, 'E.npy')], 1, /groups\.json: not valid JSON/);
  const r = await runCli(['search', '--vocab', 'x', '--queries', 'q', '--k', '1', '--out', 'o', '--bogus']);
  assert.equal(r.code, 2);
  assert.match(r.stderr, /unknown option '--bogus'/);
});

test('Ctrl-C stops a long command with exit code 130, one line on stderr, and no half-written output', async () => {
  const dir = tempDir(), features = join(dir, 'x.npy');
  writeNpy(features, randn(8192 * 32, 3), [8192, 32]);
  const { spawn } = await import('node:child_process');
  const child = spawn(process.execPath, [join(import.meta.dirname, '..', '..', 'bin', 'conceptlens.js'), 'sae', 'train', '--features', features,
    '--out', join(dir, 'sae'), '--epochs', '100000', '--batch', '256'], { stdio: ['ignore', 'ignore', 'pipe'] });
  let stderr = '';
  child.stderr.on('data', (b: Buffer) => (stderr += b.toString()));
  // Interrupt once training has started (the first checkpoint is written after an epoch).
  await new Promise<void>((resolve) => {
    const poll = setInterval(() => {
      if (existsSync(join(dir, 'sae', 'sae.ckpt'))) clearInterval(poll), child.kill('SIGINT'), resolve();
    }, 20);
  });
  const code = await new Promise<number | null>((resolve) => child.on('exit', (c) => resolve(c)));
  assert.equal(code, 130, stderr);
  assert.match(stderr, /^interrupted: stopped before finishing/m);
  assert.doesNotMatch(stderr, /Usage:|    at /);
  assert.ok(readdirSync(join(dir, 'sae')).every((f) => !f.includes('.tmp')), 'no temp files');
});

test('usage mistakes the library finds are said as usage (exit 2): a tower not chosen, --out inside --images, --vocab-last past the names, an interpretability threshold past 1, an unknown asset, a bad --units', async () => {
  const dir = tempDir(), images = join(dir, 'images');
  mkdirSync(images);
  writeNpy(join(dir, 'C.npy'), randn(4 * D, 1), [4, D]);
  writeFileSync(join(dir, 'n.txt'), 'a\nb\nc\nd\n');
  const splice = ['splice', 'images', '--images', images, '--concepts', join(dir, 'C.npy'), '--concept-names', join(dir, 'n.txt'), '--l1', '0.2'];
  await fails([...splice, '--out', join(dir, 'o')], 2, /^error: give either --model CLIP_IMAGE\.onnx or --standin/);
  await fails([...splice, '--standin', '--out', join(images, 'o')], 2, /^error: --out: '.*o' is inside --images '.*images'; its outputs would be read as images/);
  await fails([...splice, '--standin', '--vocab-last', '5', '--out', join(dir, 'o')], 2, /^error: --vocab-last: expected an integer in \[1, 4\] \(the lines of .*n\.txt\), got 5/);
  await fails(['falcon', 'run', '--model', join(dir, 'C.npy'), '--layer', 'x', '--images', images, '--captions', join(dir, 'C.npy'), '--out', join(dir, 'f'),
    '--interpretable-above', '2'], 2, /^error: --interpretable-above: expected a finite number >= 0 and <= 1, got '2'/);
  await fails(['assets', 'verify', 'nosuch'], 2, /^error: unknown asset 'nosuch' \(known: squeezenet1\.1/);
  await fails(['atlas', '--model', join(dir, 'C.npy'), '--layer', 'x', '--images', images, '--standin', '--units', '-1', '--out', join(dir, 'a')], 2,
    /^error: --units: expected 'all', a count or a comma-separated list of unit numbers, got '-1'/);
  assert.deepEqual(readdirSync(images), []);
});

test('library calls without their options object, or with a signal that is no AbortSignal or progress that is no function, throw ERR_ARG saying what they need', async () => {
  const V = randn(8 * 4, 1), Q = randn(4, 2);
  const calls: [string, () => Promise<unknown>, RegExp][] = [
    ['exactSearch', () => exactSearch(Q, V, 4, undefined as never), /^options: expected an object with k, got undefined$/],
    ['buildIndex', () => buildIndex('faiss-flat', V, 4, undefined as never), /^options: expected an object with metric/],
    ['solveSplice', () => solveSplice(V, Q, 4, undefined as never), /^options: expected an object with l1, got undefined$/],
    ['trainSae', () => trainSae(undefined as never), /^options: expected an object with features, out and epochs, got undefined$/],
    ['signal', () => exactSearch(Q, V, 4, { k: 2, signal: {} as AbortSignal }), /^signal: expected an AbortSignal, got/],
    // An engine call (it ran, and never called back) and a JS-side loop (its first report would throw a TypeError).
    ['onProgress', () => exactSearch(Q, V, 4, { k: 2, onProgress: 5 as never }), /^onProgress: expected a function, got 5$/],
    ['onProgress', () => writeSyntheticLaion(tempDir(), { rows: 8, dim: 4, shardRows: 8, seed: 1, onProgress: 'yes' as never }), /^onProgress: expected a function, got 'yes'$/],
    // Options of the wrong type: a count that was truncated (1.5 ran one iteration), a flag that was taken as true.
    ['maxIter', () => solveSplice(V, Q, 4, { l1: 0.1, maxIter: 1.5 }), /^options\.maxIter: expected an integer >= 1, got 1\.5$/],
    ['maxIter', () => solveSplice(V, Q, 4, { l1: 0.1, maxIter: 2 ** 31 }), /^options\.maxIter: expected an integer <= 2147483647, got 2147483648$/],
    ['normalize', () => Vocabulary.fromArray(V, 4, { normalize: 'yes' as never }), /^normalize: expected true or false, got 'yes'$/],
    ['threads', () => ImageEncoder.load(new Uint8Array(8), { threads: -1 }), /^threads: expected an integer >= 1, got -1$/],
  ];
  for (const [what, call, message] of calls) await assert.rejects(call(), { code: 'ERR_ARG', message }, what);
  const one = { nq: 1, k: 1, ids: BigInt64Array.of(3n), scores: Float32Array.of(0.5) };
  assert.throws(() => mergeTopK(one, one, -1), { code: 'ERR_ARG', message: /^k: expected an integer >= 1, got -1$/ });
});
