/**
 * CLIP byte-level BPE tokenizer, behaving like OpenAI CLIP's `simple_tokenizer.py`
 * (the ids match it token for token) plus `clip.tokenize` (start/end tokens, padding to 77).
 *
 * Text cleaning. The reference runs `ftfy.fix_text`, then `html.unescape` twice, strip,
 * whitespace collapse and lowercase. ftfy (6.x, default settings) is emulated here step by step:
 * HTML entity decoding ("auto": off from the first line that contains '<'), C1 controls read as
 * Windows-1252, Latin ligatures, full/halfwidth forms, curly quotes, line breaks, lone
 * surrogates, ANSI escapes, control characters and NFC, repeated until nothing changes.
 * Not emulated: ftfy's mojibake repair (`fix_encoding`: heuristic re-decoding of text such as
 * "sÃ³" -> "só"), which only acts on text that ftfy's badness heuristic flags as mojibake.
 * Named HTML entities: the HTML 4 set plus &apos; and &TRADE; (260 names, all the
 * semicolon-less legacy names included), not the 2,231 of HTML5; numeric references are complete.
 * Case mapping and character classes come from the JS engine's Unicode tables, which can be newer
 * than the Python the reference ran under (only characters added to Unicode since then differ).
 */
import { existsSync, readFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { gunzipSync } from 'node:zlib';
import { assetsDir } from '../assets.js';
import { argError, ConceptLensError, fileError, requireInteger } from '../errors.js';

export const VOCAB_FILE = 'bpe_simple_vocab_16e6.txt.gz';
export const START_TOKEN = '<|startoftext|>';
export const END_TOKEN = '<|endoftext|>';
/** CLIP's text context: ids per row of {@link ClipTokenizer.tokenize}, start and end tokens included. */
export const CONTEXT_LENGTH = 77;
/** The reference keeps 49152 - 256 - 2 merges so that the vocabulary ends at 49,408 ids. */
const MERGE_COUNT = 49152 - 256 - 2;
/** The cache only saves work; a cap keeps memory bounded on corpus-sized inputs. */
const CACHE_LIMIT = 500_000;

// ---------------------------------------------------------------------------------------------
// Text cleaning (ftfy emulation, Python's html.unescape, whitespace as Python sees it)

/** Characters the Python `regex` module's \s matches (JS \s adds U+FEFF and lacks U+0085). */
const WS = '\\t\\n\\v\\f\\r \\x85\\xa0\\u1680\\u2000-\\u200a\\u2028\\u2029\\u202f\\u205f\\u3000';
const WS_RUN = new RegExp(`[${WS}]+`, 'gu');
/** str.strip() also strips the separators U+001C..U+001F. */
const PY_STRIP = new RegExp(`^[${WS}\\x1c-\\x1f]+|[${WS}\\x1c-\\x1f]+$`, 'gu');

/**
 * HTML entities: `name:hex` valid only with ';', `name=hex` also valid without it (legacy names,
 * which html.unescape matches as prefixes, e.g. "&ampx" -> "&x").
 */
const ENTITY_TABLE =
  'AElig=c6 AMP=26 Aacute=c1 Acirc=c2 Agrave=c0 Alpha:391 Aring=c5 Atilde=c3 Auml=c4 Beta:392 ' +
  'COPY=a9 Ccedil=c7 Chi:3a7 Dagger:2021 Delta:394 ETH=d0 Eacute=c9 Ecirc=ca Egrave=c8 Epsilon:395 ' +
  'Eta:397 Euml=cb GT=3e Gamma:393 Iacute=cd Icirc=ce Igrave=cc Iota:399 Iuml=cf Kappa:39a LT=3c ' +
  'Lambda:39b Mu:39c Ntilde=d1 Nu:39d OElig:152 Oacute=d3 Ocirc=d4 Ograve=d2 Omega:3a9 Omicron:39f ' +
  'Oslash=d8 Otilde=d5 Ouml=d6 Phi:3a6 Pi:3a0 Prime:2033 Psi:3a8 QUOT=22 REG=ae Rho:3a1 Scaron:160 ' +
  'Sigma:3a3 THORN=de TRADE:2122 Tau:3a4 Theta:398 Uacute=da Ucirc=db Ugrave=d9 Upsilon:3a5 Uuml=dc ' +
  'Xi:39e Yacute=dd Yuml:178 Zeta:396 aacute=e1 acirc=e2 acute=b4 aelig=e6 agrave=e0 alefsym:2135 ' +
  'alpha:3b1 amp=26 and:2227 ang:2220 apos:27 aring=e5 asymp:2248 atilde=e3 auml=e4 bdquo:201e ' +
  'beta:3b2 brvbar=a6 bull:2022 cap:2229 ccedil=e7 cedil=b8 cent=a2 chi:3c7 circ:2c6 clubs:2663 ' +
  'cong:2245 copy=a9 crarr:21b5 cup:222a curren=a4 dArr:21d3 dagger:2020 darr:2193 deg=b0 delta:3b4 ' +
  'diams:2666 divide=f7 eacute=e9 ecirc=ea egrave=e8 empty:2205 emsp:2003 ensp:2002 epsilon:3b5 ' +
  'equiv:2261 eta:3b7 eth=f0 euml=eb euro:20ac exist:2203 fnof:192 forall:2200 frac12=bd frac14=bc ' +
  'frac34=be frasl:2044 gamma:3b3 ge:2265 gt=3e hArr:21d4 harr:2194 hearts:2665 hellip:2026 ' +
  'iacute=ed icirc=ee iexcl=a1 igrave=ec image:2111 infin:221e int:222b iota:3b9 iquest=bf ' +
  'isin:2208 iuml=ef kappa:3ba lArr:21d0 lambda:3bb lang:27e8 laquo=ab larr:2190 lceil:2308 ' +
  'ldquo:201c le:2264 lfloor:230a lowast:2217 loz:25ca lrm:200e lsaquo:2039 lsquo:2018 lt=3c ' +
  'macr=af mdash:2014 micro=b5 middot=b7 minus:2212 mu:3bc nabla:2207 nbsp=a0 ndash:2013 ne:2260 ' +
  'ni:220b not=ac notin:2209 nsub:2284 ntilde=f1 nu:3bd oacute=f3 ocirc=f4 oelig:153 ograve=f2 ' +
  'oline:203e omega:3c9 omicron:3bf oplus:2295 or:2228 ordf=aa ordm=ba oslash=f8 otilde=f5 ' +
  'otimes:2297 ouml=f6 para=b6 part:2202 permil:2030 perp:22a5 phi:3c6 pi:3c0 piv:3d6 plusmn=b1 ' +
  'pound=a3 prime:2032 prod:220f prop:221d psi:3c8 quot=22 rArr:21d2 radic:221a rang:27e9 raquo=bb ' +
  'rarr:2192 rceil:2309 rdquo:201d real:211c reg=ae rfloor:230b rho:3c1 rlm:200f rsaquo:203a ' +
  'rsquo:2019 sbquo:201a scaron:161 sdot:22c5 sect=a7 shy=ad sigma:3c3 sigmaf:3c2 sim:223c ' +
  'spades:2660 sub:2282 sube:2286 sum:2211 sup:2283 sup1=b9 sup2=b2 sup3=b3 supe:2287 szlig=df ' +
  'tau:3c4 there4:2234 theta:3b8 thetasym:3d1 thinsp:2009 thorn=fe tilde:2dc times=d7 trade:2122 ' +
  'uArr:21d1 uacute=fa uarr:2191 ucirc=fb ugrave=f9 uml=a8 upsih:3d2 upsilon:3c5 uuml=fc ' +
  'weierp:2118 xi:3be yacute=fd yen=a5 yuml=ff zeta:3b6 zwj:200d zwnj:200c';

/** Python's html.entities.html5 restricted to ENTITY_TABLE: keys are names with or without ';'. */
const ENTITIES: Map<string, string> = (() => {
  const map = new Map<string, string>();
  for (const item of ENTITY_TABLE.trim().split(' ')) {
    const [, name, sep, hex] = /^(\w+)([:=])(\w+)$/.exec(item)!;
    const char = String.fromCodePoint(parseInt(hex, 16));
    map.set(`${name};`, char);
    if (sep === '=') map.set(name, char);
  }
  return map;
})();

/** html.unescape: numeric references that HTML5 remaps (0x80..0x9F read as Windows-1252). */
const CP1252_C1 =
  '\u20ac\x81\u201a\u0192\u201e\u2026\u2020\u2021\u02c6\u2030\u0160\u2039\u0152\x8d\u017d\x8f' +
  '\x90\u2018\u2019\u201c\u201d\u2022\u2013\u2014\u02dc\u2122\u0161\u203a\u0153\x9d\u017e\u0178';

function charRef(num: number): string {
  if (num === 0) return '\ufffd';
  if (num === 0x0d) return '\r';
  if (num >= 0x80 && num <= 0x9f) return CP1252_C1[num - 0x80];
  if ((num >= 0xd800 && num <= 0xdfff) || num > 0x10ffff) return '\ufffd';
  if (isInvalidCodePoint(num)) return '';
  return String.fromCodePoint(num);
}

function isInvalidCodePoint(n: number): boolean {
  return (n >= 0x1 && n <= 0x8) || n === 0xb || (n >= 0xe && n <= 0x1f) || n === 0x7f ||
    (n >= 0xfdd0 && n <= 0xfdef) || (n & 0xfffe) === 0xfffe;
}

const CHARREF = /&(#[0-9]+;?|#[xX][0-9a-fA-F]+;?|[^\t\n\f <&#;]{1,32};?)/gu;

function namedRef(name: string): string {
  const exact = ENTITIES.get(name);
  if (exact !== undefined) return exact;
  // Longest legacy prefix, as html.unescape does ("&notit;" -> "¬it;").
  for (let n = name.length - 1; n > 1; n--) {
    const hit = ENTITIES.get(name.slice(0, n));
    if (hit !== undefined) return hit + name.slice(n);
  }
  return `&${name}`;
}

/** Python's html.unescape (HTML5 rules), with the entity subset above. */
export function htmlUnescape(text: string): string {
  if (!text.includes('&')) return text;
  return text.replace(CHARREF, (_m, ref: string) => {
    if (ref[0] !== '#') return namedRef(ref);
    const hex = ref[1] === 'x' || ref[1] === 'X';
    const digits = ref.slice(hex ? 2 : 1).replace(/;$/, '');
    return charRef(parseInt(digits, hex ? 16 : 10));
  });
}

/** ftfy also decodes all-caps names of lowercase entities ("&EACUTE;" -> "É") when unambiguous. */
const FTFY_ENTITIES: Map<string, string> = (() => {
  const map = new Map<string, string>();
  for (const [name, char] of ENTITIES) {
    if (!name.endsWith(';')) continue;
    map.set(`&${name}`, char);
    const upper = `&${name.toUpperCase()}`;
    if (name === name.toLowerCase() && htmlUnescape(upper) === upper) map.set(upper, char.toUpperCase());
  }
  return map;
})();

/** ftfy's unescape_html: only complete `&...;` references, never a bare "&amp". */
function ftfyUnescape(text: string): string {
  return text.replace(/&#?[0-9A-Za-z]{1,24};/g, (ref) => {
    const named = FTFY_ENTITIES.get(ref);
    if (named !== undefined) return named;
    if (!ref.startsWith('&#')) return ref;
    const decoded = htmlUnescape(ref);
    return decoded.includes(';') ? ref : decoded;
  });
}

const LIGATURES: Record<string, string> = {
  '\u0132': 'IJ', '\u0133': 'ij', '\u0149': '\u02bcn', '\u01f1': 'DZ', '\u01f2': 'Dz', '\u01f3': 'dz',
  '\u01c4': 'D\u017d', '\u01c5': 'D\u017e', '\u01c6': 'd\u017e', '\u01c7': 'LJ', '\u01c8': 'Lj',
  '\u01c9': 'lj', '\u01ca': 'NJ', '\u01cb': 'Nj', '\u01cc': 'nj', '\ufb00': 'ff', '\ufb01': 'fi',
  '\ufb02': 'fl', '\ufb03': 'ffi', '\ufb04': 'ffl', '\ufb05': '\u017ft', '\ufb06': 'st',
};

/** One ftfy pass without fix_encoding, fixers in ftfy's order. */
function ftfyPass(text: string, unescape: boolean): string {
  let s = unescape ? ftfyUnescape(text) : text;
  s = s.replace(/[\x80-\x9f]/g, (c) => CP1252_C1[c.charCodeAt(0) - 0x80]);
  s = s.replace(/[\u0132\u0133\u0149\u01c4-\u01cc\u01f1-\u01f3\ufb00-\ufb06]/g, (c) => LIGATURES[c]);
  s = s.replace(/[\u3000\uff01-\uffef]/g, (c) => (c === '\u3000' ? ' ' : c.normalize('NFKC')));
  s = s.replace(/[\u02bc\u2018-\u201b]/g, "'").replace(/[\u201c-\u201f]/g, '"');
  s = s.replace(/\r\n?|[\u2028\u2029\x85]/g, '\n');
  s = s.replace(/[\ud800-\udfff]/gu, '\ufffd'); // with the u flag only lone surrogates match
  s = s.replace(/\x1b\[(?:\p{Nd}|;)*[a-zA-Z]/gu, '');
  s = s.replace(/[\x00-\x08\x0b\x0e-\x1f\x7f\u206a-\u206f\ufeff\ufff9-\ufffc]/g, '');
  return s.normalize('NFC');
}

/** Printable ASCII without '&' passes through every ftfy fixer unchanged. */
const FTFY_NOOP = /^[\t\n\x20-\x25\x27-\x7e]*$/;

/** ftfy repeats its fixers until the text stops changing. */
function fixLine(line: string, unescape: boolean): string {
  let fixed = line;
  for (let prev = ''; prev !== fixed; ) {
    prev = fixed;
    fixed = ftfyPass(fixed, unescape);
  }
  return fixed;
}

/** ftfy.fix_text emulation: line by line, each line fixed until stable. */
export function fixText(text: string): string {
  if (FTFY_NOOP.test(text)) return text;
  let unescape = true;
  const out: string[] = [];
  for (const line of text.split(/(?<=\n)/)) {
    if (line.includes('<')) unescape = false; // ftfy's "auto" switch stays off for later lines
    out.push(fixLine(line, unescape));
  }
  return out.join('');
}

/** basic_clean + whitespace_clean + lower(), as the reference's encode() does. */
export function cleanText(text: string): string {
  const basic = htmlUnescape(htmlUnescape(fixText(text))).replace(PY_STRIP, '');
  return basic.replace(WS_RUN, ' ').replace(PY_STRIP, '').toLowerCase();
}

// ---------------------------------------------------------------------------------------------
// Byte-level BPE

/**
 * The reference pattern, compiled case-insensitively there. On lowercased text that flag only
 * lets "'s" match "'ſ" (long s), and makes U+0345 (which folds to a Greek letter) match no
 * branch, so it is dropped; both are spelled out so no /i flag (whose folding differs) is needed.
 */
const PRETOKENIZE = new RegExp(
  `<\\|[sſ]tartoftext\\|>|<\\|endoftext\\|>|'[sſ]|'t|'re|'ve|'m|'ll|'d|\\p{L}+|\\p{N}|[^${WS}\\p{L}\\p{N}\\u0345]+`,
  'gu',
);

/** GPT-2's byte -> printable character table; entry order is the reference's vocabulary order. */
function byteTable(): Array<[number, string]> {
  const printable = (b: number) => (b >= 0x21 && b <= 0x7e) || (b >= 0xa1 && b <= 0xac) || b >= 0xae;
  const table: Array<[number, string]> = [];
  for (let b = 0; b < 256; b++) if (printable(b)) table.push([b, String.fromCharCode(b)]);
  let shifted = 256;
  for (let b = 0; b < 256; b++) if (!printable(b)) table.push([b, String.fromCharCode(shifted++)]);
  return table;
}

/** Merge the lowest-ranked adjacent pair everywhere, left to right, until no pair is ranked. */
function mergeWord(symbols: string[], ranks: Map<string, number>): string[] {
  let word = symbols;
  while (word.length > 1) {
    let best = Infinity;
    let at = -1;
    for (let i = 0; i + 1 < word.length; i++) {
      const rank = ranks.get(`${word[i]} ${word[i + 1]}`);
      if (rank !== undefined && rank < best) [best, at] = [rank, i];
    }
    if (at < 0) break;
    const [first, second] = [word[at], word[at + 1]];
    const merged: string[] = [];
    for (let i = 0; i < word.length; i++) {
      const pair = i + 1 < word.length && word[i] === first && word[i + 1] === second;
      merged.push(pair ? first + second : word[i]);
      if (pair) i++;
    }
    word = merged;
  }
  return word;
}

/** The vocabulary in the assets mirror (assets.ts: CONCEPTLENS_ASSETS, else ../shared/assets). */
export function defaultVocabPath(): string {
  return join(assetsDir() ?? resolve(process.cwd(), '..', 'shared', 'assets'), 'clip', VOCAB_FILE);
}

function readMerges(path: string): string[][] {
  if (!existsSync(path)) {
    throw fileError(path, `CLIP BPE vocabulary not found; set CONCEPTLENS_ASSETS to the assets folder (expected at $CONCEPTLENS_ASSETS/clip/${VOCAB_FILE})`);
  }
  let lines: string[];
  try {
    lines = gunzipSync(readFileSync(path)).toString('utf8').split('\n');
  } catch (e) {
    throw fileError(path, `cannot read a gzip file (${(e as Error).message})`, e);
  }
  // Line 0 is a version header; the reference keeps exactly MERGE_COUNT merges after it.
  const merges = lines.slice(1, MERGE_COUNT + 1).map((line) => line.trim().split(/\s+/));
  if (merges.length !== MERGE_COUNT || merges.some((m) => m.length !== 2)) {
    throw fileError(path, `not a CLIP BPE merges file (need ${MERGE_COUNT} "a b" lines after the header)`);
  }
  return merges;
}

/** OpenAI CLIP's byte-level BPE tokenizer (49,408 ids); create it with {@link ClipTokenizer.load}. */
export class ClipTokenizer {
  /** Token strings by id: 256 byte characters, the same with '</w>', the merges, then start and end tokens. */
  readonly vocab: readonly string[];
  /** Id of `<|startoftext|>`. */
  readonly startToken: number;
  /** Id of `<|endoftext|>`. */
  readonly endToken: number;
  private readonly encoder = new Map<string, number>();
  private readonly ranks = new Map<string, number>();
  private readonly byteChars: string[] = new Array(256);
  private readonly charBytes = new Map<string, number>();
  private readonly cache = new Map<string, number[]>();
  private readonly utf8 = new TextEncoder();

  private constructor(merges: string[][]) {
    const table = byteTable();
    for (const [byte, char] of table) {
      this.byteChars[byte] = char;
      this.charBytes.set(char, byte);
    }
    const chars = table.map(([, char]) => char);
    const vocab = [...chars, ...chars.map((c) => `${c}</w>`), ...merges.map((m) => m.join('')), START_TOKEN, END_TOKEN];
    vocab.forEach((token, id) => this.encoder.set(token, id));
    merges.forEach(([a, b], rank) => this.ranks.set(`${a} ${b}`, rank));
    this.vocab = vocab;
    this.startToken = this.encoder.get(START_TOKEN)!;
    this.endToken = this.encoder.get(END_TOKEN)!;
    this.resetCache();
  }

  /** Load from the gzipped merges file (default: see defaultVocabPath). */
  static load(path: string = defaultVocabPath()): ClipTokenizer {
    return new ClipTokenizer(readMerges(path));
  }

  /** Number of token ids (49,408 with the reference merges file). */
  get vocabSize(): number {
    return this.vocab.length;
  }

  /** Token ids of one text, without start/end tokens. */
  encode(text: string): number[] {
    if (typeof text !== 'string') throw argError('text', 'a string', text);
    const ids: number[] = [];
    for (const piece of cleanText(text).match(PRETOKENIZE) ?? []) ids.push(...this.bpe(this.toByteChars(piece)));
    return ids;
  }

  /**
   * clip.tokenize: row i = [start, ...encode(texts[i]), end, 0...] of `contextLength` ids.
   * Too long: with `truncate` keep the first contextLength ids and put the end token last,
   * otherwise throw. (The reference defaults to truncate=False; here the default is true.)
   */
  tokenize(texts: string | readonly string[], contextLength = CONTEXT_LENGTH, truncate = true): Int32Array {
    // Room for the start and end tokens at least: fewer would drop the start token or make no row.
    requireInteger(contextLength, 'contextLength', 2);
    if (typeof texts !== 'string' && !Array.isArray(texts)) throw argError('texts', 'a string or an array of strings', texts);
    const list = typeof texts === 'string' ? [texts] : texts;
    const out = new Int32Array(list.length * contextLength);
    list.forEach((text, row) => {
      const ids = [this.startToken, ...this.encode(text), this.endToken];
      if (ids.length > contextLength) {
        if (!truncate) {
          throw new ConceptLensError('ERR_ARG', `Input "${text}" is too long for context length ${contextLength} (${ids.length} tokens)`);
        }
        ids.length = contextLength;
        ids[contextLength - 1] = this.endToken;
      }
      out.set(ids, row * contextLength);
    });
    return out;
  }

  /** Ids back to text; '</w>' becomes a space, so words come out space-terminated. */
  decode(ids: Iterable<number>): string {
    const bytes: number[] = [];
    for (const id of ids) {
      const token = this.vocab[id];
      if (token === undefined) throw argError('token id', `an id in 0..${this.vocab.length - 1}`, id);
      for (const char of token) bytes.push(this.charBytes.get(char)!);
    }
    // ignoreBOM keeps a leading U+FEFF, as Python's utf-8 codec does; bad bytes become U+FFFD.
    return new TextDecoder('utf-8', { ignoreBOM: true }).decode(Uint8Array.from(bytes)).replaceAll('</w>', ' ');
  }

  /** UTF-8 bytes as table characters; printable ASCII maps to itself. */
  private toByteChars(piece: string): string {
    if (/^[\x21-\x7e]*$/.test(piece)) return piece;
    let out = '';
    for (const byte of this.utf8.encode(piece)) out += this.byteChars[byte];
    return out;
  }

  private bpe(token: string): number[] {
    const hit = this.cache.get(token);
    if (hit) return hit;
    const symbols = [...token];
    symbols[symbols.length - 1] += '</w>';
    const ids = mergeWord(symbols, this.ranks).map((s) => this.encoder.get(s)!);
    if (this.cache.size >= CACHE_LIMIT) this.resetCache();
    this.cache.set(token, ids);
    return ids;
  }

  /** Special tokens typed in the text map to their own ids, as in the reference's cache. */
  private resetCache(): void {
    this.cache.clear();
    this.cache.set(START_TOKEN, [this.startToken]);
    this.cache.set(END_TOKEN, [this.endToken]);
  }
}
