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

export async function main(argv: string[], extra: Register[] = []): Promise<void> {
  const program = new Command('conceptlens')
    .description('Explain what vision representations encode, in human concepts.')
    .version(packageVersion(), '-V, --version', "print conceptlens's version")
    .showHelpAfterError('(add --help for usage)')
    // Our option parsers' messages name the option and value already: drop commander's prefix that repeats them.
    .configureOutput({ outputError: (str, write) => write(str.replace(/^error: option '[^']+' argument '[^']*' is invalid\. (?=--)/, 'error: ')) })
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
