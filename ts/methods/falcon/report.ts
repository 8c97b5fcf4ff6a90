// FALCON outputs: concepts.csv and a self-contained report.html that
// references crops and images by paths relative to the run directory.
import type { Box } from './cam.js';
import type { ImageCaptions, Scored } from './concepts.js';
import { escapeHtml as esc } from '../../report/html.js';

/** FALCON's explanation of one feature group, as stored in DIR/groups/*.json. */
export interface GroupExplanation {
  /** The group key ("3,17"). */
  group: string;
  /** Its features, ascending. */
  features: number[];
  /** Highly activating images (ascending) and their GradCAM boxes, when cropped. */
  high: number[];
  boxes?: Box[];
  /** Lowly activating counterfactuals, most similar first. */
  low: number[];
  /** Similarity of each lowly activating image, aligned with `low`. */
  lowSimilarities: number[];
  /** Mean cosine Gram of the crops' embeddings; null when not computed. */
  interpretability: number | null;
  /** Whether the group was captioned and named (its score passed the threshold, or all groups were asked for). */
  explained: boolean;
  /** The score of as many random whole images: the chance level the group's score compares with; null when not computed. */
  baseline: number | null;
  /** Contrasted words, best first. */
  words: Scored[];
  /** Contrasted noun phrases, best first. */
  phrases: Scored[];
  /** Top captions of each highly activating crop and each lowly activating image. */
  captions: { high: ImageCaptions[]; low: ImageCaptions[] };
}

/** Paths, relative to the run directory, of a group's images in the report. */
export interface ReportImages {
  /** Crop paths of the group's highly activating images, aligned with `e.high`. */
  crops(e: GroupExplanation): string[];
  /** Paths of the group's lowly activating images, aligned with `e.low`. */
  lowly(e: GroupExplanation): string[];
}

const scored = (xs: Scored[]) => xs.map((s) => `${s.term}:${s.score.toFixed(4)}`).join('; ');
const csvField = (s: string) => (/[",\n]/.test(s) ? `"${s.replace(/"/g, '""')}"` : s);

/**
 * concepts.csv text: one row per group with its words and phrases ("term:score; …") and interpretability (empty when not
 * scored).
 */
export function conceptsCsv(groups: GroupExplanation[]): string {
  const num = (x: number | null) => (x === null ? '' : x.toFixed(4));
  const rows = groups.map((g) => [g.group, scored(g.words), scored(g.phrases), num(g.interpretability), num(g.baseline), g.explained ? 'yes' : 'no']);
  return [['group', 'words', 'phrases', 'interpretability', 'random_baseline', 'explained'], ...rows].map((r) => r.map(csvField).join(',')).join('\n') + '\n';
}

function termTable(title: string, xs: Scored[]): string {
  const rows = xs.map((s) => `<tr><td>${esc(s.term)}</td><td>${s.score.toFixed(3)}</td></tr>`).join('');
  return `<table class="terms"><caption>${title}</caption>${rows || '<tr><td colspan="2">none</td></tr>'}</table>`;
}

function strip(cls: string, title: string, srcs: string[], labels: number[]): string {
  const imgs = srcs.map((s, i) => `<figure><img src="${esc(s)}" alt="image ${labels[i]}" loading="eager"><figcaption>#${labels[i]}</figcaption></figure>`).join('');
  return `<div class="${cls}"><h3>${title}</h3>${imgs || '<p>none</p>'}</div>`;
}

function section(g: GroupExplanation, images: ReportImages, maxCrops: number): string {
  const score = g.interpretability === null ? 'not scored' : `${g.interpretability.toFixed(3)}${g.explained ? '' : ' (below the threshold: not explained)'}`;
  const chance = g.baseline === null ? '' : ` · random sets of ${g.high.length} images score ${g.baseline.toFixed(3)}`;
  return `<section class="group" data-group="${esc(g.group)}">
<h2>Group ${esc(g.group)}</h2>
<p>${g.high.length} highly activating images · interpretability ${score}${chance}</p>
${strip('crops', 'Top activating crops', images.crops(g).slice(0, maxCrops), g.high.slice(0, maxCrops))}
${strip('lowly', 'Lowly activating images', images.lowly(g), g.low)}
<div class="concepts">${termTable('Words', g.words)}${termTable('Noun phrases', g.phrases)}</div>
</section>`;
}

/**
 * A self-contained HTML report of the groups: crops (at most `maxCrops` per group), lowly activating images,
 * words and phrases; image paths are as `images` gives them (relative to where the HTML is written).
 */
export function reportHtml(title: string, groups: GroupExplanation[], images: ReportImages, maxCrops = 12): string {
  return `<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>${esc(title)}</title>
<style>
body{font-family:system-ui,sans-serif;margin:2em;max-width:1200px}
.group{border-top:1px solid #ccc;padding:1em 0}
figure{display:inline-block;margin:4px;text-align:center;font-size:12px}
figure img{width:112px;height:112px;object-fit:cover;display:block}
.concepts{display:flex;gap:2em}
table.terms caption{font-weight:bold;text-align:left}
table.terms td{padding:0 .8em 0 0}
</style></head><body>
<h1>${esc(title)}</h1>
<p>${groups.length} feature groups. Crops are the largest GradCAM box (threshold 0.6); concepts are words and noun phrases of the crops' top captions that the lowly activating images lack.</p>
${groups.map((g) => section(g, images, maxCrops)).join('\n')}
</body></html>
`;
}
