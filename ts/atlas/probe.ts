// The probe set: the images every method of the atlas sees, in one order.
// Images from one or more folders (optionally the first N of each class) are
// linked into one folder, OUT/stages/probe/images/s<source>/<relative path>,
// so the embedding, FALCON and GradCAM stages all read the same sorted list
// and row i of every matrix is the same image.
import { mkdirSync, rmSync, symlinkSync } from 'node:fs';
import { basename, dirname, extname, join, relative, resolve } from 'node:path';
import { classKeys, type LabelSource } from '../encoders/embed-images.js';
import { imagenetClasses } from '../encoders/standin.js';
import { ConceptLensError } from '../errors.js';
import { folderImages, imageFilesIn } from '../methods/falcon/adapters.js';
import { readJson } from '../io/text.js';
import { writeJson } from '../io/stages.js';

/** Where labels come from: as `embed --label-source`, or 'none' (no labels: label-based analyses are left out). */
export type AtlasLabels = LabelSource | 'none';

/** The probe images, their classes and their source folders, aligned with every matrix row. */
export interface ProbeSet {
  /** Folder of links to the images: what the models read, sorted as the rows. */
  dir: string;
  /** Original image paths, one per row. */
  files: string[];
  /** Class id of each image (−1 without labels). */
  labels: Int32Array;
  /** Class names by id. */
  classes: string[];
  /** Source folder of each image (index into `sources`). */
  source: Int32Array;
  /** Source folder names (their base names). */
  sources: string[];
}

interface Saved {
  files: string[];
  labels: number[];
  classes: string[];
  source: number[];
  sources: string[];
}

const WNID = /^n\d{8}$/;

/** Readable names of ImageNet wnids from the assets mirror, or none without it (then file names are used). */
function wnidNames(): Map<string, string> | undefined {
  try {
    return new Map(imagenetClasses().map((c) => [c.wnid, c.synonyms[0]]));
  } catch {
    return undefined;
  }
}

/** A class's display name: an ImageNet wnid's first synonym, else the name after the wnid in the file name; a folder as is. */
function className(key: string, file: string, names: Map<string, string> | undefined): string {
  if (!WNID.test(key)) return key;
  const fromFile = basename(file, extname(file)).slice(key.length + 1).replace(/_/g, ' ');
  return names?.get(key) ?? (fromFile && !/^\d+$/.test(fromFile) ? fromFile : key);
}

interface Picked {
  file: string;
  link: string;
  cls: string;
  src: number;
}

/** The image files of each folder (sorted), as {@link buildProbe} takes them: {@link imageFilesIn}, which checks each folder. */
export function listProbeFolders(images: readonly string[]): string[][] {
  return images.map((d) => imageFilesIn(d, '--images'));
}

/** The first `perClass` images (sorted) of each class of each folder; `folderFiles` holds each folder's files. */
function pick(images: readonly string[], folderFiles: readonly string[][], labelsFrom: AtlasLabels, perClass: number | undefined): Picked[] {
  const names = labelsFrom === 'none' ? undefined : wnidNames(), out: Picked[] = [];
  images.forEach((root, s) => {
    const files = folderFiles[s];
    const keys = labelsFrom === 'none' ? files.map(() => '') : classKeys(root, files, labelsFrom);
    const taken = new Map<string, number>();
    files.forEach((f, i) => {
      const n = taken.get(keys[i]) ?? 0;
      if (perClass !== undefined && n >= perClass) return;
      taken.set(keys[i], n + 1);
      out.push({ file: resolve(f), link: join(`s${String(s).padStart(2, '0')}`, relative(root, f)), cls: labelsFrom === 'none' ? '' : className(keys[i], f, names), src: s });
    });
  });
  return out;
}

/** Builds the probe folder and manifest in `dir` (the stage's directory) from the folders' files ({@link listProbeFolders}). */
export function buildProbe(dir: string, images: readonly string[], folderFiles: readonly string[][], labelsFrom: AtlasLabels, perClass?: number): void {
  const links = join(dir, 'images');
  rmSync(links, { recursive: true, force: true });
  const picked = pick(images, folderFiles, labelsFrom, perClass);
  for (const p of picked) {
    mkdirSync(dirname(join(links, p.link)), { recursive: true });
    symlinkSync(p.file, join(links, p.link));
  }
  // Rows follow the order in which the models list the folder, checked rather than assumed.
  const order = new Map(picked.map((p) => [join(links, p.link), p]));
  const listed = folderImages(links).files.map((f) => order.get(f));
  if (listed.length !== picked.length || listed.some((p) => !p))
    throw new ConceptLensError('ERR_FILE', `${links}: lists ${listed.length} images, expected the ${picked.length} linked (hidden or unusual file names?)`);
  const rows = listed as Picked[];
  const classes = [...new Set(rows.map((p) => p.cls))].filter((c) => c !== '').sort();
  const id = new Map(classes.map((c, k) => [c, k]));
  const saved: Saved = {
    files: rows.map((p) => p.file), labels: rows.map((p) => id.get(p.cls) ?? -1), classes,
    source: rows.map((p) => p.src), sources: images.map((d) => basename(resolve(d))),
  };
  writeJson(join(dir, 'probe.json'), saved);
}

/** The probe set written by {@link buildProbe}. */
export function loadProbe(dir: string): ProbeSet {
  const s = readJson<Saved>(join(dir, 'probe.json'));
  return { dir: join(dir, 'images'), files: s.files, labels: Int32Array.from(s.labels), classes: s.classes, source: Int32Array.from(s.source), sources: s.sources };
}

/** Images per class id. */
export function classCounts(p: ProbeSet): number[] {
  const counts = new Array<number>(p.classes.length).fill(0);
  for (const y of p.labels) if (y >= 0) counts[y]++;
  return counts;
}
