// The one JSON shape every `conceptlens bench` suite prints:
// { suite, params, machine, results: [{ name, seconds (median), ... }] }.
import type { Command } from 'commander';
import { cpus, totalmem } from 'node:os';
import { Bench } from 'tinybench';
import { engineInfo } from '../ts/engine/info.js';
import { integer, listOption } from '../ts/cli/options.js';
import { act } from '../ts/cli/run.js';

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

/**
 * Runs fn `warmup` times untimed, then `repeats` times, and returns the median seconds: tinybench's scheduler with
 * iteration counts only (no time budget), so every contender of a suite gets exactly the same protocol.
 */
export async function timeMedian(fn: () => Promise<unknown> | unknown, repeats = 3, warmup = 1): Promise<number> {
  const bench = new Bench({ iterations: repeats, time: 0, warmup: warmup > 0, warmupIterations: warmup, warmupTime: 0, throws: true });
  bench.add('run', async () => void (await fn()));
  await bench.run();
  const r = bench.tasks[0].result;
  if (r.state !== 'completed') throw new Error(`timing did not complete (${r.state})`);
  return r.latency.p50 / 1000;
}

export function printReport(r: BenchReport, json: boolean): void {
  if (json) {
    console.log(JSON.stringify(r));
    return;
  }
  console.log(`${r.suite}: ${JSON.stringify(r.params)}`);
  console.table(r.results);
}

/** What a suite's shared options add to its parameters. */
export interface RunOptions {
  warmup: number;
  repeats: number;
  peers: string[];
  plot?: string;
}

/**
 * The options every suite shares, after its own: --warmup and --repeats (the same for every contender), --peers
 * when the suite has peers in other languages, --plot when it draws, --json.
 */
export function addRunOptions(cmd: Command, o: { warmup?: number; repeats: number; peers?: string[]; plot?: string }): Command {
  cmd.option('--warmup <w>', 'untimed runs per contender first', integer('--warmup', 0), o.warmup ?? 1)
    .option('--repeats <r>', 'timed runs per contender (median)', integer('--repeats'), o.repeats);
  if (o.peers) cmd.addOption(listOption('--peers <list>', `peers from other languages on the same data: ${o.peers.join(', ')}`, '', o.peers));
  if (o.plot) cmd.option('--plot <svg>', o.plot);
  return cmd.option('--json', 'print one JSON object');
}

/** A suite's action: run it through the CLI runner (clear errors, exit codes), then print its report. */
export function reportAction<P>(run: (p: P) => Promise<BenchReport>) {
  return act(async ({ json, ...p }: P & { json?: boolean }) => printReport(await run(p as P), !!json));
}
