// The atlas's pages: the index of units (sortable by each method's score),
// one page per unit (its images and crops, and what each method says about
// it side by side, concepts two or more methods name highlighted), and the
// figures page.
import { basename } from 'node:path';
import { escapeHtml as esc } from '../report/html.js';
import { barChartSvg } from '../report/chart.js';
import { formatExplanation } from '../methods/le/csv.js';
import type { AtlasData } from './data.js';
import type { FigureSection } from './figures.js';
import { pageHtml } from './html.js';
import type { LeUnit } from './le.js';
import { falconCrop, falconImage, fromDepth, thumbPath, unitCrop, unitPage } from './paths.js';
import { barsSvg } from './svg.js';
import { METHODS, type Named, type UnitView } from './units.js';
import { nameKeys, readable } from './vocab.js';

const fixed = (x: number | null | undefined, digits = 3) => (x === null || x === undefined || !Number.isFinite(x) ? '–' : x.toFixed(digits));
const cell = (x: number | null | undefined) => `<td data-v="${x === null || x === undefined || !Number.isFinite(x) ? '' : x}">${fixed(x)}</td>`;
const mean = (xs: number[]) => xs.reduce((a, v) => a + v, 0) / Math.max(1, xs.length);

function thumbs(cls: string, items: { href: string; caption: string }[]): string {
  return `<div class="${cls}">${items.map((t) => `<figure><img src="${esc(t.href)}" alt="${esc(t.caption)}"><figcaption>${esc(t.caption)}</figcaption></figure>`).join('') || '<p>none</p>'}</div>`;
}

/** What the run covers, and each method's headline number. */
function summary(d: AtlasData): string {
  const p = d.probe, le = (name: string, r?: { units: LeUnit[] }) =>
    r ? `<li>${name}: mean simulation correlation ${mean(r.units.map((u) => u.sim)).toFixed(3)} over ${r.units.length} units (single best concept: ${mean(r.units.map((u) => u.baseline)).toFixed(3)})</li>` : '';
  const t = d.dncbm?.training;
  return `<p>${p.files.length} images from ${p.sources.map(esc).join(', ')}${p.classes.length ? `, ${p.classes.length} classes` : ''}; layer <b>${esc(d.layer)}</b> of ${esc(basename(d.model))} ` +
    `(${d.features.acts.cols} units, average pooled); ${d.views.length} unit pages; concepts: ${esc(d.vocab.label)}; text-aligned space: ${esc(d.space)}.</p><ul>` +
    le('LE(Label)', d.le.label) + le(`LE(CLIP) (${d.space})`, d.le.clip) +
    (d.splice ? `<li>SpLiCE: mean l0 ${d.splice.meanL0.toFixed(2)}, mean cosine ${d.splice.meanCosine.toFixed(3)} (λ = ${d.splice.l1}, centred on ${esc(d.splice.centredOn)})</li>` : '') +
    (t ? `<li>DN-CBM SAE: ${t.m} concepts (${t.expansion}× the units), FVU ${t.fvu.toFixed(3)}, mean l0 ${t.l0.toFixed(1)}, dead ${(100 * t.dead).toFixed(1)}%` +
      (d.dncbm!.probe ? `; CBM probe top-1 ${d.dncbm!.probe.cbmTop1.toFixed(3)} (linear ${d.dncbm!.probe.linearTop1.toFixed(3)})` : '') + '</li>' : '') +
    (d.falcon ? `<li>FALCON: ${d.falcon.length} feature groups explained</li>` : '') + '</ul>' +
    (d.notes.length ? `<p class="note">Not run: ${d.notes.map(esc).join(' ')}</p>` : '');
}

const COLUMNS: [string, string][] = [
  ['unit', 'unit'], ['LE(Label) r', 'simulation correlation of the LE(Label) explanation (test split)'],
  ['LE(CLIP) r', 'simulation correlation of the LE(CLIP) explanation (test split)'], ['FALCON interpretability', 'best interpretability of the FALCON groups holding the unit'],
  ['SAE share', 'share of the top SAE concept in the unit\'s mean reconstruction'], ['agreement', 'concepts named by two or more methods'],
];

