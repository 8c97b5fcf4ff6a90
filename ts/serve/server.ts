// A ready-to-run conceptlens server: Fastify with load shedding
// (@fastify/under-pressure: event-loop delay and heap) around the plugin.
// Binds loopback unless told otherwise.
import { getHeapStatistics } from 'node:v8';
import type { AddressInfo } from 'node:net';
import underPressure, { type FastifyUnderPressureOptions } from '@fastify/under-pressure';
import Fastify, { type FastifyInstance, type FastifyReply, type FastifyRequest } from 'fastify';
import { setComputeNice } from '../engine/info.js';
import { ConceptLensError, requireKnownKeys } from '../errors.js';
import { overloaded } from './errors.js';
import { CONFIG_OPTIONS, type ServerOptions } from './config.js';
import { conceptlensPlugin, type ConceptLensPluginOptions } from './plugin.js';

/** Options of {@link createServer}: what to serve, where to listen, and when to shed load. */
export interface CreateServerOptions extends ServerOptions, Pick<ConceptLensPluginOptions, 'openapi' | 'registry' | 'processMetrics'> {
  /**
   * @fastify/under-pressure's options: past them requests get 503 with Retry-After (`/health` excepted).
   * Default: event-loop delay over 1 s, or a JS heap past 90% of its limit.
   */
  underPressure?: FastifyUnderPressureOptions;
}

/** A server from {@link createServer}. */
export interface ConceptLensServer {
  /** The Fastify app (routes loaded, not yet listening). */
  readonly app: FastifyInstance;
  /** Starts listening on the configured host and port; resolves with the base URL, e.g. `http://127.0.0.1:8080`. */
  listen(): Promise<string>;
  /** Stops accepting connections, answers every request already accepted, then releases the models. */
  close(): Promise<void>;
}

/**
 * 503 with Retry-After under measured pressure. An interval without a single event-loop sample (the loop was busy
 * loading at start-up) reads as an infinite delay; that is not load, so it sheds nothing.
 */
async function shed(_req: FastifyRequest, _reply: FastifyReply, type: string, value: number | undefined): Promise<void> {
  if (value !== Infinity) throw overloaded(`server: under pressure (${type} ${value})`, 1);
}

// The configuration file's options and those only code can pass.
const CODE_ONLY: readonly (keyof CreateServerOptions)[] = ['openapi', 'registry', 'processMetrics', 'underPressure'];
const SERVER_OPTIONS = [...CONFIG_OPTIONS, ...CODE_ONLY];

/** Why a listen failed, in words. */
const LISTEN_FAILURES: Record<string, string> = {
  ENOTFOUND: 'no such host', EADDRINUSE: 'the port is in use', EACCES: 'permission denied', EADDRNOTAVAIL: 'not an address of this machine',
};

function baseUrl(a: AddressInfo): string {
  return `http://${a.family === 'IPv6' ? `[${a.address}]` : a.address}:${a.port}`;
}

/**
 * A conceptlens server: loads the vocabularies and models the options name (they stay resident), sets up the
 * dynamic batcher and the routes, and returns it ready to listen. Rejects, naming the option, when one is wrong.
 * Lowers the engine's compute threads to `computeNice` (default 10) for the whole process.
 */
export async function createServer(o: CreateServerOptions = {}): Promise<ConceptLensServer> {
  // A misspelt 'token' would serve without authentication.
  requireKnownKeys(o, SERVER_OPTIONS, 'options');
  setComputeNice(o.computeNice ?? 10);
  // requestTimeout bounds how long a client may take to send its request (slow uploads hold memory); loading a
  // large vocabulary may take longer than Fastify's default 10 s plugin timeout, so there is none.
  const app = Fastify({ logger: o.logger ?? false, requestTimeout: 30_000, return503OnClosing: true, pluginTimeout: 0 });
  try {
    await app.register(underPressure, {
      maxEventLoopDelay: 1000, maxHeapUsedBytes: Math.floor(0.9 * getHeapStatistics().heap_size_limit), pressureHandler: shed, ...o.underPressure,
    });
    await app.register(conceptlensPlugin, o);
    await app.ready();
  } catch (e) {
    await app.close();
    throw e;
  }
  return {
    app,
    async listen() {
      const host = o.host ?? '127.0.0.1', port = o.port ?? 8080;
      try {
        await app.listen({ host, port });
      } catch (e) {
        const code = (e as NodeJS.ErrnoException).code;
        throw new ConceptLensError('ERR_ARG', `host, port: cannot listen on ${host}:${port} (${LISTEN_FAILURES[code ?? ''] ?? code ?? (e as Error).message})`, { cause: e });
      }
      return baseUrl(app.server.address() as AddressInfo);
    },
    close: () => app.close(),
  };
}
