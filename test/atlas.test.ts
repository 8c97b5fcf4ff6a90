// `conceptlens atlas` on a small real subset of the assets mirror (SqueezeNet
// fire22 over ImageNet samples and a few CIFAR-10 classes, the stand-in tower):
// resumable after an abort, cached on rerun, every page labelled STAND-IN,
// and the site checked in headless Chromium (no console errors, every image and
// figure renders, links between units work, sorting works, screenshots are not blank).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, mkdirSync, readdirSync, readFileSync, statSync, symlinkSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import sharp from 'sharp';
import { assetsDir } from '../ts/assets.js';
import { writeNpy } from '../ts/io/npy.js';
import { runAtlas, type AtlasOptions } from '../ts/atlas/run.js';
import { computeCams } from '../ts/atlas/cams.js';
import { topImages } from '../ts/atlas/units.js';
import { globalAveragePool, type RgbImage } from '../ts/methods/falcon/cam.js';
import { pooledLayerModel, type ProbeImages } from '../ts/methods/falcon/pipeline.js';
import { cliOk, rng, runCli, tempDir } from './helpers.js';

const CHROMIUM_ARGS = ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking', '--disable-component-update', '--disable-sync'];

/** 16 ImageNet samples and 5 CIFAR-10 classes × 10 images, linked into two folders. */
function smallProbe(assets: string, dir: string): string[] {
  const imagenet = join(dir, 'imagenet'), cifar = join(dir, 'cifar'), src = join(assets, 'images');
  mkdirSync(imagenet);
  for (const f of readdirSync(join(src, 'imagenet-samples')).filter((f) => f.endsWith('.JPEG')).sort().slice(0, 16)) symlinkSync(join(src, 'imagenet-samples', f), join(imagenet, f));
  for (const c of ['airplane', 'bird', 'cat', 'dog', 'ship']) {
    mkdirSync(join(cifar, c), { recursive: true });
    for (const f of readdirSync(join(src, 'cifar10-test', c)).sort().slice(0, 10)) symlinkSync(join(src, 'cifar10-test', c, f), join(cifar, c, f));
  }
  return [imagenet, cifar];
}

/** Options as the CLI arguments below give them. */
const small = (model: string, images: string[], out: string): AtlasOptions => ({
  model, layer: 'fire22', images, out, perClass: 8, standin: true, units: 10, top: 6, low: 4,
  sae: { expansion: 2, epochs: 4 }, falcon: { maxGroups: 2, moreThan: 1 },
});
const cliArgs = (o: AtlasOptions) => ['atlas', '--model', o.model, '--layer', o.layer, '--images', ...o.images, '--per-class', '8', '--standin', '--units', '10',
  '--top', '6', '--low', '4', '--sae-expansion', '2', '--sae-epochs', '4', '--falcon-max-groups', '2', '--falcon-more-than', '1', '--out', o.out, '--json'];

/** Mean, standard deviation and share of non-white pixels of a screenshot. */
async function pixelStats(png: Buffer): Promise<{ std: number; inked: number }> {
  const { data, info } = await sharp(png).removeAlpha().raw().toBuffer({ resolveWithObject: true });
  let s = 0, ss = 0, inked = 0;
  const n = info.width * info.height;
  for (let p = 0; p < n; p++) {
    const y = (data[3 * p] + data[3 * p + 1] + data[3 * p + 2]) / 3;
    s += y, ss += y * y, inked += y < 235 ? 1 : 0;
  }
  return { std: Math.sqrt(ss / n - (s / n) ** 2), inked: inked / n };
}

