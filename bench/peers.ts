// Peers from other languages, run on the same data files in the same bench
// run: small scripts under bench/peers/, each printing one JSON line
// ({name, label, seconds (median), times, ...}) or exiting 3 with
// {"skipped": why} when its Python package is missing. The interpreter is
// CONCEPTLENS_PYTHON, else Debian's /usr/bin/python3 (where apt's
// python3-sklearn / python3-torch live), else python3 on PATH.
import { spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { packageRoot } from '../ts/package-root.js';
import { environmentWithoutEngineTuning } from '../ts/engine/addon.js';
import type { BenchRow } from './report.js';

export type PeerResult = { row: BenchRow & { label: string } } | { skipped: string };

function python(): string {
  if (process.env.CONCEPTLENS_PYTHON) return process.env.CONCEPTLENS_PYTHON;
  return existsSync('/usr/bin/python3') ? '/usr/bin/python3' : 'python3';
}

/** Runs bench/peers/<script> with `--key value` arguments; its row, or why it was skipped. */
export function runPeer(script: string, args: Record<string, string | number>): PeerResult {
  const argv = Object.entries(args).flatMap(([k, v]) => [`--${k}`, String(v)]);
  const path = join(packageRoot, 'bench', 'peers', script);
  // The peer keeps the faster OpenBLAS kernels the loader picked (OPENBLAS_CORETYPE) but not its
  // idle-thread policies, which suit the engine's pool and could slow the peer's own threads.
  const r = spawnSync(python(), [path, ...argv], { encoding: 'utf8', maxBuffer: 256 * 2 ** 20, env: environmentWithoutEngineTuning() });
  if (r.error) return { skipped: `${script}: cannot run ${python()} (${r.error.message})` };
  const last = r.stdout.trim().split('\n').at(-1) ?? '';
  let out: Record<string, unknown>;
  try {
    out = JSON.parse(last);
  } catch {
    return { skipped: `${script} failed (exit ${r.status}): ${r.stderr.trim().split('\n').at(-1) ?? ''}` };
  }
  if (r.status === 3 || out.skipped) return { skipped: `${script}: ${String(out.skipped)}` };
  if (r.status !== 0) return { skipped: `${script} failed (exit ${r.status}): ${r.stderr.trim().split('\n').at(-1) ?? ''}` };
  // The same protocol as the suite's own contenders, as the peer itself reports it.
  for (const key of ['warmup', 'repeats'] as const)
    if (args[key] !== undefined && out[key] !== args[key])
      return { skipped: `${script}: ran ${key} ${String(out[key])}, asked for ${args[key]}; its row would not be comparable` };
  return { row: out as BenchRow & { label: string } };
}

/** A peer row's timing, as the peer reported it (runPeer checked its warm-up and repeats against those asked). */
export function peerTiming(row: BenchRow): Pick<BenchRow, 'seconds' | 'warmup' | 'repeats'> {
  return { seconds: row.seconds, warmup: row.warmup, repeats: row.repeats };
}

/**
 * Adds `speedup_vs_<peer>` to every non-peer row: its `throughput` over the peer's, so contenders that solved
 * different numbers of items (a slow peer on a subset) still compare per item.
 */
export function addRatios(rows: BenchRow[], peers: string[], throughput: string): void {
  for (const peer of rows.filter((r) => peers.includes(r.name)))
    for (const r of rows)
      if (!peers.includes(r.name)) r[`speedup_vs_${peer.name}`] = (r[throughput] as number) / (peer[throughput] as number);
}
