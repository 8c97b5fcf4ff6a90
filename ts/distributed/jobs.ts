// The job kinds a worker runs, each a handler that computes one part of a
// run from its payload (paths and parameters) and writes that part's files
// into the run directory, returning a small summary. The worker wraps every
// handler with the same checks and the done marker (worker.ts).
import { queueError } from './connection.js';
import type { PartSummary } from './store.js';
import { searchJob } from './search.js';
import { embedJob } from './embed.js';
import { spliceJob } from './splice.js';
import { dedupeBucketJob, dedupeScanJob } from './dedupe.js';

/** What a handler gets besides its payload. */
export interface PartContext {
  runDir: string;
  part: number;
  /** A file of this part in the run directory (…/parts/<kind>-<part><suffix>). */
  file(suffix: string): string;
  /** Aborts when the worker is forced to stop. */
  signal?: AbortSignal;
}

/** One kind of job: its name on the queue, and the handler of its parts. */
export interface JobKind<P> {
  kind: string;
  handle(payload: P, ctx: PartContext): Promise<PartSummary>;
}

// Each handler takes its own payload type; the queue hands them JSON.
const KINDS = new Map<string, JobKind<never>>([searchJob, embedJob, spliceJob, dedupeScanJob, dedupeBucketJob].map((j) => [j.kind, j]));

/** The handler of a job kind (ERR_QUEUE for a kind this worker does not know). */
export function handlerFor(kind: string): JobKind<unknown>['handle'] {
  const j = KINDS.get(kind);
  if (!j) throw queueError(`unknown job kind '${kind}' (known: ${[...KINDS.keys()].join(', ')})`);
  return j.handle as JobKind<unknown>['handle'];
}
