// The conceptlens command line: one module per command family registers
// itself on the program; `extra` adds families that live outside ts/ (the
// bench suites, registered by bin/conceptlens.js).
import { Command, CommanderError } from 'commander';
import { registerTokenize } from './tokenize.js';
import { registerSplice } from './splice.js';
import { registerFalcon } from './falcon.js';
import { registerSearch } from './search.js';
import { registerVocab } from './vocab.js';
import { registerDemo } from './demo.js';
import { registerEmbed } from './embed.js';
import { registerAssets } from './assets.js';
import { registerLe } from './le.js';
import { registerSae } from './sae.js';
import { registerServe } from './serve.js';
import { registerAtlas } from './atlas.js';
import { registerWorker } from './worker.js';
import { exitCodeOf } from './run.js';
import { packageVersion } from '../package-version.js';

export type Register = (program: Command) => void;

/**
 * Commander's usage errors as ours read: our option parsers' messages name the option and value already, so the prefix
 * repeating them goes; every option that declares a conflict is one the other would make ignored, so the message says so.
 */
function plainUsageError(str: string): string {
  return str
    .replace(/^error: option '[^']+' argument '[^']*' is invalid\. (?=--)/, 'error: ')
    .replace(/^error: option '([^']+)' cannot be used with option '([^']+)'/, 'error: $1 would be ignored with $2: give one or the other');
}

export async function main(argv: string[], extra: Register[] = []): Promise<void> {
  const program = new Command('conceptlens')
    .description('Explain what vision representations encode, in human concepts.')
    .version(packageVersion(), '-V, --version', "print conceptlens's version")
    .showHelpAfterError('(add --help for usage)')
    .configureOutput({ outputError: (str, write) => write(plainUsageError(str)) })
    .exitOverride();
  for (const register of [registerDemo, registerTokenize, ...extra, registerSearch, registerVocab, registerEmbed, registerAssets,
    registerFalcon, registerLe, registerSplice, registerSae, registerWorker, registerAtlas, registerServe]) register(program);
  try {
    await program.parseAsync(argv);
  } catch (e) {
    if (!(e instanceof CommanderError)) throw e;
    process.exitCode = exitCodeOf(e);
  }
}
