// The one error class of the library. Every error a caller can act on carries
// a stable `code` to branch on, and a message that names the argument or
// file, what was expected and what was found. The native engine sets the
// same codes on its errors (native/binding/args.cpp); engine/call.ts turns
// them into ConceptLensError.

/** Stable error codes. */
export const ERROR_CODES = {
  /** An argument has a value outside what the call accepts (a range, an option name, a count). */
  ERR_ARG: 'invalid argument',
  /** An array or matrix has the wrong shape or length, or two inputs do not fit together. */
  ERR_SHAPE: 'wrong shape',
  /** An array has the wrong element type (e.g. Float64Array where Float32Array is expected). */
  ERR_DTYPE: 'wrong dtype',
  /** Data holds NaN or ±Infinity where finite values are required. */
  ERR_NAN: 'non-finite value',
  /** A file or directory is missing, unreadable, of the wrong format or damaged. */
  ERR_FILE: 'file problem',
  /** The call was stopped by its AbortSignal. */
  ERR_ABORTED: 'aborted',
  /** An object is busy with another call that must finish first. */
  ERR_BUSY: 'busy',
  /** The requested device or CPU feature is not available (CUDA, AVX-512). */
  ERR_DEVICE: 'device unavailable',
  /** A size would need more memory than can be allocated. */
  ERR_MEMORY: 'out of memory',
  /** The native engine cannot load, or failed in an unexpected way. */
  ERR_ENGINE: 'engine failure',
  /** The job queue failed a sharded run: Redis unreachable or lost, a worker refused a job, or a shard failed on every try. */
  ERR_QUEUE: 'job queue failure',
} as const;

/** One of the stable codes of {@link ERROR_CODES}, as carried by {@link ConceptLensError.code}. */
export type ErrorCode = keyof typeof ERROR_CODES;

const isCode = (c: unknown): c is ErrorCode => typeof c === 'string' && c in ERROR_CODES;

/**
 * The error every conceptlens call rejects or throws with. Branch on `code`;
 * aborts also have `name === 'AbortError'`, like the platform's.
 */
export class ConceptLensError extends Error {
  readonly code: ErrorCode;

  constructor(code: ErrorCode, message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.code = code;
    this.name = code === 'ERR_ABORTED' ? 'AbortError' : 'ConceptLensError';
  }
}

/** "name: expected …, got …" with a code (ERR_ARG unless said otherwise). */
export function argError(name: string, expected: string, actual: unknown, code: ErrorCode = 'ERR_ARG'): ConceptLensError {
  return new ConceptLensError(code, `${name}: expected ${expected}, got ${describe(actual)}`);
}

/** A short, readable rendering of a received value for messages. */
export function describe(v: unknown): string {
  if (typeof v === 'string') return `'${v}'`;
  if (v === null || v === undefined || typeof v !== 'object') return String(v);
  if (ArrayBuffer.isView(v)) return `${v.constructor.name}(${(v as unknown as { length: number }).length})`;
  if (Array.isArray(v)) return `an array of ${v.length}`;
  return v.constructor?.name ?? 'an object';
}

export function abortError(): ConceptLensError {
  return new ConceptLensError('ERR_ABORTED', 'The operation was aborted');
}

/** `o` when it is an options object, else ERR_ARG saying what it must hold (a missing object failed inside the call). */
export function requireOptions<T>(o: T, holds: string): T {
  if (typeof o !== 'object' || o === null || Array.isArray(o)) throw argError('options', `an object with ${holds}`, o);
  return o;
}

/** `value` when it is an integer ≥ `min`, else ERR_ARG naming it (a fraction or a count below `min` would change the work silently). */
export function requireInteger(value: unknown, name: string, min: number): number {
  if (!(Number.isInteger(value) && (value as number) >= min)) throw argError(name, `an integer >= ${min}`, value);
  return value as number;
}

/** Refuses a key of `o` not in `known`, naming `where`: a misspelt option ('tokn') would otherwise be ignored. */
export function requireKnownKeys(o: object, known: readonly string[], where: string): void {
  const unknown = Object.keys(o).find((k) => !known.includes(k));
  if (unknown !== undefined) throw new ConceptLensError('ERR_ARG', `${where}: unknown option '${unknown}' (known: ${known.join(', ')})`);
}

/** A file-level error: "path: what" with code ERR_FILE. */
export function fileError(path: string, what: string, cause?: unknown): ConceptLensError {
  return new ConceptLensError('ERR_FILE', `${path}: ${what}`, cause === undefined ? undefined : { cause });
}

const OPEN_FAILURES: Record<string, string> = { ENOENT: 'no such file or directory', EACCES: 'permission denied' };

/** A file that could not be opened, in the same words whichever reader tried. */
export function openError(path: string, e: unknown): ConceptLensError {
  const code = (e as NodeJS.ErrnoException).code;
  return fileError(path, (code && OPEN_FAILURES[code]) ?? `cannot open (${code ?? (e as Error).message})`, e);
}

/**
 * Any error as a ConceptLensError: native errors keep the code the engine
 * set, platform aborts become ERR_ABORTED, TypeErrors ERR_DTYPE, RangeErrors
 * ERR_ARG; the message is kept.
 */
export function toConceptLensError(e: unknown): ConceptLensError {
  if (e instanceof ConceptLensError) return e;
  if (!(e instanceof Error)) return new ConceptLensError('ERR_ENGINE', String(e));
  const code = (e as { code?: unknown }).code;
  if (isCode(code)) return new ConceptLensError(code, e.message, { cause: e });
  if (e.name === 'AbortError') return new ConceptLensError('ERR_ABORTED', e.message || 'The operation was aborted', { cause: e });
  if (e instanceof RangeError && /allocation failed|Array buffer allocation|Invalid typed array length/i.test(e.message))
    return new ConceptLensError('ERR_MEMORY', e.message, { cause: e });
  return new ConceptLensError(e instanceof TypeError ? 'ERR_DTYPE' : e instanceof RangeError ? 'ERR_ARG' : 'ERR_ENGINE', e.message, { cause: e });
}
