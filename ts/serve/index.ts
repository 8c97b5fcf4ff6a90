// The service's public face, re-exported by the package facade (ts/index.ts).
export { createServer, type CreateServerOptions, type ConceptLensServer } from './server.js';
export { conceptlensPlugin, type ConceptLensPluginOptions } from './plugin.js';
export type {
  ServiceOptions, ServerOptions, VocabularyConfig, SpliceConfig, SpliceFiles, ImageModelConfig, ImageBatching, BatchingOptions, LimitsOptions,
} from './config.js';
export { SERVE_ERROR_CODES, type ServeErrorCode, type ErrorBody } from './errors.js';
