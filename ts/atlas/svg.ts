// Figures as inline SVG strings, drawn here rather than by a plotting service
// so the atlas (and `splice compare`) works offline: signed bars with
// confidence whiskers, overlaid histograms, heatmaps, labelled scatters and
// image grids. Every figure carries a <title> and role="img" for readers.
import { escapeHtml as esc } from '../report/html.js';

/** Colours of series and clusters, distinguishable in print. */
const PALETTE = ['#4878a8', '#e07b39', '#5aa05a', '#c44e52', '#8172b2', '#937860', '#da8bc3', '#8c8c8c', '#ccb974', '#64b5cd'];

const num = (x: number) => (Number.isFinite(x) ? Number(x.toFixed(2)) : 0);

/** An <svg> root of the given size with a white background, a title line and an accessible name. */
function svg(width: number, height: number, title: string, body: string): string {
  return `<svg xmlns="http://www.w3.org/2000/svg" xmlns:xlink="http://www.w3.org/1999/xlink" class="figure" role="img" ` +
    `width="${num(width)}" height="${num(height)}" viewBox="0 0 ${num(width)} ${num(height)}" font-family="sans-serif" font-size="12">` +
    `<title>${esc(title)}</title><rect width="100%" height="100%" fill="#ffffff"/>` +
    `<text x="8" y="18" font-weight="bold">${esc(title)}</text>${body}</svg>`;
}

const text = (x: number, y: number, s: string, attrs = '') => `<text x="${num(x)}" y="${num(y)}"${attrs ? ' ' + attrs : ''}>${esc(s)}</text>`;
const rect = (x: number, y: number, w: number, h: number, fill: string, extra = '') =>
  `<rect x="${num(x)}" y="${num(y)}" width="${num(Math.max(0, w))}" height="${num(Math.max(0, h))}" fill="${fill}"${extra ? ' ' + extra : ''}/>`;
const line = (x1: number, y1: number, x2: number, y2: number, stroke = '#333') =>
  `<line x1="${num(x1)}" y1="${num(y1)}" x2="${num(x2)}" y2="${num(y2)}" stroke="${stroke}"/>`;

/** Roughly the width of `s` in 12 px sans-serif. */
const textWidth = (s: string) => 7 * s.length;

/** One bar of {@link barsSvg}: a signed value, optionally with an interval drawn as a whisker. */
export interface BarSpec {
  label: string;
  value: number;
  lo?: number;
  hi?: number;
  /** Drawn in the accent colour (e.g. significant, or named by several methods). */
  accent?: boolean;
}

/** Options of {@link barsSvg}. */
export interface BarsOptions {
  title: string;
  bars: readonly BarSpec[];
  /** Total width in pixels (default 560). */
  width?: number;
  /** Digits of the printed values (default 3). */
  digits?: number;
  /** An image drawn left of the bars (e.g. the image a local explanation is about). */
  image?: { href: string; size: number };
  /** A line under the bars. */
  note?: string;
}

/** Horizontal bars of signed values around a zero axis, with whiskers where an interval is given. */
export function barsSvg(o: BarsOptions): string {
  const rowH = 20, top = 30, digits = o.digits ?? 3, img = o.image ? o.image.size + 12 : 0;
  const label = Math.min(220, Math.max(60, ...o.bars.map((b) => textWidth(b.label)))) + 10;
  const width = Math.max(o.width ?? 560, textWidth(o.title) + 16), plot = width - img - label - 70;
  const ends = o.bars.flatMap((b) => [b.value, b.lo ?? b.value, b.hi ?? b.value, 0]);
  const lo = Math.min(...ends), hi = Math.max(...ends), span = hi - lo || 1;
  const x = (v: number) => img + label + ((v - lo) / span) * plot;
  const rows = o.bars.map((b, i) => {
    const y = top + i * rowH, x0 = x(0), x1 = x(b.value);
    const whisker = b.lo !== undefined && b.hi !== undefined
      ? line(x(b.lo), y + rowH / 2, x(b.hi), y + rowH / 2) + line(x(b.lo), y + 5, x(b.lo), y + rowH - 5) + line(x(b.hi), y + 5, x(b.hi), y + rowH - 5) : '';
    return text(img + label - 6, y + 14, b.label, 'text-anchor="end"') +
      rect(Math.min(x0, x1), y + 3, Math.abs(x1 - x0), rowH - 6, b.accent ? PALETTE[1] : PALETTE[0]) + whisker +
      text(Math.max(x0, x1, b.hi !== undefined ? x(b.hi) : 0) + 4, y + 14, b.value.toFixed(digits), 'font-size="11"');
  });
  const bottom = top + o.bars.length * rowH;
  const axis = lo < 0 ? line(x(0), top, x(0), bottom, '#999') : '';
  const picture = o.image ? `<image href="${esc(o.image.href)}" x="4" y="${top}" width="${o.image.size}" height="${o.image.size}"/>` : '';
  const height = Math.max(bottom, top + (o.image?.size ?? 0)) + (o.note ? 26 : 10);
  const note = o.note ? text(8, height - 8, o.note, 'font-size="11" fill="#555"') : '';
  return svg(width, height, o.title, picture + rows.join('') + axis + (o.bars.length ? '' : text(img + 8, top + 14, 'nothing to show')) + note);
}

