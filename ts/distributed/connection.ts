// The job queue's Redis: one URL (redis://[user:password@]host:port[/db])
// turned into the connection options BullMQ's clients take, a reachability
// check that fails at once with a clear error (BullMQ's own clients retry
// forever, which would hang a coordinator on a wrong address), and the one
// queue every coordinator and worker shares.
import type { RedisOptions } from 'bullmq';
import { Redis } from 'ioredis';
import { argError, ConceptLensError } from '../errors.js';

/** The BullMQ queue of sharded jobs (a Redis database number in the URL keeps teams apart). */
export const QUEUE_NAME = 'conceptlens';

/** A parsed queue URL: where Redis is, and how to name it in messages (without the password). */
export interface RedisTarget {
  host: string;
  port: number;
  db: number;
  username?: string;
  password?: string;
  /** redis://host:port[/db], for messages. */
  shown: string;
}

/** Parses redis://[user:password@]host[:port][/db] (port 6379 and db 0 by default). */
export function parseQueueUrl(url: string): RedisTarget {
  let u: URL;
  try {
    u = new URL(url);
  } catch {
    throw argError('queue', 'a URL redis://HOST:PORT', url);
  }
  const db = u.pathname.length > 1 ? Number(u.pathname.slice(1)) : 0;
  if (u.protocol !== 'redis:' || !u.hostname || !Number.isInteger(db) || db < 0) throw argError('queue', 'a URL redis://HOST:PORT[/DB]', url);
  const port = u.port ? Number(u.port) : 6379;
  return {
    host: u.hostname, port, db, username: decodeURIComponent(u.username) || undefined, password: decodeURIComponent(u.password) || undefined,
    shown: `redis://${u.hostname}:${port}${db ? `/${db}` : ''}`,
  };
}

/**
 * Client options for BullMQ. A worker's clients block on the queue and retry
 * forever (a restarted Redis is picked up again); a coordinator's commands
 * fail at once while Redis is away, so it can tell how long Redis has been gone.
 */
export function connectionOptions(t: RedisTarget, role: 'worker' | 'coordinator'): RedisOptions {
  const base = { host: t.host, port: t.port, db: t.db, username: t.username, password: t.password };
  return role === 'worker' ? { ...base, maxRetriesPerRequest: null } : { ...base, enableOfflineQueue: false, maxRetriesPerRequest: 1 };
}

/** A ConceptLensError of code ERR_QUEUE. */
export function queueError(message: string, cause?: unknown): ConceptLensError {
  return new ConceptLensError('ERR_QUEUE', message, cause === undefined ? undefined : { cause });
}

/** Pings Redis once; ERR_QUEUE naming the address when it does not answer within timeoutMs. */
export async function checkRedis(t: RedisTarget, timeoutMs = 5000): Promise<void> {
  const r = new Redis({
    ...connectionOptions(t, 'coordinator'), lazyConnect: true, connectTimeout: timeoutMs, maxRetriesPerRequest: 0, retryStrategy: () => null,
  });
  let cause: Error | undefined;  // the socket's own error (ECONNREFUSED…) says more than connect()'s
  r.on('error', (e: Error) => (cause ??= e));
  try {
    await r.connect();
    await r.ping();
  } catch (e) {
    const why = cause ?? (e as Error);
    throw queueError(`cannot reach Redis at ${t.shown} (${why.message || 'no answer'}): start it or correct the queue URL`, why);
  } finally {
    r.disconnect();
  }
}
