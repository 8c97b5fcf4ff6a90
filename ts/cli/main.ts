// The conceptlens command line: one module per command family registers
// itself on the program.
import { Command } from 'commander';
import { registerTokenize } from './tokenize.js';
import { registerSplice } from './splice.js';
import { registerFalcon } from './falcon.js';
import { registerSearch } from './search.js';
import { registerVocab } from './vocab.js';
import { registerBench } from './bench.js';
import { registerDemo } from './demo.js';
import { registerEmbed } from './embed.js';
import { registerAssets } from './assets.js';
import { registerLe } from './le.js';
import { registerSae } from './sae.js';

export async function main(argv: string[]): Promise<void> {
  const program = new Command('conceptlens')
    .description('Explain what vision representations encode, in human concepts.')
    .showHelpAfterError();
  for (const register of [registerDemo, registerTokenize, registerBench, registerSearch, registerVocab, registerEmbed, registerAssets, registerFalcon, registerLe, registerSplice, registerSae]) register(program);
  await program.parseAsync(argv);
}
