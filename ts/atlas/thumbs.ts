// Small JPEGs of the probe images and crops for the site's pages: the 224 px
// view the model had, scaled down, so pages stay light and need no network.
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import sharp from 'sharp';
import { writeFileAtomic } from '../io/atomic.js';
import type { RgbImage } from '../methods/falcon/cam.js';
import type { ProbeImages } from '../methods/falcon/pipeline.js';
import { mapBounded } from '../images/preprocess.js';
import { thumbPath } from './paths.js';

/** Side of thumbnails and crops on the pages, in pixels. */
export const THUMB = 112;

/** `img` as a THUMB × THUMB JPEG at `path`. */
export async function writeJpeg(path: string, img: RgbImage): Promise<void> {
  const jpeg = await sharp(img.data, { raw: { width: img.width, height: img.height, channels: 3 } }).resize(THUMB, THUMB, { fit: 'fill' }).jpeg({ quality: 82 }).toBuffer();
  writeFileAtomic(path, jpeg);
}

/** Writes the thumbnails of `ids` under `root` that are not there yet. */
export async function writeThumbs(root: string, images: ProbeImages, ids: Iterable<number>, signal?: AbortSignal): Promise<void> {
  const todo = [...new Set(ids)].filter((i) => !existsSync(join(root, thumbPath(i))));
  await mapBounded(todo, 4, async (i) => writeJpeg(join(root, thumbPath(i)), await images.rgb(i)), signal);
}
