// `conceptlens assets list|pull|verify`: the named public models and
// vocabularies, where each is found locally, downloads into the cache.
import type { Command } from 'commander';
import { existsSync } from 'node:fs';
import { assetsDir } from '../assets.js';
import { REGISTRY, cacheDir, findAsset, locateAsset, pullAsset, verifyAsset, type AssetEntry } from '../assets-registry.js';
import { progressBar } from './progress.js';
import { act, EXIT, UsageError, type RunContext } from './run.js';

/** The named assets (all when none is named); a name not in the registry is a usage error listing them. */
function pick(names: string[]): AssetEntry[] {
  try {
    return names.length ? names.map((n) => findAsset(n)) : [...REGISTRY];
  } catch (e) {
    throw new UsageError((e as Error).message); // findAsset's only error: the unknown name
  }
}

function list(json: boolean): void {
  const rows = REGISTRY.map((e) => ({ name: e.name, kind: e.kind, bytes: e.bytes, local: locateAsset(e)?.source ?? 'missing', url: e.url ?? `(mirror only: ${e.origin})` }));
  const path = assetsDir(), mirror = { path: path ?? null, found: path !== undefined && existsSync(path) };
  if (json) console.log(JSON.stringify({ mirror, cache: cacheDir(), assets: rows }));
  else {
    console.log(`mirror: ${mirror.found ? mirror.path : `${mirror.path ?? 'none'} (not found: set CONCEPTLENS_ASSETS to the assets mirror)`}`);
    console.log(`cache: ${cacheDir()}`);
    const cols = Object.keys(rows[0]) as (keyof (typeof rows)[number])[];
    const width = cols.map((c) => Math.max(c.length, ...rows.map((r) => String(r[c]).length)));
    for (const cells of [cols, ...rows.map((r) => cols.map((c) => String(r[c])))])
      console.log(cells.map((x, i) => String(x).padEnd(width[i])).join('  ').trimEnd());
  }
}

async function pull(names: string[], force: boolean, json: boolean, signal: AbortSignal): Promise<void> {
  const out = [];
  for (const e of pick(names)) {
    const bar = progressBar(e.name, 'bytes', !json && process.stderr.isTTY);
    try {
      const r = await pullAsset(e, { force, signal, onProgress: (d, t) => bar.update(d, t) });
      out.push({ name: e.name, path: r.path, source: r.source });
    } finally {
      bar.stop();
    }
  }
  console.log(json ? JSON.stringify(out) : out.map((r) => `${r.name}: ${r.path} (${r.source})`).join('\n'));
}

async function verify(names: string[], json: boolean): Promise<boolean> {
  const out = [];
  for (const e of pick(names)) {
    const v = await verifyAsset(e);
    out.push({ name: e.name, status: !v ? 'missing' : v.ok ? 'ok' : 'sha256 mismatch', path: v?.path ?? null, expected: e.sha256, actual: v?.sha256 ?? null });
  }
  if (json) console.log(JSON.stringify(out));
  else for (const r of out) console.log(`${r.name}: ${r.status}${r.path ? ` ${r.path}` : ''}${r.status === 'sha256 mismatch' ? ` (expected ${r.expected}, got ${r.actual})` : ''}`);
  return out.every((r) => r.status !== 'sha256 mismatch');
}

export function registerAssets(program: Command): void {
  const assets = program.command('assets').description('named public models and vocabularies: mirror (CONCEPTLENS_ASSETS), cache (CONCEPTLENS_CACHE), downloads');
  assets.command('list').description('list the registry and where each asset is found').option('--json', 'print JSON')
    .action(act((o: { json?: boolean }) => list(!!o.json)));
  assets.command('pull [names...]').description('download missing assets into the cache (sha256 checked); all when no name is given')
    .option('--force', 'download even when a verified copy exists').option('--json', 'print JSON')
    .action(act((names: string[], o: { force?: boolean; json?: boolean }, { signal }: RunContext) => pull(names, !!o.force, !!o.json, signal)));
  assets.command('verify [names...]').description('check the sha256 of local copies; exit status 1 on a mismatch').option('--json', 'print JSON')
    .action(act(async (names: string[], o: { json?: boolean }) => {
      if (!(await verify(names, !!o.json))) process.exitCode = EXIT.failed;
    }));
}
