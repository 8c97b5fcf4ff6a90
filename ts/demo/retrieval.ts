// Demo section: concept retrieval. The first concepts' nearest others by
// cosine (exact engine), and the same search through HNSW and FAISS with
// recall@10 against exact.
import type { DemoContext, DemoSection } from './context.js';
import { exactSearch } from '../retrieval/exact.js';
import { buildIndex, recallAtK } from '../retrieval/ann.js';

export async function retrievalSection(ctx: DemoContext): Promise<DemoSection> {
  const { names, vectors, dim, source } = ctx.concepts;
  // Queries: the first 80 concepts (LVIS's first in the real set); each finds
  // itself first, which the table skips.
  const nq = Math.min(80, names.length);
  const queries = vectors.slice(0, nq * dim);
  const k = 10;
  const t0 = performance.now();
  const exact = await exactSearch(queries, vectors, dim, { k: k + 1, metric: 'cosine', signal: ctx.signal });
  const exactSec = (performance.now() - t0) / 1000;
  const lines = [`Vocabulary: ${names.length} ${source === 'real' ? 'real CLIP ViT-B/32 text embeddings (Detic: LVIS, COCO, Objects365)' : `SYNTHETIC planted concept vectors (${ctx.syntheticWhy})`}, d = ${dim}.`, ''];
  lines.push(...await neighbourTable(ctx, queries, Math.min(12, nq)));
  lines.push('', `Exact search: ${nq} queries in ${(exactSec * 1000).toFixed(1)} ms.`, '', '| index | recall@10 vs exact |', '|---|---|');
  for (const kind of ['hnsw', 'faiss-flat', 'faiss-ivf'] as const) {
    const index = await buildIndex(kind, vectors, dim, { metric: 'cosine', nlist: 32 });
    const r = await index.search(queries, k + 1, { nprobe: 8, efSearch: 64 });
    lines.push(`| ${kind} | ${recallAtK(r.ids, exact.ids, nq, k + 1).toFixed(3)} |`);
  }
  ctx.log(`retrieval: ${nq} queries over ${names.length} concepts`);
  return { title: 'Concept retrieval (engine)', markdown: lines.join('\n') };
}

/** The table's concept names compare in one spelling: the sets write the same concept as 'Airplane', 'airplane' or 'alarm_clock'. */
const spelling = (name: string) => name.toLowerCase().replace(/[_\s]+/g, ' ').trim();

/** The first `rows` queries' five nearest other concepts, each name once and never the query's own under another spelling. */
async function neighbourTable(ctx: DemoContext, queries: Float32Array, rows: number): Promise<string[]> {
  const { names, vectors, dim } = ctx.concepts, k = 40;
  const r = await exactSearch(queries.subarray(0, rows * dim), vectors, dim, { k, metric: 'cosine', signal: ctx.signal });
  const lines = ['| query | nearest other concepts (cosine) |', '|---|---|'];
  for (let q = 0; q < rows; q++) {
    const seen = new Set([spelling(names[q])]), hits: string[] = [];
    for (let j = 0; j < k && hits.length < 5; j++) {
      const id = Number(r.ids[q * k + j]), name = spelling(names[id]);
      if (seen.has(name)) continue;
      seen.add(name);
      hits.push(`${names[id]} (${r.scores[q * k + j].toFixed(3)})`);
    }
    lines.push(`| ${names[q]} | ${hits.join(', ')} |`);
  }
  return lines;
}
