// The offline FALCON demo on the bundled assets: SqueezeNet 1.1 at fire22
// (globally average pooled: 512 features) over the 1000 ImageNet samples,
// with the real CLIP ViT-B/32 text embeddings of the LVIS concepts ("a
// {name}") as the caption vocabulary. No CLIP image encoder ships with the
// assets, so crops are embedded by a stand-in "classifier bridge": the
// SqueezeNet softmax over ImageNet classes times, per class, the CLIP text
// embedding of its LVIS namesake (classes without one contribute nothing;
// a tiny share of the mean concept keeps the vector non-zero). Concepts are
// therefore only as good as that bridge.
import ort from 'onnxruntime-node';
import { assetPath } from '../../assets.js';
import { readNpy } from '../../io/npy.js';
import { fileIdentity } from '../../io/stages.js';
import { halvesToFloats } from '../../engine/fp16.js';
import { normaliseRows } from '../../matrix.js';
import { readJson, readLines } from '../../io/text.js';
import { preprocessSpec } from '../../images/preprocess.js';
import { folderImages, nchw, onnxTargetModel } from './adapters.js';
import type { RgbImage } from './cam.js';
import { openCaptions } from './captions.js';
import type { ImageEncoder, RunInputs } from './pipeline.js';

const norm = (s: string) => s.toLowerCase().replace(/_/g, ' ').trim();

/** Per class, the first concept whose name or synonym equals one of the class's comma-separated names, or -1. */
export function matchClasses(classNames: string[], concepts: { name: string; synonyms: string[] }[]): number[] {
  const index = new Map<string, number>();
  concepts.forEach((c, i) => [c.name, ...c.synonyms].forEach((s) => { if (!index.has(norm(s))) index.set(norm(s), i); }));
  return classNames.map((l) => l.split(',').map(norm).map((n) => index.get(n)).find((i) => i !== undefined) ?? -1);
}

/** softmax(classifier logits) @ classText: an image encoder into the text space of classText (classes × d). */
export async function classifierBridgeEncoder(modelPath: string, classText: Float32Array, classes: number): Promise<ImageEncoder> {
  const s = await ort.InferenceSession.create(modelPath), dim = classText.length / classes, spec = preprocessSpec('imagenet');
  return {
    dim,
    async embed(images: RgbImage[]) {
      const out = await s.run({ [s.inputNames[0]]: nchw(images, spec) });
      const logits = out[s.outputNames[0]].data as Float32Array, emb = new Float32Array(images.length * dim);
      for (let n = 0; n < images.length; n++) {
        const l = logits.subarray(n * classes, (n + 1) * classes), m = Math.max(...l);
        const p = Array.from(l, (v) => Math.exp(v - m)), z = p.reduce((a, b) => a + b, 0);
        for (let c = 0; c < classes; c++) for (let j = 0; j < dim; j++) emb[n * dim + j] += (p[c] / z) * classText[c * dim + j];
      }
      return emb;
    },
  };
}

export async function squeezenetDemoInputs(): Promise<RunInputs & { matched: number }> {
  const model = assetPath('models/squeezenet1.1/squeezenet1.1.onnx');
  const lvisNpy = assetPath('embeddings/detic/lvis_v1_clip_a+cname.npy');
  const lvis = readNpy(lvisNpy), d = lvis.shape[1];
  const text = normaliseRows(halvesToFloats(lvis.data as Uint16Array), d, { zeroRows: 'error' });
  const conceptsJson = assetPath('embeddings/detic/lvis_v1_train_cat_info.json'), labelsTxt = assetPath('vocab/clipdissect_imagenet_labels.txt');
  const concepts = readJson<{ name: string; synonyms: string[] }[]>(conceptsJson);
  const match = matchClasses(readLines(labelsTxt).filter((l) => l.length > 0), concepts);
  const mean = new Float32Array(d);
  for (let i = 0; i < concepts.length; i++) for (let j = 0; j < d; j++) mean[j] += text[i * d + j] / concepts.length;
  const classText = new Float32Array(match.length * d);
  match.forEach((m, c) => classText.set(m >= 0 ? text.subarray(m * d, (m + 1) * d) : mean.map((v) => 1e-4 * v), c * d));
  const images = folderImages(assetPath('images/imagenet-samples'));
  const [modelId, lvisId, conceptsId, labelsId] = [model, lvisNpy, conceptsJson, labelsTxt].map(fileIdentity);
  return {
    images,
    model: await onnxTargetModel(model, 'fire22', await images.rgb(0)),
    encoder: await classifierBridgeEncoder(model, classText, match.length),
    vocab: await openCaptions(lvisNpy, concepts.map((c) => `a ${norm(c.name)}`)),
    sources: { images: images.files, model: { file: modelId, layer: 'fire22' }, encoder: [modelId, lvisId, conceptsId, labelsId], vocab: [lvisId, conceptsId] },
    matched: match.filter((m) => m >= 0).length,
  };
}
