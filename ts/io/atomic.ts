// Outputs are written to a temp file beside the target and renamed into
// place, so a crash or abort never leaves a half-written result.
import { existsSync, mkdirSync, renameSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { dirname } from 'node:path';
import { fileError } from '../errors.js';

export function writeFileAtomic(path: string, data: string | Uint8Array): void {
  requireFileTarget(path);
  mkdirSync(dirname(path), { recursive: true });
  const tmp = `${path}.tmp-${process.pid}-${Date.now()}`;
  try {
    writeFileSync(tmp, data);
    renameSync(tmp, path);
  } catch (e) {
    rmSync(tmp, { force: true });
    throw fileError(path, `cannot write (${(e as NodeJS.ErrnoException).code ?? (e as Error).message})`, e);
  }
}

/** An output file's path must not name a directory (checked before any work, so nothing is left half done). */
export function requireFileTarget(path: string, what = 'output'): void {
  if (existsSync(path) && statSync(path).isDirectory()) throw fileError(path, `is a directory; the ${what} is a file path`);
}