/** One series of {@link histogramSvg}. */
export interface Series {
  name: string;
  values: readonly number[];
}

/** Overlaid histograms of several series on shared bins, with each series' mean marked and in the legend. */
export function histogramSvg(o: { title: string; series: readonly Series[]; bins?: number; xLabel: string; width?: number }): string {
  const width = Math.max(o.width ?? 560, textWidth(o.title) + 16), height = 260, left = 44, top = 30, bottom = 210, right = width - 16;
  const bins = o.bins ?? 20, all = o.series.flatMap((s) => s.values.filter(Number.isFinite));
  const lo = all.length ? Math.min(...all) : 0, hi = all.length ? Math.max(...all) : 1, w = (hi - lo || 1) / bins;
  const counts = o.series.map((s) => {
    const c = new Array<number>(bins).fill(0);
    for (const v of s.values) if (Number.isFinite(v)) c[Math.min(bins - 1, Math.floor((v - lo) / w))]++;
    return c;
  });
  const peak = Math.max(1, ...counts.flat()), bw = (right - left) / bins;
  const y = (c: number) => bottom - (c / peak) * (bottom - top);
  const x = (v: number) => left + ((v - lo) / (hi - lo || 1)) * (right - left);
  const bars = counts.map((c, s) => c.map((n, b) => rect(left + b * bw + 1, y(n), bw - 2, bottom - y(n), PALETTE[s], 'fill-opacity="0.55"')).join('')).join('');
  const means = o.series.map((s, k) => {
    const vals = s.values.filter(Number.isFinite), m = vals.reduce((a, v) => a + v, 0) / Math.max(1, vals.length);
    return { m, mark: vals.length ? `<line x1="${num(x(m))}" y1="${top}" x2="${num(x(m))}" y2="${bottom}" stroke="${PALETTE[k]}" stroke-width="2" stroke-dasharray="4 3"/>` : '' };
  });
  const legend = o.series.map((s, k) => rect(left + 8, top + 4 + 16 * k, 10, 10, PALETTE[k]) +
    text(left + 22, top + 13 + 16 * k, `${s.name}: mean ${means[k].m.toFixed(3)} (n = ${s.values.length})`, 'font-size="11"')).join('');
  const axes = line(left, bottom, right, bottom) + line(left, top, left, bottom) + text(left, bottom + 16, lo.toFixed(2), 'font-size="11"') +
    text(right, bottom + 16, hi.toFixed(2), 'font-size="11" text-anchor="end"') + text((left + right) / 2, bottom + 32, o.xLabel, 'text-anchor="middle"') +
    text(left - 6, top + 8, String(peak), 'font-size="11" text-anchor="end"') + text(left - 6, bottom, '0', 'font-size="11" text-anchor="end"');
  return svg(width, height, o.title, bars + means.map((m) => m.mark).join('') + axes + legend);
}

