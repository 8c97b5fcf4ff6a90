import { test, type TestContext } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, readFileSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { ClipTokenizer, VOCAB_FILE } from '../ts/encoders/clip-tokenizer.js';

/** Nearest folder above this file holding package.json (works from test/ and dist/test/). */
function repoRoot(): string {
  let dir = dirname(fileURLToPath(import.meta.url));
  while (!existsSync(join(dir, 'package.json'))) {
    const up = dirname(dir);
    if (up === dir) return process.cwd();
    dir = up;
  }
  return dir;
}

const ASSETS = process.env.CONCEPTLENS_ASSETS
  ? resolve(process.env.CONCEPTLENS_ASSETS)
  : resolve(repoRoot(), '..', 'shared', 'assets');
const VOCAB = join(ASSETS, 'clip', VOCAB_FILE);
const GOLDEN = join(ASSETS, 'clip', 'tokenizer_golden.json');

let cached: ClipTokenizer | undefined;

/** The tokenizer, or undefined after marking the test skipped when the assets are absent. */
function tokenizer(t: TestContext): ClipTokenizer | undefined {
  if (!existsSync(VOCAB)) {
    t.skip(`CLIP vocabulary not found at ${VOCAB}; set CONCEPTLENS_ASSETS to run this test`);
    return undefined;
  }
  return (cached ??= ClipTokenizer.load(VOCAB));
}

const START = 49406;
const END = 49407;

/** [start, ...ids, end] followed by zeros, 77 long. */
function padded(ids: number[]): number[] {
  return [START, ...ids, END, ...new Array<number>(75 - ids.length).fill(0)];
}

interface GoldenCase {
  text: string;
  ids: number[];
  context77: number[];
}

test('reproduces every reference golden case, with and without special tokens', async (t) => {
  const tok = tokenizer(t);
  if (!tok) return;
  if (!existsSync(GOLDEN)) return t.skip(`golden file not found at ${GOLDEN}`);
  const cases = JSON.parse(readFileSync(GOLDEN, 'utf8')) as GoldenCase[];
  assert.ok(cases.length >= 22, 'golden file has its 22 cases');
  for (const c of cases) {
    await t.test(JSON.stringify(c.text), () => {
      assert.deepEqual(tok.encode(c.text), c.ids);
      assert.deepEqual(Array.from(tok.tokenize([c.text])), c.context77);
    });
  }
});

test('vocabulary has 49,408 tokens with the special tokens last', (t) => {
  const tok = tokenizer(t);
  if (!tok) return;
  assert.equal(tok.vocabSize, 49408);
  assert.equal(tok.startToken, START);
  assert.equal(tok.endToken, END);
  assert.equal(tok.vocab[0], '!');
  assert.equal(tok.vocab[256], '!</w>');
});

test('empty and blank texts give just the start and end tokens', (t) => {
  const tok = tokenizer(t);
  if (!tok) return;
  for (const text of ['', '   ', '\n\t ']) {
    assert.deepEqual(tok.encode(text), []);
    assert.deepEqual(Array.from(tok.tokenize(text)), padded([]));
  }
  assert.equal(tok.tokenize([]).length, 0);
});

test('emoji and rare unicode fall back to byte-level tokens', (t) => {
  const tok = tokenizer(t);
  if (!tok) return;
  // Expected ids from the reference algorithm (simple_tokenizer.py semantics with ftfy).
  const cases: Array<[string, number[]]> = [
    ['🦄', [37659]],
    ['ꙮ', [166, 247, 362]],
    ['\u{10fffd}', [176, 237, 123, 377]],
    ['日本語のテキスト', [39121, 44353, 34002, 252, 21575, 2429, 228, 47121, 32421, 486]],
  ];
  for (const [text, ids] of cases) {
    assert.deepEqual(tok.encode(text), ids, text);
    assert.equal(tok.decode(ids), `${text} `);
  }
  assert.deepEqual(tok.encode('\ud83d'), tok.encode('\ufffd'), 'a lone surrogate becomes U+FFFD');
});

test('a long text is truncated to 77 ids with the end token last', (t) => {
  const tok = tokenizer(t);
  if (!tok) return;
  const text = 'a photo of a cat on a mat '.repeat(20);
  const ids = tok.encode(text);
  assert.equal(ids.length, 160);
  const row = Array.from(tok.tokenize([text, 'a dog']));
  assert.equal(row.length, 2 * 77);
  assert.deepEqual(row.slice(0, 77), [START, ...ids.slice(0, 75), END]);
  assert.deepEqual(row.slice(77), padded([320, 1929]));
  // Exactly 77 with start and end fits; one more token is too long.
  const fits = 'cat '.repeat(75);
  assert.deepEqual(Array.from(tok.tokenize(fits, 77, false)), [START, ...new Array<number>(75).fill(2368), END]);
  assert.throws(() => tok.tokenize(`${fits}cat`, 77, false), /"cat cat .*" is too long for context length 77 \(78 tokens\)/);
  assert.throws(() => tok.tokenize(text, 77, false), /too long for context length 77 \(162 tokens\)/);
});

