/** `conceptlens tokenize`: CLIP token ids (start, ids, end, zero padding to 77) for each text. */
import type { Command } from 'commander';
import { readFileSync } from 'node:fs';
import { ClipTokenizer, CONTEXT_LENGTH } from '../encoders/clip-tokenizer.js';
import { decodeUtf8, splitLines } from '../io/text.js';
import { act, UsageError } from './run.js';

interface TokenizeOptions {
  json?: boolean;
  vocab?: string;
}

/** Texts from the arguments, else one per line of standard input (handy for vocabulary files). */
function readTexts(args: string[]): string[] {
  if (args.length > 0) return args;
  if (process.stdin.isTTY) throw new UsageError('give texts as arguments or pipe them in, one per line');
  return splitLines(decodeUtf8(readFileSync(0), 'standard input'));
}

function rows(ids: Int32Array, count: number): number[][] {
  return Array.from({ length: count }, (_, i) => Array.from(ids.subarray(i * CONTEXT_LENGTH, (i + 1) * CONTEXT_LENGTH)));
}

function formatIds(texts: string[], opts: TokenizeOptions): string {
  const table = rows(ClipTokenizer.load(opts.vocab).tokenize(texts), texts.length);
  return opts.json ? JSON.stringify(table) : table.map((row) => row.join(' ')).join('\n');
}

export function registerTokenize(program: Command): void {
  program
    .command('tokenize [texts...]')
    .description('print the 77 CLIP token ids of each text (reads stdin lines when no text is given)')
    .option('--json', 'print a JSON array with one array of 77 ids per text')
    .option('--vocab <path>', 'bpe_simple_vocab_16e6.txt.gz (default: $CONCEPTLENS_ASSETS/clip/...)')
    .action(act((args: string[], opts: TokenizeOptions) => {
      const out = formatIds(readTexts(args), opts);
      if (out) process.stdout.write(`${out}\n`);
    }));
}
