// `conceptlens bench <suite>`: each suite module adds its sub-command.
import { Command } from 'commander';
import { registerBenchTopk } from '../../bench/topk.js';
import { registerBenchGlm } from '../../bench/glm.js';
import { registerBenchEmbed } from '../../bench/embed.js';
import { registerBenchFalcon } from '../../bench/falcon.js';
import { registerBenchSplice } from '../../bench/splice.js';
import { registerBenchSae } from '../../bench/sae.js';

type Register = (bench: Command) => void;
const suites: Register[] = [registerBenchTopk, registerBenchGlm, registerBenchEmbed, registerBenchFalcon, registerBenchSplice, registerBenchSae];

export function registerBench(program: Command): void {
  const bench = program.command('bench').description('Measure speed against peers in the same run (median seconds; --json for machines)');
  for (const register of suites) register(bench);
}
