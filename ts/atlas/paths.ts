// Where the site's files live, relative to the atlas root; pages one folder
// down (units/) prefix '../'. Relative paths keep the site working offline and
// wherever the folder is moved.
import { cropPath, imagePath } from '../methods/falcon/pipeline.js';

/** Stage folders the pages link into. */
export const STAGE = { falcon: 'stages/falcon', cams: 'stages/cams' } as const;

/** A unit's GradCAM crop of image i, relative to the crops stage's folder. */
export const cropFile = (unit: number, image: number) => `crops/u${unit}_${image}.jpg`;

/** A unit's page. */
export const unitPage = (unit: number) => `units/u${unit}.html`;
/** Probe image i's thumbnail. */
export const thumbPath = (i: number) => `thumbs/${i}.jpg`;
/** A unit's GradCAM crop of image i. */
export const unitCrop = (unit: number, i: number) => `${STAGE.cams}/${cropFile(unit, i)}`;
/** FALCON's crop of image i in group `key`. */
export const falconCrop = (key: string, i: number) => `${STAGE.falcon}/${cropPath(key, i)}`;
/** FALCON's copy of a lowly activating image. */
export const falconImage = (i: number) => `${STAGE.falcon}/${imagePath(i)}`;

/** `path` as seen from a page `depth` folders below the root. */
export const fromDepth = (depth: number) => (path: string) => '../'.repeat(depth) + path;
