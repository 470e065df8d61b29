/**
 * Typed job types. A module's default export made with defineJobType carries the type's zod input and
 * output schemas next to its handler. The schemas are built on first use by a function that gets zod,
 * so the module itself imports only zod's types:
 *
 *   import type { Zod } from 'jobd/jobs';
 *   export default defineJobType({
 *     name: 'resize', description: 'Resize an image', queue: 'images',
 *     schemas: (z: Zod) => ({
 *       input: z.strictObject({ source: dataPath({ mode: 'read' }), width: z.number().int().min(1) }),
 *       output: z.object({ bytes: z.number() }),
 *     }),
 *     handler: async (input, ctx) => ({ bytes: 1 }),
 *   });
 *
 * The older shape, `input` and `output` given as schemas, still works; its module imports zod itself.
 *
 * jobctl and the library import the module to validate inputs before anything is written (importing
 * runs the module's top level, never its handler). When a job starts, its input is parsed again (data-dir
 * paths resolved anew, so a symlink swapped in after enqueue is refused) and the handler's output is
 * validated (JOBD_INVALID_OUTPUT). For an isolated job of the lazy shape the daemon does both, around the
 * child (worker/typedChecks.ts), so the child never loads zod; otherwise the exported `handler` is a
 * wrapper that does them where the handler runs.
 */
import type { z } from 'zod';
import { InvalidInputError, InvalidOutputError } from '../errors.js';
import type { ExecutionMode, JobContext, WaitForChildren } from '../types.js';
import { markPure, mayDeclarePaths, withDataDirs, type DataDirs, type DeclaredPath } from './dataPath.js';
import { issueLines } from './inputIssues.js';
import { PathNotAllowedError } from './lib/errors.js';
import { confine, isInside } from './lib/paths.js';
import { dataDirsFromText } from './dataDirsText.js';
import { loadZod, zodNow, type Zod } from './lazyZod.js';

/** Settings a type suggests; the settings file's jobTypes.<name> keys win over them. */
export interface JobTypeDefaults {
  mode?: ExecutionMode;
  timeoutMs?: number;
  maxAttempts?: number;
  priority?: number;
  concurrency?: number;
}

/** The context a typed handler gets: the usual one plus the data dirs and the paths its input declared. */
export interface TypedJobContext extends JobContext {
  dataDirs: DataDirs;
  /** Every dataPath field of the input, resolved (realpath) when the job started. */
  declaredPaths: readonly DeclaredPath[];
  /**
   * Resolves `path` now (realpath, through its nearest existing ancestor) and returns it when it lies
   * inside a path the input declared for writing; throws PathNotAllowedError otherwise. Call it right
   * before writing: a symlink swapped in meanwhile is caught.
   */
  checkWrite(path: string): Promise<string>;
}

interface JobTypeSpecBase<I extends z.ZodType, O extends z.ZodType> {
  name: string;
  description: string;
  /** The queue its jobs go to (default: the type's name). */
  queue?: string;
  defaults?: JobTypeDefaults;
  /** Returns the output, or ctx.waitForChildren() to run again once its spawned children finished. */
  handler: (
    input: z.output<I>,
    ctx: TypedJobContext,
  ) => Promise<z.input<O> | WaitForChildren> | z.input<O> | WaitForChildren;
}

/** A job type whose schemas are built on first use, from the zod it is given (the module imports none). */
export interface LazyJobTypeSpec<I extends z.ZodType, O extends z.ZodType> extends JobTypeSpecBase<I, O> {
  /** Called at most once per process, with zod: the type's input and output schemas. */
  schemas: (z: Zod) => { input: I; output: O };
}

/** The older shape: the schemas themselves (the module imports zod when it loads). */
export interface JobTypeSpec<I extends z.ZodType, O extends z.ZodType> extends JobTypeSpecBase<I, O> {
  input: I;
  output: O;
}

const MARK = 'jobd.jobType/1';

