// Where the installed package lives (the folder holding package.json), from
// this module's place in dist/ts/. It imports nothing of the project, so the
// engine's loader can stand below everything else.
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

export const packageRoot = join(dirname(fileURLToPath(import.meta.url)), '..', '..');
