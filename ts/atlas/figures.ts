// The figures the papers draw, from the atlas's data: SpLiCE's concept
// histograms for the dataset and per class (and the spurious-correlation
// candidates), LE's simulation-score distribution against the single best
// concept, DN-CBM's task-agnosticity and meta-cluster views with its local
// (per image) and global (per class) explanations, and FALCON's group grids.
import { escapeHtml as esc } from '../report/html.js';
import { barChartSvg } from '../report/chart.js';
import { contributions, globalExplanations, predict, toSparse } from '../methods/cbm.js';
import { classCounts } from './probe.js';
import { kmeans, pca2 } from './cluster.js';
import type { AtlasData } from './data.js';
import type { DncbmResult } from './dncbm.js';
import type { LeResult } from './le.js';
import { falconCrop, falconImage, thumbPath } from './paths.js';
import { meanWeights } from './splice.js';
import { barsSvg, heatmapSvg, histogramSvg, imageGridSvg, scatterSvg, type Point } from './svg.js';
import { readable } from './vocab.js';

/** One figure (or table) of the figures page. */
export interface Figure {
  id: string;
  title: string;
  /** Inline SVG and any HTML around it. */
  html: string;
}

/** The figures of one method. */
export interface FigureSection {
  method: string;
  figures: Figure[];
}

const figure = (id: string, title: string, html: string): Figure => ({ id, title, html });
const div = (cls: string, parts: string[]) => `<div class="${cls}">${parts.join('')}</div>`;

/** Classes with enough images for per-class figures, largest first (at most `limit`). */
function bigClasses(d: AtlasData, limit: number): number[] {
  const counts = classCounts(d.probe);
  return counts.flatMap((n, c) => (n >= d.minClassImages ? [c] : [])).sort((a, b) => counts[b] - counts[a] || a - b).slice(0, limit);
}

function spliceFigures(d: AtlasData): Figure[] {
  const s = d.splice!, all = Array.from({ length: s.weights.rows }, (_, i) => i), counts = classCounts(d.probe);
  const top = (rows: number[], k: number) => s.model.topConcepts(meanWeights(s.weights, rows), k).map((c) => ({ concept: readable(c.concept), weight: c.weight }));
  const out = [figure('splice-dataset', 'SpLiCE concept histogram of the probe set',
    barChartSvg(`SpLiCE: mean concept weights over ${all.length} images (${d.space}, λ = ${s.l1})`, top(all, 20)))];
  const classes = bigClasses(d, 12);
  if (classes.length)
    out.push(figure('splice-classes', 'SpLiCE concept histograms per class', div('multiples', classes.map((c) =>
      barChartSvg(`${d.probe.classes[c]} (${counts[c]} images, ${d.space})`, top(all.filter((i) => d.probe.labels[i] === c), 8))))));
  if (d.associations.length)
    out.push(figure('splice-spurious', 'Spurious-correlation candidates: concepts most associated with each class beyond the class concept', div('multiples', d.associations.map((a) =>
      barsSvg({
        title: `${a.className} (${a.images} images): mean weight in class − elsewhere, 95% CI`,
        bars: a.associated.map((x) => ({ label: readable(x.concept), value: x.change, lo: x.ci[0], hi: x.ci[1], accent: true })),
        digits: 4, note: a.classConcepts.length ? `left out as the class concept: ${a.classConcepts.map(readable).join(', ')}` : 'no vocabulary concept names the class',
      }))) + spuriousTable(d)));
  return out;
}

function spuriousTable(d: AtlasData): string {
  const rows = d.associations.flatMap((a) => a.associated.map((x) =>
    `<tr><td>${esc(a.className)}</td><td>${esc(readable(x.concept))}</td><td data-v="${x.change}">${x.change.toFixed(4)} [${x.ci[0].toFixed(4)}, ${x.ci[1].toFixed(4)}]</td>` +
    `<td>${(100 * x.presenceB).toFixed(0)}% vs ${(100 * x.presenceA).toFixed(0)}%</td></tr>`));
  return `<table class="spurious"><thead><tr><th>class</th><th>concept</th><th>strength: mean weight in class − elsewhere [95% CI]</th><th>present in class vs elsewhere</th></tr></thead>` +
    `<tbody>${rows.join('') || '<tr><td colspan="4">no concept is significantly raised in any class</td></tr>'}</tbody></table>`;
}

function leFigure(id: string, name: string, r: LeResult): Figure {
  return figure(id, `${name}: simulation scores against the single best concept`, histogramSvg({
    title: `${name}: simulation correlation on the test split over ${r.units.length} units`, xLabel: 'Pearson r of simulated and true activations (test split)',
    series: [{ name, values: r.units.map((u) => u.sim) }, { name: 'single best concept', values: r.units.map((u) => u.baseline) }],
  }) + `<p class="note">${esc(r.note)}</p>`);
}