export interface DefinedJobType<I extends z.ZodType = z.ZodType, O extends z.ZodType = z.ZodType> {
  readonly kind: typeof MARK;
  readonly name: string;
  readonly description: string;
  readonly queue: string | undefined;
  /** Built on first read for a type defined with `schemas`. */
  readonly input: I;
  readonly output: O;
  /** The schemas are built on first use (`schemas`), so running the handler needs no zod. */
  readonly lazy: boolean;
  readonly defaults: JobTypeDefaults;
  /** Legacy field name → field name, accepted by the input (see legacyNames). */
  readonly legacyNames: Readonly<Record<string, string>>;
  /** What the sandbox runs: validate the input, run the handler, validate the output. */
  readonly handler: (params: unknown, ctx: JobContext) => Promise<unknown>;
  /** The handler as written. */
  readonly implementation: JobTypeSpecBase<I, O>['handler'];
}

/**
 * Set on a sandbox child's ctx when the daemon parsed the job's input (`params` is the parsed input)
 * and will validate the output itself: the declared paths it resolved. A symbol, so no job's params can
 * claim it.
 */
export const DAEMON_CHECKS = Symbol.for('jobd.typedChecks');
export interface DaemonChecks {
  paths: DeclaredPath[];
}

export function isDefinedJobType(value: unknown): value is DefinedJobType {
  return value !== null && typeof value === 'object' && (value as { kind?: unknown }).kind === MARK;
}

const aliasMaps = new WeakMap<z.ZodType, Readonly<Record<string, string>>>();

/**
 * An object input that also accepts older field names (legacy name → name), so jobs written by old
 * clients or migrated from the legacy service validate unchanged. A value under the legacy name is
 * moved to the new name before parsing; giving both is refused.
 */
export function legacyNames<T extends z.ZodType>(schema: T, names: Readonly<Record<string, string>>) {
  const mapped = zodNow().preprocess((value, ctx) => {
    if (value === null || typeof value !== 'object' || Array.isArray(value)) return value;
    const out: Record<string, unknown> = { ...(value as Record<string, unknown>) };
    for (const [legacy, name] of Object.entries(names)) {
      if (!(legacy in out)) continue;
      if (name in out) {
        ctx.issues.push({
          code: 'custom',
          message: `give ${name} or its legacy name ${legacy}, not both`,
          path: [legacy],
          input: out[legacy],
        });
        continue;
      }
      out[name] = out[legacy];
      delete out[legacy];
    }
    return out;
  }, schema);
  markPure((mapped as unknown as { _zod: { def: { in: object } } })._zod.def.in);
  aliasMaps.set(mapped, { ...names });
  return mapped;
}

/** The data dirs the daemon hands a job (the resolved dataDirs setting, in JOBD_DATA_DIRS). */
function jobDataDirs(): DataDirs {
  const text = process.env.JOBD_DATA_DIRS;
  if (!text) return {};
  // A pooled child runs thousands of jobs with the same text: parse it once. A copy per job, so a
  // handler that changes its dataDirs changes nothing for the next job.
  if (parsedDirs?.text !== text) parsedDirs = { text, dirs: dataDirsFromText(text) };
  return { ...parsedDirs.dirs };
}
let parsedDirs: { text: string; dirs: DataDirs } | undefined;

/**
 * Parse `params` against a type's input inside the data dirs: the parsed input and its paths, or a
 * list of problems (one line each, naming field, value and what is allowed).
 */
export async function parseInput(
  def: Pick<DefinedJobType, 'input' | 'legacyNames'>,
  params: unknown,
  dataDirs: DataDirs,
  when: 'enqueue' | 'run',
  prefix = 'params',
): Promise<{ ok: true; input: unknown; paths: DeclaredPath[] } | { ok: false; problems: string[] }> {
  if (parsesAsItself(def.input, params)) return { ok: true, input: params, paths: [] };
  const { result, paths } = mayDeclarePaths(def.input)
    ? await withDataDirs(dataDirs, when, () => def.input.safeParseAsync(params))
    : { result: await def.input.safeParseAsync(params), paths: [] };
  if (result.success) return { ok: true, input: result.data, paths };
  return {
    ok: false,
    problems: issueLines(inFieldOrder(result.error.issues, params), params, prefix, def.legacyNames),
  };
}

