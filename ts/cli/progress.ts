// Progress bars (rate and ETA) for long CLI work, on stderr so stdout stays
// clean for --json. Silent when stderr is not a terminal or under --json.
import cliProgress from 'cli-progress';

export interface Bar {
  update(done: number, total: number): void;
  stop(): void;
}

export function progressBar(label: string, unit: string, enabled = process.stderr.isTTY && !process.env.CI): Bar {
  if (!enabled) return { update: () => {}, stop: () => {} };
  const bar = new cliProgress.SingleBar(
    {
      format: `${label} |{bar}| {percentage}% {value}/{total} ${unit} | {rate} ${unit}/s | ETA {eta_formatted}`,
      stream: process.stderr,
      hideCursor: true,
    },
    cliProgress.Presets.shades_classic,
  );
  const t0 = performance.now();
  let started = false;
  return {
    update(done, total) {
      const rate = Math.round(done / Math.max(1e-3, (performance.now() - t0) / 1000));
      if (!started) {
        bar.start(total, 0, { rate });
        started = true;
      }
      bar.setTotal(total);
      bar.update(done, { rate });
    },
    stop() {
      if (started) bar.stop();
    },
  };
}
