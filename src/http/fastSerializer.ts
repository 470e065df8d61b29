/**
 * Response serialization for the busiest routes (a job, an enqueue's result): fast-json-stringify,
 * compiled once per schema from the JSON Schema that zod makes of the same zod schema the OpenAPI
 * document shows. zod's check-then-JSON.stringify cost about four times as much per job.
 *
 * What is written is the schema's shape by construction: only the schema's properties, each in its
 * declared type (a Date as an ISO string, as JSON.stringify writes it), and a missing required property
 * fails the request (500) as zod's check did. What it no longer does is refuse a value of the wrong type
 * (it writes the declared type instead); the store writes jobs through typed code, and the test that
 * compares both serializers over every kind of job keeps the two in step.
 *
 * A schema that transforms on the way out (a pipe, a codec, a transform) keeps zod's serializer: the
 * JSON Schema would describe one side only.
 */
import fastJson from 'fast-json-stringify';
import type { FastifySchema } from 'fastify';
import type { FastifyRouteSchemaDef } from 'fastify/types/schema.js';
import { serializerCompiler as zodSerializerCompiler } from 'fastify-type-provider-zod';
import { z } from 'zod';

type Json = { [k: string]: unknown };

/** zod types a JSON Schema cannot describe for serialization; their schemas keep zod's serializer. */
const TRANSFORMING = new Set(['pipe', 'transform', 'lazy', 'custom', 'promise', 'function']);

/** Whether any part of a zod schema transforms its value (or cannot be walked). */
function transforms(schema: z.ZodType, seen = new Set<unknown>()): boolean {
  if (seen.has(schema)) return false;
  seen.add(schema);
  const def = (schema as unknown as { _zod: { def: Record<string, unknown> & { type: string } } })._zod.def;
  if (TRANSFORMING.has(def.type)) return true;
  const children: unknown[] = [];
  for (const key of ['innerType', 'element', 'keyType', 'valueType', 'in', 'out', 'left', 'right']) {
    if (def[key]) children.push(def[key]);
  }
  if (def.shape) children.push(...Object.values(def.shape as Record<string, unknown>));
  if (Array.isArray(def.options)) children.push(...(def.options as unknown[]));
  if (Array.isArray(def.items)) children.push(...(def.items as unknown[]));
  return children.some((c) => transforms(c as z.ZodType, seen));
}

/**
 * `anyOf: [X, {type: null}]` (zod's nullable) as `type: [X's type, 'null']`: fast-json-stringify
 * writes that with one null check, where anyOf picks its branch by validating the value.
 */
function simplifyNullable(node: unknown): unknown {
  if (Array.isArray(node)) return node.map(simplifyNullable);
  if (!node || typeof node !== 'object') return node;
  const out: Json = {};
  for (const [k, v] of Object.entries(node)) out[k] = simplifyNullable(v);
  const anyOf = out.anyOf;
  if (Array.isArray(anyOf) && anyOf.length === 2) {
    const i = anyOf.findIndex((b: Json) => b.type === 'null' && Object.keys(b).length === 1);
    const other = anyOf[1 - i] as Json | undefined;
    if (i >= 0 && other && typeof other.type === 'string') {
      delete out.anyOf;
      Object.assign(out, other, { type: [other.type, 'null'] });
    }
  }
  return out;
}

/** The JSON Schema fast-json-stringify compiles: dates are ISO strings, as JSON.stringify writes them. */
export function serializationSchema(schema: z.ZodType): Json {
  const json = z.toJSONSchema(schema, {
    io: 'output',
    target: 'draft-7',
    unrepresentable: 'any',
    override: (ctx) => {
      if ((ctx.zodSchema as unknown as { _zod: { def: { type: string } } })._zod.def.type === 'date') {
        ctx.jsonSchema.type = 'string';
        ctx.jsonSchema.format = 'date-time';
      }
    },
  });
  delete json.$schema;
  return simplifyNullable(json) as Json;
}

const compiled = new WeakMap<object, (data: unknown) => string>();

/** A route's serializerCompiler: fast-json-stringify where the schema allows it, else zod's. */
export function fastSerializerCompiler<T = FastifySchema>(
  route: FastifyRouteSchemaDef<T>,
): (data: unknown) => string {
  const schema: unknown = route.schema;
  if (!(schema instanceof z.ZodType) || transforms(schema))
    return zodSerializerCompiler(route as unknown as Parameters<typeof zodSerializerCompiler>[0]);
  let fn = compiled.get(schema);
  if (!fn) {
    fn = fastJson(serializationSchema(schema) as unknown as Parameters<typeof fastJson>[0]) as (
      data: unknown,
    ) => string;
    compiled.set(schema, fn);
  }
  return fn;
}
