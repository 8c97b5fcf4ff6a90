// The concept vocabulary every method names with (SpLiCE's dictionary,
// LE(CLIP)'s concepts, FALCON's captions, the SAE's names), and how concept
// names from different methods are compared: by plain name, so 'car_(automobile)',
// 'car' and 'automobile' meet.
import { assetPath } from '../assets.js';
import { readMatrix } from '../io/matrix.js';
import { readNames } from '../io/text.js';
import { plainName } from '../methods/splice-compare.js';
import { fileIdentity } from '../io/stages.js';

/** Concept names and their text embeddings (names.length × d, fp32). */
export interface ConceptVocab {
  names: string[];
  vectors: Float32Array;
  d: number;
  /** The embeddings file (FALCON opens it as its caption vocabulary). */
  path: string;
  /** What the vocabulary is, for pages. */
  label: string;
}

/** The default vocabulary: the real CLIP ViT-B/32 text embeddings of the 1,203 LVIS concepts (Detic, "a {name}"). */
const DEFAULT_VOCAB = { vocab: 'embeddings/detic/lvis_v1_clip_a+cname.npy', names: 'embeddings/detic/lvis_v1_names.txt' };

/** Files of the vocabulary asked for (the default from the assets mirror), for cache keys. */
function vocabFiles(o: { vocab?: string; vocabNames?: string }): { vocab: string; names: string } {
  return o.vocab ? { vocab: o.vocab, names: o.vocabNames ?? o.vocab.replace(/\.npy$/, '.txt') } : { vocab: assetPath(DEFAULT_VOCAB.vocab), names: assetPath(DEFAULT_VOCAB.names) };
}

/** Reads the vocabulary: unique names, one embedding row per name. */
export function loadVocab(o: { vocab?: string; vocabNames?: string }): ConceptVocab {
  const f = vocabFiles(o), names = readNames(f.names);
  const m = readMatrix(f.vocab, { what: 'concept embeddings', rows: names.length, rowsFrom: `one per name of ${f.names}` });
  const label = o.vocab ? `${names.length} concepts of ${f.vocab}` : `the ${names.length} LVIS concepts (real CLIP ViT-B/32 text embeddings of "a {name}", Detic)`;
  return { names, vectors: m.data, d: m.cols, path: f.vocab, label };
}

/** Identities of the vocabulary files, for cache keys. */
export function vocabIdentity(o: { vocab?: string; vocabNames?: string }): unknown {
  const f = vocabFiles(o);
  return [fileIdentity(f.vocab), fileIdentity(f.names)];
}

/** A name as people read it: '_' as space. */
export const readable = (name: string) => name.replace(/_/g, ' ');

/** The plain names a concept answers to: its own and any parenthesised qualifier ('car_(automobile)': car, automobile). */
export function nameKeys(name: string): string[] {
  const quals = [...name.matchAll(/\(([^)]*)\)/g)].map((m) => plainName(m[1]));
  return [plainName(name), ...quals].filter((k) => k !== '');
}

/** Per class, the vocabulary rows the class name answers to (possibly none). */
export function classConceptRows(classes: readonly string[], names: readonly string[]): number[][] {
  const byKey = new Map<string, number[]>();
  names.forEach((n, j) => nameKeys(n).forEach((k) => byKey.set(k, [...(byKey.get(k) ?? []), j])));
  return classes.map((c) => [...new Set(nameKeys(c).flatMap((k) => byKey.get(k) ?? []))]);
}
