// The service as a Fastify plugin, so an app can mount the routes under its
// own prefix: `app.register(conceptlensPlugin, { prefix: '/lens', ...options })`.
// It is encapsulated on purpose: its validator (no type coercion in bodies),
// error format, body parsers and token check apply to its routes only.
import { createHash, timingSafeEqual } from 'node:crypto';
import swagger from '@fastify/swagger';
import type { FastifyError, FastifyInstance, FastifyPluginAsync, FastifyReply, FastifyRequest } from 'fastify';
import type { Registry } from 'prom-client';
import { argError } from '../errors.js';
import { packageVersion } from '../package-version.js';
import type { ServiceOptions } from './config.js';
import { errorBody, HttpError, toHttpError } from './errors.js';
import { ServiceMetrics } from './metrics.js';
import { addRoutes } from './routes.js';
import { validatorCompiler } from './schemas.js';
import { Service } from './service.js';

/** Options of {@link conceptlensPlugin}: what to serve, plus where its metrics and API document go. */
export interface ConceptLensPluginOptions extends ServiceOptions {
  /**
   * Serve the OpenAPI document at `/openapi.json` (default true). The plugin registers @fastify/swagger in its own
   * scope, unless the app already has it: then the app's document, which lists these routes too, is served.
   */
  openapi?: boolean;
  /** The prom-client registry the metrics go to (default a new one); `/metrics` serves it. */
  registry?: Registry;
  /** Also collect prom-client's default process metrics into that registry (default true). */
  processMetrics?: boolean;
}

const digest = (s: string) => createHash('sha256').update(s).digest();

/** The onRequest check of `Authorization: Bearer <token>`, on every route not marked public. */
function bearer(token: string) {
  const want = digest(token);
  return async (req: FastifyRequest) => {
    if ((req.routeOptions.config as { public?: boolean }).public) return;
    const given = /^Bearer\s+(\S+)\s*$/i.exec(req.headers.authorization ?? '')?.[1];
    // Digests have one length, so the comparison takes the same time whatever was sent.
    if (given === undefined || !timingSafeEqual(digest(given), want))
      throw new HttpError(401, 'ERR_AUTH', `authorization: expected 'Bearer <token>' with the server's token, got ${given === undefined ? 'none' : 'another token'}`,
        { 'www-authenticate': 'Bearer' });
  };
}

/** Bodies of float32 rows and of images arrive as Buffers. */
function addBodyParsers(app: FastifyInstance): void {
  for (const type of ['application/octet-stream', /^image\/[\w.+-]+$/]) {
    if (app.hasContentTypeParser(type)) app.removeContentTypeParser(type);
    app.addContentTypeParser(type, { parseAs: 'buffer' }, (_req, body, done) => done(null, body));
  }
}

async function addOpenApi(app: FastifyInstance): Promise<void> {
  if (!app.hasDecorator('swagger')) {
    const version = packageVersion();
    await app.register(swagger, {
      openapi: { info: { title: 'conceptlens', version, description: 'Exact vocabulary search, SpLiCE decompositions and image explanations, dynamically batched' } },
    });
  }
  app.get('/openapi.json', { schema: { hide: true } }, async () => app.swagger());
}

/** The answer to a route that does not exist, whatever its body. */
const notFound = (req: FastifyRequest) => new HttpError(404, 'ERR_NOT_FOUND', `no route ${req.method} ${req.url.split('?')[0]}`);

function errorHandler(metrics: ServiceMetrics) {
  return (e: FastifyError, req: FastifyRequest, reply: FastifyReply) => {
    // A body the not-found route fails to parse is no reason to hide that the route does not exist (other errors,
    // such as a missing token, still come first).
    const h = req.routeOptions.url === undefined && e.code?.startsWith('FST_ERR_CTP_') ? notFound(req) : toHttpError(e);
    metrics.error(h.code);
    if (h.status >= 500 && h.status !== 503) req.log.error(e);
    return reply.status(h.status).headers(h.headers).send(errorBody(h));
  };
}

/**
 * The conceptlens routes as a Fastify plugin: `/v1/search`, `/v1/splice/decompose`, `/v1/embed/image`,
 * `/v1/explain/image`, `/health`, `/ready`, `/metrics` and `/openapi.json`. Loads everything at registration
 * (vocabularies resident, models open: a large vocabulary can take longer than Fastify's default `pluginTimeout`
 * of 10 s, so raise it on the app); closing the app drains the queues, answering every accepted request.
 */
export const conceptlensPlugin: FastifyPluginAsync<ConceptLensPluginOptions> = async (app, opts) => {
  if (opts.token !== undefined && (typeof opts.token !== 'string' || opts.token === '')) throw argError('token', 'a non-empty string', opts.token);
  const metrics = new ServiceMetrics(opts);
  const service = await Service.create(opts, metrics);
  // Flush before the server waits for in-flight requests: a batch waiting for maxDelayMs would hold the close.
  app.addHook('preClose', async () => service.drain());
  app.addHook('onClose', () => service.close());
  app.setValidatorCompiler(validatorCompiler);
  app.setErrorHandler(errorHandler(metrics));
  app.setNotFoundHandler(async (req) => {
    throw notFound(req);
  });
  addBodyParsers(app);
  if (opts.token !== undefined) app.addHook('onRequest', bearer(opts.token));
  // While draining, answers close their connections, so keep-alive clients do not hold the shutdown open.
  app.addHook('onSend', async (_req, reply) => {
    if (service.isDraining) reply.header('connection', 'close');
  });
  app.addHook('onResponse', async (req, reply) => {
    metrics.answered(req.routeOptions.url ?? 'unmatched', req.method, reply.statusCode, reply.elapsedTime / 1000);
  });
  if (opts.openapi !== false) await addOpenApi(app);
  addRoutes(app, service, metrics.registry);
};
