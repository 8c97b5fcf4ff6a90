// npm install hook: use a prebuilt engine for this platform when the package
// ships one, otherwise build it with cmake-js (CUDA kernels too when nvcc is
// found). On failure, say what to install.
import { existsSync } from 'node:fs';
import { spawnSync } from 'node:child_process';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
const prebuilt = join(root, 'prebuilds', `${process.platform}-${process.arch}`, 'conceptlens.node');
if (existsSync(prebuilt)) {
  console.log(`conceptlens: using the prebuilt engine ${prebuilt}`);
  process.exit(0);
}
const r = spawnSync('cmake-js', ['compile', '--CDCMAKE_BUILD_TYPE=Release'], { cwd: root, stdio: 'inherit', shell: true });
if (r.status !== 0) {
  console.error('\nconceptlens: building the native engine failed. It needs CMake, a C++17 compiler, OpenBLAS and FAISS:\n' +
    '  sudo apt-get install -y cmake g++ libopenblas-dev libfaiss-dev libsnappy-dev libxxhash-dev\nthen run `npm rebuild conceptlens` (or `npm run build:native` in a checkout).');
  process.exit(r.status ?? 1);
}
