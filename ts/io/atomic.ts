// Outputs are written to a temp file beside the target and renamed into
// place, so a crash or abort never leaves a half-written result. A process
// killed between the two leaves its temp file; the next write of the same
// target removes it.
import { existsSync, mkdirSync, readdirSync, realpathSync, renameSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { hostname } from 'node:os';
import { basename, dirname, join, relative, resolve, sep } from 'node:path';
import { ConceptLensError, fileError } from '../errors.js';

// Temp names carry host and pid: on storage shared by several machines, only
// this host's temps of dead processes are known to be abandoned.
const HOST = hostname().replace(/[^A-Za-z0-9.-]/g, '_');

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (e) {
    return (e as NodeJS.ErrnoException).code === 'EPERM';
  }
}

/** Removes temp files of `path` left by processes of this host that died between writing and renaming. */
function sweepAbandoned(path: string): void {
  const prefix = `${basename(path)}.tmp-${HOST}-`;
  for (const name of readdirSync(dirname(path))) {
    if (!name.startsWith(prefix)) continue;
    const pid = Number(name.slice(prefix.length).split('-')[0]);
    if (Number.isInteger(pid) && pid !== process.pid && !alive(pid)) rmSync(join(dirname(path), name), { recursive: true, force: true });
  }
}

/** A fresh temp path beside `path`, to write it whole and then {@link commitTemp}. */
export function tempPath(path: string): string {
  return `${path}.tmp-${HOST}-${process.pid}-${Date.now()}`;
}

/** Renames the finished temp file (or folder) `tmp` over `path`, then removes temps of `path` that dead processes left. */
export function commitTemp(tmp: string, path: string): void {
  renameSync(tmp, path);
  sweepAbandoned(path);
}

export function writeFileAtomic(path: string, data: string | Uint8Array): void {
  requireFileTarget(path);
  ensureDir(dirname(path));
  const tmp = tempPath(path);
  try {
    writeFileSync(tmp, data);
    commitTemp(tmp, path);
  } catch (e) {
    rmSync(tmp, { force: true });
    throw fileError(path, `cannot write (${(e as NodeJS.ErrnoException).code ?? (e as Error).message})`, e);
  }
}

/** What keeps `path` from being an input file to read ('no such file', 'not a file'), or undefined when it is one. */
export function notAFile(path: string): string | undefined {
  const st = statSync(path, { throwIfNoEntry: false });
  return st?.isFile() ? undefined : st ? 'not a file' : 'no such file';
}

/** An output file's path must not name a directory (checked before any work, so nothing is left half done). */
export function requireFileTarget(path: string, what = 'output'): void {
  if (existsSync(path) && statSync(path).isDirectory()) throw fileError(path, `is a directory; the ${what} is a file path`);
  requireDirTarget(dirname(path));
}

/** An output directory's path must not name a file (checked before any work, so nothing is left half done). */
export function requireDirTarget(path: string, owner = 'run'): void {
  let at = path;
  while (!existsSync(at) && dirname(at) !== at) at = dirname(at);  // the nearest part of the path that exists
  if (existsSync(at) && !statSync(at).isDirectory()) throw fileError(at, `is a file; expected a directory for the ${owner}'s outputs`);
}

/** Creates an output directory and its parents; a file in the way is an error naming the path (ERR_FILE). */
export function ensureDir(path: string, owner = 'run'): void {
  requireDirTarget(path, owner);
  try {
    mkdirSync(path, { recursive: true });
  } catch (e) {
    throw fileError(path, `cannot create the directory for the ${owner}'s outputs (${(e as NodeJS.ErrnoException).code ?? (e as Error).message})`, e);
  }
}

/** A path with every link resolved, also where its last parts do not exist yet (an output to be made). */
export function realPath(path: string): string {
  const abs = resolve(path);
  if (existsSync(abs)) return realpathSync(abs);
  const parent = dirname(abs);
  return parent === abs ? abs : join(realPath(parent), basename(abs));
}

/** Whether `inner` is `outer` or lies under it, links resolved. */
export function isWithin(inner: string, outer: string): boolean {
  const rel = relative(realPath(outer), realPath(inner));
  return rel === '' || (!rel.startsWith('..' + sep) && rel !== '..' && !rel.startsWith(sep));
}

/** An output folder must not lie in an input folder of images: a rerun would read its outputs as images (ERR_ARG). */
export function requireOutsideImages(out: string, images: readonly string[]): void {
  const inside = images.find((d) => isWithin(out, d));
  if (inside !== undefined) throw new ConceptLensError('ERR_ARG', `--out: '${out}' is inside --images '${inside}'; its outputs would be read as images`);
}
