/**
 * conceptlens: explain what vision representations encode, in human concepts.
 *
 * One facade over four published methods on one native engine:
 * SpLiCE ({@link SpliceModel}), FALCON ({@link runFalcon}), Discover-then-Name
 * ({@link trainSae}, {@link trainProbe}) and Linear Explanations
 * ({@link explainNeurons}), with the retrieval they stand on
 * ({@link Vocabulary}, {@link exactSearch}, {@link buildIndex}) and the
 * encoders that feed them ({@link ImageEncoder}, {@link ClipTokenizer}).
 *
 * **Errors.** Every call throws or rejects with a {@link ConceptLensError}:
 * branch on its `code` (`ERR_SHAPE`, `ERR_DTYPE`, `ERR_NAN`, `ERR_FILE`,
 * `ERR_ABORTED`, …); the message names the argument or file, what was
 * expected and what was found.
 *
 * **Long calls.** Every long call returns a Promise, takes `onProgress`
 * (done, total; at most about ten calls a second) and an `AbortSignal`
 * (`signal`), and runs off the JS thread: native work on the libuv pool,
 * ONNX sessions and HNSW indexes in worker threads. Inputs are TypedArrays
 * read in place (do not change them while a call runs); outputs are new
 * JS-owned arrays.
 *
 * **Threading.** The engine has one compute pool of {@link engineInfo}
 * `computeThreads` threads (one per core; {@link setComputeThreads} changes
 * it). Calls may be issued concurrently (up to libuv's pool, 4 by default);
 * they share the pool's cores instead of each taking all of them: a parallel
 * step of one call runs while the others wait for cores, so several calls
 * interleave step by step and the process never runs more compute threads
 * than cores. OpenBLAS runs single-threaded inside the pool and is widened to
 * every core only for whole-matrix products and FAISS calls, which take all
 * of the pool's cores while they run. A second call on an object that is
 * still busy (an {@link ExactTopK} add, an SAE step) is refused with
 * `ERR_BUSY`: await the first. A service that must keep its event loop
 * answering while the engine is saturated lowers the compute threads'
 * priority with {@link setComputeNice} (`conceptlens serve` does).
 *
 * @packageDocumentation
 */

// ---- errors, engine, common types
export { ConceptLensError, ERROR_CODES, type ErrorCode } from './errors.js';
export type { ProgressOptions } from './abort.js';
export { engineInfo, measurePeaks, setComputeNice, setComputeThreads } from './engine/info.js';
export type { EngineInfo, MachinePeaks, ScanKernel, Device } from './engine/addon.js';
export { normaliseRows, toFloat32, rowsOf, type Mat, type FloatData, type FloatRows, type NormaliseOptions } from './matrix.js';

// ---- arrays on disk
export {
  readNpy, readNpyHeader, readNpyRows, writeNpy, npyBytes, type NdArray, type NpyHeader, type DType, type TypedArray,
} from './io/npy.js';
export { readMatrix, readFloatMatrix, readVector, readLabels, type MatrixReadOptions, type FloatDType } from './io/matrix.js';
export { halvesToFloats, floatsToHalves } from './engine/fp16.js';
export { halfToFloat } from './io/fp16.js';
export { readLines, readNames } from './io/text.js';

// ---- assets
export { assetsDir, assetPath } from './assets.js';
export {
  REGISTRY as ASSETS, findAsset, locateAsset, verifyAsset, pullAsset, cacheDir, type AssetEntry, type PullOptions, type Located, type Verified,
} from './assets-registry.js';

// ---- retrieval
export { Vocabulary, type OpenOptions, type VocabSearchOptions, type VocabSearchResult } from './retrieval/vocabulary.js';
export type { Texts } from './retrieval/texts.js';
export type { VocabContent } from './retrieval/vocab-store.js';
export type { Shard, Transforms } from './retrieval/vocab-blocks.js';
export { ExactTopK, exactSearch, PreparedRows, type PreparedArrays, type TopKOptions, type SearchResult, type ScoreArithmetic, type Metric } from './retrieval/exact.js';
export {
  buildIndex, loadIndex, recallAtK, defaultNlist, defaultPqM, INDEX_KINDS,
  type AnnIndex, type AnnMetric, type IndexKind, type BuildOptions, type SearchOptions as AnnSearchOptions,
} from './retrieval/ann.js';

