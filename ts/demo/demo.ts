// `conceptlens demo`: runs every method that has landed on the embedded
// default data and writes DIR/report.md.
import { join } from 'node:path';
import { ensureDir, writeFileAtomic } from '../io/atomic.js';
import { engineInfo } from '../engine/info.js';
import { throwIfAborted } from '../abort.js';
import { makeContext, type DemoContext, type DemoSection } from './context.js';
import { retrievalSection } from './retrieval.js';
import { spliceSection } from './splice.js';
import { leSection } from './le.js';
import { falconSection } from './falcon.js';
import { dncbmSection } from './dncbm.js';
import { atlasSection } from './atlas.js';

/** `title` heads the section when run() fails before giving its own. */
interface Section {
  title: string;
  run: (ctx: DemoContext) => Promise<DemoSection>;
}

const SECTIONS: Section[] = [
  { title: 'Concept retrieval (engine)', run: retrievalSection },
  { title: 'SpLiCE', run: spliceSection },
  { title: 'Linear Explanations', run: leSection },
  { title: 'FALCON', run: falconSection },
  { title: 'Discover-then-Name (DN-CBM)', run: dncbmSection },
  { title: 'Atlas', run: atlasSection },
];

/** A failing section is reported in its place; the rest of the demo still runs. An abort stops the demo. */
async function runSection(section: Section, ctx: DemoContext): Promise<DemoSection> {
  const t0 = performance.now();
  try {
    const s = await section.run(ctx);
    const sec = (performance.now() - t0) / 1000;
    ctx.log(`${s.title}: done in ${sec.toFixed(1)} s`);
    return { title: s.title, markdown: `${s.markdown}

_Section time: ${sec.toFixed(1)} s._` };
  } catch (e) {
    throwIfAborted(ctx.signal);
    const msg = e instanceof Error ? e.message : String(e);
    ctx.log(`${section.title}: FAILED: ${msg}`);
    return { title: section.title, markdown: `**This section failed**: ${msg}` };
  }
}

export async function runDemo(outDir: string, opts: { synthetic?: boolean; log?: (l: string) => void; signal?: AbortSignal } = {}): Promise<string> {
  const log = opts.log ?? (() => {});
  ensureDir(outDir, 'demo');
  const ctx = makeContext(outDir, log, opts.synthetic, opts.signal);
  const info = engineInfo();
  const parts = [
    '# conceptlens demo report',
    '',
    `Data: ${ctx.concepts.source === 'real' ? `assets mirror at ${ctx.assets}` : `**SYNTHETIC** planted concepts (${ctx.syntheticWhy})`}.`,
    `Engine: OpenBLAS ${info.blasCore} kernels, ${info.computeThreads} compute threads, CUDA compiled: ${info.cudaCompiled}.`,
  ];
  for (const section of SECTIONS) {
    throwIfAborted(ctx.signal);
    const s = await runSection(section, ctx);
    parts.push('', `## ${s.title}`, '', s.markdown);
  }
  const path = join(outDir, 'report.md');
  writeFileAtomic(path, parts.join('\n') + '\n');
  return path;
}
