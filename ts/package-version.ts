// The installed package's version, for --version, the service's health and
// the distributed runner's build stamp.
import { join } from 'node:path';
import { readJson } from './io/text.js';
import { packageRoot } from './package-root.js';

/** The installed package's version, from its package.json. */
export function packageVersion(): string {
  return readJson<{ version: string }>(join(packageRoot, 'package.json')).version;
}