test('atlas: resumable stages, cached rerun, and a site that renders in headless Chromium', async (t) => {
  const assets = assetsDir(), model = assets && join(assets, 'models/squeezenet1.1/squeezenet1.1.onnx');
  if (!model || !existsSync(model)) return t.skip('needs the assets mirror (set CONCEPTLENS_ASSETS): SqueezeNet, ImageNet and CIFAR-10 samples');
  const dir = tempDir('atlas-test-'), o = small(model, smallProbe(assets!, dir), join(dir, 'atlas'));

  // Stopped as LE(CLIP) starts: the stages before it are kept and reused.
  const ac = new AbortController(), seen = new Set<string>();
  await assert.rejects(runAtlas({ ...o, signal: ac.signal, onProgress: (p) => (seen.add(p.stage), p.stage === 'le-clip' && ac.abort()) }), { code: 'ERR_ABORTED' });
  assert.ok(seen.has('activations') && seen.has('stand-in embeddings') && seen.has('le-label'), [...seen].join(', '));
  const reused = (r: { stages: { name: string; cached: boolean }[] }) => r.stages.filter((s) => s.cached).map((s) => s.name);
  const first = JSON.parse(await cliOk(cliArgs(o)));
  assert.deepEqual(reused(first), ['probe', 'features', 'le-label']);
  assert.equal(first.images, 16 + 5 * 8);
  assert.equal(first.units, 10);
  assert.deepEqual(first.notes, []);
  const again = JSON.parse(await cliOk(cliArgs(o)));
  assert.deepEqual(reused(again), ['probe', 'features', 'le-label', 'le-clip', 'splice', 'dncbm', 'falcon', 'cams']);
  // Another --falcon-max-groups: FALCON's run goes on, the groups it explained are not explained again.
  const explained = join(o.out, 'stages', 'falcon', 'groups');
  const stamps = () => Object.fromEntries(readdirSync(explained).map((f) => [f, statSync(join(explained, f)).mtimeMs]));
  const before = stamps(), more = cliArgs(o);
  more[more.indexOf('--falcon-max-groups') + 1] = '3';
  assert.deepEqual(reused(JSON.parse(await cliOk(more))), ['probe', 'features', 'le-label', 'le-clip', 'splice', 'dncbm', 'cams']);
  const after = stamps();
  assert.equal(Object.keys(before).length, 2);
  for (const [f, t] of Object.entries(before)) assert.equal(after[f], t, `${f} is kept as it was`);

  const site = o.out, units = readdirSync(join(site, 'units')).filter((f) => f.endsWith('.html')).sort();
  assert.equal(units.length, 10);
  for (const page of ['index.html', 'figures.html', ...units.map((u) => `units/${u}`)])
    assert.match(readFileSync(join(site, page), 'utf8'), /STAND-IN: SqueezeNet 1\.1/, `${page} says the text-aligned space is the stand-in`);
  const figures = readFileSync(join(site, 'figures.html'), 'utf8');
  for (const id of ['splice-dataset', 'splice-classes', 'splice-spurious', 'le-label', 'le-clip', 'dncbm-agnostic', 'dncbm-clusters', 'dncbm-global', 'dncbm-local', 'falcon-groups'])
    assert.match(figures, new RegExp(`id="${id}"`), id);

  if (!existsSync('/usr/bin/chromium')) return t.skip('/usr/bin/chromium is absent: the site is not checked in a browser');
  const { chromium } = await import('playwright-core');
  const browser = await chromium.launch({ executablePath: '/usr/bin/chromium', args: CHROMIUM_ARGS });
  try {
    const page = await browser.newPage({ viewport: { width: 1280, height: 900 } });
    const problems: string[] = [];
    page.on('console', (m) => m.type() === 'error' && problems.push(`console: ${m.text()}`));
    page.on('pageerror', (e) => problems.push(`page error: ${e.message}`));
    page.on('requestfailed', (r) => problems.push(`failed: ${r.url()}`));
    const open = async (rel: string) => page.goto(pathToFileURL(join(site, rel)).href, { waitUntil: 'load' });
    /** Every <img> decoded, every SVG <image> loadable, every figure laid out with a size. */
    const renders = () => page.evaluate(async () => {
      const imgs = [...document.querySelectorAll('img')].map((i) => ({ src: i.src, w: (i as HTMLImageElement).naturalWidth }));
      const hrefs = [...document.querySelectorAll('svg image')].map((i) => new URL(i.getAttribute('href')!, document.baseURI).href);
      const loads = await Promise.all(hrefs.map((h) => new Promise<number>((res) => {
        const im = new Image();
        im.onload = () => res(im.naturalWidth);
        im.onerror = () => res(0);
        im.src = h;
      })));
      const figs = [...document.querySelectorAll('svg.figure')].map((s) => s.getBoundingClientRect()).map((r) => r.width * r.height);
      return { imgs, broken: [...imgs.filter((i) => i.w === 0).map((i) => i.src), ...hrefs.filter((_, k) => loads[k] === 0)], svgImages: hrefs.length, figs };
    });

    for (const rel of ['index.html', 'figures.html', ...units.map((u) => `units/${u}`)]) {
      await open(rel);
      const r = await renders();
      assert.deepEqual(r.broken, [], `${rel}: images that do not render`);
      assert.ok(r.figs.every((a) => a > 0), `${rel}: every figure has a size`);
      if (rel.startsWith('units/')) assert.ok(r.imgs.length >= 6 + 4 + 6, `${rel}: top, lowly and crop images (${r.imgs.length})`);
      if (rel === 'figures.html') assert.ok(r.figs.length >= 10 && r.svgImages >= 6, `figures: ${r.figs.length} figures, ${r.svgImages} pictures in them`);
    }

    // Sorting: a score column descending on the first click (missing values last), ascending on the second.
    await open('index.html');
    const column = (k: number) => page.$$eval('#units tbody tr', (trs, k) => trs.map((tr) => (tr.children[k] as HTMLElement).dataset.v ?? ''), k);
    const numbers = (vs: string[]) => vs.filter((v) => v !== '').map(Number);
    for (const k of [2, 5]) {
      await page.click(`#units th:nth-child(${k + 1}) button`);
      const desc = await column(k), dn = numbers(desc);
      assert.deepEqual(dn, [...dn].sort((a, b) => b - a), `column ${k} descending`);
      assert.ok(desc.slice(dn.length).every((v) => v === ''), 'missing values sort last');
      await page.click(`#units th:nth-child(${k + 1}) button`);
      const an = numbers(await column(k));
      assert.deepEqual(an, [...an].sort((a, b) => a - b), `column ${k} ascending`);
    }
    assert.equal(await page.getAttribute('#units th:nth-child(6)', 'aria-sort'), 'ascending');
    const shotIndex = await page.screenshot({ fullPage: true });

    // Links: index → a unit page → its next unit → back to the index.
    await open('index.html');
    const firstUnit = await page.$eval('#units tbody tr', (tr) => tr.getAttribute('data-unit'));
    await Promise.all([page.waitForNavigation(), page.click('#units tbody tr:first-child a')]);
    assert.match(page.url(), new RegExp(`units/u${firstUnit}\\.html$`));
    assert.match(await page.textContent('h1') ?? '', new RegExp(`Unit ${firstUnit} of fire22`));
    const shotUnit = await page.screenshot({ fullPage: true });
    await Promise.all([page.waitForNavigation(), page.click('a[rel=next]')]);
    assert.match(await page.textContent('h1') ?? '', /^Unit \d+ of fire22$/);
    assert.notEqual(page.url(), pathToFileURL(join(site, `units/u${firstUnit}.html`)).href);
    await Promise.all([page.waitForNavigation(), page.click('nav a[href="../index.html"]')]);
    assert.ok(page.url().endsWith('/index.html'));
    assert.deepEqual(problems, [], 'no console errors, page errors or failed requests');

    for (const [name, png] of [['index', shotIndex], ['unit', shotUnit]] as const) {
      const s = await pixelStats(png);
      assert.ok(s.std > 20 && s.inked > 0.03, `${name} screenshot is not blank: ${JSON.stringify(s)}`);
    }
  } finally {
    await browser.close();
  }
});

