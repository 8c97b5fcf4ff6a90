// `runAtlas`: everything that applies to one layer, each stage cached in
// OUT/stages (ts/io/stages.ts), then one self-contained site written over it:
// OUT/index.html, OUT/units/u<unit>.html, OUT/figures.html, OUT/thumbs/.
import { mkdirSync, rmSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { ConceptLensError, fileError } from '../errors.js';
import { standinDim } from '../encoders/standin.js';
import { notAFile, requireDirTarget, requireOutsideImages, writeFileAtomic } from '../io/atomic.js';
import { computeFiring } from '../methods/falcon/groups.js';
import { folderImages, onnxTargetModel } from '../methods/falcon/adapters.js';
import type { ProbeImages, TargetModel } from '../methods/falcon/pipeline.js';
import { classAssociations } from '../methods/splice-compare.js';
import { computeCams, loadCams } from './cams.js';
import { fileIdentity, StageCache, type StageProgress as AtlasProgress, type Stage, type StageRecord } from '../io/stages.js';
import type { AtlasData } from './data.js';
import { computeDncbm, loadDncbm, type SaeSettings } from './dncbm.js';
import { computeFalcon, loadFalcon, type FalconSettings } from './falcon.js';
import { computeFeatures, loadFeatures, type Features } from './features.js';
import { atlasFigures } from './figures.js';
import { computeLeClip, computeLeLabel, loadLe } from './le.js';
import { figuresPage, indexPage, unitPageHtml } from './pages.js';
import { unitPage } from './paths.js';
import { buildProbe, listProbeFolders, loadProbe, type AtlasLabels, type ProbeSet } from './probe.js';
import { computeSplice, loadSplice } from './splice.js';
import { writeThumbs } from './thumbs.js';
import { selectUnits, unitViews, type UnitSelection } from './units.js';
import { classConceptRows, loadVocab, vocabIdentity, type ConceptVocab } from './vocab.js';

/** Options of {@link runAtlas}; give exactly one of `clipImage` and `standin`. */
export interface AtlasOptions {
  /** The network (ONNX; ImageNet preprocessing) and the layer to explain: a tensor name, e.g. 'fire22'. */
  model: string;
  layer: string;
  /** Folders of probe images (recursive, sorted). */
  images: readonly string[];
  /** Output folder: the site, and the stage cache in stages/. */
  out: string;
  /** Where class labels come from, per folder (default 'auto': wnid file names, else class folders). */
  labelsFrom?: AtlasLabels;
  /** Use the first this many images (sorted) of each class of each folder. */
  perClass?: number;
  /** Concept vocabulary: text embeddings (.npy) and names (one per line); default the LVIS concepts of the assets mirror. */
  vocab?: string;
  vocabNames?: string;
  /** CLIP image encoder (ONNX) for the text-aligned space. */
  clipImage?: string;
  /** Use the stand-in tower (SqueezeNet probabilities over CLIP text embeddings), labelled as such everywhere. */
  standin?: boolean;
  /** SpLiCE modality mean (.npy); default the probe images' own mean. */
  imageMean?: string;
  /** SpLiCE λ (default 0.25). */
  l1?: number;
  /** Units with pages, LE explanations and crops (default all). */
  units?: UnitSelection;
  /** Top and lowly activating images per unit (default 8 and 6). */
  top?: number;
  low?: number;
  /** Classes with at least this many images get per-class figures, the probe and the spurious-correlation analysis (default 5). */
  minClassImages?: number;
  /** SAE settings (defaults: expansion 4, λ 1e-2, lr 1e-3, 40 epochs, batch 64). */
  sae?: Partial<SaeSettings>;
  /** FALCON settings (defaults: groups of more than 2 images, the 12 largest, named when interpretable). */
  falcon?: Partial<FalconSettings>;
  /** Stops between steps; finished stages stay cached and a rerun resumes. */
  signal?: AbortSignal;
  /** Stage progress, and which stages were reused. */
  onProgress?: (p: AtlasProgress) => void;
}

/** What {@link runAtlas} wrote. */
export interface AtlasResult {
  /** The site's entry page. */
  index: string;
  images: number;
  units: number;
  /** Each stage, computed or reused, with its time (the site's own writing is the last, 'site'). */
  stages: StageRecord[];
  /** What did not apply, and why. */
  notes: string[];
}

const SAE_DEFAULTS: SaeSettings = { expansion: 4, l1: 1e-2, lr: 1e-3, epochs: 40, batch: 64 };
const FALCON_DEFAULTS: FalconSettings = { moreThan: 2, maxGroups: 12, explainAll: false };

/** A value computed on first use only (loading the ONNX target model is skipped when every stage is cached). */
function lazy<T>(make: () => Promise<T>): () => Promise<T> {
  let p: Promise<T> | undefined;
  return () => (p ??= make());
}

/** Whether a layer tensor of this shape has the spatial map GradCAM and FALCON need. */
const spatial = (shape: number[]) => shape.length === 4 && shape[2] * shape[3] >= 2;

/** An input file an option names must be there before the run touches its outputs. */
function requireInputFile(option: string, path: string | undefined): void {
  const why = path === undefined ? undefined : notAFile(path);
  if (why) throw new ConceptLensError('ERR_FILE', `${option}: ${path}: ${why}`);
}

/** The vocabulary must lie in the space the images are embedded in (a --clip-image's is known once it has run). */
function requireVocabDim(vocab: ConceptVocab, dim: number, space: string): void {
  if (vocab.d !== dim) throw fileError(vocab.path, `concept embeddings of dimension ${vocab.d}; expected ${dim}, that of ${space}`);
}

/** Checks the options and inputs before any output is touched; returns each --images folder's image files. */
function checkOptions(o: AtlasOptions): string[][] {
  if (!o.clipImage === !o.standin) throw new ConceptLensError('ERR_ARG', 'give either --clip-image CLIP_IMAGE.onnx or --standin (the stand-in tower, labelled as such)');
  if (o.images.length === 0) throw new ConceptLensError('ERR_ARG', '--images: expected at least one folder of images, got none');
  requireOutsideImages(o.out, o.images);
  requireDirTarget(o.out, 'atlas');
  for (const [option, path] of [['--model', o.model], ['--clip-image', o.clipImage], ['--image-mean', o.imageMean]] as const) requireInputFile(option, path);
  return listProbeFolders(o.images);
}

/** The options with their defaults filled in. */
function settle(o: AtlasOptions) {
  return {
    labelsFrom: o.labelsFrom ?? 'auto', sae: { ...SAE_DEFAULTS, ...o.sae }, falcon: { ...FALCON_DEFAULTS, ...o.falcon },
    top: o.top ?? 8, low: o.low ?? 6, minClassImages: o.minClassImages ?? 5, l1: o.l1 ?? 0.25,
  };
}

/** What every method stage reads: the probe set, both feature matrices, the vocabulary, the units, and the layer's target model on demand. */
interface Shared {
  probe: ProbeSet;
  images: ProbeImages;
  features: Stage<Features>;
  vocab: ConceptVocab;
  vocabKey: unknown;
  units: number[];
  space: string;
  target: () => Promise<TargetModel>;
}

async function sharedStages(o: AtlasOptions, s: ReturnType<typeof settle>, listed: string[][], vocab: ConceptVocab, cache: StageCache): Promise<Shared> {
  // The folders' images are keyed too (path, size, mtime): an image added, removed or replaced makes another probe set.
  const files = listed.map((fs) => fs.map(fileIdentity));
  const probe = await cache.run('probe', { images: o.images.map((d) => resolve(d)), files, labelsFrom: s.labelsFrom, perClass: o.perClass },
    async (dir) => buildProbe(dir, o.images, listed, s.labelsFrom, o.perClass), loadProbe);
  const images = folderImages(probe.value.dir);
  const target = lazy<TargetModel>(async () => onnxTargetModel(o.model, o.layer, await images.rgb(0)));
  const tapShape = async () => (await (await target()).camLayers([await images.rgb(0)], []))[0].shape;
  const features = await cache.run('features', { probe: probe.key, model: fileIdentity(o.model), layer: o.layer, tower: o.clipImage ? fileIdentity(o.clipImage) : 'standin' },
    (dir) => computeFeatures(dir, probe.value, { ...o, tapShape }, (st, d, t) => cache.report(st, d, t), o.signal), loadFeatures);
  requireVocabDim(vocab, features.value.clip.cols, `the image embeddings of ${o.clipImage ?? 'the stand-in tower'}`);
  return {
    probe: probe.value, images, features, vocab, vocabKey: vocabIdentity(o), units: selectUnits(features.value.acts, o.units ?? 'all'),
    space: features.value.standin ? 'STAND-IN CLIP space' : 'CLIP space', target,
  };
}

/** Each method's stage, where it applies (notes say where not). */
async function methodStages(o: AtlasOptions, s: ReturnType<typeof settle>, x: Shared, cache: StageCache, notes: string[]) {
  const f = x.features.value, base = { features: x.features.key, units: x.units }, signal = o.signal;
  const report = (stage: string) => (d: number, t: number) => cache.report(stage, d, t);
  const labelled = x.probe.classes.length >= 2, spatialLayer = spatial(f.layerShape);
  if (!labelled) notes.push('LE(Label), the CBM probe and per-class figures need labels of at least 2 classes.');
  if (!spatialLayer) notes.push(`FALCON and the GradCAM crops need a spatial map; ${o.layer} has shape [${f.layerShape.join(', ')}].`);
  const leLabel = labelled ? await cache.run('le-label', base, (dir) => computeLeLabel(dir, f.acts, x.units, x.probe, o.layer, report('le-label'), signal), loadLe) : undefined;
  const leClip = await cache.run('le-clip', { ...base, vocab: x.vocabKey },
    (dir) => computeLeClip(dir, f.acts, x.units, f.clip, x.vocab, x.probe, { layer: o.layer, spaceLabel: x.space }, report('le-clip'), signal), loadLe);
  const splice = await cache.run('splice', { features: x.features.key, vocab: x.vocabKey, l1: s.l1, mean: o.imageMean && fileIdentity(o.imageMean) },
    (dir) => computeSplice(dir, f.clip, x.vocab, { l1: s.l1, imageMean: o.imageMean, signal, onProgress: report('splice') }), (dir) => loadSplice(dir, x.vocab));
  const dncbm = await cache.run('dncbm', { features: x.features.key, vocab: x.vocabKey, sae: s.sae, minClassImages: s.minClassImages },
    (dir) => computeDncbm(dir, f, x.vocab, x.probe, { ...s.sae, minClassImages: s.minClassImages }, report('sae'), signal), loadDncbm);
  // FALCON's run keeps its explained groups when only maxGroups changes (runFalcon).
  const { maxGroups: _, ...falconKept } = s.falcon;
  const falcon = spatialLayer ? await cache.run('falcon', { features: x.features.key, vocab: x.vocabKey, falcon: s.falcon },
    async (dir) => computeFalcon(dir, x.images, f, await x.target(), x.vocab, { features: x.features.key, vocab: x.vocabKey },
      { ...s.falcon, clipImage: o.clipImage, onStage: (st, d, t) => cache.report(`falcon ${st}`, d, t), signal }),
    loadFalcon, undefined, { features: x.features.key, vocab: x.vocabKey, falcon: falconKept }) : undefined;
  const crops = spatialLayer ? await cache.run('cams', { ...base, top: s.top },
    async (dir) => computeCams(dir, x.images, f.acts, x.units, s.top, await x.target(), report('gradcam'), signal), (dir) => loadCams(dir, f.acts, s.top)) : undefined;
  return { leLabel: leLabel?.value, leClip: leClip.value, splice: splice.value, dncbm: dncbm.value, falcon: falcon?.value, crops: crops?.value };
}

/** Runs (or resumes) every stage that applies to the layer and writes the site; returns where. */
export async function runAtlas(o: AtlasOptions): Promise<AtlasResult> {
  const listed = checkOptions(o), vocab = loadVocab(o); // read before any output is touched: a bad vocabulary fails first
  if (o.standin) requireVocabDim(vocab, standinDim(), 'the stand-in tower\'s space');
  const s = settle(o), notes: string[] = [], cache = new StageCache(o.out, { progress: o.onProgress, signal: o.signal });
  const x = await sharedStages(o, s, listed, vocab, cache), m = await methodStages(o, s, x, cache, notes), f = x.features.value, p = x.probe;
  const isClassConcept = classConceptRows(p.classes, x.vocab.names).map((rows) => new Set(rows));
  const data: AtlasData = {
    model: o.model, layer: o.layer, probe: p, features: f, vocab: x.vocab, space: x.space, le: { label: m.leLabel, clip: m.leClip },
    splice: m.splice, dncbm: m.dncbm, falcon: m.falcon, minClassImages: s.minClassImages, notes,
    associations: p.classes.length >= 2 ? classAssociations(m.splice.weights, p.labels, p.classes, x.vocab.names,
      { minImages: s.minClassImages, resamples: 500, isClassConcept: (c, j) => isClassConcept[c].has(j) }) : [],
    views: unitViews(x.units, {
      acts: f.acts, firing: await computeFiring(f.acts, { signal: o.signal }), top: s.top, low: s.low, le: { label: m.leLabel, clip: m.leClip },
      splice: m.splice, dncbm: m.dncbm, groups: m.falcon, crops: m.crops,
    }),
  };
  const t0 = performance.now();
  await writeSite(o.out, data, x.images, (d, t) => cache.report('site', d, t), o.signal);
  const stages = [...cache.records, { name: 'site', cached: false, seconds: (performance.now() - t0) / 1000 }];
  return { index: join(o.out, 'index.html'), images: p.files.length, units: x.units.length, stages, notes };
}

/** The pages, the figures and the thumbnails they show. */
async function writeSite(out: string, d: AtlasData, images: ProbeImages, report: (d: number, t: number) => void, signal?: AbortSignal): Promise<void> {
  const figures = atlasFigures(d);
  await writeThumbs(out, images, [...d.views.flatMap((v) => [...v.top, ...v.low].map((t) => t.image)), ...figures.images], signal);
  rmSync(join(out, 'units'), { recursive: true, force: true }); // pages of units no longer selected would linger
  mkdirSync(join(out, 'units'), { recursive: true });
  d.views.forEach((v, k) => {
    writeFileAtomic(join(out, unitPage(v.unit)), unitPageHtml(d, v, d.views[k - 1]?.unit, d.views[k + 1]?.unit));
    if (k % 32 === 0) report(k, d.views.length);
  });
  writeFileAtomic(join(out, 'figures.html'), figuresPage(d, figures.sections));
  writeFileAtomic(join(out, 'index.html'), indexPage(d));
  report(d.views.length, d.views.length);
}
