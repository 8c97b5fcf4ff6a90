// FALCON in the atlas: the library's resumable run over the probe images,
// with the layer's pooled features already computed (FALCON's first stage
// reads them: same layer, preprocessing and pooling), crops embedded by the
// same text-aligned tower as everything else, and the vocabulary's concept
// names as the caption set.
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { writeNpy } from '../io/npy.js';
import { readJson } from '../io/text.js';
import { openCaptions } from '../methods/falcon/captions.js';
import { runFalcon, type ProbeImages, type TargetModel } from '../methods/falcon/pipeline.js';
import type { GroupExplanation } from '../methods/falcon/report.js';
import { writeJson } from './cache.js';
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

/** Runs (or resumes) FALCON into `dir`; the explained groups go to explained.json. */
export async function computeFalcon(dir: string, images: ProbeImages, f: Features, target: TargetModel, vocab: ConceptVocab,
  o: FalconSettings & TowerChoice & { onStage: (stage: string, done: number, total: number) => void; signal?: AbortSignal }): Promise<void> {
  const reps = join(dir, 'representations.npy');
  if (!existsSync(reps)) writeNpy(reps, f.acts.data, [f.acts.rows, f.acts.cols]);
  const { encoder, tower } = await falconEncoder(o);
  try {
    const captions = await openCaptions(vocab.path, vocab.names.map(readable));
    const groups = await runFalcon({ images, model: target, encoder, vocab: captions }, dir, {
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
