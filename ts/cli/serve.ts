// `conceptlens serve`: the HTTP service (ts/serve) from a configuration file
// and/or flags. Prints `listening on http://HOST:PORT` once /health answers;
// SIGTERM (or Ctrl-C) drains: no new connections, every accepted request
// answered, then exit 0. A second signal ends the process at once.
import type { Command } from 'commander';
import { readConfigFile, type ServerOptions, type VocabularyConfig } from '../serve/config.js';
import { createServer } from '../serve/server.js';
import { addSourceOptions, sourceOptions, type SourceFlags } from './vocab.js';
import { existingFile, integer, number, oneOf } from './options.js';
import { act, UsageError } from './run.js';

interface ServeFlags extends SourceFlags {
  config?: string;
  vocab?: string;
  vocabName: string;
  storage?: 'fp32' | 'fp16';
  concepts?: string;
  conceptNames?: string;
  imageMean?: string;
  l1?: number;
  model?: string;
  modelOutput?: string;
  host?: string;
  port?: number;
  maxBatch?: number;
  maxDelayMs?: number;
  maxQueue?: number;
  token?: string;
  log?: boolean;
  computeNice?: number;
}

/** The flags' vocabulary, served first (the default), before those of the configuration file. */
function flagVocabulary(o: ServeFlags): VocabularyConfig | undefined {
  if (!o.vocab) return undefined;
  return { name: o.vocabName, path: o.vocab, storage: o.storage, ...sourceOptions(o) };
}

function flagSplice(o: ServeFlags): ServerOptions['splice'] {
  const given = [o.concepts, o.conceptNames, o.imageMean].filter((x) => x !== undefined).length;
  if (given === 0) return undefined;
  if (given < 3) throw new UsageError('--concepts, --concept-names and --image-mean: SpLiCE needs all three');
  return { concepts: o.concepts!, conceptNames: o.conceptNames!, imageMean: o.imageMean!, l1: o.l1 };
}

/** The configuration file (if any) with the flags laid over it; the token from --token, else $CONCEPTLENS_TOKEN. */
export function serveOptions(o: ServeFlags): ServerOptions {
  const file = o.config ? readConfigFile(o.config) : {};
  const vocab = flagVocabulary(o), splice = flagSplice(o);
  const defined = <T extends object>(x: T) => Object.fromEntries(Object.entries(x).filter(([, v]) => v !== undefined)) as Partial<T>;
  return {
    ...file,
    ...defined({ host: o.host, port: o.port, logger: o.log, computeNice: o.computeNice, token: o.token ?? process.env.CONCEPTLENS_TOKEN }),
    vocabularies: [...(vocab ? [vocab] : []), ...(file.vocabularies ?? [])],
    splice: splice ?? (file.splice && o.l1 !== undefined ? { ...file.splice, l1: o.l1 } : file.splice),
    model: o.model ? { path: o.model, output: o.modelOutput } : file.model,
    batching: { ...file.batching, ...defined({ maxBatch: o.maxBatch, maxDelayMs: o.maxDelayMs, maxQueue: o.maxQueue }) },
  };
}

/** Resolves with the signal's name on SIGTERM, or when the runner's signal aborts (SIGINT). */
function whenStopped(signal: AbortSignal): { stopped: Promise<string>; dispose(): void } {
  let onTerm = () => {}, onInt = () => {};
  const stopped = new Promise<string>((resolve) => {
    onTerm = () => resolve('SIGTERM');
    onInt = () => resolve('SIGINT');
  });
  process.once('SIGTERM', onTerm);
  signal.addEventListener('abort', onInt, { once: true });
  if (signal.aborted) onInt();
  const dispose = () => {
    process.off('SIGTERM', onTerm);
    signal.removeEventListener('abort', onInt);
  };
  return { stopped, dispose };
}

async function serve(o: ServeFlags, signal: AbortSignal): Promise<void> {
  if (!o.config && !o.vocab && !o.concepts && !o.conceptNames && !o.imageMean && !o.model)
    throw new UsageError('nothing to serve: give --vocab, SpLiCE\'s --concepts (with --concept-names and --image-mean), --model, or --config');
  const stop = whenStopped(signal);
  try {
    const server = await createServer(serveOptions(o));
    try {
      const url = await server.listen();
      const health = await fetch(`${url}/health`);
      if (health.status !== 200) throw new Error(`${url}/health answered ${health.status}, expected 200`);
      console.log(`listening on ${url}`);
      console.error(`${await stop.stopped}: draining (no new connections; answering every accepted request)`);
    } finally {
      await server.close();
    }
    console.error('drained');
  } finally {
    stop.dispose();
  }
}

/** Adds `serve` to the program. */
export function registerServe(program: Command): void {
  addSourceOptions(program.command('serve')
    .description('serve exact search, SpLiCE and image explanations over HTTP, with dynamic batching')
    .option('--config <file>', 'JSON configuration (vocabularies by name, splice, model, batching, limits); flags override it')
    .option('--vocab <path>', 'a vocabulary to serve: .npy, LAION shard directory or store (held in memory)')
    .option('--vocab-name <name>', 'the name requests select --vocab by', 'default')
    .option('--storage <dtype>', 'resident precision of --vocab: fp32 | fp16', oneOf('--storage', ['fp32', 'fp16'])))
    .option('--concepts <npy>', 'SpLiCE concept embeddings (concepts × d)')
    .option('--concept-names <txt>', 'SpLiCE concept names, one per line')
    .option('--image-mean <npy>', 'the image mean SpLiCE centres on')
    .option('--l1 <lambda>', 'SpLiCE λ when a request gives none (default 0.25)', number('--l1', { min: 0 }))
    .option('--model <onnx>', 'a CLIP image encoder (ONNX) for /v1/embed/image and /v1/explain/image', existingFile('--model'))
    .option('--model-output <name>', 'the model output holding the embedding (default: the first)')
    .option('--host <host>', 'interface to bind (default 127.0.0.1: loopback only)')
    .option('--port <port>', 'port (default 8080; 0 picks a free one)', integer('--port', 0, 65535))
    .option('--max-batch <n>', 'rows per native call; 1 turns batching off (default 64)', integer('--max-batch', 1, 65536))
    .option('--max-delay-ms <ms>', "how long a batch's oldest request waits for more (default 2)", number('--max-delay-ms', { min: 0, max: 60000 }))
    .option('--max-queue <rows>', 'rows that may wait per queue before requests get 503 (default 1024)', integer('--max-queue'))
    .option('--token <token>', 'require Authorization: Bearer <token> on every route but /health (default $CONCEPTLENS_TOKEN, which ps does not show)')
    .option('--log', 'log every request (JSON lines on stdout)')
    .option('--compute-nice <n>', 'niceness of the engine threads, so the event loop preempts them (default 10; 0: none)', integer('--compute-nice', 0, 19))
    .action(act((o: ServeFlags, { signal }) => serve(o, signal)));
}