function indexRow(v: UnitView): string {
  const concepts = v.shared.length ? v.shared.map((s) => `<span class="chip agree">${esc(s.label)}</span>`).join('')
    : METHODS.flatMap((m) => v.named[m]?.filter((c) => !c.against).slice(0, 1).map((c) => `<span class="chip">${esc(c.name)}</span>`) ?? []).join('');
  return `<tr data-unit="${v.unit}"><td data-v="${v.unit}"><a href="${esc(unitPage(v.unit))}">${v.unit}</a></td>` +
    cell(v.leLabel?.sim) + cell(v.leClip?.sim) + cell(v.falconScore) + cell(v.saeShare) + `<td data-v="${v.shared.length}">${v.shared.length}</td><td>${concepts}</td></tr>`;
}

/** index.html: the summary and the sortable table of units. */
export function indexPage(d: AtlasData): string {
  const head = COLUMNS.map(([name, tip]) => `<th title="${esc(tip)}"><button type="button">${esc(name)}</button></th>`).join('') + '<th>concepts (agreed, else each method\'s first)</th>';
  const body = `<h1>Atlas of ${esc(d.layer)} in ${esc(basename(d.model))}</h1>${summary(d)}
<p>Click a column to sort by it. Highlighted concepts are named by two or more methods. <a href="figures.html">Figures</a> as the papers draw them.</p>
<table id="units"><thead><tr>${head}</tr></thead><tbody>${d.views.map(indexRow).join('\n')}</tbody></table>`;
  return pageHtml(d, { title: `conceptlens atlas: ${d.layer}`, depth: 0, body, sortable: true });
}

/** The side-by-side table: one column per method, agreed concepts highlighted; methods naming in the stand-in space say so. */
function sideBySide(d: AtlasData, v: UnitView): string {
  const agreed = new Map(v.shared.map((s) => [s.key, s.methods]));
  const chip = (c: Named) => {
    const with_ = c.against ? [] : [...new Set(nameKeys(c.name).flatMap((k) => agreed.get(k) ?? []))];
    const cls = c.against ? ' against' : with_.length ? ' agree' : '';
    return `<span class="chip${cls}" title="${esc(c.detail + (with_.length ? ` · named by ${with_.join(', ')}` : ''))}">${c.against ? '− ' : ''}${esc(c.name)}</span>`;
  };
  const cols = METHODS.map((m) => `<td>${v.named[m] === undefined ? '<span class="note">not run</span>' : v.named[m]!.map(chip).join('') || '<span class="note">nothing named</span>'}</td>`);
  const verdict = v.shared.length
    ? `<p>Named by two or more methods: ${v.shared.map((s) => `<b>${esc(s.label)}</b> (${s.methods.join(', ')})`).join('; ')}.</p>`
    : '<p>No concept is named by two methods: the methods disagree on this unit (or name it in different words).</p>';
  return `<section id="agreement"><h2>What each method says</h2>${verdict}<table class="side"><thead><tr>${METHODS.map((m) => `<th>${m}${d.features.standin && m !== 'LE(Label)' ? ' · STAND-IN' : ''}</th>`).join('')}</tr></thead><tbody><tr>${cols.join('')}</tr></tbody></table></section>`;
}

function leBlock(name: string, e: LeUnit | undefined): string {
  if (!e) return `<p>${name}: not explained (not run, or the unit is constant on the training images).</p>`;
  const text = formatExplanation({ unit: e.unit, valCorrelation: NaN, concepts: e.concepts.map(readable), weights: e.weights, bias: e.bias, extra: {} });
  return `<p>${name}: activation ≈ <code>${esc(text)}</code><br>simulation correlation <b>${fixed(e.sim)}</b> (single best concept: ${fixed(e.baseline)})</p>`;
}

