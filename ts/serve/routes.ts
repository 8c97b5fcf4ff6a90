// The service's routes with their schemas (which validate requests and make
// the OpenAPI document). Rows come as JSON or as float32 bytes; with bytes,
// the other parameters come in the query string. Handlers only translate:
// the Service checks, queues and answers.
import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import type { Registry } from 'prom-client';
import { ConceptLensError, describe } from '../errors.js';
import type { Metric } from '../retrieval/exact.js';
import type { LimitsOptions } from './config.js';
import { HttpError, overloaded } from './errors.js';
import { binaryRows, jsonRows, ROWS_HEADER, type Width } from './inputs.js';
import type { Hits } from './resources.js';
import { BINARY } from './schemas.js';
import type { RowDecomposition, Service } from './service.js';

interface SearchParams {
  queries?: number[][];
  k: number;
  metric: Metric;
  vocab?: string;
  texts: boolean;
}

interface DecomposeParams {
  embeddings?: number[][];
  l1?: number;
  top: number;
}

interface ExplainParams {
  l1?: number;
  top: number;
  k: number;
  vocab?: string;
}

const ERROR = {
  type: 'object', required: ['error'],
  properties: { error: { type: 'object', required: ['code', 'message'], properties: { code: { type: 'string' }, message: { type: 'string' } } } },
};
const ERRORS = { '4xx': ERROR, '5xx': ERROR };
const numbers = { type: 'array', items: { type: 'number' } };
const rowsSchema = (what: string, max: number) =>
  ({ type: 'array', minItems: 1, maxItems: max, items: { ...numbers, minItems: 1 }, description: `${what}, one array of numbers per row` });

function searchParams(l: LimitsOptions) {
  return {
    k: { type: 'integer', minimum: 1, maximum: l.maxK, default: 10, description: 'results per query' },
    metric: { type: 'string', enum: ['ip', 'cosine'], default: 'ip' },
    vocab: { type: 'string', description: 'vocabulary name (default: the first served)' },
    texts: { type: 'boolean', default: true, description: 'include the texts of the hits when the vocabulary has them' },
  };
}

function spliceParams(l: LimitsOptions) {
  return {
    l1: { type: 'number', minimum: 0, description: 'SpLiCE λ (default: the server\'s)' },
    top: { type: 'integer', minimum: 1, maximum: l.maxK, default: 10, description: 'at most this many concepts per row, heaviest first' },
  };
}

/** Explaining an image: SpLiCE's λ and top, and k nearest rows of a vocabulary. */
function explainParams(l: LimitsOptions) {
  const { k, vocab } = searchParams(l);
  return { ...spliceParams(l), k, vocab };
}

/** A body of JSON rows (`field` plus params) or of float32 rows (X-Rows header; params in the query string). */
function rowsBody(field: string, what: string, params: Record<string, object>, l: LimitsOptions) {
  return {
    body: {
      content: {
        'application/json': { schema: { type: 'object', additionalProperties: false, required: [field], properties: { [field]: rowsSchema(what, l.maxRows), ...params } } },
        'application/octet-stream': { schema: { ...BINARY, description: `${what}: little-endian float32, row after row; the row count in ${ROWS_HEADER}` } },
      },
    },
    querystring: { type: 'object', additionalProperties: false, properties: params },
    headers: { type: 'object', properties: { [ROWS_HEADER]: { type: 'integer', minimum: 1, maximum: l.maxRows, description: 'rows of a float32 body' } } },
  };
}

const HITS = {
  ids: { type: 'array', items: { type: 'array', items: { type: 'integer' } } },
  scores: { type: 'array', items: numbers },
  texts: { type: 'array', items: { type: 'array', items: { type: 'string' } } },
};
const CONCEPTS = {
  type: 'object',
  properties: {
    concepts: { type: 'array', items: { type: 'object', properties: { concept: { type: 'string' }, index: { type: 'integer' }, weight: { type: 'number' } } } },
    l0: { type: 'integer' },
    cosine: { type: 'number' },
  },
};
const IMAGE_BODY = {
  body: { content: Object.fromEntries(['image/jpeg', 'image/png', 'image/webp', 'application/octet-stream'].map((t) => [t, { schema: BINARY }])) },
};