// ---- SpLiCE
export {
  SpliceModel, solveSplice, splicePath, buildDictionary, centreEmbeddings, recompose, quality, readVocabulary, SPLICE_SOLVERS,
  type SolveOptions, type Decomposition, type PathResult, type PathPoint, type Encoded, type ConceptWeight, type Quality,
  type SpliceSolverName,
} from './methods/splice.js';
export { spliceImages, type SpliceImagesOptions, type SpliceImagesResult } from './methods/splice-images.js';

// ---- FALCON
export {
  computeFiring, groupImages, groupMembers, parseGroupKey, groupKey, readRepresentations, DEFAULT_SIGMAS, DEFAULT_MORE_THAN,
  type Representations, type Firing, type Groups,
} from './methods/falcon/groups.js';
export { groupCams, cropResize, globalAveragePool, type LayerMaps, type RgbImage, type Box, type CamOptions, type GroupCams } from './methods/falcon/cam.js';
export { openCaptions, topCaptions, type CaptionOptions } from './methods/falcon/captions.js';
export {
  contrastConcepts, extractTerms, scoreTerms, cleanCaption, type Scored, type ImageCaptions, type Concepts, type ConceptOptions, type Terms,
} from './methods/falcon/concepts.js';
export {
  interpretabilityScore, lowlyActivating, failureFeatures, INTERPRETABLE_ABOVE, type LowlyOptions, type Lowly,
} from './methods/falcon/scores.js';
export {
  runFalcon, describeGroup, pooledLayerModel, type RunInputs, type RunOptions, type RunSources, type TargetModel, type ProbeImages,
  type ImageEncoder as FalconImageEncoder, type DescribeInputs,
} from './methods/falcon/pipeline.js';
export { reportHtml, conceptsCsv, type GroupExplanation, type ReportImages } from './methods/falcon/report.js';
export { folderImages, onnxTargetModel, onnxImageEncoder, openRunInputs } from './methods/falcon/adapters.js';
export { writeSyntheticLaion, syntheticCaption, type SyntheticOptions } from './methods/falcon/synthetic.js';

// ---- Discover-then-Name
export {
  trainSae, createTrainer, loadTrainer, nameConcepts, conceptStrengths, readAtoms, trainerBytes,
  type SaeConfig, type SaeStats, type SaeKind, type TrainOptions, type TrainMeta, type TrainProgress, type ConceptName, type RunSettings,
} from './methods/sae.js';
export { SaeEngine as SaeTrainer } from './engine/sae.js';
export {
  toSparse, trainProbe, accuracy, coverage, contributions, globalExplanations, predict, weightSparsity,
  type SparseRows, type Probe, type ProbeOptions, type Contribution,
} from './methods/cbm.js';

// ---- Linear Explanations
export * from './methods/le/index.js';

export * from './atlas/index.js'; // the atlas of a layer (runAtlas), SpLiCE shift and spurious-correlation analyses

// ---- encoders and images
export {
  OnnxModel, ImageEncoder, TextEncoder, withTapOutputs, tensorNames, poolActivations, IMAGE_INPUTS, TEXT_INPUTS,
  type EncoderOptions, type Embeddings, type Pool, type Layout, type RawTensor, type ValueInfo, type RunOptions as OnnxRunOptions,
} from './encoders/onnx.js';
export type { TensorData } from './encoders/onnx-protocol.js';
export { ClipTokenizer, CONTEXT_LENGTH } from './encoders/clip-tokenizer.js';
export { openImageTower, StandinImageTower, STANDIN_LABEL, zeroShotLvis, type ImageTower, type ConceptMap, type ZeroShotResult } from './encoders/standin.js';
export { embedImages, listFiles, classKeys, labelIds, type EmbedImagesOptions, type EmbedImagesResult, type LabelSource } from './encoders/embed-images.js';
export {
  preprocessSpec, preprocessPixels, preprocessImage, preprocessBatch, imageGrid, PRESETS, CLIP_MEAN, CLIP_STD, IMAGENET_MEAN, IMAGENET_STD,
  type PreprocessSpec, type ImageBatch, type SkippedImage, type BatchOptions, type CropBox, type GridOptions, type ImageInput,
  type ResizeKernel, type Rgb,
} from './images/preprocess.js';

export * from './serve/index.js'; // the HTTP service: createServer, the Fastify plugin conceptlensPlugin, their options

// ---- sharded jobs on BullMQ + Redis (`conceptlens worker`, `--queue`)
export * from './distributed/index.js';