/** The concepts used most (by how many images they fire on), at most `k`. */
function usedConcepts(x: DncbmResult, k: number): number[] {
  const m = x.strengths.cols, fires = new Float64Array(m);
  for (let q = 0; q < x.strengths.data.length; q++) if (x.strengths.data[q] > 0) fires[q % m]++;
  return Array.from({ length: m }, (_, j) => j).filter((j) => fires[j] > 0).sort((a, b) => fires[b] - fires[a] || a - b).slice(0, k);
}

/** How often each concept fires in each column group of images (sources, or classes with one source). */
function agnosticity(d: AtlasData, x: DncbmResult): Figure {
  const bySource = d.probe.sources.length > 1, m = x.strengths.cols;
  const cols = bySource ? d.probe.sources : bigClasses(d, 10).map((c) => d.probe.classes[c]);
  const groupOf = (i: number) => (bySource ? d.probe.source[i] : cols.indexOf(d.probe.classes[d.probe.labels[i]] ?? ''));
  const concepts = usedConcepts(x, 16), freq = concepts.map(() => new Array<number>(cols.length).fill(0)), sizes = new Array<number>(cols.length).fill(0);
  for (let i = 0; i < x.strengths.rows; i++) {
    const g = groupOf(i);
    if (g < 0) continue;
    sizes[g]++;
    concepts.forEach((j, r) => (freq[r][g] += x.strengths.data[i * m + j] > 0 ? 1 : 0));
  }
  const values = freq.map((row) => row.map((v, g) => v / Math.max(1, sizes[g])));
  const shared = concepts.filter((_, r) => values[r].filter((v) => v > 0).length >= 2).length;
  return figure('dncbm-agnostic', 'DN-CBM task-agnosticity: one dictionary of concepts across ' + (bySource ? 'datasets' : 'classes'), heatmapSvg({
    title: `Fraction of images each SAE concept fires on, per ${bySource ? 'source dataset' : 'class'} (names: ${d.space})`,
    rows: concepts.map((j) => `#${j} ${readable(x.names[j].name)}`), cols, values,
    note: `${shared} of these ${concepts.length} most used concepts fire in two or more ${bySource ? 'datasets' : 'classes'}.`,
  }));
}

/** The images where a cluster's concepts are strongest in sum, best first (at most 6). */
function clusterImages(x: DncbmResult, concepts: number[]): number[] {
  const score = new Float64Array(x.strengths.rows);
  for (let i = 0; i < x.strengths.rows; i++) for (const j of concepts) score[i] += x.strengths.data[i * x.strengths.cols + j];
  return Array.from(score.keys()).sort((a, b) => score[b] - score[a] || a - b).slice(0, 6).filter((i) => score[i] > 0);
}

/** k-means of the used concepts' unit directions (in the named space), laid out by PCA, with each cluster's top images. */
function metaClusters(d: AtlasData, x: DncbmResult): { fig: Figure; images: number[] } {
  const used = usedConcepts(x, 400), dim = x.directions.rows, m = x.directions.cols;
  const dirs = new Float32Array(used.length * dim);
  used.forEach((j, r) => {
    let nn = 0;
    for (let t = 0; t < dim; t++) nn += x.directions.data[t * m + j] ** 2;
    for (let t = 0; t < dim; t++) dirs[r * dim + t] = x.directions.data[t * m + j] / (Math.sqrt(nn) || 1);
  });
  const k = Math.max(1, Math.min(8, Math.floor(used.length / 4))), assign = kmeans(dirs, used.length, dim, k, 0);
  const [px, py] = pca2(dirs, used.length, dim);
  const members = Array.from({ length: k }, (_, c) => used.filter((_, r) => assign[r] === c));
  const label = (c: number) => members[c].slice(0, 3).map((j) => readable(x.names[j].name)).join(', ') || 'empty';
  const points: Point[] = used.map((j, r) => ({ x: px[r], y: py[r], group: assign[r], label: members[assign[r]].indexOf(j) < 2 ? readable(x.names[j].name) : undefined }));
  const rows = members.flatMap((c, n) => (c.length ? [{ heading: `cluster ${n + 1}: ${c.length} concepts (${label(n)})`, ids: clusterImages(x, c) }] : []));
  const html = div('multiples', [scatterSvg({
    title: `DN-CBM meta-clusters: ${used.length} used SAE concepts, k-means (k = ${k}) of their named directions, PCA layout (${d.space})`,
    points, groups: members.map((_, c) => `${c + 1}: ${label(c)}`),
    note: 'Each point is a concept; its direction is the strength-weighted mean of the images\' embeddings.',
  }), imageGridSvg({ title: 'Top images of each meta-cluster (summed strength of its concepts)', size: 72, columns: 6,
    rows: rows.map((r) => ({ heading: r.heading, cells: r.ids.map((i) => ({ href: thumbPath(i), caption: `#${i}` })) })) })]);
  return { fig: figure('dncbm-clusters', 'DN-CBM meta-clusters of concepts', html), images: rows.flatMap((r) => r.ids) };
}

