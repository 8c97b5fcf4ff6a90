// `--plot out.svg` of every bench suite: throughput bars per contender (with
// the share of the machine's peak where the suite reports a floor) and, where
// the suite reports solution quality, each contender's quality against its
// time (log scales; with --tols, curves), as one standalone SVG.
import { writeFileAtomic } from '../ts/io/atomic.js';
import { barChartSvg } from '../ts/report/chart.js';
import { escapeHtml as esc } from '../ts/report/html.js';
import type { BenchReport, BenchRow, CurvePoint } from './report.js';

export interface PlotSpec {
  /** Row field drawn as bars (higher is better), e.g. 'samples_per_s'. */
  throughput: string;
  /** Row field drawn against time (lower is better), e.g. a relative objective or duality gap. */
  quality?: string;
  /** Row field the quality is drawn against (default 'seconds'); per sample where contenders solve different counts. */
  time?: string;
}

/** One colour per contender's curve (the row points stay red). */
const CURVE_COLOURS = ['#4870a8', '#3f8f4f', '#8a5aa8', '#c07a20', '#2a9a9a'];

/**
 * Quality against time, both axes log10: one labelled point per contender and, with --tols, each contender's curve
 * through its runs at every tolerance. A quality of 0 (the best run's gap to the best) has no logarithm: it is drawn
 * a decade below the least positive one and labelled "(0)".
 */
function qualityPanel(rows: BenchRow[], curves: CurvePoint[], field: string, time: string, width: number): string {
  const num = (r: Record<string, unknown>, f: string) => (typeof r[f] === 'number' ? (r[f] as number) : NaN);
  const drawn = (r: Record<string, unknown>) => num(r, field) >= 0 && num(r, time) > 0;
  const pts = rows.filter(drawn), curve = curves.filter(drawn);
  const h = 260, pad = 50;
  if (pts.length + curve.length === 0) return '';
  const positive = [...pts, ...curve].map((r) => num(r, field)).filter((v) => v > 0);
  const zero = positive.length > 0 ? Math.min(...positive) / 10 : 1e-16;
  const lx = (r: Record<string, unknown>) => Math.log10(num(r, time)), ly = (r: Record<string, unknown>) => Math.log10(num(r, field) || zero);
  const span = (v: number[]) => [Math.min(...v) - 0.3, Math.max(...v) + 0.3];
  const [x0, x1] = span([...pts, ...curve].map(lx)), [y0, y1] = span([...pts, ...curve].map(ly));
  const X = (r: Record<string, unknown>) => (pad + ((lx(r) - x0) / (x1 - x0)) * (width - 2 * pad)).toFixed(1);
  const Y = (r: Record<string, unknown>) => (h - pad + ((y0 - ly(r)) / (y1 - y0)) * (h - 2 * pad)).toFixed(1);
  const dots = pts.map((r) => `<circle cx="${X(r)}" cy="${Y(r)}" r="4" fill="#a84848"/>` +
    `<text x="${Number(X(r)) + 6}" y="${Number(Y(r)) - 6}">${esc(r.name)}${num(r, field) === 0 ? ' (0)' : ''}</text>`).join('');
  const lines = [...new Set(curve.map((c) => c.name))].map((name, i) => {
    const colour = CURVE_COLOURS[i % CURVE_COLOURS.length];
    // In order of effort: from the loosest tolerance to the tightest, labelled at the tightest.
    const line = curve.filter((c) => c.name === name).sort((a, b) => b.tol - a.tol), last = line[line.length - 1];
    const right = Number(X(last)) > width * 0.6;
    return `<polyline fill="none" stroke="${colour}" points="${line.map((c) => `${X(c)},${Y(c)}`).join(' ')}"/>` +
      line.map((c) => `<circle cx="${X(c)}" cy="${Y(c)}" r="2.5" fill="${colour}"><title>tol ${c.tol}</title></circle>`).join('') +
      `<text x="${Number(X(last)) + (right ? -6 : 6)}" y="${Number(Y(last)) + 14}" fill="${colour}"${right ? ' text-anchor="end"' : ''}>${esc(name)} (tols)</text>`;
  }).join('');
  return `<g><rect width="${width}" height="${h}" fill="#fff"/>` +
    `<text x="8" y="18" font-weight="bold">${esc(field)} against ${esc(time)} (log10 both; lower-left is better)</text>` +
    `<line x1="${pad}" y1="${h - pad}" x2="${width - pad}" y2="${h - pad}" stroke="#888"/>` +
    `<line x1="${pad}" y1="${pad}" x2="${pad}" y2="${h - pad}" stroke="#888"/>` +
    `<text x="${width / 2}" y="${h - 15}">${esc(time)}: 10^${x0.toFixed(1)} … 10^${x1.toFixed(1)}</text>` +
    `<text x="6" y="${pad - 8}">10^${y1.toFixed(1)}</text><text x="6" y="${h - pad}">10^${y0.toFixed(1)}</text>${lines}${dots}</g>`;
}

/** A share as a percentage, two significant figures below 10% ("0.42%"), whole ones above. */
const percent = (x: number) => `${100 * x < 10 ? (100 * x).toPrecision(2) : (100 * x).toFixed(0)}%`;

/** Writes the suite's plot to `path` (standalone SVG). */
export function writeBenchPlot(path: string, report: BenchReport, spec: PlotSpec): void {
  // A contender with a floor says how close it came: the share of the machine's peak its arithmetic ran at.
  const bars = report.results.filter((r) => typeof r[spec.throughput] === 'number')
    .map((r) => ({ concept: typeof r.of_peak === 'number' ? `${r.name} (${percent(r.of_peak)} of peak)` : r.name, weight: r[spec.throughput] as number }));
  const top = barChartSvg(`${report.suite}: ${spec.throughput} (same data, warm-up and repeats)`, bars);
  const width = Number(/width="(\d+)"/.exec(top)![1]), height = Number(/height="(\d+)"/.exec(top)![1]);
  const quality = spec.quality ? qualityPanel(report.results, report.curves ?? [], spec.quality, spec.time ?? 'seconds', width) : '';
  const total = height + (quality ? 270 : 0);
  writeFileAtomic(path, `<svg xmlns="http://www.w3.org/2000/svg" width="${width}" height="${total}" font-family="sans-serif" font-size="12">` +
    `${top.replace(/^<svg[^>]*>/, '<g>').replace(/<\/svg>\n?$/, '</g>')}` +
    (quality ? `<g transform="translate(0, ${height + 10})">${quality}</g>` : '') + '</svg>\n');
}
