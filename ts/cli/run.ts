// The one runner every command's action goes through: Ctrl-C aborts the
// action's AbortSignal, failures print one line ("error: …", naming the
// argument or file) without a usage dump, and the exit code says what
// happened: 0 done, 1 failed, 2 usage error, 130 interrupted.
import { CommanderError, Option, type Command } from 'commander';
import { ConceptLensError, toConceptLensError } from '../errors.js';

export const EXIT = { ok: 0, failed: 1, usage: 2, interrupted: 130 } as const;

/** An error in how the command was called (exit 2), found after parsing. */
export class UsageError extends ConceptLensError {
  constructor(message: string) {
    super('ERR_ARG', message);
  }
}

/** What every action gets besides its arguments: the signal that Ctrl-C aborts. */
export interface RunContext {
  signal: AbortSignal;
}

/** Wraps an action body for commander: signal, error report, exit code. */
export function act<O>(body: (o: O, ctx: RunContext) => Promise<void> | void): (o: O, command: Command) => Promise<void>;
export function act<P, O>(body: (p: P, o: O, ctx: RunContext) => Promise<void> | void): (p: P, o: O, command: Command) => Promise<void>;
// eslint-disable-next-line @typescript-eslint/no-explicit-any -- commander passes the action's arguments untyped
export function act(body: (...args: any[]) => Promise<void> | void) {
  return async (...args: unknown[]) => {
    const ac = new AbortController();
    let interrupted = false;
    const onInt = () => {
      interrupted = true;
      ac.abort();
    };
    process.once('SIGINT', onInt);
    try {
      await body(...args.slice(0, -1), { signal: ac.signal });
    } catch (e) {
      report(asUsageError(e, args[args.length - 1] as Command), interrupted);
    } finally {
      process.off('SIGINT', onInt);
    }
  };
}

/**
 * A library error about the value of an option the user gave (its message starts with the option's name, perhaps
 * under an object's, and ends with that value, as `k: …, got 500`) restated as that option (`--k: …`): a usage
 * error that only the data could decide, so found late.
 */
function asUsageError(e: unknown, cmd: Command): unknown {
  if (!(e instanceof ConceptLensError) || e instanceof UsageError) return e;
  if (e.code !== 'ERR_ARG') return namingFlag(e, cmd);
  // Checks the library words for the command line ('--out: … is inside --images …', 'give either --model … or
  // --standin') are about this command's options.
  const flags = /^(--[a-z][a-z0-9-]*):/.exec(e.message)?.slice(1) ?? /^give either (--[a-z][a-z0-9-]*) .*or (--[a-z][a-z0-9-]*)/.exec(e.message)?.slice(1);
  if (flags?.every((f) => cmd.options.some((o) => o.long === f))) return new UsageError(e.message);
  const m = /^(?:[A-Za-z]+\.)*([A-Za-z][A-Za-z0-9]*): (.*, got (.*))$/s.exec(e.message);  // 'k: …', 'batching.maxQueue: …'
  const opt = m && cmd.options.find((o) => o.attributeName() === m[1] && cmd.getOptionValueSource(m[1]) === 'cli');
  return m && opt?.long && m[3] === String(cmd.getOptionValue(m[1])) ? new UsageError(`${opt.long}: ${m[2]}`) : e;
}

/**
 * Any other library error that opens with an option the user gave ('options.device: no CUDA device …') names it as
 * its flag; its code, and so the exit status, stay.
 */
function namingFlag(e: ConceptLensError, cmd: Command): ConceptLensError {
  const m = /^(?:options\.)?([A-Za-z][A-Za-z0-9]*): (.*)$/s.exec(e.message);
  const opt = m && cmd.options.find((o) => o.attributeName() === m[1] && cmd.getOptionValueSource(m[1]) === 'cli');
  return m && opt?.long ? new ConceptLensError(e.code, `${opt.long}: ${m[2]}`, { cause: e }) : e;
}

function report(e: unknown, interrupted: boolean): void {
  const err = toConceptLensError(e);
  if (interrupted || err.code === 'ERR_ABORTED') {
    console.error('interrupted: stopped before finishing; earlier outputs are unchanged (resumable commands continue with --resume or a rerun)');
    process.exitCode = EXIT.interrupted;
    return;
  }
  console.error(`error: ${err.message}`);
  process.exitCode = e instanceof UsageError ? EXIT.usage : EXIT.failed;
}

/** Commander's own parse errors (unknown option, bad value, missing argument) exit 2; --help and --version exit 0. */
export function exitCodeOf(e: CommanderError): number {
  return e.exitCode === 0 ? EXIT.ok : EXIT.usage;
}

/** A hidden alternative spelling of a boolean flag (e.g. --centre for --center). */
export function aliasFlag(flags: string, target: string): Option {
  return new Option(flags).hideHelp().implies({ [target]: true });
}
