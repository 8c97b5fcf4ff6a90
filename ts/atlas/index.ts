// The atlas's public surface: one call that explains a layer with every
// method as a site, and the SpLiCE analyses it reports (shift between image
// sets, spurious correlations per class), usable on their own.
export { runAtlas, type AtlasOptions, type AtlasResult } from './run.js';
export type { StageProgress as AtlasProgress, StageRecord } from '../io/stages.js';
export type { AtlasLabels } from './probe.js';
export type { UnitSelection } from './units.js';
export type { SaeSettings } from './dncbm.js';
export type { FalconSettings } from './falcon.js';
export {
  compareWeights, classAssociations, plainName,
  type WeightRows, type BootstrapOptions, type Interval, type ConceptShift, type Comparison, type ClassAssociation,
} from '../methods/splice-compare.js';
