// `conceptlens atlas`: every method that applies to one layer of a model, on
// a folder (or several) of images, written as one self-contained HTML site;
// stages cached under OUT/stages so a rerun resumes.
import { InvalidArgumentError, type Command } from 'commander';
import { runAtlas, type AtlasOptions } from '../atlas/run.js';
import type { AtlasLabels } from '../atlas/probe.js';
import type { UnitSelection } from '../atlas/units.js';
import { integer, number, oneOf } from './options.js';
import { progressBar, type Bar } from './progress.js';
import { act } from './run.js';

/** The flags: runAtlas's options as given on the command line, the SAE and FALCON settings flattened. */
type AtlasCliOptions = Required<Pick<AtlasOptions, 'model' | 'layer' | 'out' | 'labelsFrom' | 'l1' | 'units' | 'top' | 'low' | 'minClassImages'>>
  & Pick<AtlasOptions, 'perClass' | 'vocab' | 'vocabNames' | 'clipImage' | 'standin' | 'imageMean'> & {
    images: string[];
    saeExpansion: number;
    saeL1: number;
    saeLr: number;
    saeEpochs: number;
    saeBatch: number;
    falconMoreThan: number;
    falconMaxGroups: number;
    falconAllGroups?: boolean;
    json?: boolean;
  };

/** 'all', a count (the most varying units) or a comma-separated list of unit numbers. */
function unitSelection(value: string): UnitSelection {
  if (value === 'all') return 'all';
  if (/^\d+$/.test(value)) return integer('--units')(value);
  if (/^\d+(,\d+)*$/.test(value.replace(/\s/g, ''))) return value.replace(/\s/g, '').split(',').map(Number);
  throw new InvalidArgumentError(`--units: expected 'all', a count or a comma-separated list of unit numbers, got '${value}'`);
}

async function atlasAction(o: AtlasCliOptions, signal: AbortSignal): Promise<void> {
  const show = !o.json && process.stderr.isTTY, bars = new Map<string, Bar>();
  const opts: AtlasOptions = {
    model: o.model, layer: o.layer, images: o.images, out: o.out, labelsFrom: o.labelsFrom, perClass: o.perClass, vocab: o.vocab, vocabNames: o.vocabNames,
    clipImage: o.clipImage, standin: !!o.standin, imageMean: o.imageMean, l1: o.l1, units: o.units, top: o.top, low: o.low, minClassImages: o.minClassImages,
    sae: { expansion: o.saeExpansion, l1: o.saeL1, lr: o.saeLr, epochs: o.saeEpochs, batch: o.saeBatch },
    falcon: { moreThan: o.falconMoreThan, maxGroups: o.falconMaxGroups, explainAll: !!o.falconAllGroups }, signal,
    onProgress: (p) => {
      if (p.cached) {
        if (!o.json) console.error(`${p.stage}: reused from ${o.out}/stages`);
        return;
      }
      if (!bars.has(p.stage)) bars.set(p.stage, progressBar(p.stage.padEnd(22), 'steps', show));
      bars.get(p.stage)!.update(p.done, p.total);
    },
  };
  const t0 = performance.now();
  try {
    const r = await runAtlas(opts);
    for (const b of bars.values()) b.stop();
    const seconds = (performance.now() - t0) / 1000;
    console.log(o.json ? JSON.stringify({ ...r, seconds }) : [
      `atlas of ${o.layer}: ${r.units} units over ${r.images} images in ${seconds.toFixed(1)} s`,
      ...r.stages.map((s) => `  ${s.name.padEnd(10)} ${s.cached ? 'reused' : `${s.seconds.toFixed(1)} s`}`),
      ...r.notes.map((n) => `not run: ${n}`), `open ${r.index}`,
    ].join('\n'));
  } finally {
    for (const b of bars.values()) b.stop();
  }
}

/** Registers `atlas`. */
export function registerAtlas(program: Command): void {
  program.command('atlas')
    .description('one HTML site explaining a layer with every method that applies (LE, FALCON, SpLiCE, DN-CBM), with figures; resumable')
    .requiredOption('--model <onnx>', 'the network to explain (ONNX, ImageNet preprocessing)')
    .requiredOption('--layer <name>', 'the layer: a tensor name (e.g. fire22); a spatial map also gets FALCON and GradCAM crops')
    .requiredOption('--images <dir...>', 'folders of probe images (recursive, sorted; several may be given)')
    .option('--labels-from <how>', 'class labels per folder: auto (wnid file names, else class folders), wnid, folder, none',
      oneOf<AtlasLabels>('--labels-from', ['auto', 'wnid', 'folder', 'none']), 'auto')
    .option('--per-class <n>', 'use the first n images (sorted) of each class of each folder', integer('--per-class'))
    .option('--vocab <npy>', 'concept text embeddings (default: the LVIS CLIP text embeddings of the assets mirror)')
    .option('--vocab-names <txt>', 'concept names, one per line (default: --vocab with .txt)')
    .option('--clip-image <onnx>', 'CLIP image encoder (ONNX) for the text-aligned space')
    .option('--standin', 'STAND-IN text-aligned space (SqueezeNet 1.1 probabilities over CLIP text embeddings of LVIS concepts), labelled as such everywhere')
    .option('--image-mean <npy>', 'SpLiCE modality mean (d values); default the probe images\' own mean')
    .option('--l1 <lambda>', 'SpLiCE λ', number('--l1', { min: 0 }), 0.25)
    .option('--units <which>', "units with pages: 'all', a count (the most varying) or a list '3,17,40'", unitSelection, 'all')
    .option('--top <k>', 'top activating images (and GradCAM crops) per unit', integer('--top'), 8)
    .option('--low <k>', 'lowly activating images per unit', integer('--low'), 6)
    .option('--min-class-images <n>', 'classes with at least n images get per-class figures, the CBM probe and spurious-correlation analysis', integer('--min-class-images', 2), 5)
    .option('--sae-expansion <n>', 'SAE concepts per unit', integer('--sae-expansion'), 4)
    .option('--sae-l1 <x>', 'SAE L1 penalty', number('--sae-l1', { min: 0 }), 1e-2)
    .option('--sae-lr <x>', 'SAE learning rate', number('--sae-lr', { min: 0, above: true }), 1e-3)
    .option('--sae-epochs <n>', 'SAE epochs', integer('--sae-epochs'), 40)
    .option('--sae-batch <n>', 'SAE batch', integer('--sae-batch'), 64)
    .option('--falcon-more-than <n>', 'FALCON keeps groups shared by more than n images', integer('--falcon-more-than', 0), 2)
    .option('--falcon-max-groups <n>', 'FALCON explains at most n groups, largest first', integer('--falcon-max-groups'), 12)
    .option('--falcon-all-groups', 'FALCON names every group, whatever its interpretability')
    .requiredOption('--out <dir>', 'the site and its stage cache (a rerun reuses finished stages)')
    .option('--json', 'print a JSON summary')
    .action(act((o: AtlasCliOptions, { signal }) => atlasAction(o, signal)));
}
