// `conceptlens bench <suite>`: each suite module adds its sub-command. Lives
// beside the suites, outside ts/, and is registered by bin/conceptlens.js.
import type { Command } from 'commander';
import { registerBenchTopk } from './topk.js';
import { registerBenchGlm } from './glm.js';
import { registerBenchEmbed } from './embed.js';
import { registerBenchFalcon } from './falcon.js';
import { registerBenchSplice } from './splice.js';
import { registerBenchSae } from './sae.js';
import { registerBenchDistributed } from './distributed.js';
import { registerBenchServe } from './serve.js';

type Register = (bench: Command) => void;
const suites: Register[] = [registerBenchTopk, registerBenchGlm, registerBenchEmbed, registerBenchFalcon, registerBenchSplice, registerBenchSae, registerBenchServe, registerBenchDistributed];

export function registerBench(program: Command): void {
  const bench = program.command('bench').description('Measure speed against peers in the same run (median seconds; --json for machines)');
  for (const register of suites) register(bench);
}
