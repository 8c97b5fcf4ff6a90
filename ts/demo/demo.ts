// `conceptlens demo`: runs every method that has landed on the embedded
// default data and writes DIR/report.md.
import { join } from 'node:path';
import { writeFileAtomic } from '../io/atomic.js';
import { native } from '../native.js';
import { makeContext, type DemoContext, type DemoSection } from './context.js';
import { retrievalSection } from './retrieval.js';

const SECTIONS: ((ctx: DemoContext) => Promise<DemoSection>)[] = [retrievalSection];

export async function runDemo(outDir: string, opts: { synthetic?: boolean; log?: (l: string) => void } = {}): Promise<string> {
  const log = opts.log ?? (() => {});
  const ctx = makeContext(outDir, log, opts.synthetic);
  const info = native().info();
  const parts = [
    '# conceptlens demo report',
    '',
    `Data: ${ctx.concepts.source === 'real' ? `assets mirror at ${ctx.assets}` : '**SYNTHETIC** planted concepts (set CONCEPTLENS_ASSETS for real data)'}.`,
    `Engine: OpenBLAS ${info.blasCore} kernels, ${info.computeThreads} compute threads, CUDA compiled: ${info.cudaCompiled}.`,
  ];
  for (const section of SECTIONS) {
    const s = await section(ctx);
    parts.push('', `## ${s.title}`, '', s.markdown);
  }
  const path = join(outDir, 'report.md');
  writeFileAtomic(path, parts.join('\n') + '\n');
  return path;
}
