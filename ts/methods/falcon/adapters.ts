// The pipeline's interfaces for `falcon run` on the project's modules:
// images through ts/images/preprocess.ts (ImageNet preset: resize 256,
// centre crop 224), the target layer through an ONNX layer tap
// (ts/encoders/onnx.ts withTapOutputs), run on onnxruntime-node.
import { statSync } from 'node:fs';
import { extname } from 'node:path';
import ort from 'onnxruntime-node';
import { withTapOutputs } from '../../encoders/onnx.js';
import { listFiles } from '../../encoders/embed-images.js';
import { normaliseInto, preprocessPixels, preprocessSpec, type PreprocessSpec } from '../../images/preprocess.js';
import { globalAveragePool, type LayerMaps, type RgbImage } from './cam.js';
import { ConceptLensError } from '../../errors.js';
import { fileIdentity } from '../../io/stages.js';
import { captionsIdentity, openCaptions } from './captions.js';
import { pooledLayerModel, type ImageEncoder, type ProbeImages, type RunInputs, type TargetModel } from './pipeline.js';

type Norm = Pick<PreprocessSpec, 'mean' | 'std'>;

/**
 * The image files of a folder (and its sub-folders), sorted by path. A path that is not a folder, or a folder without
 * images, is an error naming `option` (the flag that gave it) and the path.
 */
export function imageFilesIn(dir: string, option = '--images'): string[] {
  const st = statSync(dir, { throwIfNoEntry: false });
  if (!st?.isDirectory()) throw new ConceptLensError('ERR_FILE', `${option}: ${dir}: ${st ? 'not a folder' : 'no such folder'}; expected a folder of images`);
  // The formats every sharp build decodes (the probe reads every image; embed skips what fails), walked as embed walks.
  const files = listFiles(dir).filter((f) => ['.jpg', '.jpeg', '.png', '.webp'].includes(extname(f).toLowerCase()));
  if (files.length === 0) throw new ConceptLensError('ERR_FILE', `${option}: ${dir}: no .jpg/.jpeg/.png/.webp images in this folder`);
  return files;
}

/** The image files of a folder (and its sub-folders), sorted by path, as the model sees them. */
export function folderImages(dir: string, spec: PreprocessSpec = preprocessSpec('imagenet')): ProbeImages & { files: string[] } {
  const files = imageFilesIn(dir);
  return {
    files,
    count: files.length,
    async rgb(i) {
      const px = await preprocessPixels(files[i], spec);
      return { data: new Uint8Array(px.buffer, px.byteOffset, px.length), width: spec.crop, height: spec.crop };
    },
  };
}

/** Images as one normalised NCHW float32 tensor. */
export function nchw(images: RgbImage[], norm: Norm): ort.Tensor {
  const { width: w, height: h } = images[0], plane = w * h;
  const out = new Float32Array(images.length * 3 * plane);
  images.forEach((img, n) => normaliseInto(img.data, norm, out, n * 3 * plane));
  return new ort.Tensor('float32', out, [images.length, 3, h, w]);
}

async function runLayer(s: ort.InferenceSession, name: string, images: RgbImage[], norm: Norm): Promise<LayerMaps> {
  const r = await s.run({ [s.inputNames[0]]: nchw(images, norm) }, [name]);
  const t = r[name];
  return { name, shape: t.dims.map(Number), data: t.data as Float32Array };
}

/**
 * The ONNX model at `path` as FALCON's target: tensor `layer` tapped (images ImageNet-normalised into the first
 * input), represented by its global average pool, so GradCAM is analytic. `probe` is run once to learn the width.
 * @throws ConceptLensError ERR_ARG when the model has no tensor `layer`.
 */
export async function onnxTargetModel(path: string, layer: string, probe: RgbImage): Promise<TargetModel> {
  const s = await ort.InferenceSession.create(withTapOutputs(path, [layer]));
  const norm = preprocessSpec('imagenet');
  const first = await runLayer(s, layer, [probe], norm);
  return pooledLayerModel(first.shape[1], (imgs) => runLayer(s, layer, imgs, norm), globalAveragePool);
}

/**
 * An ONNX image tower (e.g. CLIP's) as FALCON's encoder: images CLIP-normalised into the first input, embeddings
 * from the first output; `probe` is run once to learn the width.
 */
export async function onnxImageEncoder(path: string, probe: RgbImage): Promise<ImageEncoder> {
  const s = await ort.InferenceSession.create(path);
  const out = s.outputNames[0];
  const embed = async (imgs: RgbImage[]) => (await runLayer(s, out, imgs, preprocessSpec('clip'))).data;
  return { dim: (await embed([probe])).length, embed };
}

/**
 * The inputs of `falcon run` from files: probe images from a folder (ImageNet preset), the target model's `layer`,
 * the image `encoder` (required) and the caption vocabulary (`captions`, with `captionsText` for an .npy's captions);
 * their sources are the image files and the identities of the other files (and the layer).
 * @throws ConceptLensError ERR_ARG when `encoder` is missing.
 */
export async function openRunInputs(o: { model: string; layer: string; images: string; captions: string; captionsText?: string; encoder?: string }): Promise<RunInputs> {
  if (!o.encoder)
    throw new ConceptLensError('ERR_ARG', '--encoder: FALCON embeds the GradCAM crops with an image encoder into the caption vocabulary\'s space (e.g. a CLIP visual tower as ONNX); none given');
  const images = folderImages(o.images), probe = await images.rgb(0);
  return {
    images,
    model: await onnxTargetModel(o.model, o.layer, probe),
    encoder: await onnxImageEncoder(o.encoder, probe),
    vocab: await openCaptions(o.captions, o.captionsText),
    // After the opens above, which name a missing file in their own words.
    sources: {
      images: images.files.map(fileIdentity), model: { file: fileIdentity(o.model), layer: o.layer },
      encoder: fileIdentity(o.encoder), vocab: captionsIdentity(o.captions, o.captionsText),
    },
  };
}
