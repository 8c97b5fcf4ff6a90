// The conceptlens command line: one module per command family registers
// itself on the program.
import { Command } from 'commander';
import { registerTokenize } from './tokenize.js';
import { registerBench } from './bench.js';
import { registerDemo } from './demo.js';

export async function main(argv: string[]): Promise<void> {
  const program = new Command('conceptlens')
    .description('Explain what vision representations encode, in human concepts.')
    .showHelpAfterError();
  for (const register of [registerDemo, registerTokenize, registerBench]) register(program);
  await program.parseAsync(argv);
}