test('a shorter context length pads and truncates the same way; a length below 2 or a text that is no string is refused', (t) => {
  const tok = tokenizer(t);
  if (!tok) return;
  assert.deepEqual(Array.from(tok.tokenize('a photo of a cat', 8)), [START, 320, 1125, 539, 320, 2368, END, 0]);
  assert.deepEqual(Array.from(tok.tokenize('a photo of a cat', 4)), [START, 320, 1125, END]);
  // Two ids at least (start and end); texts that are not strings are named, not a TypeError from inside.
  assert.deepEqual(Array.from(tok.tokenize('a photo of a cat', 2)), [START, END]);
  for (const n of [1, 0, -5, 2.5]) assert.throws(() => tok.tokenize('a', n), { code: 'ERR_ARG', message: /^contextLength: expected an integer >= 2, got / }, String(n));
  assert.throws(() => tok.tokenize(42 as never), { code: 'ERR_ARG', message: /^texts: expected a string or an array of strings, got 42$/ });
  assert.throws(() => tok.tokenize([null] as never), { code: 'ERR_ARG', message: /^text: expected a string, got null$/ });
  assert.throws(() => tok.encode(null as never), { code: 'ERR_ARG', message: /^text: expected a string, got null$/ });
});

test('decode inverts encode up to cleaning, with "</w>" as a space', (t) => {
  const tok = tokenizer(t);
  if (!tok) return;
  // Every pre-token ends a word, so each comes back followed by a space.
  const cases: Array<[string, string]> = [
    ['a photo of a cat', 'a photo of a cat '],
    ['A photo of a Cat.', 'a photo of a cat . '],
    ['café crème brûlée', 'café crème brûlée '],
    ["jack-o'-lantern", "jack - o '- lantern "],
    ['emoji 🐶🐱 test', 'emoji 🐶🐱 test '],
    ['  x \n y  ', 'x y '],
  ];
  for (const [text, decoded] of cases) {
    assert.equal(tok.decode(tok.encode(text)), decoded);
    assert.deepEqual(tok.encode(decoded), tok.encode(text), 'decoded text encodes to the same ids');
  }
  assert.equal(tok.decode([START, 320, END]), '<|startoftext|>a <|endoftext|>');
  assert.throws(() => tok.decode([49408]), { code: 'ERR_ARG', message: /token id: expected an id in 0\.\.49407, got 49408/ });
});

test('special tokens typed in the text map to their ids', (t) => {
  const tok = tokenizer(t);
  if (!tok) return;
  assert.deepEqual(tok.encode('<|startoftext|>a<|endoftext|>'), [START, 320, END]);
});

test('cleaning follows ftfy, html.unescape twice, whitespace collapse and lowercase', (t) => {
  const tok = tokenizer(t);
  if (!tok) return;
  // Expected ids from the reference pipeline run with the real ftfy.
  const cases: Array<[string, number[]]> = [
    ['\ufb01sh', [2759]], // ligature
    ['ＤＯＧ', [1929]], // fullwidth
    ['you\u2019re', [592, 982]], // curly apostrophe
    ['cafe\u0301', [15304]], // NFC
    ['&amp;amp;', [261]],
    ['a &lt;b&gt; &amp;amp;', [320, 283, 321, 285, 261]],
    ['&EACUTE;t&eacute;', [3459, 39694]],
    ['&notit; &ampx', [126, 361, 585, 282, 261, 343]],
    ['\x1b[31mred\x1b[0m', [736]], // terminal escapes
    ['a\u00a0b\u3000c', [320, 321, 322]],
    ['\x85x', [959, 343]], // C1 control read as Windows-1252
    ['x\u0345y', [343, 344]], // matches no branch of the case-insensitive reference pattern
  ];
  for (const [text, ids] of cases) assert.deepEqual(tok.encode(text), ids, JSON.stringify(text));
});

test('a missing vocabulary file names the path and CONCEPTLENS_ASSETS', () => {
  const missing = join(repoRoot(), 'no-such-dir', VOCAB_FILE);
  assert.throws(
    () => ClipTokenizer.load(missing),
    (err: Error) => err.message.includes(missing) && err.message.includes('CONCEPTLENS_ASSETS'),
  );
});
