// `conceptlens falcon`: FALCON feature groups and their concepts.
//   groups  — feature groups of precomputed representations (groups.json)
//   explain — one group's lowly activating images, captions and concepts on precomputed embeddings
//   run     — the whole method on a model, an image folder and a caption vocabulary, resumable
import { statSync } from 'node:fs';
import { join } from 'node:path';
import { Option, type Command } from 'commander';
import { ConceptLensError } from '../errors.js';
import { isWithin, requireDirTarget, writeFileAtomic } from '../io/atomic.js';
import { readMatrix } from '../io/matrix.js';
import { gatherRows } from '../matrix.js';
import { openCaptions, type VocabSearcher } from '../methods/falcon/captions.js';
import { computeFiring, groupImages, groupMembers, listedMembers, parseGroupKey, readGroups, readRepresentations, representationsF32 } from '../methods/falcon/groups.js';
import { describeGroup, groupFile, requireRunDir, runFalcon, RUN_OUTPUTS } from '../methods/falcon/pipeline.js';
import { conceptsCsv, type GroupExplanation } from '../methods/falcon/report.js';
import { lowlyActivating } from '../methods/falcon/scores.js';
import { openRunInputs } from '../methods/falcon/adapters.js';
import { squeezenetDemoInputs } from '../methods/falcon/demo.js';
import { progressBar } from './progress.js';
import { existingFile, integer, number } from './options.js';
import { act, UsageError } from './run.js';
import { queueSearcher } from '../distributed/search.js';
import { addQueueOptions, withQueueStatus, type QueueFlags } from './queue.js';

/**
 * The action of a command whose caption search (--captions) runs on the queue's workers with --queue. Checked
 * before the inputs load: the workers reopen the vocabulary, so it must be a shard directory or a store.
 */
function captionAction<O extends QueueFlags & { captions: string; out?: string }>(body: (o: O, signal: AbortSignal, search?: VocabSearcher) => Promise<void>) {
  return act(async (o: O, { signal }) => {
    if (o.queue && !statSync(o.captions, { throwIfNoEntry: false })?.isDirectory())
      throw new UsageError(`--captions: with --queue, the caption vocabulary must be a LAION shard directory or a store from \`vocab build\`, got ${o.captions}`);
    await withQueueStatus('captions', o, { workDir: o.out && join(o.out, 'queue'), signal }, (q) => body(o, signal, q && queueSearcher(q)));
  });
}

/** The --queue options of falcon explain and run. */
const addCaptionQueue = (cmd: Command) => addQueueOptions(cmd, 'the caption search (one job per shard of --captions)', 'OUT/queue');

function registerGroups(falcon: Command): void {
  falcon.command('groups')
    .description('Feature groups: images whose features at or above mean + 5·std of the row-normalised representations are exactly the same set')
    .requiredOption('--representations <npy>', 'N × D representations (float32 or float16)')
    .requiredOption('--out <json>', 'groups.json: group key ("3,17") → ascending image indices')
    .addOption(sigmasOption())
    .option('--more-than <n>', 'keep groups with more than this many images', integer('--more-than', 0), 10)
    .option('--json', 'print a JSON summary (τ, its mean and std, the number of groups)')
    .action(act(async (o: { representations: string; out: string; sigmas: number; moreThan: number; json?: boolean }, { signal }) => {
      const f = await computeFiring(readRepresentations(o.representations), { sigmas: o.sigmas, signal });
      const groups = groupImages(f.sets, o.moreThan), count = Object.keys(groups).length;
      writeFileAtomic(o.out, JSON.stringify(groups) + '\n');
      if (o.json) console.log(JSON.stringify({ out: o.out, tau: f.tau, mean: f.mean, std: f.std, groups: count }));
      else console.error(`τ = ${f.tau.toFixed(5)} (mean ${f.mean.toFixed(5)}, std ${f.std.toFixed(5)}); ${count} groups → ${o.out}`);
    }));
}

/** The explained groups, one tab-separated line each (key, images, interpretability, words, phrases), or as JSON. */
function printGroups(groups: GroupExplanation[], json?: boolean): void {
  const terms = (ts: { term: string }[]) => ts.map((w) => w.term);
  if (json) console.log(JSON.stringify(groups.map((g) => ({ group: g.group, images: g.high.length, interpretability: g.interpretability, explained: g.explained, words: terms(g.words), phrases: terms(g.phrases) }))));
  else for (const g of groups) console.log(`${g.group}\t${g.high.length} images\t${g.interpretability?.toFixed(3)}\t${terms(g.words).join(', ')}\t${terms(g.phrases).join(', ')}`);
}

interface ExplainOpts extends QueueFlags {
  group: string; representations: string; groups?: string; imageEmbeddings: string; cropEmbeddings?: string;
  captions: string; captionsText?: string; temperature: number; unitRows?: boolean; out?: string; sigmas: number; moreThan: number;
}

