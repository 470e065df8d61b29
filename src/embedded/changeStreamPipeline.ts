/**
 * A change stream's own pipeline, compiled once when the stream opens: a stream runs it over every
 * change in its scope, often many per command. $match stages go through the query compiler and
 * $project stages of plain inclusions or exclusions are applied directly, neither copying the event;
 * from the first stage that needs more (an expression, $addFields, $redact...) on, the rest of the
 * pipeline runs through the general aggregation engine on a copy of the events, as it always did.
 */
import type { Document } from 'bson';
import { deepClone, isPlainObject } from './bsonOrder.js';
import { compileFilter, runPipeline } from './mql.js';
import { compileProjection } from './projection.js';

/** The events a pipeline makes of one event (none when a $match rejects it). */
export type EventPipeline = (event: Document) => Document[];

type Step = { match: (doc: Document) => boolean } | { project: (doc: Document) => Document };

export function compileEventPipeline(pipeline: Document[]): EventPipeline {
  const steps: Step[] = [];
  let i = 0;
  for (; i < pipeline.length; i++) {
    const step = nativeStep(pipeline[i] as Document);
    if (!step) break;
    steps.push(step);
  }
  const rest = pipeline.slice(i);
  return (event) => {
    let doc = event;
    for (const step of steps) {
      if ('match' in step) {
        if (!step.match(doc)) return [];
      } else doc = step.project(doc);
    }
    // The general engine may change the documents it is given: the event's own stay untouched.
    return rest.length === 0 ? [doc] : runPipeline(deepClone([doc]), rest);
  };
}

function nativeStep(stage: Document): Step | undefined {
  if ('$match' in stage) {
    const filter = stage.$match as unknown;
    // A malformed $match is left to the general engine, which reports it as it always has.
    if (!isPlainObject(filter)) return undefined;
    return { match: compileFilter(filter).test };
  }
  if ('$project' in stage) {
    const spec = stage.$project as unknown;
    if (!isPlainObject(spec) || Object.keys(spec).length === 0 || pathsCollide(Object.keys(spec)))
      return undefined;
    const project = compileProjection(spec);
    return project ? { project } : undefined;
  }
  return undefined;
}

/** One path a prefix of another ({a: 1, 'a.b': 1}): MongoDB refuses it, so the general engine decides. */
function pathsCollide(paths: string[]): boolean {
  return paths.some((p) => paths.some((q) => q !== p && q.startsWith(`${p}.`)));
}