function dncbmExplanations(d: AtlasData, x: DncbmResult): { figs: Figure[]; images: number[] } {
  const p = x.probe!, K = p.classes.length, m = x.strengths.cols, name = (j: number) => `#${j} ${readable(x.names[j].name)}`;
  const global = globalExplanations(p.weights, K, m, 6).map((cs, k) => barsSvg({
    title: `${d.probe.classes[p.classes[k]]}: heaviest CBM concept weights (names: ${d.space})`, bars: cs.map((c) => ({ label: name(c.concept), value: c.weight })), width: 420,
  }));
  const X = toSparse(x.strengths.data, x.strengths.rows, m), step = Math.max(1, Math.floor(p.heldOut.length / 6));
  const shown = p.heldOut.filter((_, r) => r % step === 0).slice(0, 6); // spread over the classes: held-out images are in shuffled order
  const local = shown.map((i) => {
    const c = predict(X, i, p.weights, K);
    return barsSvg({
      title: `image #${i}: true ${d.probe.classes[d.probe.labels[i]]}, predicted ${d.probe.classes[p.classes[c]]} (names: ${d.space})`, width: 520,
      bars: contributions(X, i, p.weights, c).slice(0, 6).map((t) => ({ label: name(t.concept), value: t.contribution })), image: { href: thumbPath(i), size: 96 },
    });
  });
  const summary = `<p>CBM probe on ${K} classes (each with ≥ ${d.minClassImages} images): held-out top-1 ${p.cbmTop1.toFixed(3)} on ${p.heldOut.length} images; ` +
    `a linear probe on the raw layer features: ${p.linearTop1.toFixed(3)}.</p>`;
  return {
    figs: [figure('dncbm-global', 'DN-CBM global explanations (per class)', summary + div('multiples', global)),
      figure('dncbm-local', 'DN-CBM local explanations (per image): contributions to the predicted class', div('multiples', local))],
    images: shown,
  };
}

function falconGrids(d: AtlasData): Figure {
  const rows = d.falcon!.slice(0, 8).flatMap((g) => [
    { heading: `group ${g.group}: ${g.high.length} images, interpretability ${g.interpretability?.toFixed(3) ?? '–'}` +
      (g.explained ? `; words: ${g.words.slice(0, 5).map((w) => w.term).join(', ')}` : ' (below the threshold: not named)'),
    cells: g.high.slice(0, 8).map((i) => ({ href: falconCrop(g.group, i), caption: `#${i}` })) },
    { heading: `counterfactuals of ${g.group} (lowly activating, similar otherwise)`, cells: g.low.slice(0, 8).map((i) => ({ href: falconImage(i), caption: `#${i}` })) },
  ]);
  return figure('falcon-groups', 'FALCON group grids: GradCAM crops and counterfactuals',
    rows.length ? imageGridSvg({ title: `FALCON feature groups of ${d.layer}: top crops, then lowly activating images (captions: ${d.space})`, rows }) : '<p>No feature group was found.</p>');
}

/** Every figure that applies, by method, and the probe images they show (their thumbnails must exist). */
export function atlasFigures(d: AtlasData): { sections: FigureSection[]; images: number[] } {
  const sections: FigureSection[] = [], images: number[] = [];
  if (d.splice) sections.push({ method: 'SpLiCE', figures: spliceFigures(d) });
  const le = [d.le.label && leFigure('le-label', 'LE(Label)', d.le.label), d.le.clip && leFigure('le-clip', `LE(CLIP), ${d.space}`, d.le.clip)];
  if (le.some(Boolean)) sections.push({ method: 'Linear Explanations', figures: le.filter((f): f is Figure => !!f) });
  if (d.dncbm) {
    const clusters = metaClusters(d, d.dncbm), figs = [agnosticity(d, d.dncbm), clusters.fig];
    images.push(...clusters.images);
    if (d.dncbm.probe) {
      const e = dncbmExplanations(d, d.dncbm);
      figs.push(...e.figs);
      images.push(...e.images);
    }
    sections.push({ method: 'Discover-then-Name (DN-CBM)', figures: figs });
  }
  if (d.falcon) sections.push({ method: 'FALCON', figures: [falconGrids(d)] });
  return { sections, images };
}
