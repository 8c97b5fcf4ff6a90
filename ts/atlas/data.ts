// Everything the atlas's pages and figures are drawn from, gathered once.
import type { GroupExplanation } from '../methods/falcon/report.js';
import type { ClassAssociation } from '../methods/splice-compare.js';
import type { DncbmResult } from './dncbm.js';
import type { Features } from './features.js';
import type { LeResult } from './le.js';
import type { ProbeSet } from './probe.js';
import type { SpliceResult } from './splice.js';
import type { UnitView } from './units.js';
import type { ConceptVocab } from './vocab.js';

/** The stages' outputs for one layer (absent: the stage did not apply; `notes` says why). */
export interface AtlasData {
  model: string;
  layer: string;
  probe: ProbeSet;
  features: Features;
  vocab: ConceptVocab;
  /** The text-aligned space by name, "STAND-IN CLIP space" when it is the stand-in. */
  space: string;
  le: { label?: LeResult; clip?: LeResult };
  splice?: SpliceResult;
  /** SpLiCE concepts most associated with each class beyond its own (spurious-correlation candidates). */
  associations: ClassAssociation[];
  dncbm?: DncbmResult;
  /** FALCON's explained groups (none when the layer has no spatial map). */
  falcon?: GroupExplanation[];
  views: UnitView[];
  /** Classes with at least this many images get per-class figures and the probe. */
  minClassImages: number;
  /** What did not run and why, shown on the index page. */
  notes: string[];
}
