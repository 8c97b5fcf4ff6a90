// Commander argument parsers shared by every command and bench suite: values
// are checked as the command line is parsed, so `--n abc` stops with a message
// naming the option instead of running on NaN. Commander passes defaults
// through unparsed, so give them already parsed (numbers; lists via listOption).
import { InvalidArgumentError, Option } from 'commander';
import { notAFile } from '../io/atomic.js';

function invalid(name: string, expected: string, got: string): never {
  throw new InvalidArgumentError(`${name}: expected ${expected}, got '${got}'`);
}

export interface Range {
  /** Lower bound; `above` makes it strict (> min instead of ≥ min). */
  min?: number;
  above?: boolean;
  max?: number;
}

function rangeText(r: Range): string {
  const lo = r.min === undefined ? '' : `${r.above ? '>' : '>='} ${r.min}`;
  const hi = r.max === undefined ? '' : `<= ${r.max}`;
  return [lo, hi].filter(Boolean).join(' and ');
}

const inRange = (x: number, r: Range) =>
  (r.min === undefined || (r.above ? x > r.min : x >= r.min)) && (r.max === undefined || x <= r.max);

/** A decimal number as typed (3, -0.5, .5, 1e6): Number would also read '', '0x10' and '0b11'. */
const DECIMAL = /^\s*[+-]?(\d+\.?\d*|\.\d+)(e[+-]?\d+)?\s*$/i;

/** The decimal value of a typed number, NaN for anything else. */
const decimal = (value: string) => (DECIMAL.test(value) ? Number(value) : NaN);

/** The path of a file that exists (an input the command reads, e.g. a model), checked before anything runs. */
export function existingFile(name: string): (value: string) => string {
  return (value) => {
    const why = notAFile(value);
    if (why) throw new InvalidArgumentError(`${name}: expected an existing file, got '${value}' (${why})`);
    return value;
  };
}

/** A finite number in an optional range, in decimal notation (hex, binary, '' and blanks are rejected). */
export function number(name: string, range: Range = {}): (value: string) => number {
  return (value) => {
    const x = decimal(value);
    if (!Number.isFinite(x) || !inRange(x, range))
      invalid(name, ['a finite number', rangeText(range)].filter(Boolean).join(' '), value);
    return x;
  };
}

/** An integer in [min, max]. */
export function integer(name: string, min = 1, max = Number.MAX_SAFE_INTEGER): (value: string) => number {
  return (value) => {
    const x = decimal(value);
    if (!Number.isInteger(x) || x < min || x > max)
      invalid(name, max === Number.MAX_SAFE_INTEGER ? `an integer >= ${min}` : `an integer in ${min}..${max}`, value);
    return x;
  };
}

/** A comma-separated list of numbers, each as `number` takes it, none empty; repeats dropped. */
export function numberList(name: string, range: Range = {}): (value: string) => number[] {
  const one = number(name, range);
  return (value) => {
    const items = value.split(',').map((s) => s.trim());
    if (items.some((s) => s === '')) invalid(name, 'a comma-separated list of numbers', value);
    return [...new Set(items.map(one))];
  };
}

/** One of the allowed strings. */
export function oneOf<T extends string>(name: string, allowed: readonly T[]): (value: string) => T {
  return (value) => {
    if (!(allowed as readonly string[]).includes(value)) invalid(name, `one of ${allowed.join(', ')}`, value);
    return value as T;
  };
}

/** A comma-separated list: entries trimmed, empty ones dropped. */
export function list(value: string): string[] {
  return value.split(',').map((s) => s.trim()).filter((s) => s !== '');
}

/**
 * An option parsed by `list`, its default given (and shown in --help) as the comma-separated text. With `allowed`,
 * each entry must be one of them (repeats dropped), and the list must name one at least unless its default is empty
 * (an opt-in list such as --peers).
 */
export function listOption(flags: string, description: string, defaults: string, allowed?: readonly string[]): Option {
  const name = flags.split(' ')[0];
  const parse = (value: string) => {
    const items = [...new Set(list(value))];
    if (allowed && (items.some((s) => !allowed.includes(s)) || (items.length === 0 && defaults !== '')))
      invalid(name, `a comma-separated list of ${allowed.join(', ')}`, value);
    return items;
  };
  return new Option(flags, description).argParser(parse).default(list(defaults), JSON.stringify(defaults));
}
