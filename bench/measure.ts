// What the retrieval benches measure beside their own timings, in the same
// run: the process's peak resident memory, CPU seconds, the machine's
// sequential read rate on the files a search reads, and its sgemm rate.
import { closeSync, openSync, readSync, statSync } from 'node:fs';
import { matmulNT } from '../ts/engine/blas.js';
import { median, timeMedian } from './report.js';

/** Runs fn while sampling resident memory; returns fn's value and the peak RSS in bytes. */
export async function withPeakRss<T>(fn: () => Promise<T>): Promise<{ value: T; peak: number }> {
  let peak = process.memoryUsage().rss;
  const timer = setInterval(() => (peak = Math.max(peak, process.memoryUsage().rss)), 50);
  try {
    const value = await fn();
    return { value, peak: Math.max(peak, process.memoryUsage().rss) };
  } finally {
    clearInterval(timer);
  }
}

/** CPU seconds (user + system, every thread) since `from` (a process.cpuUsage()). */
export function cpuSeconds(from: NodeJS.CpuUsage): number {
  const c = process.cpuUsage(from);
  return (c.user + c.system) / 1e6;
}

/**
 * timeMedian's median seconds, and the median CPU seconds of the whole process over the same timed runs (warm-ups
 * left out): what the run cost in cores, robust to other load on the machine.
 */
export async function timeWithCpu(fn: () => Promise<unknown>, repeats: number, warmup: number): Promise<{ seconds: number; cpuSeconds: number }> {
  const cpu: number[] = [];
  const seconds = await timeMedian(async () => {
    const c0 = process.cpuUsage();
    await fn();
    cpu.push(cpuSeconds(c0));
  }, repeats, warmup);
  return { seconds, cpuSeconds: median(cpu.slice(warmup)) };
}

/**
 * Sequential read rate of `paths` in GB/s (10⁹ bytes): every byte read once in 16 MiB reads into one reused buffer,
 * the way a scan meets them (from the page cache when they are there, else from the device).
 */
export function sequentialReadRate(paths: readonly string[]): { gbps: number; bytes: number; seconds: number } {
  const buf = Buffer.allocUnsafe(1 << 24);
  let bytes = 0;
  const t0 = performance.now();
  for (const p of paths) {
    const fd = openSync(p, 'r'), size = statSync(p).size;
    try {
      for (let at = 0, n; at < size && (n = readSync(fd, buf, 0, buf.length, at)) > 0; at += n) bytes += n;
    } finally {
      closeSync(fd);
    }
  }
  const seconds = (performance.now() - t0) / 1000;
  return { gbps: bytes / seconds / 1e9, bytes, seconds };
}

/**
 * The machine's fp32 GEMM rate (OpenBLAS through the engine, widened to every core; 1024 × 1024 × 16384, whose
 * small output keeps page faults out of it; median of 3): GFLOP per second, and per CPU second, which a loaded
 * machine changes less.
 */
export async function sgemmRate(): Promise<{ seconds: number; gflops: number; perCpuSecond: number }> {
  const m = 1024, n = 1024, k = 16384, a = new Float32Array(m * k).fill(0.01), b = new Float32Array(n * k).fill(0.02);
  const wall: number[] = [], cpu: number[] = [];
  await matmulNT(a, m, k, b, n);  // warm-up
  for (let i = 0; i < 3; i++) {
    const t0 = performance.now(), c0 = process.cpuUsage();
    await matmulNT(a, m, k, b, n);
    wall.push((performance.now() - t0) / 1000);
    cpu.push(cpuSeconds(c0));
  }
  const flop = 2 * m * n * k;
  return { seconds: median(wall), gflops: flop / median(wall) / 1e9, perCpuSecond: flop / median(cpu) / 1e9 };
}
