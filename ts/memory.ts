// Sizes checked before anything is allocated: a call that cannot fit says
// how much it needs instead of dying in an allocation.
import { totalmem } from 'node:os';
import { ConceptLensError } from './errors.js';

const gib = (b: number) => `${(b / 2 ** 30).toFixed(b < 2 ** 30 ? 3 : 1)} GiB`;

/** Throws ERR_MEMORY naming `what` when `bytes` exceed this machine's memory. */
export function requireMemory(bytes: number, what: string): void {
  if (bytes > totalmem()) throw new ConceptLensError('ERR_MEMORY', `${what} needs ${gib(bytes)}; this machine has ${gib(totalmem())}`);
}