/** Aborts when the client disconnects before its answer was written. */
function clientGone(reply: FastifyReply): AbortSignal {
  const ac = new AbortController();
  reply.raw.once('close', () => {
    if (!reply.raw.writableFinished) ac.abort();
  });
  return ac.signal;
}

/** 415 for a body an app-wide parser read into something other than JSON or bytes (text, forms). */
function mediaType(req: FastifyRequest, accepted: string): HttpError {
  return new HttpError(415, 'ERR_MEDIA_TYPE', `content-type: expected ${accepted}, got ${describe(req.headers['content-type'])}`);
}

/** The request's rows, JSON or float32 bytes. */
function rows(req: FastifyRequest, json: number[][] | undefined, width: Width, field: string): Float32Array {
  if (Buffer.isBuffer(req.body)) return binaryRows(req.body, req.headers[ROWS_HEADER] as number | undefined, width, field);
  if (typeof req.body !== 'object' || req.body === null) throw mediaType(req, 'application/json or application/octet-stream');
  return jsonRows(json!, width, field);
}

/** The image bytes of the body. */
function image(req: FastifyRequest): Buffer {
  if (!Buffer.isBuffer(req.body)) throw mediaType(req, 'an image type (image/jpeg, image/png, ...) or application/octet-stream');
  return req.body;
}

/** Parameters from the JSON body, or from the query string when the body is bytes. */
const params = <T>(req: FastifyRequest): T => (Buffer.isBuffer(req.body) ? req.query : req.body) as T;

function hitsBody(hits: Hits[], texts: boolean) {
  return { ids: hits.map((h) => h.ids), scores: hits.map((h) => h.scores), texts: texts ? hits.map((h) => h.texts!) : undefined };
}

function searchRoute(app: FastifyInstance, service: Service, l: LimitsOptions): void {
  app.post('/v1/search', {
    bodyLimit: l.bodyBytes,
    schema: {
      tags: ['search'], summary: 'Exact top-k of query embeddings in a vocabulary; rows best first, ties to the lower id',
      ...rowsBody('queries', 'query embeddings', searchParams(l), l),
      response: { 200: { type: 'object', properties: HITS }, ...ERRORS },
    },
  }, async (req, reply) => {
    const p = params<SearchParams>(req), v = service.vocabulary(p.vocab);
    const queries = rows(req, p.queries, { dim: v.vocab.dim, from: `the dimension of vocabulary '${v.vocab.name}'` }, 'queries');
    const hits = await service.search(v, { queries, k: p.k, metric: p.metric, texts: p.texts }, clientGone(reply));
    return hitsBody(hits, p.texts && v.vocab.hasTexts);
  });
}

function decomposeRoute(app: FastifyInstance, service: Service, l: LimitsOptions): void {
  app.post('/v1/splice/decompose', {
    bodyLimit: l.bodyBytes,
    schema: {
      tags: ['splice'], summary: 'SpLiCE: each embedding as a sparse non-negative mix of concepts (centred on the image mean)',
      ...rowsBody('embeddings', 'embeddings to decompose', spliceParams(l), l),
      response: { 200: { type: 'object', properties: { decompositions: { type: 'array', items: CONCEPTS } } }, ...ERRORS },
    },
  }, async (req, reply) => {
    const p = params<DecomposeParams>(req), s = service.spliceQueue();
    const embeddings = rows(req, p.embeddings, { dim: s.model.d, from: 'the width of the SpLiCE concepts' }, 'embeddings');
    const decompositions = await service.decompose({ embeddings, l1: p.l1 ?? s.model.solve.l1, top: p.top }, clientGone(reply));
    return { decompositions };
  });
}

