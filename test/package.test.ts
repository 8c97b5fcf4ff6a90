// The package as a user gets it: `npm run prebuild`, `npm pack`, install the
// tarball into a fresh project with cmake and cmake-js replaced by stubs that
// record any call (so a compile during install would fail and be seen), then
// import('conceptlens'), type-check a consumer and every README `## Library`
// example under `strict` against the published .d.ts, and run them.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { chmodSync, existsSync, mkdirSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { assetsDir } from '../ts/assets.js';
import { tempDir } from './helpers.js';

const ROOT = join(import.meta.dirname, '..', '..');
const TSC = join(ROOT, 'node_modules', '.bin', 'tsc');

/** Runs a command that must succeed; its standard output and error. */
function run(cmd: string, args: string[], opts: { cwd: string; env?: NodeJS.ProcessEnv }): { stdout: string; stderr: string } {
  const r = spawnSync(cmd, args, { ...opts, encoding: 'utf8', maxBuffer: 64 * 2 ** 20 });
  assert.equal(r.status, 0, `${cmd} ${args.join(' ')} failed (${r.status}):\n${r.stdout}\n${r.stderr}`);
  return r;
}

/** The ```ts blocks of the README's `## Library` section. */
function libraryExamples(): string[] {
  const readme = readFileSync(join(ROOT, 'README.md'), 'utf8');
  const start = readme.indexOf('\n## Library\n'), end = readme.indexOf('\n## ', start + 5);
  assert.ok(start >= 0, 'README has a ## Library section');
  return [...readme.slice(start, end).matchAll(/```ts\n([\s\S]*?)```/g)].map((m) => m[1]);
}

/** Checks the published package against brute force: an exact search and a SpLiCE decomposition. */
const CONSUMER = `import assert from 'node:assert/strict';
import { ConceptLensError, exactSearch, solveSplice, engineInfo, type SearchResult } from 'conceptlens';

const d = 16, n = 300, nq = 5, k = 4;
let s = 11;
const rand = () => (s = (s * 16807) % 2147483647) / 2147483647 - 0.5;
const rows = Float32Array.from({ length: n * d }, rand), queries = Float32Array.from({ length: nq * d }, rand);
const r: SearchResult = await exactSearch(queries, rows, d, { k });
for (let q = 0; q < nq; q++) {
  const dots = Array.from({ length: n }, (_, j) => rows.subarray(j * d, (j + 1) * d).reduce((a, v, t) => a + v * queries[q * d + t], 0));
  const best = dots.map((_, j) => j).sort((a, b) => dots[b] - dots[a] || a - b).slice(0, k);
  assert.deepEqual(Array.from(r.ids.subarray(q * k, (q + 1) * k), Number), best);
}
// Non-negative lasso: at the optimum, every weight's gradient condition holds (KKT), checked in float64.
const c = 40, C = Float32Array.from({ length: c * d }, rand), z = Float32Array.from({ length: d }, rand), l1 = 0.05;
const dec = await solveSplice(C, z, d, { l1, tol: 1e-10 });
const resid = Array.from({ length: d }, (_, t) => Array.from({ length: c }, (_, j) => dec.weights[j] * C[j * d + t]).reduce((a, b) => a + b, 0) - z[t]);
for (let j = 0; j < c; j++) {
  const g = 2 * resid.reduce((a, v, t) => a + v * C[j * d + t], 0) + l1;
  assert.ok(dec.weights[j] > 0 ? Math.abs(g) < 1e-4 : g > -1e-4, \`concept \${j}: gradient \${g}, weight \${dec.weights[j]}\`);
}
await assert.rejects(exactSearch(queries, rows, 7, { k }), (e: unknown) => e instanceof ConceptLensError && e.code === 'ERR_SHAPE');
console.log(engineInfo().addon);
`;

test('the packed package installs without a compiler, imports, type-checks, and runs every README example', { timeout: 15 * 60_000 }, async (t) => {
  run(process.execPath, [join(ROOT, 'scripts', 'prebuild.mjs')], { cwd: ROOT });
  const work = tempDir('conceptlens-package-'), proj = join(work, 'consumer'), fake = join(work, 'bin');
  const packed = JSON.parse(run('npm', ['pack', '--ignore-scripts', '--json', '--pack-destination', work], { cwd: ROOT }).stdout);
  const files = packed[0].files.map((f: { path: string }) => f.path) as string[];
  assert.ok(files.includes('prebuilds/linux-x64/conceptlens.node') && files.includes('prebuilds/linux-x64/libopenblas.so.0'));
  assert.ok(files.includes('dist/ts/index.d.ts') && !files.some((f) => f.startsWith('dist/test/') || f.startsWith('build/')));

  mkdirSync(proj, { recursive: true });
  mkdirSync(fake);
  const calls = join(work, 'compiler-calls');
  for (const tool of ['cmake', 'cmake-js']) {
    writeFileSync(join(fake, tool), `#!/bin/sh\necho "$0 $*" >> ${calls}\nexit 1\n`);
    chmodSync(join(fake, tool), 0o755);
  }
  writeFileSync(join(proj, 'package.json'), JSON.stringify({ name: 'consumer', private: true, type: 'module' }));
  const env = { ...process.env, PATH: `${fake}:${process.env.PATH}`, ONNXRUNTIME_NODE_INSTALL: 'skip' };
  const log = run('npm', ['install', '--no-audit', '--no-fund', '--prefer-offline', '--foreground-scripts', join(work, packed[0].filename)], { cwd: proj, env });
  assert.match(log.stdout + log.stderr, /conceptlens: using the prebuilt engine/);
  assert.ok(!existsSync(calls), `the install ran a compiler: ${existsSync(calls) ? readFileSync(calls, 'utf8') : ''}`);
  assert.ok(!existsSync(join(proj, 'node_modules', 'conceptlens', 'build')), 'no local build inside the installed package');

  const examples = libraryExamples();
  assert.ok(examples.length >= 6, `README ## Library has ${examples.length} examples`);
  writeFileSync(join(proj, 'consumer.ts'), CONSUMER);
  examples.forEach((code, i) => writeFileSync(join(proj, `example${i + 1}.ts`), code));
  writeFileSync(join(proj, 'tsconfig.json'), JSON.stringify({
    compilerOptions: {
      target: 'ES2022', module: 'NodeNext', moduleResolution: 'NodeNext', strict: true, outDir: 'out', skipLibCheck: false,
      types: ['node'], typeRoots: [join(ROOT, 'node_modules', '@types')],
    },
    include: ['*.ts'],
  }));
  run(TSC, ['-p', proj], { cwd: proj });
  const used = run(process.execPath, ['out/consumer.js'], { cwd: proj }).stdout;
  assert.match(used, /node_modules\/conceptlens\/prebuilds\/linux-x64\/conceptlens\.node/);

  const assets = assetsDir();
  for (const f of readdirSync(join(proj, 'out')).filter((f) => /^example\d+\.js$/.test(f)).sort()) {
    const src = readFileSync(join(proj, f.replace(/\.js$/, '.ts')), 'utf8');
    if (src.includes('assetPath(') && !(assets && existsSync(assets))) {
      t.diagnostic(`${f}: skipped, no assets mirror (set CONCEPTLENS_ASSETS)`);
      continue;
    }
    run(process.execPath, [join('out', f)], { cwd: proj, env: { ...process.env, CONCEPTLENS_ASSETS: assets ?? '' } });
  }
});
