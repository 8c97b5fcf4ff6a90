// The progress line of a sharded run on stderr: parts done of all, rate,
// ETA and workers seen (cli-progress, as the other commands' bars). Silent
// when stderr is not a terminal, in CI, or when the caller says so (--json).
import cliProgress from 'cli-progress';
import type { RunStatus } from './coordinator.js';

/** A bar fed by {@link QueueOptions.onStatus}. */
export interface StatusBar {
  /** Shows a status (pass as onStatus). */
  update(s: RunStatus): void;
  /** Ends the line. */
  stop(): void;
}

/** A progress line for a sharded run labelled `label` (e.g. 'search'); pass `update` as onStatus, stop() when done. */
export function statusBar(label: string, enabled = process.stderr.isTTY && !process.env.CI): StatusBar {
  if (!enabled) return { update: () => {}, stop: () => {} };
  const bar = new cliProgress.SingleBar({
    format: `${label} |{bar}| {value}/{total} shards ({resumed} found done) | {rate} shards/s | ETA {eta} | {workers} workers seen`,
    stream: process.stderr, hideCursor: true,
  }, cliProgress.Presets.shades_classic);
  let started = false;
  return {
    update(s) {
      const payload = { resumed: s.resumed, rate: s.rate.toFixed(2), eta: s.etaSeconds === null ? '?' : `${Math.ceil(s.etaSeconds)}s`, workers: s.workers };
      if (!started) bar.start(s.total, s.done, payload);
      started = true;
      bar.setTotal(s.total);
      bar.update(s.done, payload);
    },
    stop() {
      if (started) bar.stop();
    },
  };
}
