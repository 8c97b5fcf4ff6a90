// Sharded jobs on BullMQ and Redis: the library side of `conceptlens worker`
// and of the `--queue` option of the shard-parallel commands.
export type { QueueOptions, RunStatus } from './coordinator.js';
export { startWorker, type WorkerOptions, type WorkerEvent, type QueueWorker } from './worker.js';
export { distributedSearch, distributedTopCaptions, queueSearcher, mergeTopK, type DistributedSearchOptions } from './search.js';
export { distributedEmbed, type DistributedEmbedOptions } from './embed.js';
export { distributedSplice, type DistributedSpliceOptions, type SpliceRunResult } from './splice.js';
export { spliceProblem, type SpliceProblem, type SpliceMeans } from '../methods/splice.js';  // what every part solves, as `splice decompose` does
export { distributedDedupe, distributedVocabBuild, type DistributedDedupeOptions } from './dedupe.js';
export { statusBar, type StatusBar } from './progress.js';
export type { Stamp } from './stamp.js';
export type { VocabSearcher } from '../methods/falcon/captions.js';
export type { VocabScanOptions } from '../retrieval/vocabulary.js';  // Vocabulary.scan: the per-shard scan workers run
