// `conceptlens demo` (every method on the assets mirror, or planted data) and
// `conceptlens info` (the engine's build and runtime facts).
import type { Command } from 'commander';
import { runDemo } from '../demo/demo.js';
import { engineInfo } from '../engine/info.js';
import { assetsDir } from '../assets.js';
import { act } from './run.js';

export function registerDemo(program: Command): void {
  program
    .command('demo')
    .description('run every method on the embedded default data (assets mirror, else synthetic) and write a report')
    .option('--out <dir>', 'output directory', 'conceptlens-demo')
    .option('--synthetic', 'use the synthetic planted-concept set even when assets exist')
    .option('--json', 'print a JSON summary (the report\'s path and the seconds taken)')
    .action(act(async (o: { out: string; synthetic?: boolean; json?: boolean }, { signal }) => {
      const t0 = performance.now();
      const path = await runDemo(o.out, { synthetic: !!o.synthetic, log: (l) => console.error(l), signal });
      console.log(o.json ? JSON.stringify({ report: path, seconds: (performance.now() - t0) / 1000 }) : `report written to ${path}`);
    }));
  program
    .command('info')
    .description('engine build and runtime facts (BLAS kernels, threads, CUDA, assets)')
    .option('--json', 'print JSON')
    .action(act((o: { json?: boolean }) => {
      const info = { ...engineInfo(), assets: assetsDir() ?? null };
      console.log(o.json ? JSON.stringify(info) : Object.entries(info).map(([k, v]) => `${k}: ${v}`).join('\n'));
    }));
}