test('atlas: an --images folder that is missing, a file or without images, or a vocabulary of another width, is an error naming it, before any output exists', async () => {
  const dir = tempDir('atlas-inputs-'), model = join(dir, 'm.onnx'), empty = join(dir, 'empty'), out = join(dir, 'atlas');
  writeFileSync(model, 'only its presence is checked before the images');
  mkdirSync(join(empty, 'sub'), { recursive: true });
  writeFileSync(join(empty, 'sub', 'notes.txt'), 'not an image');
  mkdirSync(join(dir, 'good'));
  writeFileSync(join(dir, 'good', 'x.png'), 'listed, not decoded, before the check fails');
  const missing = join(dir, 'cifar10-test');
  for (const [images, why] of [[missing, 'no such folder; expected a folder of images'], [model, 'not a folder; expected a folder of images'],
    [empty, 'no .jpg/.jpeg/.png/.webp images in this folder']]) {
    // After a good folder: every folder is checked before the first one's probe stage starts.
    const r = await runCli(['atlas', '--model', model, '--layer', 'fire22', '--images', join(dir, 'good'), images, '--standin', '--out', out]);
    assert.equal(r.code, 1, r.stderr);
    assert.equal(r.stderr, `error: --images: ${images}: ${why}\n`);
    assert.ok(!existsSync(out), `${why}: nothing written`);
  }
  // A vocabulary of another width than the stand-in's space (512) is refused naming its file, before any stage.
  if (!assetsDir()) return;
  writeNpy(join(dir, 'V64.npy'), new Float32Array(3 * 64).fill(0.1), [3, 64]);
  writeFileSync(join(dir, 'names.txt'), 'a\nb\nc\n');
  const r = await runCli(['atlas', '--model', model, '--layer', 'fire22', '--images', join(dir, 'good'), '--standin', '--vocab', join(dir, 'V64.npy'),
    '--vocab-names', join(dir, 'names.txt'), '--out', out]);
  assert.equal(r.code, 1, r.stderr);
  assert.equal(r.stderr, `error: ${join(dir, 'V64.npy')}: concept embeddings of dimension 64; expected 512, that of the stand-in tower's space\n`);
  assert.ok(!existsSync(out), 'nothing written');
});

