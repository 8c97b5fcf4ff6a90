// Where the offline mirror of public assets lives: CONCEPTLENS_ASSETS, else
// ../shared/assets beside the working directory or the package, when present.
import { existsSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { ConceptLensError } from './errors.js';
import { packageRoot } from './package-root.js';

/**
 * The offline assets mirror: `CONCEPTLENS_ASSETS` (resolved) when set, else the first existing
 * `../shared/assets` beside the working directory or the package; undefined when none exists.
 */
export function assetsDir(): string | undefined {
  const env = process.env.CONCEPTLENS_ASSETS;
  if (env) return resolve(env);
  for (const base of [process.cwd(), packageRoot]) {
    const p = resolve(base, '..', 'shared', 'assets');
    if (existsSync(p)) return p;
  }
  return undefined;
}

/** Path of an asset inside the mirror; throws naming the path and the fix when missing. */
export function assetPath(rel: string): string {
  const dir = assetsDir();
  const p = dir ? join(dir, rel) : undefined;
  if (!p || !existsSync(p))
    throw new ConceptLensError('ERR_FILE', `asset '${rel}' not found${p ? ` at ${p}` : ''}: set CONCEPTLENS_ASSETS to the assets mirror`);
  return p;
}