/**
 * Async checks (paths resolved on disk) finish in any order: list the problems in the order of the
 * fields in `params`, so the same input always gets the same message.
 */
function inFieldOrder(issues: z.core.$ZodIssue[], params: unknown): z.core.$ZodIssue[] {
  const order = params !== null && typeof params === 'object' ? Object.keys(params) : [];
  const rank = (issue: z.core.$ZodIssue): number => {
    const i = order.indexOf(String(issue.path[0] ?? ''));
    return i < 0 ? order.length : i;
  };
  return [...issues].sort((a, b) => rank(a) - rank(b));
}

/** The error of an input that is not valid when the job starts (also the daemon's, typedChecks.ts). */
export function inputNotValid(name: string, problems: readonly string[]): InvalidInputError {
  return new InvalidInputError(`${name}: the job's input is not valid now:\n${problems.join('\n')}`);
}

/**
 * Whether `schema` parses `value` as the value itself, known without parsing: z.unknown() and z.any()
 * take every value as it is, z.null() takes null as it is (zod returns the input unchanged for these;
 * a refinement, a transform, a default or any other wrapper makes another schema, parsed in full).
 * The no-op type has these schemas, and a parse per job was a good part of an inline job's CPU.
 */
function parsesAsItself(schema: z.ZodType, value: unknown): boolean {
  const def = (schema as unknown as { _zod?: { def?: { type?: unknown; checks?: unknown[] } } })._zod?.def;
  if (!def || (def.checks !== undefined && def.checks.length > 0)) return false;
  return def.type === 'unknown' || def.type === 'any' || (def.type === 'null' && value === null);
}

/** Validate a handler's output against its type's output schema: the parsed output, or the error. */
export async function checkOutput(
  def: Pick<DefinedJobType, 'name' | 'output'>,
  output: unknown,
): Promise<{ ok: true; output: unknown } | { ok: false; error: InvalidOutputError }> {
  if (parsesAsItself(def.output, output)) return { ok: true, output };
  const checked = await def.output.safeParseAsync(output);
  if (checked.success) return { ok: true, output: checked.data };
  return {
    ok: false,
    error: new InvalidOutputError(
      `${def.name}: the handler's output does not match the type's output schema:\n${issueLines(
        checked.error.issues,
        output,
        'output',
      ).join('\n')}`,
    ),
  };
}

/**
 * ctx's own enumerable fields, as a spread copies them, but with `signal` carried as ctx has it: a
 * daemon running the job inline makes ctx.signal on first read (an AbortSignal per job costs
 * microseconds, and most handlers never read it), so the copy must not read it.
 */
function copyContext<T extends object>(ctx: JobContext, extra: T): JobContext & T {
  const out: Record<PropertyKey, unknown> = {};
  for (const k of Object.keys(ctx)) if (k !== 'signal') out[k] = ctx[k as keyof JobContext];
  for (const k of Object.getOwnPropertySymbols(ctx)) {
    if (Object.prototype.propertyIsEnumerable.call(ctx, k)) out[k] = (ctx as never)[k];
  }
  const d = Object.getOwnPropertyDescriptor(ctx, 'signal');
  if (d?.get) Object.defineProperty(out, 'signal', { get: d.get, enumerable: true, configurable: true });
  else if (d) out.signal = d.value;
  return Object.assign(out, extra) as JobContext & T;
}

function isSchema(v: unknown): v is z.ZodType {
  return (
    v !== null &&
    typeof v === 'object' &&
    typeof (v as { safeParseAsync?: unknown }).safeParseAsync === 'function'
  );
}

