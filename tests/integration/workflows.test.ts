/** Workflows: submit a DAG in one call, results by key, crash-safe submit, cancel, refusals. */
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { ValidationError } from '../../src/errors.js';
import { Releaser } from '../../src/maintenance/releaser.js';
import {
  cancelWorkflow,
  get,
  getWorkflow,
  newJobDoc,
  newJobId,
  workflowJobs,
} from '../../src/store/index.js';
import type { WorkflowDoc } from '../../src/types.js';
import type { Daemon } from '../../src/worker/daemon.js';
import { submitWorkflow, type WorkflowSpec } from '../../src/workflows/submit.js';
import { fixtureHandler, startTestDaemon } from './daemon-helpers.js';
import { DEFAULTS, newJob, openStoreFixture, type StoreFixture } from './store-helpers.js';

const jobTypes = {
  combine: { handler: fixtureHandler('combine.mjs'), maxAttempts: 1 },
  gate: { handler: fixtureHandler('gate.mjs'), maxAttempts: 1 },
};
const diamond: WorkflowSpec = {
  name: 'diamond',
  jobs: [
    { key: 'A', type: 'combine', params: { name: 'A' } },
    { key: 'B', type: 'combine', params: { name: 'B' }, dependsOn: ['A'] },
    { key: 'C', type: 'combine', params: { name: 'C' }, dependsOn: ['A'] },
    { key: 'D', type: 'combine', params: { name: 'D' }, dependsOn: ['B', 'C'] },
  ],
};

describe('workflows', () => {
  let f: StoreFixture;
  let d: Daemon | null = null;
  beforeEach(async () => {
    f = await openStoreFixture('workflows');
  });
  afterEach(async () => {
    await d?.stop({ graceMs: 0 });
    d = null;
    await f.close();
  });
  const now = () => new Date();
  const submit = (spec: WorkflowSpec) => submitWorkflow(f.store, spec, () => DEFAULTS, now());

  it('a diamond runs in order; D gets B and C results by key; the workflow completes', async () => {
    d = await startTestDaemon(f, { jobTypes });
    const { workflow, created } = await submit({ ...diamond, id: 'wf-diamond' });
    expect(created).toBe(true);
    const done = await d.events.waitFor('workflow:completed', (e) => e.workflowId === workflow._id);
    expect(done.workflowId).toBe('wf-diamond');
    expect((await getWorkflow(f.store, workflow._id))!.state).toBe('completed');
    const D = await get(f.store, workflow.keys.D!);
    const deps = (D!.result as { deps: Record<string, { name: string }> }).deps;
    expect(Object.keys(deps).sort()).toEqual(['B', 'C']);
    expect(deps.B!.name).toBe('B');
    // Submitting the same id again returns the same workflow, writing nothing.
    const again = await submit({ ...diamond, id: 'wf-diamond' });
    expect(again.created).toBe(false);
    expect(again.workflow.keys).toEqual(workflow.keys);
    expect(await f.store.jobs.countDocuments({ workflowId: 'wf-diamond' })).toBe(4);
  });

  it('refuses a cycle, an unknown key and a duplicate key, naming them; nothing is written', async () => {
    const bad = (jobs: WorkflowSpec['jobs']) => submit({ name: 'bad', jobs });
    await expect(
      bad([
        { key: 'a', type: 'noop', dependsOn: ['c'] },
        { key: 'b', type: 'noop', dependsOn: ['a'] },
        { key: 'c', type: 'noop', dependsOn: ['b'] },
      ]),
    ).rejects.toThrow(/cycle: "a" → "c" → "b" → "a"/);
    await expect(bad([{ key: 'a', type: 'noop', dependsOn: ['zz'] }])).rejects.toThrow(
      /depends on "zz", which is not a key/,
    );
    await expect(
      bad([
        { key: 'a', type: 'noop' },
        { key: 'a', type: 'noop' },
      ]),
    ).rejects.toThrow(ValidationError);
    expect(await f.store.jobs.countDocuments()).toBe(0);
    expect(await f.store.workflows.countDocuments()).toBe(0);
  });

  it('a submit that died before it marked the workflow running leaves nothing runnable; the sweep finishes or abandons it', async () => {
    // Two submits cut short by hand, as a crash would leave them: one with all jobs written, one not.
    const old = new Date(Date.now() - 10 * 60_000);
    const mk = async (id: string, write: number): Promise<WorkflowDoc> => {
      const keys = { a: newJobId(), b: newJobId() };
      const wf: WorkflowDoc = {
        _id: id,
        name: id,
        state: 'submitting',
        jobCount: 2,
        keys,
        createdAt: old,
        updatedAt: old,
      };
      await f.store.workflows.insertOne(wf);
      const docs = [
        newJobDoc(
          {
            ...newJob('noop', {}, {}, old),
            id: keys.a,
            waiting: true,
            waitingFor: 'submit',
            workflowId: id,
            workflowKey: 'a',
          },
          old,
        ),
        newJobDoc(
          {
            ...newJob('noop', {}, {}, old),
            id: keys.b,
            waiting: true,
            dependsOn: [keys.a],
            workflowId: id,
            workflowKey: 'b',
          },
          old,
        ),
      ].slice(0, write);
      await f.store.jobs.insertMany(docs);
      return wf;
    };
    const whole = await mk('wf-whole', 2);
    const half = await mk('wf-half', 1);
    expect(await f.store.jobs.countDocuments({ state: { $in: ['queued', 'retrying'] } })).toBe(0);
    const r = new Releaser(f.store, { intervalMs: 1_000, clock: { now } });
    await r.runOnce();
    expect((await getWorkflow(f.store, whole._id))!.state).toBe('running');
    expect((await get(f.store, whole.keys.a!))!.state).toBe('queued');
    expect((await get(f.store, whole.keys.b!))!.state).toBe('waiting');
    const abandoned = await getWorkflow(f.store, half._id);
    expect(abandoned).toMatchObject({ state: 'cancelled' });
    expect(abandoned!.reason).toContain('1 of 2 jobs');
    expect(await f.store.jobs.countDocuments({ workflowId: half._id })).toBe(0);
  });

  it('cancel stops every unfinished job, running ones included', async () => {
    d = await startTestDaemon(f, { jobTypes });
    const { workflow } = await submit({
      name: 'to-cancel',
      jobs: [
        { key: 'hold', type: 'gate', params: { file: '/nonexistent/never' } },
        { key: 'after', type: 'combine', dependsOn: ['hold'] },
      ],
    });
    const lost = d.events.waitFor('job:lost', (e) => e.jobId === workflow.keys.hold);
    await d.events.waitFor('job:claimed', (e) => e.jobId === workflow.keys.hold);
    const { cancelled } = await cancelWorkflow(f.store, workflow._id, { now: now() });
    expect(cancelled.sort()).toEqual([workflow.keys.hold!, workflow.keys.after!].sort());
    await lost;
    const jobs = await workflowJobs(f.store, workflow._id);
    expect(jobs.map((j) => j.state)).toEqual(['cancelled', 'cancelled']);
    expect((await getWorkflow(f.store, workflow._id))!.state).toBe('cancelled');
  });
});