test('atlas: GradCAM crops.json lists each unit\'s crops in its top-image order, the same on every run', async () => {
  const dir = tempDir('atlas-cams-'), n = 40, units = [0, 1, 2], top = 12, u = rng(5);
  // Noisy and flat images, so their crops take different times to encode.
  const imgs: RgbImage[] = Array.from({ length: n }, (_, i) => {
    const data = new Uint8Array(64 * 64 * 3);
    for (let p = 0; p < data.length; p++) data[p] = i % 2 ? Math.floor(256 * u()) : (p % 7) * 30;
    return { data, width: 64, height: 64 };
  });
  const images: ProbeImages = { count: n, rgb: async (i) => imgs[i] };
  const acts = { data: Float32Array.from({ length: n * 3 }, () => u()), rows: n, cols: 3 };
  const maps = Float32Array.from({ length: n * 3 * 16 }, () => u());
  const target = pooledLayerModel(3, async (batch) => {
    const ids = batch.map((b) => imgs.indexOf(b)), data = new Float32Array(ids.length * 48);
    ids.forEach((i, k) => data.set(maps.subarray(i * 48, (i + 1) * 48), k * 48));
    return { name: 'fake', shape: [ids.length, 3, 4, 4], data };
  }, globalAveragePool);
  const written = [];
  for (const run of ['a', 'b']) {
    await computeCams(join(dir, run), images, acts, units, top, target, () => {});
    written.push(readFileSync(join(dir, run, 'crops.json'), 'utf8'));
  }
  assert.equal(written[1], written[0]);
  const crops = JSON.parse(written[0]);
  for (const unit of units) assert.deepEqual(crops[unit].map((c: { image: number }) => c.image), topImages(acts, unit, top), `unit ${unit}`);
});
