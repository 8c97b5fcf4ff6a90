// Linear Explanations in the reference's CSV layout: layer, unit,
// val correlation, weight0, concept0, …, weight9, concept9, bias, then any
// score columns (sim correlation, sim ablation(optim), sim ablation(norm)).
// Unused slots hold 0 in both the weight and the concept column.
import { ConceptLensError, fileError } from '../../errors.js';
import { writeFileAtomic } from '../../io/atomic.js';
import { formatCsv, parseCsv } from '../../io/csv.js';
import { readText } from '../../io/text.js';

/** One neuron's linear explanation, as a row of the reference's CSV: activation ≈ bias + Σ weights[t]·concept[t]. */
export interface Explanation {
  /** Neuron (unit) number. */
  unit: number;
  /** Layer the unit belongs to. */
  layer?: string;
  /** Correlation on the validation split (NaN when read from a CSV without that column). */
  valCorrelation: number;
  /** Concepts and weights in descending weight order. */
  concepts: string[];
  /** Weight of each concept, aligned with `concepts`. */
  weights: number[];
  /** Intercept. */
  bias: number;
  /** Other columns by header (scores such as 'sim correlation'), as text. */
  extra: Record<string, string>;
}

/** Term columns (weightN, conceptN) the CSV always has; longer explanations widen it. */
export const MAX_TERMS = 10;
const CORE = new Set(['layer', 'unit', 'val correlation', 'bias']);


function numberField(path: string, line: number, col: string, text: string | undefined): number {
  const v = Number(text);
  if (text === undefined || text.trim() === '' || !Number.isFinite(v))
    throw new ConceptLensError('ERR_FILE', `${path}:${line}: column '${col}': expected a number, got ${JSON.stringify(text ?? '')}`);
  return v;
}

/**
 * Reads explanations in the reference's CSV layout; a term list ends at the first empty or '0' concept.
 * Columns other than layer, unit, val correlation, the terms and bias go to `extra`.
 * @throws ConceptLensError ERR_FILE when the file is empty, lacks unit, bias, weight0 or concept0, or has a
 *   non-numeric number field.
 */
export function readExplanationsCsv(path: string): Explanation[] {
  const rows = parseCsv(readText(path));
  if (rows.length === 0) throw fileError(path, 'empty file; expected a header with unit, val correlation, weight0, concept0, ..., bias');
  const header = rows[0];
  const at = new Map(header.map((h, i) => [h, i]));
  for (const need of ['unit', 'bias', 'weight0', 'concept0'])
    if (!at.has(need)) throw fileError(path, `missing column '${need}' (header: ${header.join(', ')})`);
  const terms = header.filter((h) => /^concept\d+$/.test(h)).length;
  const termCols = new Set(header.filter((h) => /^(weight|concept)\d+$/.test(h)));
  return rows.slice(1).map((r, i) => {
    const line = i + 2;
    const get = (col: string) => r[at.get(col)!];
    const e: Explanation = {
      unit: numberField(path, line, 'unit', get('unit')),
      valCorrelation: at.has('val correlation') ? numberField(path, line, 'val correlation', get('val correlation')) : NaN,
      concepts: [],
      weights: [],
      bias: numberField(path, line, 'bias', get('bias')),
      extra: {},
    };
    if (at.has('layer')) e.layer = get('layer');
    for (let t = 0; t < terms; t++) {
      const c = get(`concept${t}`);
      if (c === undefined || c === '0' || c === '') break;
      e.concepts.push(c);
      e.weights.push(numberField(path, line, `weight${t}`, get(`weight${t}`)));
    }
    header.forEach((h, j) => {
      if (!CORE.has(h) && !termCols.has(h)) e.extra[h] = r[j] ?? '';
    });
    return e;
  });
}

/**
 * Explanations as CSV text in the reference's layout (max(MAX_TERMS, longest) term columns, unused ones 0), then the
 * `extra` columns.
 */
export function formatExplanationsCsv(exps: Explanation[]): string {
  const terms = Math.max(MAX_TERMS, ...exps.map((e) => e.concepts.length));
  const extraCols = [...new Set(exps.flatMap((e) => Object.keys(e.extra)))];
  const header = ['layer', 'unit', 'val correlation'];
  for (let t = 0; t < terms; t++) header.push(`weight${t}`, `concept${t}`);
  header.push('bias', ...extraCols);
  const rows = [header];
  for (const e of exps) {
    const f = [e.layer ?? '', String(e.unit), String(e.valCorrelation)];
    for (let t = 0; t < terms; t++) f.push(t < e.concepts.length ? String(e.weights[t]) : '0', t < e.concepts.length ? e.concepts[t] : '0');
    f.push(String(e.bias), ...extraCols.map((c) => e.extra[c] ?? ''));
    rows.push(f);
  }
  return formatCsv(rows);
}

/** Writes {@link formatExplanationsCsv}'s text to `path` atomically. */
export function writeExplanationsCsv(path: string, exps: Explanation[]): void {
  writeFileAtomic(path, formatExplanationsCsv(exps));
}

/** Text form: "0.73·toiletry + 0.70·shaker + 0.32". */
export function formatExplanation(e: Explanation, digits = 2): string {
  // A value that rounds to zero prints without its sign ("-0.00" read as a negative bias).
  const fixed = (x: number) => (Number(x.toFixed(digits)) === 0 ? 0 : x).toFixed(digits);
  const terms = e.concepts.map((c, i) => `${fixed(e.weights[i])}·${c}`);
  return [...terms, fixed(e.bias)].join(' + ').replace(/\+ -/g, '- ');
}
