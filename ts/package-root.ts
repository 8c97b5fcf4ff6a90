// Where the installed package lives (the folder holding package.json), from
// this module's place in dist/ts/.
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { readJson } from './io/text.js';

export const packageRoot = join(dirname(fileURLToPath(import.meta.url)), '..', '..');

/** The installed package's version, from its package.json. */
export function packageVersion(): string {
  return readJson<{ version: string }>(join(packageRoot, 'package.json')).version;
}