function registerExplain(falcon: Command): void {
  addCaptionQueue(falcon.command('explain')
    .description('Concepts of one feature group on precomputed inputs: lowly activating images, top captions, contrasted words and phrases')
    .requiredOption('--group <key>', 'feature indices joined by commas, e.g. "3,17"')
    .requiredOption('--representations <npy>', 'N × D representations')
    .option('--groups <json>', 'groups.json from `falcon groups` on these representations and --sigmas, checked against them (default: recomputed)')
    .requiredOption('--image-embeddings <npy>', 'N × d float32 image embeddings (the caption vocabulary\'s space)')
    .option('--crop-embeddings <npy>', 'embeddings of the group\'s GradCAM crops, one row per group image in ascending order (captions and interpretability)')
    .requiredOption('--captions <path>', 'caption vocabulary: an embeddings .npy or a LAION-layout directory')
    .option('--captions-text <txt>', 'captions of an .npy vocabulary, one per line (default: the .npy path with .txt)')
    .option('--temperature <t>', 'per-shard softmax(t·cos) scoring; 0 for plain cosine', number('--temperature', { min: 0 }), 100)
    .option('--unit-rows', 'the vocabulary rows are unit norm (as LAION\'s): skip their norms')
    .addOption(sigmasOption())
    .option('--more-than <n>', 'keep groups with more than this many images', integer('--more-than', 0), 10)
    .option('--out <dir>', 'write groups/g<key>.json (commas as _: group "3,17" → groups/g3_17.json) and concepts.csv here'))
    .action(captionAction(explain));
}

async function explain(o: ExplainOpts, signal: AbortSignal, search?: VocabSearcher): Promise<void> {
  if (o.out) requireDirTarget(o.out, 'explanation');
  const rep = readRepresentations(o.representations);
  const features = parseGroupKey(o.group, rep.cols), key = features.join(',');
  const listed = o.groups ? groupMembers(readGroups(o.groups, rep.rows), key, o.groups) : undefined;
  const vocab = await openCaptions(o.captions, o.captionsText), inSpace = { cols: vocab.dim, colsFrom: `the dimension of the captions ${o.captions}` };
  const emb = readMatrix(o.imageEmbeddings, { what: 'image embeddings', rows: rep.rows, rowsFrom: `one per image of ${o.representations}`, ...inSpace });
  const crops = o.cropEmbeddings ? readMatrix(o.cropEmbeddings, { what: 'crop embeddings', ...inSpace }) : null;
  const firing = await computeFiring(rep, { sigmas: o.sigmas, signal });
  const high = listed ? listedMembers(listed, firing, key, o.groups!, `${o.representations} at --sigmas ${o.sigmas}`)
    : groupMembers(groupImages(firing.sets, o.moreThan), key);
  if (crops && crops.rows !== high.length) throw new ConceptLensError('ERR_SHAPE', `${o.cropEmbeddings}: ${crops.rows} rows, expected ${high.length} (the group's images)`);
  const lowly = lowlyActivating(representationsF32(rep), firing, features, high);
  const bar = progressBar('captions', 'rows');
  const e = await describeGroup({
    key, high, low: lowly.images, lowSimilarities: lowly.similarities,
    highEmbeddings: crops ? crops.data : gatherRows(emb, high, o.imageEmbeddings), lowEmbeddings: gatherRows(emb, lowly.images, o.imageEmbeddings),
    cropEmbeddings: crops?.data ?? null, dim: emb.cols, vocab,
  }, { softmaxTemperature: o.temperature, unitRows: o.unitRows, signal, onProgress: (d, t) => bar.update(d, t), search });
  bar.stop();
  if (o.out) {
    writeFileAtomic(join(o.out, groupFile(key)), JSON.stringify(e) + '\n');
    writeFileAtomic(join(o.out, 'concepts.csv'), conceptsCsv([e]));
  }
  console.log(JSON.stringify({ group: e.group, high: e.high.length, low: e.low, interpretability: e.interpretability, words: e.words, phrases: e.phrases }, null, 2));
}

interface RunOpts extends QueueFlags {
  model: string; layer: string; images: string; captions: string; captionsText?: string; encoder?: string; out: string;
  batch: number; maxGroups?: number; temperature: number; unitRows?: boolean; sigmas: number; interpretableAbove: number; allGroups?: boolean; moreThan: number;
  json?: boolean;
}

