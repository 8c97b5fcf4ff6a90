// GradCAM crops of each unit's top images: the unit as a one-feature FALCON
// group, its CAM on each image, the largest box above 0.6 cropped. The tap is
// run once per image needed (the union of the units' top images, in batches)
// rather than once per unit, and each unit's CAMs are taken from the batch.
import { join } from 'node:path';
import { throwIfAborted } from '../abort.js';
import { readJson } from '../io/text.js';
import type { Mat } from '../matrix.js';
import { cropResize, groupCams, type Box, type LayerMaps } from '../methods/falcon/cam.js';
import type { ProbeImages, TargetModel } from '../methods/falcon/pipeline.js';
import { writeJson } from '../io/stages.js';
import { cropFile } from './paths.js';
import { THUMB, writeJpeg } from './thumbs.js';
import { topImages } from './units.js';

/** One crop: the image and its box in the 224 px view. */
export interface Crop {
  image: number;
  box: Box;
}

/** Crops per unit (by unit number), best-activating image first. */
export type UnitCrops = Record<string, Crop[]>;

/** The images `pos` of a batch's maps. */
function sliceMaps(l: LayerMaps, pos: readonly number[]): LayerMaps {
  const per = l.shape.slice(1).reduce((a, b) => a * b, 1), data = new Float32Array(pos.length * per);
  pos.forEach((p, k) => data.set(l.data.subarray(p * per, (p + 1) * per), k * per));
  return { name: l.name, shape: [pos.length, ...l.shape.slice(1)], data };
}

/** Crops of the top `top` images of each unit into `dir`/crops, boxes into crops.json. */
export async function computeCams(dir: string, images: ProbeImages, acts: Mat, units: readonly number[], top: number, target: TargetModel,
  report: (d: number, t: number) => void, signal?: AbortSignal): Promise<void> {
  const unitsOf = new Map<number, number[]>();
  for (const u of units) for (const i of topImages(acts, u, top)) unitsOf.set(i, [...(unitsOf.get(i) ?? []), u]);
  const needed = [...unitsOf.keys()].sort((a, b) => a - b), crops: UnitCrops = {}, batch = 16;
  for (let i0 = 0; i0 < needed.length; i0 += batch) {
    throwIfAborted(signal);
    const ids = needed.slice(i0, i0 + batch), rgbs = await Promise.all(ids.map((i) => images.rgb(i)));
    const [maps] = await target.camLayers(rgbs, []);
    for (const u of new Set(ids.flatMap((i) => unitsOf.get(i)!))) {
      const pos = ids.flatMap((i, p) => (unitsOf.get(i)!.includes(u) ? [p] : []));
      const cams = await groupCams([sliceMaps(maps, pos)], [u], { width: rgbs[0].width, height: rgbs[0].height, signal });
      // Listed here, in batch order, not as the crops' writes finish: crops.json is the same on every run.
      (crops[u] ??= []).push(...pos.map((p, k) => ({ image: ids[p], box: cams.boxes[k] })));
      await Promise.all(pos.map(async (p, k) => writeJpeg(join(dir, cropFile(u, ids[p])), await cropResize(rgbs[p], cams.boxes[k], THUMB))));
    }
    report(Math.min(needed.length, i0 + batch), needed.length);
  }
  writeJson(join(dir, 'crops.json'), byTopRank(crops, acts, top));
}

/** Each unit's crops in its top-image order, best-activating first. */
function byTopRank(crops: UnitCrops, acts: Mat, top: number): UnitCrops {
  for (const [u, list] of Object.entries(crops)) {
    const rank = new Map(topImages(acts, Number(u), top).map((i, r) => [i, r]));
    list.sort((a, b) => rank.get(a.image)! - rank.get(b.image)!);
  }
  return crops;
}

/** The crops written by {@link computeCams}, each unit's in its top-image order (caches written before that order was kept are sorted here). */
export function loadCams(dir: string, acts: Mat, top: number): UnitCrops {
  return byTopRank(readJson<UnitCrops>(join(dir, 'crops.json')), acts, top);
}
