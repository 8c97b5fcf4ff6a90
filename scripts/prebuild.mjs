// npm run prebuild: prebuilds/<platform>-<arch>/ holds the engine and the
// shared libraries it needs that a base Debian system lacks (OpenBLAS,
// libgfortran, libquadmath, libgomp, libsnappy), each finding the others beside it
// through $ORIGIN, so installing the packed package runs no compiler. The
// files are build outputs: never committed (.gitignore).
import { copyFileSync, existsSync, mkdirSync, realpathSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { spawnSync } from 'node:child_process';
import { basename, dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
const addon = join(root, 'build', 'Release', 'conceptlens.node');
const dest = join(root, 'prebuilds', `${process.platform}-${process.arch}`);
// Part of every Debian/Ubuntu system (libc6, libstdc++6, libgcc-s1): never bundled.
const BASE = /^(linux-vdso|ld-linux|libc|libm|libdl|libpthread|librt|libstdc\+\+|libgcc_s)\.so/;

function run(cmd, args, what) {
  const r = spawnSync(cmd, args, { encoding: 'utf8', cwd: root });
  if (r.error || r.status !== 0)
    throw new Error(`${what}: \`${cmd} ${args.join(' ')}\` failed: ${r.error?.message ?? r.stderr.trim()}` +
      (r.error?.code === 'ENOENT' ? ` (install it: sudo apt-get install -y ${cmd === 'patchelf' ? 'patchelf' : cmd})` : ''));
  return r.stdout;
}

/** soname → resolved path of every shared library the file loads (transitively, as ldd reports). */
function dependencies(file) {
  const deps = new Map();
  for (const line of run('ldd', [file], 'listing the engine\'s libraries').split('\n')) {
    const m = /^\s*(\S+) => (\S+)/.exec(line);
    if (!m) continue;
    if (m[2] === 'not') throw new Error(`${file}: ${m[1]} is not found on this machine; install it before prebuilding`);
    deps.set(m[1], m[2]);
  }
  return deps;
}

if (process.platform !== 'linux') throw new Error(`prebuild: only Linux prebuilds are made here (this is ${process.platform})`);
if (!existsSync(addon)) run('npx', ['cmake-js', 'compile', '--CDCMAKE_BUILD_TYPE=Release'], 'building the engine');
rmSync(dest, { recursive: true, force: true });
mkdirSync(dest, { recursive: true });
const files = [join(dest, 'conceptlens.node')];
copyFileSync(addon, files[0]);
for (const [soname, path] of dependencies(addon)) {
  if (BASE.test(soname)) continue;
  const to = join(dest, soname);
  copyFileSync(realpathSync(path), to);
  files.push(to);
}
for (const f of files) run('patchelf', ['--set-rpath', '$ORIGIN', f], `pointing ${basename(f)} at its neighbours`);
// Every library now resolves beside the engine or from the base system.
for (const [soname, path] of dependencies(files[0]))
  if (!BASE.test(soname) && dirname(path) !== dest) throw new Error(`prebuild: ${soname} still resolves to ${path}, not ${dest}`);
const listing = files.map((f) => ({ file: basename(f), bytes: statSync(f).size }));
writeFileSync(join(dest, 'files.json'), JSON.stringify({ platform: `${process.platform}-${process.arch}`, napi: 8, files: listing }, null, 1) + '\n');
console.log(`prebuilt engine in ${dest}:\n` + listing.map((l) => `  ${l.file} (${(l.bytes / 2 ** 20).toFixed(1)} MiB)`).join('\n'));
