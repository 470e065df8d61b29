/**
 * What a handler's ctx.spawn and ctx.waitForChildren do where the handler runs (a sandbox child, or
 * the daemon for an inline job): name the spawned children and check the value that asks to wait.
 * CommonJS with builtins only, loaded by childEntry.cts with require() like its other parts.
 */
import type {
  ChildFailurePolicy,
  JobContext,
  ResourceAllocation,
  SpawnSpec,
  WaitForChildren,
} from '../types.js';
import type { JobFamily, SpawnedChild } from './protocol.js';

export function namedError(name: string, code: string, message: string): Error {
  const e = new Error(message) as Error & { code: string };
  e.name = name;
  e.code = code;
  return e;
}

const CHILD_POLICIES: readonly ChildFailurePolicy[] = ['fail', 'ignore', 'continue'];

/** The policy when the handler returned ctx.waitForChildren(); undefined for any other output. */
export function waitPolicy(output: unknown): ChildFailurePolicy | undefined {
  if (!output || typeof output !== 'object' || !('__jobdWaitForChildren' in output)) return undefined;
  const p = (output as WaitForChildren).__jobdWaitForChildren?.onChildFailure;
  if (!CHILD_POLICIES.includes(p)) {
    throw namedError(
      'ValidationError',
      'JOBD_VALIDATION',
      `waitForChildren onChildFailure must be one of ${CHILD_POLICIES.join(', ')}; got ${JSON.stringify(p)}`,
    );
  }
  return p;
}

/** Loaded on first use: most jobs never spawn, and child start-up stays lean. */
function sha256Hex(text: string): string {
  // eslint-disable-next-line @typescript-eslint/no-require-imports -- lazy on purpose
  const { createHash } = require('node:crypto') as typeof import('node:crypto');
  return createHash('sha256').update(text).digest('hex');
}

/**
 * A child's id follows from its spawn key (parent id, the parent's resume count, the child's key), so
 * a parent run repeated after a crash names the same children and they are written once. The first
 * 8 hex digits are the parent's (an ObjectId's creation time), keeping ids roughly in creation order.
 */
export function spawnChildren(
  parentId: string,
  resumes: number,
  specs: SpawnSpec[],
  into: SpawnedChild[],
): string[] {
  if (!Array.isArray(specs)) {
    throw namedError(
      'ValidationError',
      'JOBD_VALIDATION',
      `ctx.spawn takes an array of children; got ${typeof specs}`,
    );
  }
  const ids: string[] = [];
  specs.forEach((spec, i) => {
    if (!spec || typeof spec.type !== 'string' || spec.type === '') {
      throw namedError(
        'ValidationError',
        'JOBD_VALIDATION',
        `ctx.spawn children[${i}].type must be a non-empty string; got ${JSON.stringify(spec?.type)}`,
      );
    }
    const key = spec.key === undefined ? String(into.length) : String(spec.key);
    if (into.some((c) => c.key === key)) {
      throw namedError(
        'ValidationError',
        'JOBD_VALIDATION',
        `ctx.spawn child key ${JSON.stringify(key)} is used twice`,
      );
    }
    let dependsOnIds: string[] | undefined;
    if (spec.dependsOn !== undefined) {
      // Only siblings spawned earlier in this run: their ids are known, and no cycle can form.
      if (!Array.isArray(spec.dependsOn)) {
        throw namedError(
          'ValidationError',
          'JOBD_VALIDATION',
          `ctx.spawn child ${JSON.stringify(key)} dependsOn must be an array of sibling keys; got ${JSON.stringify(spec.dependsOn)}`,
        );
      }
      dependsOnIds = spec.dependsOn.map((dep) => {
        const sibling = into.find((c) => c.key === String(dep));
        if (!sibling) {
          throw namedError(
            'ValidationError',
            'JOBD_VALIDATION',
            `ctx.spawn child ${JSON.stringify(key)} depends on ${JSON.stringify(dep)}, which is not a child spawned before it in this run`,
          );
        }
        return sibling.id;
      });
    }
    const spawnKey = `${parentId}/${resumes}/${key}`;
    const id = parentId.slice(0, 8) + sha256Hex(spawnKey).slice(0, 16);
    into.push({ ...spec, key, spawnKey, id, ...(dependsOnIds?.length ? { dependsOnIds } : {}) });
    ids.push(id);
  });
  return ids;
}

/**
 * The part of a handler's ctx that comes from its family and allocation: its dependencies' results,
 * its children (a resumed parent), the resources given to it, and spawn / waitForChildren, which
 * collect spawned children into `spawned`.
 */
export function familyContext(
  jobId: string,
  family: JobFamily | undefined,
  allocation: ResourceAllocation | undefined,
  spawned: SpawnedChild[],
): Pick<JobContext, 'dependencies' | 'children' | 'resumed' | 'allocation' | 'spawn' | 'waitForChildren'> {
  return {
    ...(family?.dependencies ? { dependencies: family.dependencies } : {}),
    ...(family?.children ? { children: family.children, resumed: true } : {}),
    ...(allocation ? { allocation } : {}),
    spawn: (specs) => {
      try {
        return Promise.resolve(spawnChildren(jobId, family?.resumes ?? 0, specs, spawned));
      } catch (err) {
        return Promise.reject(err as Error);
      }
    },
    waitForChildren: (opts) => ({
      __jobdWaitForChildren: { onChildFailure: opts?.onChildFailure ?? 'fail' },
    }),
  };
}