function imageRoutes(app: FastifyInstance, service: Service, l: LimitsOptions): void {
  app.post('/v1/embed/image', {
    bodyLimit: l.imageBytes,
    schema: {
      tags: ['images'], summary: 'The image model\'s embedding of one image (the body: its encoded bytes)', ...IMAGE_BODY,
      response: { 200: { type: 'object', properties: { embedding: numbers } }, ...ERRORS },
    },
  }, async (req, reply) => ({ embedding: Array.from(await service.embed(image(req), clientGone(reply))) }));

  app.post('/v1/explain/image', {
    bodyLimit: l.imageBytes,
    schema: {
      tags: ['images'], summary: 'One image\'s embedding, its SpLiCE decomposition and its nearest vocabulary rows by cosine', ...IMAGE_BODY,
      querystring: { type: 'object', additionalProperties: false, properties: explainParams(l) },
      response: {
        200: { type: 'object', properties: { embedding: numbers, decomposition: CONCEPTS, nearest: { type: 'object', properties: { vocab: { type: 'string' }, ...HITS } } } },
        ...ERRORS,
      },
    },
  }, async (req, reply) => {
    const p = req.query as ExplainParams, signal = clientGone(reply);
    requireServed(service, p);
    const embedding = await service.embed(image(req), signal);
    const [decomposition, nearest] = await Promise.all([explainSplice(service, embedding, p, signal), explainNearest(service, embedding, p, signal)]);
    return { embedding: Array.from(embedding), decomposition, nearest };
  });
}

/** Options of a part of the explanation the server cannot give are refused, not ignored. */
function requireServed(service: Service, p: ExplainParams): void {
  const given = (names: (keyof ExplainParams)[]) => names.filter((n) => p[n] !== undefined);
  // Only options without a default can tell given from not (top and k always hold a value).
  const unserved: [string[], string][] = [[service.splice ? [] : given(['l1']), 'SpLiCE model (--concepts)'],
    [service.vocabularies.size ? [] : given(['vocab']), 'vocabulary (--vocab)']];
  for (const [names, what] of unserved)
    if (names.length) throw new ConceptLensError('ERR_ARG', `${names.join(', ')}: this server has no ${what} to use ${names.length > 1 ? 'them' : 'it'} with`);
}

async function explainSplice(service: Service, embedding: Float32Array, p: ExplainParams, signal: AbortSignal): Promise<RowDecomposition | undefined> {
  if (!service.splice) return undefined;
  return (await service.decompose({ embeddings: embedding, l1: p.l1 ?? service.splice.model.solve.l1, top: p.top }, signal))[0];
}

async function explainNearest(service: Service, embedding: Float32Array, p: ExplainParams, signal: AbortSignal) {
  if (service.vocabularies.size === 0) return undefined;
  const v = service.vocabulary(p.vocab);
  if (v.vocab.dim !== embedding.length)
    throw new ConceptLensError('ERR_SHAPE', `vocab: vocabulary '${v.vocab.name}' has width ${v.vocab.dim}, the image model's embeddings ${embedding.length}`);
  // The nearest rows are a side view here: k is capped at the vocabulary's rows rather than refused.
  const hits = await service.search(v, { queries: embedding, k: Math.min(p.k, v.vocab.rows), metric: 'cosine', texts: true }, signal);
  return { vocab: v.vocab.name, ...hitsBody(hits, v.vocab.hasTexts) };
}

function statusRoutes(app: FastifyInstance, service: Service, registry: Registry): void {
  // /health is for liveness probes: no token, and not shed under pressure.
  app.get('/health', { config: { public: true, pressureHandler: () => undefined }, schema: { tags: ['status'], summary: 'Liveness: 200 while the process serves' } },
    async () => ({ status: 'ok' }));
  app.get('/ready', { schema: { tags: ['status'], summary: 'Readiness: 200 when taking work, 503 while draining or with a queue at its bound' } }, async () => {
    if (!service.ready) throw overloaded(service.isDraining ? 'draining: shutting down' : 'a queue is at its bound', 1);
    return {
      vocabularies: [...service.vocabularies.values()].map(({ vocab: v }) => ({ name: v.name, rows: v.rows, dim: v.dim, texts: v.hasTexts })),
      splice: service.splice && { concepts: service.splice.model.c, dim: service.splice.model.d },
      model: service.images && { label: service.images.tower.label, dim: service.images.tower.dim },
    };
  });
  app.get('/metrics', { schema: { tags: ['status'], summary: 'Prometheus metrics' } }, async (_req, reply) => {
    reply.type(registry.contentType);
    return registry.metrics();
  });
}

/** Adds every route of the service to `app`. */
export function addRoutes(app: FastifyInstance, service: Service, registry: Registry): void {
  const l = service.limits;
  statusRoutes(app, service, registry);
  searchRoute(app, service, l);
  decomposeRoute(app, service, l);
  imageRoutes(app, service, l);
}
