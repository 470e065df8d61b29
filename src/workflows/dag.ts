/** Pure DAG logic for workflows: validation (unique keys, known dependencies, no cycle) and layering. */
import { ValidationError } from '../errors.js';

export interface DagNode {
  key: string;
  dependsOn: readonly string[];
}

/**
 * Refuse a graph that cannot run: a missing or repeated key, a dependency on an unknown key or on the
 * job itself, or a cycle (named by its keys in order). `where` prefixes messages (e.g. "jobs[3]").
 */
export function validateDag(nodes: readonly DagNode[], label = 'jobs'): void {
  const index = new Map<string, number>();
  nodes.forEach((n, i) => {
    if (typeof n.key !== 'string' || n.key === '') {
      throw new ValidationError(
        `${label}[${i}].key must be a non-empty string; got ${JSON.stringify(n.key)}`,
      );
    }
    if (index.has(n.key)) {
      throw new ValidationError(
        `${label}[${i}].key ${JSON.stringify(n.key)} is used twice (also ${label}[${index.get(n.key)}]); keys must be unique`,
      );
    }
    index.set(n.key, i);
  });
  nodes.forEach((n, i) => {
    if (!Array.isArray(n.dependsOn)) {
      throw new ValidationError(
        `${label}[${i}].dependsOn must be an array of keys; got ${JSON.stringify(n.dependsOn)}`,
      );
    }
    for (const d of n.dependsOn) {
      if (d === n.key)
        throw new ValidationError(`${label}[${i}] (${JSON.stringify(n.key)}) depends on itself`);
      if (!index.has(d)) {
        throw new ValidationError(
          `${label}[${i}] (${JSON.stringify(n.key)}) depends on ${JSON.stringify(d)}, which is not a key of this workflow`,
        );
      }
    }
  });
  const cycle = findCycle(nodes);
  if (cycle)
    throw new ValidationError(`${label} form a cycle: ${cycle.map((k) => JSON.stringify(k)).join(' → ')}`);
}

/** A cycle as a list of keys (first repeated last), or null. Iterative DFS: deep chains do not overflow. */
export function findCycle(nodes: readonly DagNode[]): string[] | null {
  const deps = new Map(nodes.map((n) => [n.key, n.dependsOn]));
  const color = new Map<string, 1 | 2>(); // 1: on the path, 2: done
  for (const start of deps.keys()) {
    if (color.has(start)) continue;
    const path: string[] = [];
    const stack: { key: string; i: number }[] = [{ key: start, i: 0 }];
    color.set(start, 1);
    path.push(start);
    while (stack.length > 0) {
      const top = stack[stack.length - 1]!;
      const list = deps.get(top.key) ?? [];
      if (top.i >= list.length) {
        color.set(top.key, 2);
        stack.pop();
        path.pop();
        continue;
      }
      const next = list[top.i++]!;
      const c = color.get(next);
      if (c === 1) return [...path.slice(path.indexOf(next)), next];
      if (c === 2 || !deps.has(next)) continue;
      color.set(next, 1);
      path.push(next);
      stack.push({ key: next, i: 0 });
    }
  }
  return null;
}

/** Layers by depth: layer 0 has no dependencies, layer n depends on something in layer n-1. */
export function layers(nodes: readonly DagNode[]): string[][] {
  const deps = new Map(nodes.map((n) => [n.key, n.dependsOn]));
  const depth = new Map<string, number>();
  const order = topoOrder(nodes);
  for (const k of order) {
    const ds = (deps.get(k) ?? []).filter((d) => deps.has(d));
    depth.set(k, ds.length === 0 ? 0 : Math.max(...ds.map((d) => depth.get(d) ?? 0)) + 1);
  }
  const out: string[][] = [];
  for (const k of order) (out[depth.get(k)!] ??= []).push(k);
  return out;
}

/** Keys in an order where each comes after its dependencies (input order among equals). */
export function topoOrder(nodes: readonly DagNode[]): string[] {
  const keys = new Set(nodes.map((n) => n.key));
  const indeg = new Map<string, number>();
  const users = new Map<string, string[]>();
  for (const n of nodes) {
    const ds = n.dependsOn.filter((d) => keys.has(d));
    indeg.set(n.key, ds.length);
    for (const d of ds) (users.get(d) ?? users.set(d, []).get(d)!).push(n.key);
  }
  const out: string[] = [];
  const ready = nodes.filter((n) => indeg.get(n.key) === 0).map((n) => n.key);
  for (let i = 0; i < ready.length; i++) {
    const k = ready[i]!;
    out.push(k);
    for (const u of users.get(k) ?? []) {
      const left = indeg.get(u)! - 1;
      indeg.set(u, left);
      if (left === 0) ready.push(u);
    }
  }
  return out;
}
