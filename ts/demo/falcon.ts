// Demo section: FALCON. Real data: the offline FALCON demo inputs
// (ts/methods/falcon/demo.ts: SqueezeNet fire22 over ImageNet samples, LVIS
// CLIP text embeddings as captions, crops embedded through the classifier
// bridge) on the first images only, so it stays quick. Synthetic: feature
// groups planted to co-fire on sets of images, and the groups found.
import { join } from 'node:path';
import { squeezenetDemoInputs } from '../methods/falcon/demo.js';
import { runFalcon } from '../methods/falcon/pipeline.js';
import type { GroupExplanation } from '../methods/falcon/report.js';
import { computeFiring, groupImages, groupKey, DEFAULT_SIGMAS, DEFAULT_MORE_THAN } from '../methods/falcon/groups.js';
import type { DemoContext, DemoSection } from './context.js';
import { pick } from './data.js';
import { gaussian as gauss, rng } from '../random.js';

const IMAGES = 300;
const MAX_GROUPS = 4;

async function realSection(ctx: DemoContext): Promise<DemoSection> {
  const inputs = await squeezenetDemoInputs();
  const full = inputs.images, count = Math.min(IMAGES, full.count);
  inputs.images = { count, rgb: (i) => full.rgb(i) };
  const dir = join(ctx.outDir, 'falcon');
  const groups = await runFalcon(inputs, dir, {
    moreThan: 1, maxGroups: MAX_GROUPS, signal: ctx.signal,
    onStage: (stage, d, t) => (stage === 'explanations' || d === t || d % 100 === 0) && ctx.log(`falcon: ${stage} ${d}/${t}`),
  });
  const lines = [
    `SqueezeNet 1.1 fire22 (average pooled, 512 features) over the first ${count} ImageNet samples (sorted, one per class); ` +
    `groups = images firing exactly the same feature set (τ = mean + ${DEFAULT_SIGMAS}σ), kept with more than 1 image ` +
    `(lowered from ${DEFAULT_MORE_THAN}: one image per class makes large groups rare); the ${MAX_GROUPS} largest explained. ` +
    `**Caption space is a STAND-IN**: crops are embedded by a classifier bridge (SqueezeNet softmax × CLIP text embeddings of ` +
    `${inputs.matched} matched LVIS names), not a CLIP image encoder, and captions are the LVIS concept prompts.`, '',
    `Full FALCON report with crops: [falcon/report.html](falcon/report.html); concepts: [falcon/concepts.csv](falcon/concepts.csv).`, '',
    ...conceptTable(groups),
  ];
  if (groups.length === 0) lines.push('', `No feature set is shared by more than one of the ${count} images.`);
  return { title: 'FALCON (feature groups)', markdown: lines.join('\n') };
}

/** The groups' top words, and their top noun phrases where any group has one (the stand-in's captions, one concept name each, rarely do). */
function conceptTable(groups: GroupExplanation[]): string[] {
  const phrases = groups.some((g) => g.phrases.length > 0);
  const row = (g: GroupExplanation) => [g.group, g.high.length, g.interpretability?.toFixed(3) ?? '–', g.words.slice(0, 5).map((w) => w.term).join(', '),
    ...(phrases ? [g.phrases.slice(0, 3).map((w) => w.term).join(', ')] : [])];
  const head = ['features', 'images', 'interpretability', 'top words', ...(phrases ? ['top phrases'] : [])];
  return [`| ${head.join(' | ')} |`, `|${head.map(() => '---|').join('')}`, ...groups.map((g) => `| ${row(g).join(' | ')} |`),
    ...(phrases || groups.length === 0 ? [] : ['', 'No noun phrases: each caption is a single concept name, so the groups are described by words.'])];
}

/** |noise| representations with `planted` feature sets set high on their own images. */
function plantedFiring(rows: number, cols: number, planted: number[][], perGroup: number, seed: number) {
  const rand = rng(seed), data = new Float32Array(rows * cols);
  for (let i = 0; i < data.length; i++) data[i] = Math.abs(gauss(rand));
  const images = pick(rows, planted.length * perGroup, rand);
  const members = planted.map((features, g) => {
    const ids = images.slice(g * perGroup, (g + 1) * perGroup).sort((a, b) => a - b);
    for (const x of ids) for (const f of features) data[x * cols + f] = 10 + gauss(rand);
    return ids;
  });
  return { r: { data, rows, cols }, members };
}

async function syntheticSection(ctx: DemoContext): Promise<DemoSection> {
  const rows = 1000, cols = 256, perGroup = 15, planted = [[3, 17], [5, 40, 41], [60], [100, 200]];
  const { r, members } = plantedFiring(rows, cols, planted, perGroup, 3);
  const firing = await computeFiring(r);
  const groups = groupImages(firing.sets);
  const found = planted.map((f, g) => {
    const ids = groups[groupKey(f)] ?? [];
    return { key: groupKey(f), hit: ids.filter((x) => members[g].includes(x)).length, size: ids.length };
  });
  const recovered = found.filter((f) => f.hit === perGroup && f.size === perGroup).length;
  const spurious = Object.keys(groups).filter((k) => !found.some((f) => f.key === k));
  ctx.log(`falcon: synthetic groups recovered ${recovered}/${planted.length}`);
  const lines = [
    `**SYNTHETIC**: ${rows} images × ${cols} features of |N(0,1)| noise; ${planted.length} feature groups planted to co-fire (≈10) on ${perGroup} images each. ` +
    `Firing at τ = mean + ${DEFAULT_SIGMAS}σ of the row-normalised representations, groups of more than ${DEFAULT_MORE_THAN} images.`, '',
    `Planted groups recovered exactly (same features, same images): ${recovered}/${planted.length}; spurious groups: ${spurious.length}.`, '',
    '| planted features | images found (of planted) | group size |', '|---|---|---|',
    ...found.map((f) => `| ${f.key} | ${f.hit}/${perGroup} | ${f.size} |`),
  ];
  return { title: 'FALCON (feature groups)', markdown: lines.join('\n') };
}

export function falconSection(ctx: DemoContext): Promise<DemoSection> {
  return ctx.concepts.source === 'real' ? realSection(ctx) : syntheticSection(ctx);
}
