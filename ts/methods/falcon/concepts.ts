// FALCON steps 7-8: words and noun phrases from captions (wink-nlp: POS
// tags, lemmas, stop words, noun-phrase patterns), scored over images, and
// the contrast with the lowly activating images.
import winkNLP, { type ItemCustomEntity, type ItemToken, type WinkMethods } from 'wink-nlp';
import model from 'wink-eng-lite-web-model';
import { argError, ConceptLensError, requireInteger } from '../../errors.js';

/** Photo-metadata words that say nothing about the content. */
export const DISCARD_WORDS = new Set([
  'photo', 'photos', 'background', 'stock', 'image', 'images', 'closeup', 'jpg', 'picture', 'pictures', 'png', 'file',
  'view', 'www', 'http', 'https', 'com', 'showing', 'blurred', 'shot', 'example', 'camera', 'footage', 'free', 'video',
  'display', 'displaying', 'displayed', 'thumbnail', 'focus', 'detail', 'panoramic', 'standard', 'portrait', 'zoom',
  'zoomed', 'show', 'real', 'icon', 'pixelated', 'cropped', 'caption', 'graphic', 'available', 'royalty', 'blurry', 'new',
  'pic', 'left', 'right', 'full', 'small', 'looking', 'pro', 'angle', 'logo', 'close', 'blur', 'preview', 'wallpaper',
  'profile', 'color', 'colored', 'banner', 'macro', 'frame', 'cut', 'bottom', 'corner', 'overlay', 'original', 'sign',
  'isolated', 'figure', 'photography', 'photograph', 'print', 'year', 'vector', 'illustration', 'clipart', 'template', 'hd',
  'hq', 'quality', 'resolution', 'editorial', 'shutterstock', 'alamy', 'getty', 'istock', 'dreamstime', 'depositphotos',
  'selective', 'iphone',
]);

/** The candidate concepts of one caption, from {@link extractTerms}. */
export interface Terms {
  /** Lemmatised nouns, verbs and adjectives (no stop words, digits or discard words; longer than 2 letters). */
  words: Set<string>;
  /** Noun phrases of up to three modifiers and a head noun, the head lemmatised. */
  phrases: Set<string>;
}

let nlp: WinkMethods | undefined;

function tagger(): WinkMethods {
  if (nlp) return nlp;
  nlp = winkNLP(model);
  // Noun phrases: up to three modifiers (adjectives or nouns) before a head noun.
  const mod = '[ADJ|NOUN|PROPN]', head = '[NOUN|PROPN]';
  nlp.learnCustomEntities([{ name: 'np', patterns: [1, 2, 3].map((m) => [...Array(m).fill(mod), head].join(' ')) }]);
  return nlp;
}

/** Lower case, letters/digits/spaces only, no figure labels, no discard words. */
export function cleanCaption(text: string): string {
  return text.toLowerCase().replace(/['’]/g, '').replace(/[^a-z0-9\n ]+/g, ' ').replace(/fig\d+/g, ' ')
    .split(/\s+/).filter((t) => t.length > 0 && !DISCARD_WORDS.has(t)).join(' ');
}

const keep = (t: string) => t.length > 2 && !/\d/.test(t) && !DISCARD_WORDS.has(t);
const CONTENT_POS = new Set(['NOUN', 'PROPN', 'VERB', 'ADJ']);

/** Lemmatised nouns, verbs and adjectives, and noun phrases (head noun lemmatised), of one caption. */
export function extractTerms(caption: string): Terms {
  const n = tagger(), its = n.its;
  // wink-nlp's typings give its.lemma an extra `addons` parameter that ItsFunction lacks.
  const lemma = (t: ItemToken) => String(t.out(its.lemma as unknown as typeof its.normal)).toLowerCase();
  const doc = n.readDoc(cleanCaption(caption));
  const words = new Set<string>();
  doc.tokens().each((t: ItemToken) => {
    const l = lemma(t);
    if (CONTENT_POS.has(String(t.out(its.pos))) && !t.out(its.stopWordFlag) && keep(l)) words.add(l);
  });
  const phrases = new Set<string>();
  doc.customEntities().each((e: ItemCustomEntity) => {
    const toks: string[] = [];
    e.tokens().each((t: ItemToken) => { toks.push(String(t.out(its.normal))); });
    toks[toks.length - 1] = lemma(e.tokens().itemAt(toks.length - 1));
    const phrase = toks.join(' ');
    if (keep(phrase) && toks.every((t) => !DISCARD_WORDS.has(t))) phrases.add(phrase);
  });
  return { words, phrases };
}

/** A term with its score over a set of images. */
export interface Scored {
  term: string;
  /** Mean over the images of the best caption score among captions containing the term (0 for an image without it). */
  score: number;
}

/** One image's top captions, best first, from {@link topCaptions}. */
export interface ImageCaptions {
  captions: string[];
  /** Score of each caption (softmax or cosine, as retrieved), aligned with `captions`. */
  scores: number[];
}

/**
 * Term score = mean over images of the best score among that image's
 * captions containing the term (0 for an image without it), best first.
 */
export function scoreTerms(images: ImageCaptions[], pick: (t: Terms) => Set<string>, extract = extractTerms): Scored[] {
  const total = new Map<string, number>();
  for (const img of images) {
    const best = new Map<string, number>();
    img.captions.forEach((c, j) => {
      for (const term of pick(extract(c))) best.set(term, Math.max(best.get(term) ?? -Infinity, img.scores[j]));
    });
    for (const [term, s] of best) total.set(term, (total.get(term) ?? 0) + s);
  }
  return [...total].map(([term, s]) => ({ term, score: s / images.length }))
    .sort((a, b) => b.score - a.score || (a.term < b.term ? -1 : 1));
}

/** Options of {@link contrastConcepts}. */
export interface ConceptOptions {
  /** Drop a term whose score on the lowly activating images is at least this (default 0.1). */
  contrastThreshold?: number;
  /** Words and phrases kept, each (default 8). */
  top?: number;
}

/** A group's concepts: the best words and noun phrases, best first. */
export interface Concepts {
  words: Scored[];
  phrases: Scored[];
}

/** Top words and noun phrases of the highly activating images that the lowly activating ones lack. */
export function contrastConcepts(high: ImageCaptions[], low: ImageCaptions[], opts: ConceptOptions = {}): Concepts {
  if (high.length === 0) throw new ConceptLensError('ERR_ARG', 'captions: expected captions of at least one highly activating image, got none');
  const thr = opts.contrastThreshold ?? 0.1, top = opts.top ?? 8;
  requireInteger(top, 'top', 1);  // slice(0, -1) would keep all but one
  if (!Number.isFinite(thr)) throw argError('contrastThreshold', 'a finite number', thr);
  const memo = new Map<string, Terms>();
  const extract = (c: string) => memo.get(c) ?? memo.set(c, extractTerms(c)).get(c)!;
  const pickAll = (pick: (t: Terms) => Set<string>) => {
    const lowScored = low.length > 0 ? scoreTerms(low, pick, extract) : [];
    const drop = new Set(lowScored.filter((s) => s.score >= thr).map((s) => s.term));
    return scoreTerms(high, pick, extract).filter((s) => !drop.has(s.term)).slice(0, top);
  };
  return { words: pickAll((t) => t.words), phrases: pickAll((t) => t.phrases) };
}
