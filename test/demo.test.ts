import { test } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, readFileSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { runDemo } from '../ts/demo/demo.js';
import { cliOk, tempDir } from './helpers.js';

/** The number after `label` on its line of the report (first match). */
function figure(report: string, label: RegExp): number {
  const m = report.match(label);
  assert.ok(m, `report has no ${label}`);
  return Number(m[1]);
}

test('synthetic demo runs every section and recovers the planted structure', async () => {
  const dir = tempDir('demo-test-');
  try {
    // Through the command line: --json gives the report's path.
    const summary = JSON.parse(await cliOk(['demo', '--synthetic', '--out', dir, '--json'])) as { report: string; seconds: number };
    assert.ok(summary.seconds > 0);
    const report = readFileSync(summary.report, 'utf8');
    for (const title of ['Concept retrieval', 'SpLiCE', 'Linear Explanations', 'FALCON', 'Discover-then-Name'])
      assert.match(report, new RegExp(`^## ${title}`, 'm'));
    assert.doesNotMatch(report, /This section failed/);
    assert.match(report, /\*\*SYNTHETIC\*\* planted concepts \(asked for with --synthetic\)/);
    assert.ok(figure(report, /\| support recall[^|]*\| ([\d.]+) \|/) >= 0.9, 'SpLiCE support recall');
    assert.ok(figure(report, /\| top-k recall[^|]*\| ([\d.]+) \|/) >= 0.9, 'SpLiCE top-k recall');
    assert.ok(figure(report, /\| planted concepts recovered \(recall\) \| ([\d.]+) \|/) >= 0.9, 'LE concept recall');
    const le = figure(report, /\| LE simulation correlation on test \| ([\d.]+) ±/);
    const single = figure(report, /\| single best concept \(baseline\) \| ([\d.]+) ±/);
    assert.ok(le > 0.9 && le > single, `LE ${le} vs single concept ${single}`);
    const falcon = report.match(/Planted groups recovered exactly[^:]*: (\d+)\/(\d+); spurious groups: (\d+)/);
    assert.ok(falcon && falcon[1] === falcon[2] && falcon[3] === '0', `FALCON: ${falcon?.[0]}`);
    const atoms = report.match(/Planted atoms recovered[^:]*: (\d+)\/(\d+); of these named after their planted atom: (\d+)\//);
    assert.ok(atoms && Number(atoms[1]) >= 14 && atoms[3] === atoms[1], `DN-CBM: ${atoms?.[0]}`);
    const cbm = figure(report, /\| CBM on SAE concept strengths \| ([\d.]+) \|/);
    assert.ok(cbm > 0.6, `CBM accuracy ${cbm} (chance 0.25)`);
    for (const f of ['le.csv', 'dncbm/sae/decoder.npy']) assert.ok(existsSync(join(dir, f)), f);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('an aborted demo stops within the running section and writes no report', async () => {
  const dir = tempDir('demo-abort-');
  try {
    const ac = new AbortController(), lines: string[] = [];
    // Abort at the first line the demo logs: the retrieval section's, before it ends.
    const run = runDemo(dir, { synthetic: true, signal: ac.signal, log: (l) => (lines.push(l), ac.abort()) });
    await assert.rejects(run, (e: Error & { code?: string }) => e.code === 'ERR_ABORTED');
    assert.ok(lines.every((l) => !/^(SpLiCE|Linear Explanations|FALCON|Discover-then-Name)/.test(l)), lines.join('\n'));
    assert.ok(!existsSync(join(dir, 'report.md')));
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});
