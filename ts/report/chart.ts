// Bar charts of concept weights, shared by the demo and the CLI: a standalone
// SVG, and a PNG rendered from that SVG by sharp.
import sharp from 'sharp';
import { writeFileAtomic } from '../io/atomic.js';
import { escapeHtml as esc } from './html.js';

export interface Bar {
  concept: string;
  weight: number;
}

/** Horizontal bar chart of concept weights, as a standalone SVG. */
export function barChartSvg(title: string, bars: readonly Bar[]): string {
  // Room for the longest label (≈6.6 px a character at 12 px), the bars, and the bold title (≈7.5 px a character).
  const left = Math.max(180, 12 + Math.ceil(Math.max(0, ...bars.map((b) => b.concept.length)) * 6.6));
  const rowH = 22, top = 30, max = Math.max(...bars.map((b) => b.weight), 1e-12);
  const width = Math.max(560, left + 380, 16 + Math.ceil(title.length * 7.5));
  const rows = bars.map((b, i) => {
    const y = top + i * rowH, w = ((width - left - 80) * b.weight) / max;
    return `<text x="${left - 6}" y="${y + 15}" text-anchor="end">${esc(b.concept)}</text>` +
      `<rect x="${left}" y="${y + 3}" width="${w.toFixed(1)}" height="${rowH - 6}" fill="#4878a8"/>` +
      `<text x="${(left + w + 4).toFixed(1)}" y="${y + 15}">${b.weight.toFixed(4)}</text>`;
  });
  const h = top + bars.length * rowH + 10;
  // The white background keeps the PNG legible (an SVG's default is transparent).
  return `<svg xmlns="http://www.w3.org/2000/svg" width="${width}" height="${h}" font-family="sans-serif" font-size="12">` +
    `<rect width="100%" height="100%" fill="#ffffff"/>` +
    `<text x="8" y="18" font-weight="bold">${esc(title)}</text>${rows.join('')}</svg>\n`;
}

/** Writes the chart as `base.svg` and `base.png` (atomically). */
export async function writeBarChart(base: string, title: string, bars: readonly Bar[]): Promise<{ svg: string; png: string }> {
  const svg = barChartSvg(title, bars);
  writeFileAtomic(`${base}.svg`, svg);
  writeFileAtomic(`${base}.png`, await sharp(Buffer.from(svg)).png().toBuffer());
  return { svg: `${base}.svg`, png: `${base}.png` };
}
