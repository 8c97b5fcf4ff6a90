// Kill and resume: a resumable command killed with SIGKILL at a random point,
// then run again, must leave exactly the files (byte for byte) of a run that
// was never interrupted: `sae train --resume` (across dead-latent
// resampling), `embed`, and `falcon run`.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import sharp from 'sharp';
import { assetsDir } from '../ts/assets.js';
import { tempPath, writeFileAtomic } from '../ts/io/atomic.js';
import { writeNpy } from '../ts/io/npy.js';
import { writeSyntheticLaion } from '../ts/methods/falcon/synthetic.js';
import { meanPoolImageModel } from './onnx-graphs.js';
import { randn, rng, tempDir, fileSnapshot } from './helpers.js';

const BIN = join(import.meta.dirname, '..', '..', 'bin', 'conceptlens.js');

function runToEnd(args: string[]): number {
  const t0 = performance.now();
  const r = spawnSync(process.execPath, [BIN, ...args], { encoding: 'utf8' });
  assert.equal(r.status, 0, `conceptlens ${args.join(' ')}: ${r.stderr}`);
  return performance.now() - t0;
}

/** Starts the command and SIGKILLs it after `ms` (if it is still running); whether it was killed, and when it ended. */
function killAfter(args: string[], ms: number): Promise<{ killed: boolean; ms: number }> {
  return new Promise((resolve) => {
    const t0 = performance.now(), child = spawn(process.execPath, [BIN, ...args], { stdio: 'ignore' });
    const timer = setTimeout(() => child.kill('SIGKILL'), ms);
    child.on('exit', (_code, signal) => {
      clearTimeout(timer);
      resolve({ killed: signal === 'SIGKILL', ms: performance.now() - t0 });
    });
  });
}

/**
 * Runs `args` uninterrupted into `clean`; then into `killed` it kills runs at
 * random points (seeded) until one is really interrupted, finishes it with
 * `resumeArgs`, and compares every file with the clean run's.
 */
async function assertKillResumeExact(t: { diagnostic: (s: string) => void }, make: (out: string) => string[], resume: (out: string) => string[],
  clean: string, killed: string, seed: number): Promise<void> {
  let full = runToEnd(make(clean));
  const rand = rng(seed);
  let interrupted = 0;
  for (let attempt = 0; attempt < 6 && interrupted === 0; attempt++) {
    const at = (0.25 + 0.6 * rand()) * full, run = await killAfter(make(killed), at);
    if (run.killed) interrupted++;
    else full = Math.min(full, run.ms);  // the clean run was slow (a loaded machine): aim by the faster one
    t.diagnostic(`attempt ${attempt}: killed at ${at.toFixed(0)} ms of ~${full.toFixed(0)} ms`);
  }
  assert.equal(interrupted, 1, 'a run was really interrupted by SIGKILL');
  runToEnd(resume(killed));
  const a = fileSnapshot(clean), b = fileSnapshot(killed);
  assert.deepEqual([...b.keys()].sort(), [...a.keys()].sort(), 'the same files, no temp files left');
  for (const [name, bytes] of a) assert.ok(b.get(name) === bytes, `${name} differs from the uninterrupted run`);
}

test('sae train killed at a random point and resumed gives the same weights and checkpoint, bit for bit (resampling included)', async (t) => {
  const dir = tempDir(), features = join(dir, 'x.npy');
  writeNpy(features, randn(12288 * 32, 5), [12288, 32]);
  const args = (out: string) => ['sae', 'train', '--features', features, '--out', out, '--expansion', '8', '--batch', '256', '--epochs', '8',
    '--resample-every', '3', '--seed', '7', '--json'];
  await assertKillResumeExact(t, args, (out) => [...args(out), '--resume'], join(dir, 'clean'), join(dir, 'killed'), 1);
});

test('embed killed at a random point and rerun resumes to the same rows and labels', async (t) => {
  const dir = tempDir(), images = join(dir, 'images'), model = join(dir, 'model.onnx');
  writeFileSync(model, meanPoolImageModel(24, 24));
  const rand = rng(9);
  for (const cls of ['a', 'b', 'c']) {
    mkdirSync(join(images, cls), { recursive: true });
    for (let i = 0; i < 80; i++) {
      const px = Buffer.from(Array.from({ length: 32 * 32 * 3 }, () => Math.floor(256 * rand())));
      await sharp(px, { raw: { width: 32, height: 32, channels: 3 } }).png().toFile(join(images, cls, `${i}.png`));
    }
  }
  const args = (out: string) => ['embed', '--model', model, '--images', images, '--resize', '24', '--crop', '24', '--batch', '4',
    '--out', join(out, 'x.npy'), '--labels-out', join(out, 'y.npy'), '--label-source', 'folder', '--json'];
  for (const d of ['clean', 'killed']) mkdirSync(join(dir, d));
  await assertKillResumeExact(t, args, args, join(dir, 'clean'), join(dir, 'killed'), 2);
});

test('falcon run killed at a random point and rerun writes the same groups, crops, concepts and report', async (t) => {
  const assets = assetsDir(), squeezenet = assets && join(assets, 'models', 'squeezenet1.1', 'squeezenet1.1.onnx');
  if (!squeezenet || !existsSync(squeezenet)) return t.skip('SqueezeNet not in the assets mirror (set CONCEPTLENS_ASSETS)');
  const dir = tempDir(), images = join(dir, 'images'), laion = join(dir, 'laion');
  mkdirSync(images);
  mkdirSync(laion);
  const samples = join(assets!, 'images', 'imagenet-samples');
  for (const f of readdirSync(samples).sort().slice(0, 48)) writeFileSync(join(images, f), readFileSync(join(samples, f)));
  // Captions in SqueezeNet's 1000-d logit space: the encoder is the classifier itself.
  await writeSyntheticLaion(laion, { rows: 6000, dim: 1000, shardRows: 2000, seed: 4 });
  const args = (out: string) => ['falcon', 'run', '--model', squeezenet, '--layer', 'fire22', '--images', images, '--captions', laion,
    '--encoder', squeezenet, '--out', out, '--more-than', '2', '--max-groups', '4', '--batch', '8', '--all-groups'];
  await assertKillResumeExact(t, args, args, join(dir, 'clean'), join(dir, 'killed'), 3);
});

test('an atomic write removes the temp files of dead processes, and only those', () => {
  const dir = tempDir(), target = join(dir, 'out.json');
  const dead = spawnSync(process.execPath, ['-e', '0']).pid!; // exited: its pid is free
  const ofPid = (pid: number) => tempPath(target).replace(`-${process.pid}-`, `-${pid}-`);
  writeFileSync(ofPid(dead), 'abandoned by a killed writer');
  const live = ofPid(process.ppid);
  writeFileSync(live, 'a live writer still at work');
  writeFileSync(join(dir, 'other.json.tmp-x-1-1'), 'another target');
  writeFileAtomic(target, '{"ok": true}');
  assert.deepEqual(readdirSync(dir).sort(), ['other.json.tmp-x-1-1', 'out.json', live.slice(dir.length + 1)].sort());
  assert.equal(readFileSync(target, 'utf8'), '{"ok": true}');
});
