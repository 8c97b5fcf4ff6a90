// Shared test helpers: seeded data, a float64 brute-force top-k, temp dirs.
import { mkdtempSync, readdirSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, relative } from 'node:path';

export { rng, randn } from '../ts/random.js';

/** Brute-force top-k in float64; ties go to the lower id. */
export function bruteTopK(q: Float32Array, v: Float32Array | number[], d: number, k: number, cosine = false) {
  const nq = q.length / d, n = v.length / d;
  const ids: number[][] = [], scores: number[][] = [];
  for (let i = 0; i < nq; i++) {
    const s: number[] = [];
    let qn = 0;
    for (let c = 0; c < d; c++) qn += q[i * d + c] ** 2;
    for (let j = 0; j < n; j++) {
      let dot = 0, vn = 0;
      for (let c = 0; c < d; c++) {
        dot += q[i * d + c] * v[j * d + c];
        vn += v[j * d + c] ** 2;
      }
      s.push(cosine ? dot / Math.sqrt(qn * vn) : dot);
    }
    const order = s.map((_, j) => j).sort((a, b) => s[b] - s[a] || a - b).slice(0, k);
    ids.push(order);
    scores.push(order.map((j) => s[j]));
  }
  return { ids, scores };
}

export function tempDir(prefix = 'conceptlens-test-'): string {
  return mkdtempSync(join(tmpdir(), prefix));
}

export interface CliRun {
  code: number;
  stdout: string;
  stderr: string;
}

/** Runs the CLI in this process as `conceptlens ...args` would, capturing its output and exit code. */
export async function runCli(args: string[]): Promise<CliRun> {
  const { main } = await import('../ts/cli/main.js');
  const out: string[] = [], err: string[] = [];
  const saved = { log: console.log, error: console.error, write: process.stderr.write, code: process.exitCode };
  console.log = (...a: unknown[]) => void out.push(a.join(' ') + '\n');
  console.error = (...a: unknown[]) => void err.push(a.join(' ') + '\n');
  process.stderr.write = ((s: string | Uint8Array) => err.push(String(s)) > 0) as typeof process.stderr.write;
  process.exitCode = undefined;
  try {
    await main(['node', 'conceptlens', ...args]);
    return { code: Number(process.exitCode ?? 0), stdout: out.join(''), stderr: err.join('') };
  } finally {
    Object.assign(console, { log: saved.log, error: saved.error });
    process.stderr.write = saved.write;
    process.exitCode = saved.code;
  }
}

/** runCli that must succeed: its stdout, or an Error carrying the CLI's message and exit code. */
export async function cliOk(args: string[]): Promise<string> {
  const r = await runCli(args);
  if (r.code !== 0) throw Object.assign(new Error(r.stderr.trim() || `exit ${r.code}`), { exitCode: r.code });
  return r.stdout;
}

/** Every file under dir (path relative to dir → base64 bytes): before/after a run, proves what changed. */
export function fileSnapshot(dir: string): Map<string, string> {
  const out = new Map<string, string>();
  const walk = (d: string) => {
    for (const e of readdirSync(d, { withFileTypes: true })) {
      const p = join(d, e.name);
      if (e.isDirectory()) walk(p);
      else out.set(relative(dir, p), readFileSync(p).toString('base64'));
    }
  };
  walk(dir);
  return out;
}
