// JSON Schema validation for the service: request parts (through Fastify's
// validator compiler) and configuration. Bodies are checked without type
// coercion: Fastify's default Ajv turns a null in an embedding into 0 (and
// "3" into 3), which would answer a NaN-bearing query instead of naming it.
// Query strings and headers arrive as text, so they are coerced.
import { Ajv, type AnySchema, type ErrorObject, type ValidateFunction } from 'ajv';
import type { FastifySchemaCompiler } from 'fastify';
import { ConceptLensError } from '../errors.js';
import { describeIssue } from './errors.js';

const strict = new Ajv({ coerceTypes: false, useDefaults: true, allErrors: false });
const coercing = new Ajv({ coerceTypes: 'array', useDefaults: true, allErrors: false });

/** A body schema that stands for raw bytes (OpenAPI's binary string): the handler reads the Buffer. */
export const BINARY = { type: 'string', format: 'binary' } as const;

/** Fastify's validator compiler for the service's routes (see the module notes). */
export const validatorCompiler: FastifySchemaCompiler<AnySchema> = ({ schema, httpPart }) => {
  if (httpPart === 'body' && (schema as { format?: string }).format === BINARY.format) return () => true;
  return (httpPart === 'body' ? strict : coercing).compile(schema);
};

const compiled = new WeakMap<object, ValidateFunction>();

/**
 * Checks a value against a schema (no coercion; defaults filled in); ERR_ARG naming the first bad field under
 * `name` ('batching' gives 'batching.maxBatch: must be >= 1'; a file, with `join` ': ', 'serve.json: port: ...').
 */
export function validate<T>(schema: AnySchema & object, value: unknown, name: string, join = '.'): T {
  const check = compiled.get(schema) ?? strict.compile(schema);
  compiled.set(schema, check);
  if (check(value)) return value as T;
  const { field, text } = describeIssue((check.errors as ErrorObject[])[0]);
  throw new ConceptLensError('ERR_ARG', `${field ? `${name}${join}${field}` : name}: ${text}`);
}
