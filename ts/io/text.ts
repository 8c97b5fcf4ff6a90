// Text inputs (names, vocabularies, captions): strict UTF-8 (undecodable
// bytes are an error naming the file and byte offset), a leading BOM dropped,
// lines split on \n, \r\n or a bare \r, and a final newline adding no line.
import { readFileSync } from 'node:fs';
import { ConceptLensError, fileError, openError } from '../errors.js';

const utf8 = new TextDecoder('utf-8', { fatal: true, ignoreBOM: false });

/** The file as text; errors name the path (ERR_FILE). */
export function readText(path: string): string {
  let bytes: Buffer;
  try {
    bytes = readFileSync(path);
  } catch (e) {
    throw (e as NodeJS.ErrnoException).code === 'EISDIR' ? fileError(path, 'is a directory; expected a text file', e) : openError(path, e);
  }
  return decodeUtf8(bytes, path);
}

/** Bytes read from `source` (a path, or 'standard input') as text; undecodable bytes are an error naming it (ERR_FILE). */
export function decodeUtf8(bytes: Uint8Array, source: string): string {
  try {
    return utf8.decode(bytes);
  } catch {
    throw fileError(source, `not valid UTF-8 (first bad byte at offset ${firstBadByte(bytes)})`);
  }
}

/** Byte offset of the first invalid UTF-8 sequence. */
function firstBadByte(b: Uint8Array): number {
  for (let lo = 0, hi = b.length; ;) {
    if (hi - lo <= 1) return lo;
    const mid = (lo + hi) >> 1;
    try {
      new TextDecoder('utf-8', { fatal: true }).decode(b.subarray(0, mid), { stream: true });
      lo = mid;
    } catch {
      hi = mid;
    }
  }
}

/** Lines of a text (a final newline does not make an extra empty line). */
export function splitLines(text: string): string[] {
  const lines = text.split(/\r\n|\r|\n/);
  if (lines.length > 0 && lines[lines.length - 1] === '') lines.pop();
  return lines;
}

/** Lines of a text file. */
export function readLines(path: string): string[] {
  return splitLines(readText(path));
}

/**
 * Names, one per line, for lookups: an empty line or a name that repeats is
 * an error naming both lines, unless `dedupe` makes repeats unique ("name (2)").
 */
export function readNames(path: string, opts: { dedupe?: boolean } = {}): string[] {
  return uniqueNames(readLines(path), path, { ...opts, inFile: true });
}

/**
 * The names trimmed, each checked non-empty and unique (or made unique with `dedupe`); errors name a file's lines
 * (`inFile`, ERR_FILE) or an array's entries (ERR_ARG).
 */
export function uniqueNames(names: string[], where: string, opts: { dedupe?: boolean; inFile?: boolean } = {}): string[] {
  const seen = new Map<string, number>();
  const at = (i: number) => (opts.inFile ? `line ${i + 1}` : `entry ${i}`), code = opts.inFile ? 'ERR_FILE' : 'ERR_ARG';
  return names.map((raw, i) => {
    const name = raw.trim();
    if (name === '') throw new ConceptLensError(code, `${where}: ${at(i)} is empty; every ${opts.inFile ? 'line' : 'entry'} must name a concept`);
    const first = seen.get(name);
    if (first === undefined) {
      seen.set(name, i);
      return name;
    }
    if (!opts.dedupe)
      throw new ConceptLensError(code, `${where}: ${at(i)} repeats '${name}' of ${at(first)}; names must be unique: rename one`);
    let k = 2;
    while (seen.has(`${name} (${k})`)) k++;
    seen.set(`${name} (${k})`, i);
    return `${name} (${k})`;
  });
}

/** A JSON file's value; a missing file or malformed JSON is an error naming the file (ERR_FILE). */
export function readJson<T = unknown>(path: string): T {
  const text = readText(path);
  try {
    return JSON.parse(text) as T;
  } catch (e) {
    throw fileError(path, `not valid JSON (${(e as Error).message})`, e);
  }
}
