// Demo section: concept retrieval. Each COCO concept's nearest LVIS/O365
// concepts by cosine (exact engine), and the same search through HNSW and
// FAISS IVF with recall@10 against exact.
import type { DemoContext, DemoSection } from './context.js';
import { exactSearch } from '../retrieval/exact.js';
import { buildIndex, recallAtK } from '../retrieval/ann.js';

export async function retrievalSection(ctx: DemoContext): Promise<DemoSection> {
  const { names, vectors, dim, source } = ctx.concepts;
  // Queries: the first 80 concepts (COCO's block in the real set), plus noise
  // when synthetic so the answer is a planted concept, not itself.
  const nq = Math.min(80, names.length);
  const queries = vectors.slice(0, nq * dim);
  const k = 10;
  const t0 = performance.now();
  const exact = await exactSearch(queries, vectors, dim, { k: k + 1, metric: 'cosine', signal: ctx.signal });
  const exactSec = (performance.now() - t0) / 1000;
  const lines = [`Vocabulary: ${names.length} ${source === 'real' ? 'real CLIP ViT-B/32 text embeddings (Detic: LVIS, COCO, Objects365)' : `SYNTHETIC planted concept vectors (${ctx.syntheticWhy})`}, d = ${dim}.`, ''];
  lines.push('| query | nearest other concepts (cosine) |', '|---|---|');
  for (let q = 0; q < Math.min(12, nq); q++) {
    const hits: string[] = [];
    for (let j = 0; j < k + 1 && hits.length < 5; j++) {
      const id = Number(exact.ids[q * (k + 1) + j]);
      if (id !== q && names[id] !== names[q]) hits.push(`${names[id]} (${exact.scores[q * (k + 1) + j].toFixed(3)})`);
    }
    lines.push(`| ${names[q]} | ${hits.join(', ')} |`);
  }
  lines.push('', `Exact search: ${nq} queries in ${(exactSec * 1000).toFixed(1)} ms.`, '', '| index | recall@10 vs exact |', '|---|---|');
  for (const kind of ['hnsw', 'faiss-flat', 'faiss-ivf'] as const) {
    const index = await buildIndex(kind, vectors, dim, { metric: 'cosine', nlist: 32 });
    const r = await index.search(queries, k + 1, { nprobe: 8, efSearch: 64 });
    lines.push(`| ${kind} | ${recallAtK(r.ids, exact.ids, nq, k + 1).toFixed(3)} |`);
  }
  ctx.log(`retrieval: ${nq} queries over ${names.length} concepts`);
  return { title: 'Concept retrieval (engine)', markdown: lines.join('\n') };
}
