/**
 * A covered [$project] $group: when a pipeline's leading $match is planned on an index whose bounds
 * select exactly its matches, and every field the native $project/$group reads is in that index's
 * key, the groups are computed from the index keys alone and the documents are not fetched, as
 * MongoDB covers a query ("Covered Query" in its manual: all the fields the query needs are in the
 * index, and none of them multikey). A key stands for the document's values only where it certainly
 * holds them: an entry with a null (the index also holds null for a missing field), a 0 (-0 is
 * indexed as 0) or a type outside the encoded ones is read from its document instead. Dates come
 * from the key as milliseconds (no Date built per entry); the native group makes a Date of one only
 * where an expression needs more than its time (see nativeGroup's Feed).
 */
import type { Document } from 'bson';
import type { Collection } from './collection.js';
import { compileFilter } from './mql.js';
import { compileNativeGroup } from './nativeGroup.js';
import { planQuery } from './planner.js';

/** The groups and how many stages they consumed, or undefined when the pipeline is not covered. */
export function runCoveredGroup(
  coll: Collection,
  filter: Document,
  stages: Document[],
  variables: Document | undefined,
  hint: unknown,
): { docs: Document[]; consumed: number } | undefined {
  const native = compileNativeGroup(stages);
  if (!native || native.nested) return undefined;
  // The same checks (and errors) for the filter as the planned query it replaces.
  compileFilter(filter, variables);
  const plan = planQuery(coll, filter, [], hint, false);
  const eachSpan = plan.eachSpan;
  if (!plan.exact || !eachSpan || !plan.index) return undefined;
  const read = plan.index.coveredReader(native.fields);
  if (!read) return undefined;
  const names = native.fields;
  const noDoc: Document = {};
  const out = native.run((row) => {
    const fields: unknown[] = new Array(names.length);
    eachSpan((keys, ids, from, to) => {
      for (let e = from; e < to; e++) {
        const dates = read(keys[e], fields);
        if (dates >= 0) {
          row(noDoc, fields, dates);
          continue;
        }
        const doc = coll.docs.get(ids[e]!);
        if (!doc) continue;
        for (let i = 0; i < names.length; i++) fields[i] = doc[names[i]!];
        row(doc, fields);
      }
    });
  });
  return out ? { docs: out, consumed: native.consumed } : undefined;
}
