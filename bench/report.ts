// The one JSON shape every `conceptlens bench` suite prints:
// { suite, params, machine, results: [{ name, seconds (median), ... }] }.
import { Option, type Command } from 'commander';
import { cpus, totalmem } from 'node:os';
import { Bench } from 'tinybench';
import { engineInfo, measurePeaks } from '../ts/engine/info.js';
import type { MachinePeaks } from '../ts/engine/addon.js';
import { integer, listOption } from '../ts/cli/options.js';
import { act } from '../ts/cli/run.js';

export interface BenchRow {
  name: string;
  seconds: number;
  [metric: string]: unknown;
}

/** One point of a contender's convergence curve: a timed run at one of its stopping tolerances. */
export interface CurvePoint {
  name: string;
  tol: number;
  seconds: number;
  [metric: string]: unknown;
}

export interface BenchReport {
  suite: string;
  params: Record<string, unknown>;
  machine: Awaited<ReturnType<typeof machine>>;
  results: BenchRow[];
  /** With --tols: every contender's runs at each tolerance. */
  curves?: CurvePoint[];
}

let peaks: Promise<MachinePeaks> | undefined;

/** The machine's arithmetic ceilings (see measurePeaks), measured once per process. */
export function machinePeaks(): Promise<MachinePeaks> {
  // A failed measurement is not kept: the next call measures again.
  return (peaks ??= measurePeaks().catch((e) => {
    peaks = undefined;
    throw e;
  }));
}

export async function machine() {
  const info = engineInfo(), pk = await machinePeaks();
  return {
    cpu: cpus()[0]?.model ?? 'unknown',
    cores: cpus().length,
    memoryGiB: Math.round(totalmem() / 2 ** 30),
    node: process.version,
    blasCore: info.blasCore,
    computeThreads: info.computeThreads,
    peaks: { fp32_gmacs_per_s: pk.fp32MacsPerS / 1e9, fp32_isa: pk.fp32Isa, int8_gmacs_per_s: pk.int8MacsPerS / 1e9, int16_gmacs_per_s: pk.int16MacsPerS / 1e9, threads: pk.threads },
  };
}

/**
 * A row's floor: `floor_seconds`, the least time its `macs` multiply-adds take at `macsPerS` (a measured peak), and
 * `of_peak`, that over the row's seconds (1: the row ran at the machine's peak throughout). Nothing where the
 * machine lacks the instructions (a peak of 0).
 */
export function floorFields(seconds: number, macs: number, macsPerS: number): { floor_seconds?: number; of_peak?: number } {
  if (!(macsPerS > 0)) return {};
  const floor = macs / macsPerS;
  return { floor_seconds: floor, of_peak: floor / seconds };
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

/**
 * An option that shapes generated data only. With the user's own data (options `own`, by attribute name) it would be
 * ignored, so giving both on the command line is a usage error (commander's conflict check: exit 2).
 */
export function generatorOption(flags: string, description: string, own: string[], parse: (v: string) => unknown, def: unknown): Option {
  return new Option(flags, `generated data only: ${description}`).argParser(parse).default(def).conflicts(own);
}

/**
 * Refuses the generator options `keys` (attribute names) when given with `--data clip-mix`: its rows are the real
 * 512-d CLIP embeddings and the generator's own mixtures, so they would be ignored.
 */
export function refuseWithClipMix(cmd: Command, keys: string[]): Command {
  return cmd.hook('preAction', (_, action) => {
    if (action.opts().data !== 'clip-mix') return;
    const given = action.options.find((o) => keys.includes(o.attributeName()) && action.getOptionValueSource(o.attributeName()) === 'cli');
    if (given) action.error(`error: ${given.flags} would be ignored with --data clip-mix (the real 512-d CLIP embeddings and their mixtures): give one or the other`);
  });
}

/**
 * The yardstick of the suites that compare solutions: per item, the least objective any run reached (a run may solve
 * only the first items), and for one run the largest relative gap of its items to it.
 */
export function gapToBest(runs: Float64Array[], items: number): (objectives: Float64Array) => number {
  const best = new Float64Array(items).fill(Infinity);
  for (const o of runs) o.forEach((v, i) => (best[i] = Math.min(best[i], v)));
  return (o) => Math.max(...Array.from(o, (v, i) => (v - best[i]) / best[i]));
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

/**
 * A suite's action: run it through the CLI runner (clear errors, exit codes), then print its report. The machine's
 * peaks are measured first, on a quiet machine: after a contender, BLAS threads still spinning would halve them.
 */
export function reportAction<P>(run: (p: P) => Promise<BenchReport>) {
  return act(async ({ json, ...p }: P & { json?: boolean }) => {
    await machinePeaks();
    printReport(await run(p as P), !!json);
  });
}