function falconBlock(d: AtlasData, v: UnitView, at: (p: string) => string): string {
  if (!d.falcon) return '<p>FALCON did not run on this layer.</p>';
  if (!v.groups.length) return `<p>Unit ${v.unit} is in none of the ${d.falcon.length} explained feature groups.</p>`;
  return `<p class="note">Crops and counterfactuals captioned by the vocabulary's concepts in ${esc(d.space)}.</p>` + v.groups.map((g) => `<h3>Group ${esc(g.group)} · ${g.high.length} images · interpretability ${fixed(g.interpretability)}${g.explained ? '' : ' (below the threshold: not named)'}</h3>` +
    `<p>Words: ${g.words.slice(0, 8).map((w) => esc(w.term)).join(', ') || '–'}; phrases: ${g.phrases.slice(0, 5).map((w) => esc(w.term)).join(', ') || '–'}</p>` +
    thumbs('falcon-crops', g.high.slice(0, 8).map((i) => ({ href: at(falconCrop(g.group, i)), caption: `crop #${i}` }))) +
    thumbs('falcon-low', g.low.slice(0, 8).map((i) => ({ href: at(falconImage(i)), caption: `counterfactual #${i}` })))).join('');
}

function methodBlocks(d: AtlasData, v: UnitView, at: (p: string) => string): string {
  const splice = d.splice ? barChartSvg(`SpLiCE concepts of unit ${v.unit}'s top ${v.top.length} images (mean weights, ${d.space})`,
    v.splice.map((c) => ({ concept: readable(c.concept), weight: c.weight }))) : '<p>SpLiCE did not run.</p>';
  const sae = d.dncbm ? barsSvg({
    title: `SAE concepts unit ${v.unit} loads on: decoder weight × mean strength (names: ${d.space})`, width: 620,
    bars: v.sae.slice(0, 8).map((s) => ({ label: `#${s.concept} ${readable(s.name)} (cos ${s.score.toFixed(2)})`, value: s.contribution })),
  }) : '<p>The SAE did not run.</p>';
  return `<section id="le"><h2>Linear Explanations</h2>${leBlock('LE(Label)', v.leLabel)}${leBlock(`LE(CLIP), ${esc(d.space)}`, v.leClip)}</section>
<section id="falcon"><h2>FALCON</h2>${falconBlock(d, v, at)}</section>
<section id="splice"><h2>SpLiCE</h2>${splice}</section>
<section id="dncbm"><h2>Discover-then-Name</h2>${sae}</section>`;
}

/** units/u<unit>.html. */
export function unitPageHtml(d: AtlasData, v: UnitView, prev?: number, next?: number): string {
  const at = fromDepth(1), link = (u: number | undefined, rel: string) => (u === undefined ? '' : `<a rel="${rel}" href="${esc(at(unitPage(u)))}">${rel === 'prev' ? '← unit ' + u : 'unit ' + u + ' →'}</a> `);
  const body = `<p>${link(prev, 'prev')}${link(next, 'next')}</p><h1>Unit ${v.unit} of ${esc(d.layer)}</h1>
${sideBySide(d, v)}
<section id="images"><h2>Top activating images</h2>${thumbs('top', v.top.map((t) => ({ href: at(thumbPath(t.image)), caption: `#${t.image}: ${t.value.toFixed(3)}` })))}
<h2>Lowly activating images</h2><p class="note">Images where the unit is below the mean, most similar to the top images on the other units (FALCON's counterfactuals).</p>
${thumbs('low', v.low.map((t) => ({ href: at(thumbPath(t.image)), caption: `#${t.image}: ${t.value.toFixed(3)}` })))}
<h2>GradCAM crops</h2>${thumbs('crops', v.crops.map((c) => ({ href: at(unitCrop(v.unit, c.image)), caption: `#${c.image}` })))}</section>
${methodBlocks(d, v, at)}`;
  return pageHtml(d, { title: `unit ${v.unit} · ${d.layer}`, depth: 1, body });
}

/** figures.html. */
export function figuresPage(d: AtlasData, sections: FigureSection[]): string {
  const toc = sections.flatMap((s) => s.figures.map((f) => `<li><a href="#${f.id}">${esc(s.method)}: ${esc(f.title)}</a></li>`)).join('');
  const body = `<h1>Figures: ${esc(d.layer)}</h1><ul>${toc}</ul>` + sections.map((s) => `<h2>${esc(s.method)}</h2>` +
    s.figures.map((f) => `<section class="fig" id="${f.id}"><h3>${esc(f.title)}</h3>${f.html}</section>`).join('')).join('');
  return pageHtml(d, { title: `figures · ${d.layer}`, depth: 0, body });
}