/** A grid of cells shaded by value (0 white … max dark), rows and columns labelled; values printed in cells. */
export function heatmapSvg(o: { title: string; rows: readonly string[]; cols: readonly string[]; values: readonly (readonly number[])[]; note?: string }): string {
  const cell = 36, left = Math.min(200, Math.max(60, ...o.rows.map(textWidth))) + 12, top = 40 + Math.max(...o.cols.map(textWidth), 20) * 0.72;
  const width = Math.max(left + o.cols.length * cell + 20, textWidth(o.title) + 16), height = top + o.rows.length * cell + (o.note ? 30 : 12);
  const max = Math.max(1e-12, ...o.values.flat());
  const cols = o.cols.map((c, j) => `<text transform="translate(${num(left + j * cell + cell / 2 + 4)},${num(top - 6)}) rotate(-45)" font-size="11">${esc(c)}</text>`).join('');
  const cells = o.values.map((row, i) => text(left - 6, top + i * cell + cell / 2 + 4, o.rows[i], 'text-anchor="end" font-size="11"') + row.map((v, j) => {
    const t = v / max, shade = Math.round(255 - 200 * t);
    return rect(left + j * cell, top + i * cell, cell - 2, cell - 2, `rgb(${shade},${Math.round(255 - 140 * t)},255)`) +
      text(left + j * cell + cell / 2 - 1, top + i * cell + cell / 2 + 4, v < 0.005 ? '0' : v.toFixed(2), `font-size="10" text-anchor="middle" fill="${t > 0.6 ? '#fff' : '#222'}"`);
  }).join('')).join('');
  const note = o.note ? text(8, height - 10, o.note, 'font-size="11" fill="#555"') : '';
  return svg(width, height, o.title, cols + cells + note);
}

/** One point of {@link scatterSvg}. */
export interface Point {
  x: number;
  y: number;
  /** Index into the groups (colour). */
  group: number;
  /** Printed beside the point when given. */
  label?: string;
}

/** A scatter of points coloured by group, with a legend of the groups. */
export function scatterSvg(o: { title: string; points: readonly Point[]; groups: readonly string[]; note?: string }): string {
  const legendW = 40 + Math.max(...o.groups.map(textWidth), 0), width = Math.max(520 + legendW, textWidth(o.title) + 16);
  const plotR = width - legendW - 10, top = 34, bottom = 430, left = 16, height = bottom + (o.note ? 34 : 14);
  const xs = o.points.map((p) => p.x), ys = o.points.map((p) => p.y);
  const x0 = Math.min(...xs, 0), x1 = Math.max(...xs, 1e-9), y0 = Math.min(...ys, 0), y1 = Math.max(...ys, 1e-9);
  const X = (v: number) => left + 10 + ((v - x0) / (x1 - x0 || 1)) * (plotR - left - 20);
  const Y = (v: number) => bottom - 10 - ((v - y0) / (y1 - y0 || 1)) * (bottom - top - 20);
  const dots = o.points.map((p) => `<circle cx="${num(X(p.x))}" cy="${num(Y(p.y))}" r="4" fill="${PALETTE[p.group % PALETTE.length]}"/>` +
    (p.label ? text(X(p.x) + 6, Y(p.y) + 4, p.label, 'font-size="10"') : '')).join('');
  const legend = o.groups.map((g, k) => rect(plotR + 14, top + 16 * k, 10, 10, PALETTE[k % PALETTE.length]) + text(plotR + 28, top + 9 + 16 * k, g, 'font-size="11"')).join('');
  const frame = `<rect x="${left}" y="${top}" width="${plotR - left}" height="${bottom - top}" fill="none" stroke="#ccc"/>`;
  const note = o.note ? text(8, height - 10, o.note, 'font-size="11" fill="#555"') : '';
  return svg(width, height, o.title, frame + dots + legend + note);
}

/** One picture of {@link imageGridSvg}. */
export interface Cell {
  href: string;
  caption?: string;
}

/** Rows of images (paths relative to the page), each row with a heading line above it. */
export function imageGridSvg(o: { title: string; rows: readonly { heading: string; cells: readonly Cell[] }[]; size?: number; columns?: number }): string {
  const size = o.size ?? 96, columns = o.columns ?? 8, gap = 6, captionH = 14, headH = 20;
  const width = Math.max(16 + columns * (size + gap), textWidth(o.title) + 16);
  let y = 30, body = '';
  for (const row of o.rows) {
    body += text(8, y + 14, row.heading, 'font-size="12" font-weight="bold"');
    y += headH;
    row.cells.forEach((c, k) => {
      const cx = 8 + (k % columns) * (size + gap), cy = y + Math.floor(k / columns) * (size + gap + captionH);
      body += `<image href="${esc(c.href)}" x="${cx}" y="${cy}" width="${size}" height="${size}" preserveAspectRatio="xMidYMid slice"/>` +
        (c.caption ? text(cx + size / 2, cy + size + 11, c.caption, 'font-size="10" text-anchor="middle"') : '');
    });
    y += Math.max(1, Math.ceil(row.cells.length / columns)) * (size + gap + captionH) + 4;
  }
  return svg(width, y + 6, o.title, body);
}
