import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { Command, InvalidArgumentError } from 'commander';
import { integer, list, listOption, number, oneOf } from '../ts/cli/options.js';

const BIN = join(import.meta.dirname, '..', '..', 'bin', 'conceptlens.js');

/** Asserts that parse(value) throws commander's InvalidArgumentError with exactly this message. */
function rejects(parse: (v: string) => unknown, value: string, message: string): void {
  assert.throws(() => parse(value), (e: unknown) => e instanceof InvalidArgumentError && e.message === message);
}

test('number: finite numbers in any JS notation; empty, blank, NaN and infinities are rejected', () => {
  const p = number('--l1');
  assert.deepEqual(['0.25', '-0.09', '3e-5', ' 7 ', '0'].map(p), [0.25, -0.09, 3e-5, 7, 0]);
  for (const bad of ['abc', '', '  ', 'NaN', 'Infinity', '1,5', '0.1x', '0x10', '0b11', '1e'])
    rejects(p, bad, `--l1: expected a finite number, got '${bad}'`);
});

test('integer: whole numbers at or above min (1 unless given)', () => {
  assert.deepEqual(['1', '1000000', '1e3'].map(integer('--n')), [1, 1000000, 1000]);
  assert.equal(integer('--seed', 0)('0'), 0);
  rejects(integer('--n'), 'abc', "--n: expected an integer >= 1, got 'abc'");
  rejects(integer('--n'), '0', "--n: expected an integer >= 1, got '0'");
  rejects(integer('--n'), '2.5', "--n: expected an integer >= 1, got '2.5'");
  rejects(integer('--n'), '', "--n: expected an integer >= 1, got ''");
  rejects(integer('--k'), '0x10', "--k: expected an integer >= 1, got '0x10'");
  rejects(integer('--seed', 0), '-1', "--seed: expected an integer >= 0, got '-1'");
});

test('oneOf: only the listed strings, typed', () => {
  const pool = oneOf('--pool', ['avg', 'max'] as const);
  const v: 'avg' | 'max' = pool('max');
  assert.equal(v, 'max');
  rejects(pool, 'mean', "--pool: expected one of avg, max, got 'mean'");
  rejects(pool, 'AVG', "--pool: expected one of avg, max, got 'AVG'");
});

test('list and listOption: entries trimmed, empty ones dropped; the default is parsed too', () => {
  assert.deepEqual(list(' cd, saga ,,'), ['cd', 'saga']);
  assert.deepEqual(list(''), []);
  const parse = (...args: string[]) =>
    new Command('t').exitOverride().addOption(listOption('--solvers <list>', 'solvers', 'cd,saga')).parse(args, { from: 'user' }).opts().solvers;
  assert.deepEqual(parse(), ['cd', 'saga']);
  assert.deepEqual(parse('--solvers', 'saga'), ['saga']);
  // With the allowed names: each entry checked, repeats dropped, an empty list refused unless the default is empty.
  const checked = (defaults: string, ...args: string[]) =>
    new Command('t').exitOverride().configureOutput({ writeErr: () => {} })
      .addOption(listOption('--solvers <list>', 'solvers', defaults, ['cd', 'saga'])).parse(args, { from: 'user' }).opts().solvers;
  assert.deepEqual(checked('cd', '--solvers', 'saga,cd,saga'), ['saga', 'cd']);
  assert.throws(() => checked('cd', '--solvers', 'cd,foo'), /--solvers: expected a comma-separated list of cd, saga, got 'cd,foo'/);
  assert.throws(() => checked('cd', '--solvers', ''), /--solvers: expected a comma-separated list of cd, saga, got ''/);
  assert.deepEqual(checked('', '--solvers', ''), []);
});

test('CLI: `bench topk --n abc` stops before running, naming the option', () => {
  const r = spawnSync(process.execPath, [BIN, 'bench', 'topk', '--n', 'abc', '--json'], { encoding: 'utf8' });
  assert.notEqual(r.status, 0);
  assert.match(r.stderr, /--n: expected an integer >= 1, got 'abc'/);
  assert.equal(r.stdout, '');
});

test('--version prints the package version and exits 0', () => {
  const r = spawnSync(process.execPath, [BIN, '--version'], { encoding: 'utf8' });
  assert.equal(r.status, 0, r.stderr);
  const { version } = JSON.parse(readFileSync(join(import.meta.dirname, '..', '..', 'package.json'), 'utf8')) as { version: string };
  assert.equal(r.stdout.trim(), version);
});

test('a bad option value is one error line naming the option, expected and actual value once, then the help hint', () => {
  const r = spawnSync(process.execPath, [BIN, 'search', '--vocab', 'v.npy', '--queries', 'q.npy', '--out', 'o.json', '--k', '-3'], { encoding: 'utf8' });
  assert.equal(r.status, 2);
  assert.deepEqual(r.stderr.trim().split('\n'), ["error: --k: expected an integer >= 1, got '-3'", '(add --help for usage)']);
});
