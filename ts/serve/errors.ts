// What the service answers when something goes wrong: one body shape,
// {"error": {"code", "message"}}, with the status a client can act on. Data
// errors keep the library's codes (ERR_SHAPE, ERR_NAN, ...) and get 400;
// the service adds a few codes of its own for what only a server meets
// (authentication, overload, body size, media type, routes).
import { ConceptLensError, toConceptLensError, type ErrorCode } from '../errors.js';

/** The codes only the service sets, beside the library's {@link ErrorCode}s. */
export const SERVE_ERROR_CODES = {
  /** 401: the route needs `Authorization: Bearer <token>` and none, or a wrong one, came. */
  ERR_AUTH: 'unauthorized',
  /** 503: a queue is at its bound or the process is under pressure; retry after `Retry-After` seconds. */
  ERR_OVERLOADED: 'overloaded',
  /** 413: the request body is larger than the route accepts. */
  ERR_TOO_LARGE: 'body too large',
  /** 415: the body's content type is not one the route reads. */
  ERR_MEDIA_TYPE: 'unsupported media type',
  /** 400: the body is not valid JSON. */
  ERR_JSON: 'malformed JSON',
  /** 404: no such route. */
  ERR_NOT_FOUND: 'not found',
  /** 501: the route needs something the server was not started with (a model, a SpLiCE vocabulary). */
  ERR_NOT_CONFIGURED: 'not configured',
} as const;

/** A code of the service's error bodies: the library's or the service's own. */
export type ServeErrorCode = ErrorCode | keyof typeof SERVE_ERROR_CODES;

/** The JSON body of every error answer. */
export interface ErrorBody {
  error: { code: ServeErrorCode; message: string };
}

/** An error that knows its HTTP status and headers. */
export class HttpError extends Error {
  constructor(readonly status: number, readonly code: ServeErrorCode, message: string, readonly headers: Record<string, string> = {}) {
    super(message);
    this.name = 'HttpError';
  }
}

/** 503 with Retry-After (whole seconds, at least 1). */
export function overloaded(message: string, retryAfterSeconds: number): HttpError {
  return new HttpError(503, 'ERR_OVERLOADED', message, { 'retry-after': String(Math.max(1, Math.ceil(retryAfterSeconds))) });
}

/** Library codes a client caused, answered 400; ERR_FILE here is an uploaded image that does not decode. */
const CLIENT_CODES: ReadonlySet<ErrorCode> = new Set(['ERR_ARG', 'ERR_SHAPE', 'ERR_DTYPE', 'ERR_NAN', 'ERR_FILE']);

/** Fastify's own errors, by code, as the service's: status, code, and the field the message is about. */
const FASTIFY_CODES: Record<string, [number, ServeErrorCode, string]> = {
  FST_ERR_CTP_BODY_TOO_LARGE: [413, 'ERR_TOO_LARGE', 'body'],
  FST_ERR_CTP_INVALID_MEDIA_TYPE: [415, 'ERR_MEDIA_TYPE', 'content-type'],
  FST_ERR_CTP_INVALID_JSON_BODY: [400, 'ERR_JSON', 'body'],
  FST_ERR_CTP_EMPTY_JSON_BODY: [400, 'ERR_JSON', 'body'],
  FST_UNDER_PRESSURE: [503, 'ERR_OVERLOADED', 'server'],
};

/** One failed check of a JSON Schema (an Ajv error). */
export interface SchemaIssue {
  instancePath: string;
  message?: string;
  params: Record<string, unknown>;
}

/** An Ajv path ('/queries/0/3') as the field a client wrote ('queries[0][3]'); '' for the value itself. */
function fieldName(path: string): string {
  const parts = path.split('/').slice(1).map((p) => p.replace(/~1/g, '/').replace(/~0/g, '~'));
  return parts.reduce((s, p) => (/^\d+$/.test(p) ? `${s}[${p}]` : s ? `${s}.${p}` : p), '');
}

/** A failed check as the field it is about and what is wrong, with the detail Ajv keeps in params (the property, the allowed values). */
export function describeIssue(issue: SchemaIssue): { field: string; text: string } {
  const p = issue.params;
  const field = fieldName(issue.instancePath + (typeof p.missingProperty === 'string' ? `/${p.missingProperty}` : ''));
  const detail = typeof p.additionalProperty === 'string' ? ` ('${p.additionalProperty}')`
    : Array.isArray(p.allowedValues) ? ` (${p.allowedValues.join(', ')})` : '';
  return { field, text: `${issue.message ?? 'is invalid'}${detail}` };
}

/** Any error thrown on the way to an answer, as the status, code and message the client gets. */
export function toHttpError(e: unknown): HttpError {
  if (e instanceof HttpError) return e;
  const f = e as { code?: string; validation?: SchemaIssue[]; validationContext?: string; statusCode?: number; message?: string };
  if (f.validation?.length) {
    const { field, text } = describeIssue(f.validation[0]);
    return new HttpError(400, 'ERR_ARG', `${field || (f.validationContext ?? 'body')}: ${text}`);
  }
  const known = f.code === undefined ? undefined : FASTIFY_CODES[f.code];
  if (known) return new HttpError(known[0], known[1], `${known[2]}: ${f.message ?? SERVE_ERROR_CODES[known[1] as keyof typeof SERVE_ERROR_CODES]}`);
  if (e instanceof ConceptLensError || !f.statusCode) return fromLibrary(toConceptLensError(e));
  return new HttpError(f.statusCode, f.statusCode < 500 ? 'ERR_ARG' : 'ERR_ENGINE', f.message ?? 'request failed');
}

function fromLibrary(e: ConceptLensError): HttpError {
  if (CLIENT_CODES.has(e.code)) return new HttpError(400, e.code, e.message);
  // The client went away (nginx's 499): nobody reads this answer, it only counts.
  if (e.code === 'ERR_ABORTED') return new HttpError(499, e.code, 'client closed the request');
  if (e.code === 'ERR_BUSY' || e.code === 'ERR_MEMORY') return overloaded(e.message, 1);
  return new HttpError(500, e.code, e.message);
}

/** The body every error answer carries. */
export function errorBody(e: HttpError): ErrorBody {
  return { error: { code: e.code, message: e.message } };
}
