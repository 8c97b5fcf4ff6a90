// What a worker must share with the coordinator for its part of a run to be
// the coordinator's bit for bit: the conceptlens version, and the exact
// engine binary (the sha256 of the file engineInfo() names, since two builds
// of one version may pick other kernels or compilers).
import { createHash } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { engineInfo } from '../engine/info.js';
import { packageVersion } from '../package-version.js';
import { queueError } from './connection.js';

/** A conceptlens version and engine build: every job carries its coordinator's, and workers compare theirs. */
export interface Stamp {
  /** The package version (package.json). */
  version: string;
  /** The first 16 hex digits of the sha256 of the engine binary. */
  engine: string;
}

let mine: Stamp | undefined;

/** This process's stamp (hashed once). */
export function localStamp(): Stamp {
  mine ??= {
    version: packageVersion(),
    engine: createHash('sha256').update(readFileSync(engineInfo().addon)).digest('hex').slice(0, 16),
  };
  return mine;
}

/** "conceptlens 0.1.0, engine build 1a2b…", for messages. */
export const describeStamp = (s: Stamp) => `conceptlens ${s.version}, engine build ${s.engine}`;

/** Refuses (ERR_QUEUE, saying why) a job whose coordinator runs another version or engine build. */
export function requireStamp(needed: Stamp, worker: string): void {
  const own = localStamp();
  if (own.version !== needed.version || own.engine !== needed.engine)
    throw queueError(`worker ${worker} refuses the job: it runs ${describeStamp(own)}, the run was started by ${describeStamp(needed)}, `
      + 'and parts from other builds need not match bit for bit; run the same build on every machine');
}