export function defineJobType<I extends z.ZodType, O extends z.ZodType>(
  spec: LazyJobTypeSpec<I, O>,
): DefinedJobType<I, O>;
export function defineJobType<I extends z.ZodType, O extends z.ZodType>(
  spec: JobTypeSpec<I, O>,
): DefinedJobType<I, O>;
export function defineJobType<I extends z.ZodType, O extends z.ZodType>(
  spec: LazyJobTypeSpec<I, O> | JobTypeSpec<I, O>,
): DefinedJobType<I, O> {
  const lazy = 'schemas' in spec;
  if (lazy && typeof spec.schemas !== 'function') {
    throw new TypeError(
      `defineJobType "${spec.name}": schemas must be a function (z) => ({ input, output }), got ${typeof spec.schemas}`,
    );
  }
  let built: { input: I; output: O; legacy: Readonly<Record<string, string>> } | undefined;
  const schemas = (): NonNullable<typeof built> => {
    if (built) return built;
    if (!lazy) {
      built = { input: spec.input, output: spec.output, legacy: aliasMaps.get(spec.input) ?? {} };
      return built;
    }
    const s = spec.schemas(zodNow());
    for (const key of ['input', 'output'] as const) {
      if (!isSchema(s?.[key])) {
        throw new TypeError(`defineJobType "${spec.name}": schemas(z) returned no zod schema as ${key}`);
      }
    }
    built = { input: s.input, output: s.output, legacy: aliasMaps.get(s.input) ?? {} };
    return built;
  };
  const def = {
    kind: MARK,
    name: spec.name,
    description: spec.description,
    queue: spec.queue,
    get input() {
      return schemas().input;
    },
    get output() {
      return schemas().output;
    },
    get legacyNames() {
      return schemas().legacy;
    },
    lazy,
    defaults: { ...(spec.defaults ?? {}) },
    implementation: spec.handler,
    handler: async (params: unknown, ctx: JobContext): Promise<unknown> => {
      const dataDirs = jobDataDirs();
      const checks = (ctx as { [DAEMON_CHECKS]?: DaemonChecks })[DAEMON_CHECKS];
      let input: unknown;
      let paths: DeclaredPath[];
      if (checks) {
        input = params;
        paths = checks.paths;
      } else {
        // Its schemas come from the ES build of zod, imported now, where nothing provided one.
        if (lazy && !built) await loadZod();
        if (parsesAsItself(def.input, params)) {
          // As parseInput answers for it, without its promise.
          input = params;
          paths = [];
        } else {
          const parsed = await parseInput(def, params, dataDirs, 'run');
          if (!parsed.ok) throw inputNotValid(spec.name, parsed.problems);
          input = parsed.input;
          paths = parsed.paths;
        }
      }
      const writable = paths.filter((p) => p.mode === 'write');
      const typed: TypedJobContext = copyContext(ctx, {
        dataDirs,
        declaredPaths: paths,
        checkWrite: async (path: string) => {
          const c = await confine(path, dataDirs, { field: 'write', forWrite: true });
          if (!writable.some((w) => isInside(c.real, w.real))) {
            throw new PathNotAllowedError(
              `${spec.name}: writing "${path}" is not allowed: the job writes only to the paths its input declares for writing (${
                writable.map((w) => w.input).join(', ') || 'none'
              })`,
              { path, resolved: c.real },
            );
          }
          return c.real;
        },
      });
      const output = await spec.handler(input as z.output<I>, typed);
      // Suspending is not an output: the run that completes the job returns one. The daemon checks
      // the output of a job whose input it parsed.
      if (checks || (output !== null && typeof output === 'object' && '__jobdWaitForChildren' in output)) {
        return output;
      }
      if (parsesAsItself(def.output, output)) return output;
      const checked = await checkOutput(def, output);
      if (!checked.ok) throw checked.error;
      return checked.output;
    },
  } as DefinedJobType<I, O>;
  return Object.freeze(def);
}
