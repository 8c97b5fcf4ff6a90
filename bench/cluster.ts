// A job-queue cluster on this machine for the distributed bench and tests:
// Debian's redis-server on a free loopback port (no persistence, nothing
// beyond loopback), and `conceptlens worker` child processes whose --json
// events are collected.
import { spawn, type ChildProcess } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { createServer } from 'node:net';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { packageRoot } from '../ts/package-root.js';

export const BIN = join(packageRoot, 'bin', 'conceptlens.js');

/** A free TCP port on 127.0.0.1 (bound, then released). */
export async function freePort(): Promise<number> {
  const srv = createServer();
  await new Promise<void>((ok) => srv.listen(0, '127.0.0.1', ok));
  const port = (srv.address() as { port: number }).port;
  await new Promise((ok) => srv.close(ok));
  return port;
}

/** Polls `probe` every 50 ms until it gives a value; an error naming `what` after ms. */
export async function until<T>(what: string, probe: () => T | undefined | false | Promise<T | undefined | false>, ms = 30_000): Promise<T> {
  for (const t0 = Date.now(); Date.now() - t0 < ms; await sleep(50)) {
    const v = await probe();
    if (v) return v;
  }
  throw new Error(`timed out waiting for ${what}`);
}

/** redis-server on 127.0.0.1:port, without persistence; start() again after stop() is a restart, empty. */
export class RedisServer {
  private proc?: ChildProcess;

  constructor(readonly port: number, private readonly binary = 'redis-server') {}

  get url(): string {
    return `redis://127.0.0.1:${this.port}`;
  }

  async start(): Promise<void> {
    const p = spawn(this.binary, ['--port', String(this.port), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no'], { stdio: ['ignore', 'pipe', 'inherit'] });
    let log = '';
    p.stdout!.on('data', (b) => (log += b));
    this.proc = p;
    await until('redis-server to accept connections', () => log.includes('Ready to accept connections') || (p.exitCode !== null && fail(log)));
  }

  async stop(): Promise<void> {
    const p = this.proc;
    if (!p || p.exitCode !== null) return;
    const gone = new Promise((ok) => p.once('exit', ok));
    p.kill('SIGKILL');
    await gone;
  }
}

function fail(log: string): never {
  throw new Error(`redis-server exited: ${log.trim().split('\n').pop()}`);
}

/** One line of `conceptlens worker --json`. */
export interface WorkerLine {
  event: string;
  worker: string;
  job?: string;
  kind?: string;
  runDir?: string;
  part?: number;
  error?: string;
}

/** A `conceptlens worker --json` child process (short lock and stalled intervals: recovery in seconds). */
export class WorkerProc {
  readonly events: WorkerLine[] = [];
  readonly proc: ChildProcess;
  readonly exited: Promise<number | null>;

  constructor(url: string, extra: string[] = []) {
    this.proc = spawn(process.execPath, [BIN, 'worker', '--queue', url, '--json', '--lock-duration', '2000', '--stalled-interval', '500', ...extra],
      { stdio: ['ignore', 'pipe', 'inherit'] });
    let buf = '';
    this.proc.stdout!.on('data', (b) => {
      buf += b;
      for (let i = buf.indexOf('\n'); i >= 0; i = buf.indexOf('\n')) {
        this.events.push(JSON.parse(buf.slice(0, i)));
        buf = buf.slice(i + 1);
      }
    });
    this.exited = new Promise((ok) => this.proc.once('exit', (code) => ok(code)));
  }

  ready(): Promise<WorkerLine> {
    return until('a worker to be ready', () => this.events.find((e) => e.event === 'ready'));
  }

  /** Peak resident memory so far, in bytes (Linux /proc; 0 elsewhere). */
  peakRss(): number {
    try {
      return 1024 * Number(/VmHWM:\s+(\d+) kB/.exec(readFileSync(`/proc/${this.proc.pid}/status`, 'utf8'))?.[1] ?? 0);
    } catch {
      return 0;
    }
  }

  /** SIGTERM (drain) and wait for the exit code. */
  async drain(): Promise<number | null> {
    if (this.proc.exitCode === null) this.proc.kill('SIGTERM');
    return this.exited;
  }

  kill(): void {
    if (this.proc.exitCode === null) this.proc.kill('SIGKILL');
  }
}
