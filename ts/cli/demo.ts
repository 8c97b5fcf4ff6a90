import type { Command } from 'commander';
import { runDemo } from '../demo/demo.js';
import { native } from '../native.js';
import { assetsDir } from '../assets.js';

export function registerDemo(program: Command): void {
  program
    .command('demo')
    .description('run every method on the embedded default data (assets mirror, else synthetic) and write a report')
    .option('--out <dir>', 'output directory', 'conceptlens-demo')
    .option('--synthetic', 'use the synthetic planted-concept set even when assets exist')
    .action(async (o) => {
      const path = await runDemo(o.out, { synthetic: !!o.synthetic, log: (l) => console.error(l) });
      console.log(`report written to ${path}`);
    });
  program
    .command('info')
    .description('engine build and runtime facts (BLAS kernels, threads, CUDA, assets)')
    .option('--json', 'print JSON')
    .action((o) => {
      const info = { ...native().info(), assets: assetsDir() ?? null };
      console.log(o.json ? JSON.stringify(info) : Object.entries(info).map(([k, v]) => `${k}: ${v}`).join('\n'));
    });
}
