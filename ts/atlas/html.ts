// The atlas's page shell: inline CSS (and, on the index, the inline sorting
// script), a navigation bar, and the stand-in banner on every page when the
// text-aligned space is the stand-in. Nothing is fetched at view time.
import { escapeHtml as esc } from '../report/html.js';
import type { AtlasData } from './data.js';
import { fromDepth, STAGE } from './paths.js';

const CSS = `
body{font-family:system-ui,sans-serif;margin:0 2em 2em;max-width:1400px;color:#222}
nav{padding:.6em 0;border-bottom:1px solid #ccc;margin-bottom:1em}
nav a{margin-right:1.2em}
.standin{background:#fff3cd;border:1px solid #e0c060;padding:.5em .8em;font-weight:bold}
table{border-collapse:collapse}
th,td{padding:2px 8px;text-align:left;vertical-align:top}
#units tbody tr:nth-child(odd){background:#f6f6f6}
th button{font:inherit;font-weight:bold;border:0;background:none;cursor:pointer;padding:0}
th[aria-sort=descending] button::after{content:" ▼"}
th[aria-sort=ascending] button::after{content:" ▲"}
figure{display:inline-block;margin:3px;text-align:center;font-size:11px}
figure img{width:112px;height:112px;display:block}
.chip{display:inline-block;margin:1px 3px;padding:0 5px;border-radius:8px;background:#eef}
.chip.agree{background:#ffd27f;font-weight:bold}
.chip.against{background:#eee;color:#777}
.side td{border:1px solid #ddd;min-width:150px}
.multiples{display:flex;flex-wrap:wrap;gap:8px;align-items:flex-start}
.note{color:#555;font-size:90%}
section{margin:1.5em 0}
`;

/** Sorts #units by the clicked column: descending first, missing values last. */
const SORT_SCRIPT = `
document.querySelectorAll('#units th button').forEach((b) => b.addEventListener('click', () => {
  const th = b.parentElement, col = [...th.parentElement.children].indexOf(th), body = document.querySelector('#units tbody');
  const desc = th.getAttribute('aria-sort') !== 'descending';
  document.querySelectorAll('#units th').forEach((h) => h.removeAttribute('aria-sort'));
  th.setAttribute('aria-sort', desc ? 'descending' : 'ascending');
  const v = (tr) => { const s = tr.children[col].dataset.v; return s === undefined || s === '' ? NaN : Number(s); };
  const rows = [...body.rows].sort((p, q) => {
    const x = v(p), y = v(q);
    if (isNaN(x) || isNaN(y)) return isNaN(x) - isNaN(y);
    return desc ? y - x : x - y;
  });
  body.append(...rows);
}));
`;

/** A complete page `depth` folders below the atlas root; `sortable` adds the index's sorting script. */
export function pageHtml(d: AtlasData, o: { title: string; depth: number; body: string; sortable?: boolean }): string {
  const at = fromDepth(o.depth);
  const links = [['index.html', 'Units'], ['figures.html', 'Figures'], ...(d.falcon ? [[`${STAGE.falcon}/report.html`, 'FALCON report']] : [])];
  const banner = d.features.standin ? `<p class="standin">${esc(d.features.tower)}. Everything computed in this space (SpLiCE, LE(CLIP), FALCON's captions, ` +
    `the SAE's concept names) is labelled STAND-IN.</p>` : '';
  return `<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>${esc(o.title)}</title><style>${CSS}</style></head><body>
<nav>${links.map(([href, name]) => `<a href="${esc(at(href))}">${name}</a>`).join('')}<span class="note">conceptlens atlas · ${esc(d.layer)}</span></nav>
${banner}
${o.body}
${o.sortable ? `<script>${SORT_SCRIPT}</script>` : ''}
</body></html>
`;
}
