import type { Document } from 'mongodb';

/** The names of the indexes an explain's winning plan walks (every stage, nested ones included). */
export function indexNames(plan: Document): string[] {
  const names: string[] = [];
  const walk = (node: unknown): void => {
    if (!node || typeof node !== 'object') return;
    const n = node as Document;
    if (typeof n.indexName === 'string') names.push(n.indexName);
    for (const v of Object.values(n)) walk(v);
  };
  walk(plan.queryPlanner?.winningPlan ?? plan);
  return names;
}
