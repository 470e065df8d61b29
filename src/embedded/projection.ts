/**
 * find/findAndModify projections of plain inclusions and exclusions, applied directly: fields
 * keep the document's order, dotted paths reach into embedded documents and arrays of them,
 * and values keep their BSON types. Anything else (expressions, $elemMatch, positional `$`,
 * $slice) returns undefined from compileProjection and goes to the general engine.
 */
import type { Document } from 'bson';
import { isPlainObject, numericValue, typeRank, Rank } from './bsonOrder.js';

interface Tree {
  [field: string]: Tree | true;
}

export type Projector = (doc: Document) => Document;

export function compileProjection(projection: Document): Projector | undefined {
  let mode: 'include' | 'exclude' | undefined;
  let includeId = true;
  const tree: Tree = {};
  for (const [path, v] of Object.entries(projection)) {
    if (path.startsWith('$') || path.includes('.$') || path.endsWith('$')) return undefined;
    let on: boolean;
    if (v === true || v === false) on = v;
    else if (typeof v === 'number') on = v !== 0;
    else if (typeRank(v) === Rank.Number && !isPlainObject(v)) on = Number(numericValue(v)) !== 0;
    else return undefined;
    if (path === '_id') {
      includeId = on;
      continue;
    }
    const m = on ? 'include' : 'exclude';
    if (mode && mode !== m) return undefined; // the general engine reports the mix as MongoDB does
    mode = m;
    if (!addPath(tree, path.split('.'))) return undefined;
  }
  if (mode === 'exclude' || (mode === undefined && !includeId)) {
    if (!includeId) tree._id = true;
    return (doc) => exclude(doc, tree);
  }
  return (doc) => {
    const out: Document = {};
    if (includeId && doc._id !== undefined) out._id = doc._id;
    include(doc, tree, out);
    return out;
  };
}

function addPath(tree: Tree, parts: string[]): boolean {
  let node = tree;
  for (let i = 0; i < parts.length; i++) {
    const p = parts[i] as string;
    if (p === '') return false;
    if (i === parts.length - 1) {
      node[p] = true;
      return true;
    }
    const next = node[p];
    if (next === true) return true; // a parent path already covers this one
    if (next === undefined) node[p] = {};
    node = node[p] as Tree;
  }
  return true;
}

function include(doc: Document, tree: Tree, out: Document): void {
  for (const k of Object.keys(doc)) {
    if (k === '_id' && out._id !== undefined) continue;
    const spec = tree[k];
    if (spec === undefined) continue;
    const v = doc[k] as unknown;
    if (spec === true) out[k] = v;
    else if (isPlainObject(v)) {
      const sub: Document = {};
      include(v, spec, sub);
      out[k] = sub;
    } else if (Array.isArray(v)) out[k] = includeArray(v, spec);
  }
}

function includeArray(arr: unknown[], spec: Tree): unknown[] {
  const out: unknown[] = [];
  for (const x of arr) {
    if (isPlainObject(x)) {
      const sub: Document = {};
      include(x, spec, sub);
      out.push(sub);
    } else if (Array.isArray(x)) out.push(includeArray(x, spec));
  }
  return out;
}

function exclude(doc: Document, tree: Tree): Document {
  const out: Document = {};
  for (const k of Object.keys(doc)) {
    const spec = tree[k];
    const v = doc[k] as unknown;
    if (spec === true) continue;
    if (spec === undefined) out[k] = v;
    else if (isPlainObject(v)) out[k] = exclude(v, spec);
    else if (Array.isArray(v)) out[k] = excludeArray(v, spec);
    else out[k] = v;
  }
  return out;
}

function excludeArray(arr: unknown[], spec: Tree): unknown[] {
  return arr.map((x) => (isPlainObject(x) ? exclude(x, spec) : Array.isArray(x) ? excludeArray(x, spec) : x));
}
