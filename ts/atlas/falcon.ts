// FALCON in the atlas: the library's resumable run over the probe images,
// with the layer's pooled features already computed (FALCON's first stage
// stores them: same layer, preprocessing and pooling), crops embedded by the
// same text-aligned tower as everything else, and the vocabulary's concept
// names as the caption set.
import { join } from 'node:path';
import { readJson } from '../io/text.js';
import { openCaptions } from '../methods/falcon/captions.js';
import { runFalcon, type ProbeImages, type TargetModel } from '../methods/falcon/pipeline.js';
import type { GroupExplanation } from '../methods/falcon/report.js';
import { writeJson } from '../io/stages.js';
import { falconEncoder, type Features, type TowerChoice } from './features.js';
import { readable, type ConceptVocab } from './vocab.js';

/** FALCON settings of the atlas. */
export interface FalconSettings {
  /** Keep groups shared by more than this many images. */
  moreThan: number;
  /** Explain at most this many groups, largest first. */
  maxGroups: number;
  /** Name every group, whatever its interpretability. */
  explainAll: boolean;
}

/** The atlas stages FALCON's inputs come from: their keys stand for the inputs in FALCON's own stage keys. */
export interface FalconSources {
  /** The features stage's key: the probe images, the model, the layer and the text-aligned tower. */
  features: string;
  /** The vocabulary's identity. */
  vocab: unknown;
}

/** Runs (or resumes) FALCON into `dir`, its first stage the layer's pooled features; the explained groups go to explained.json. */
export async function computeFalcon(dir: string, images: ProbeImages, f: Features, target: TargetModel, vocab: ConceptVocab, from: FalconSources,
  o: FalconSettings & TowerChoice & { onStage: (stage: string, done: number, total: number) => void; signal?: AbortSignal }): Promise<void> {
  const { encoder, tower } = await falconEncoder(o);
  try {
    const captions = await openCaptions(vocab.path, vocab.names.map(readable));
    const sources = { images: from.features, model: from.features, encoder: from.features, vocab: from.vocab };
    const groups = await runFalcon({ images, model: target, encoder, vocab: captions, sources, representations: f.acts.data }, dir, {
      batch: 16, moreThan: o.moreThan, maxGroups: o.maxGroups, explainAll: o.explainAll, signal: o.signal, onStage: o.onStage,
    });
    writeJson(join(dir, 'explained.json'), groups);
  } finally {
    await tower.close();
  }
}

/** The groups written by {@link computeFalcon}. */
export function loadFalcon(dir: string): GroupExplanation[] {
  return readJson<GroupExplanation[]>(join(dir, 'explained.json'));
}
