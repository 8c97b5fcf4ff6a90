// The one JSON shape every `conceptlens bench` suite prints:
// { suite, params, machine, results: [{ name, seconds (median), ... }] }.
import { cpus, totalmem } from 'node:os';
import { engineInfo } from '../ts/engine/info.js';

export interface BenchRow {
  name: string;
  seconds: number;
  [metric: string]: unknown;
}

export interface BenchReport {
  suite: string;
  params: Record<string, unknown>;
  machine: Record<string, unknown>;
  results: BenchRow[];
}

export function machine(): Record<string, unknown> {
  const info = engineInfo();
  return {
    cpu: cpus()[0]?.model ?? 'unknown',
    cores: cpus().length,
    memoryGiB: Math.round(totalmem() / 2 ** 30),
    node: process.version,
    blasCore: info.blasCore,
    computeThreads: info.computeThreads,
  };
}

export function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  const m = s.length >> 1;
  return s.length % 2 ? s[m] : (s[m - 1] + s[m]) / 2;
}

/** Runs fn `repeats` times (after `warmup` runs) and returns the median seconds. */
export async function timeMedian(fn: () => Promise<unknown> | unknown, repeats = 3, warmup = 1): Promise<number> {
  for (let i = 0; i < warmup; i++) await fn();
  const t: number[] = [];
  for (let i = 0; i < repeats; i++) {
    const t0 = performance.now();
    await fn();
    t.push((performance.now() - t0) / 1000);
  }
  return median(t);
}

export function printReport(r: BenchReport, json: boolean): void {
  if (json) {
    console.log(JSON.stringify(r));
    return;
  }
  console.log(`${r.suite}: ${JSON.stringify(r.params)}`);
  console.table(r.results);
}