function registerRun(falcon: Command): void {
  addCaptionQueue(falcon.command('run')
    .description('FALCON end to end: representations, groups, GradCAM crops, interpretability, counterfactuals, captions, concepts, report.html (resumable)')
    .requiredOption('--model <onnx>', 'the network to explain (ONNX)', existingFile('--model'))
    .requiredOption('--layer <name>', 'target layer: a spatial map whose global average pool is the representation (e.g. fire22)')
    .requiredOption('--images <dir>', 'probe images')
    .requiredOption('--captions <path>', 'caption vocabulary: an embeddings .npy or a LAION-layout directory')
    .option('--captions-text <txt>', 'captions of an .npy vocabulary, one per line')
    .option('--encoder <onnx>', 'image encoder into the caption vocabulary\'s space (e.g. a CLIP visual tower)', existingFile('--encoder'))
    .requiredOption('--out <dir>', 'run directory: a stage\'s outputs are reused when its inputs and options are the same, else it and later stages are computed again')
    .option('--batch <n>', 'images per model call', integer('--batch'), 32)
    .option('--json', 'print the explained groups as JSON')
    .option('--max-groups <n>', 'explain at most this many groups, largest first', integer('--max-groups'))
    .option('--temperature <t>', 'per-shard softmax(t·cos) caption scoring; 0 for plain cosine', number('--temperature', { min: 0 }), 100)
    .option('--unit-rows', 'the vocabulary rows are unit norm (as LAION\'s): skip their norms')
    .addOption(sigmasOption())
    .option('--more-than <n>', 'keep groups with more than this many images', integer('--more-than', 0), 10)
    .option('--interpretable-above <x>', "caption and name only groups whose crops' interpretability (in [0, 1]) passes this", number('--interpretable-above', { min: 0, max: 1 }), 0.8)
    .option('--all-groups', 'caption and name every group, whatever its interpretability'))
    .action(captionAction(run));
}

/**
 * The run directory and the images kept apart: a stage that starts over removes its folders (so --images must not
 * lie in one), and a run inside --images would have its crops read as images the next time.
 */
function requireApart(images: string, out: string): void {
  if (isWithin(out, images)) throw new UsageError(`--out: '${out}' is inside --images '${images}'; a rerun would read its crops as images`);
  const output = RUN_OUTPUTS.find((f) => isWithin(images, join(out, f)));
  if (output) throw new UsageError(`--images: '${images}' is inside ${join(out, output)}, which the run replaces; give another --out`);
}

async function run(o: RunOpts, signal: AbortSignal, search?: VocabSearcher): Promise<void> {
  requireApart(o.images, o.out);
  requireRunDir(o.out);  // before the models load; runFalcon checks again
  const inputs = await openRunInputs(o);
  const bars = new Map<string, ReturnType<typeof progressBar>>();
  const out = await runFalcon(inputs, o.out, {
    batch: o.batch, maxGroups: o.maxGroups, sigmas: o.sigmas, signal, captions: { softmaxTemperature: o.temperature, unitRows: o.unitRows, search },
    interpretableAbove: o.interpretableAbove, explainAll: !!o.allGroups, moreThan: o.moreThan,
    onStage: (stage, d, t, cached) => {
      if (cached) return console.error(`${stage}: reused from ${o.out} (same inputs and options)`);
      if (!bars.has(stage)) bars.set(stage, progressBar(stage, stage === 'explanations' ? 'groups' : 'images'));
      bars.get(stage)!.update(d, t);
    },
  });
  for (const b of bars.values()) b.stop();
  console.error(`${out.length} groups explained → ${join(o.out, 'report.html')}, ${join(o.out, 'concepts.csv')}`);
  printGroups(out, o.json);
}

function registerDemo(falcon: Command): void {
  falcon.command('demo')
    .description('Offline demo on the bundled assets: SqueezeNet fire22 over the ImageNet samples, LVIS CLIP text embeddings as captions (crops embedded through a classifier bridge; see ts/methods/falcon/demo.ts)')
    .requiredOption('--out <dir>', 'run directory: a stage\'s outputs are reused when its inputs and options are the same')
    .option('--more-than <n>', 'keep groups with more than this many images (one image per class makes large groups rare)', integer('--more-than', 0), 2)
    .option('--max-groups <n>', 'explain at most this many groups, largest first', integer('--max-groups'), 12)
    .option('--json', 'print the explained groups as JSON')
    .action(act(async (o: { out: string; moreThan: number; maxGroups: number; json?: boolean }, { signal }) => {
      const inputs = await squeezenetDemoInputs();
      console.error(`classifier bridge: ${inputs.matched} of 1000 ImageNet classes have an LVIS namesake`);
      const bar = progressBar('falcon', 'steps');
      const out = await runFalcon(inputs, o.out, { moreThan: o.moreThan, maxGroups: o.maxGroups, signal, onStage: (_, d, t) => bar.update(d, t) });
      bar.stop();
      printGroups(out, o.json);
    }));
}


/** The firing threshold's option, one definition for every command that groups images. */
function sigmasOption(): Option {
  return new Option('--sigmas <n>', 'threshold = mean + sigmas · std (> 0)').argParser(number('--sigmas', { min: 0, above: true })).default(5);
}
export function registerFalcon(program: Command): void {
  const falcon = program.command('falcon').description('FALCON: name feature groups of a vision representation with contrasting concepts');
  registerGroups(falcon);
  registerExplain(falcon);
  registerRun(falcon);
  registerDemo(falcon);
}
