import * as fc from 'fast-check';
import { identityHash, isComplete, onEvent, snapshotIdsOf } from '../lambda/ebs-snapshot';
import { CfnStack, StackOperationResult } from './support/cfn-driver';
import { FaultRates, ScriptedFault } from './support/faults';
import { Invariants, Violation } from './support/invariants';
import { CopyView } from './support/sim-core';
import { SimWorld } from './support/sim-world';
import { MANAGED_BY, OWNERSHIP_TAG_KEYS } from '../lambda/shared/ownership';
import type { EbsSnapshotOnDeployProperties } from '../src/private/ebs-contract';

const VOL_A = 'vol-0000000000000000a'; // instance I1, /dev/xvda
const VOL_B = 'vol-0000000000000000b'; // instance I1, /dev/sdf
const VOL_C = 'vol-0000000000000000c'; // not attached
const I1 = 'i-00000000000000001';
const GUARDED = 'GuardedInstance1234'; // the logical id of an instance the snapshot guards (found by its tags)
const handler = { onEvent, isComplete };
const RUNS = Number(process.env.SIM_RUNS ?? 1000);
/** As test/sim-openzfs.test.ts: a fixed seed by default, SIM_SEED=<n> replays, SIM_SEED=random explores. */
const SEED = process.env.SIM_SEED === 'random' ? undefined : Number(process.env.SIM_SEED ?? 20261123);

jest.setTimeout(Math.max(60_000, RUNS * 100));

type Props = EbsSnapshotOnDeployProperties;
type Policy = 'retain' | 'destroy';

function volume(trigger: string, policy: Policy, wait = false, extra: Partial<Props> = {}): Props {
  return { Source: 'volume', VolumeId: VOL_C, Trigger: trigger, RemovalPolicy: policy, TimeoutSeconds: '1800', WaitForCompletion: wait ? 'true' : 'false', ...extra };
}
function instance(trigger: string, policy: Policy, wait = false): Props {
  return { Source: 'instance', InstanceId: I1, Trigger: trigger, RemovalPolicy: policy, TimeoutSeconds: '1800', WaitForCompletion: wait ? 'true' : 'false' };
}
/** Guards the instance it snapshots: found by its CloudFormation tags; `hash` plays the guarded resources' hash. */
function guarded(hash: string, policy: Policy, wait = false): Props {
  return { Source: 'instance', SourceLogicalId: GUARDED, SnapshotBeforeHash: hash, RemovalPolicy: policy, TimeoutSeconds: '1800', WaitForCompletion: wait ? 'true' : 'false' };
}

/**
 * An account with an instance of two volumes, a lone volume, and snapshots the library did not
 * make. EC2 reads are eventually consistent: a new snapshot shows in reads 20–30 s after it is made.
 */
function ebsWorld(seed: number, faults: FaultRates = {}, scripted: ScriptedFault[] = []): SimWorld {
  const world = new SimWorld({
    seed,
    faults,
    scripted,
    durations: { minMs: 5_000, maxMs: 180_000, slowMs: 3 * 3_600_000 },
    ec2: { visibilityDelayMs: 20_000, visibilityJitterMs: 10_000 },
  });
  world.ec2.addVolume(VOL_A, { instanceId: I1, device: '/dev/xvda', size: 8 });
  world.ec2.addVolume(VOL_B, { instanceId: I1, device: '/dev/sdf', size: 100 });
  world.ec2.addVolume(VOL_C, { size: 20 });
  world.ec2.addInstance(I1);
  world.ec2.seedSnapshot(VOL_C, []);
  world.ec2.seedSnapshot(VOL_A, [{ Key: 'team', Value: 'data' }]);
  // Another stack's snapshot made for the same properties: tempting to adopt, not ours to touch.
  world.ec2.seedSnapshot(VOL_C, [
    { Key: OWNERSHIP_TAG_KEYS.managedBy, Value: MANAGED_BY },
    { Key: OWNERSHIP_TAG_KEYS.stackId, Value: 'arn:aws:cloudformation:us-east-1:111111111111:stack/other/1' },
    { Key: OWNERSHIP_TAG_KEYS.owner, Value: 'Snap1' },
    { Key: OWNERSHIP_TAG_KEYS.propsHash, Value: identityHash(volume('t0', 'retain')) },
  ]);
  return world;
}

let instanceCounter = 0x100;
/**
 * CloudFormation creates the guarded instance after the snapshot (it depends on it), tagged with
 * the stack id and its logical id. Called once the stack exists.
 */
function createGuardedInstance(world: SimWorld, stackId: string): string {
  const id = `i-${(++instanceCounter).toString(16).padStart(17, '0')}`;
  const n = instanceCounter.toString(16).padStart(13, '0');
  world.ec2.addVolume(`vol-a${n}000`, { instanceId: id, device: '/dev/xvda', size: 8 });
  world.ec2.addVolume(`vol-b${n}000`, { instanceId: id, device: '/dev/sdf', size: 50 });
  world.ec2.addInstance(id, {
    tags: [{ Key: 'aws:cloudformation:stack-id', Value: stackId }, { Key: 'aws:cloudformation:logical-id', Value: GUARDED }],
  });
  return id;
}

/** Whether a DeleteSnapshot made during the very request that created the copy removed it (the duplicate clean-up). */
function cleanedUpByItsRequest(world: SimWorld, c: CopyView): boolean {
  return world.core.log.some((call) => call.command === 'DeleteSnapshotCommand' && call.resourceId === c.id &&
    call.outcome.startsWith('ok') && call.context?.requestKey === c.createdDuring?.requestKey);
}

/**
 * The invariants as they apply to EBS: one snapshot per volume per request is left (a duplicate the
 * request itself deleted again does not count), and a resource points at snapshots that exist.
 */
function ebsInvariants(world: SimWorld): Invariants {
  return new Invariants(world, {
    // A snapshot EBS failed after a deploy that did not wait for it is not the library's doing
    // (one that was waited for fails the deploy: checkAllSnapshots checks those).
    copyIdOf: (id) => {
      const first = snapshotIdsOf(id)[0];
      return first && world.copy(first)?.serviceFailed ? undefined : first;
    },
    // waitForCompletion applies to the snapshots taken from then on: checkAllSnapshots checks them.
    waitsForCopy: () => false,
    duplicateKeyOf: (c) => (cleanedUpByItsRequest(world, c) ? undefined : `${c.createdDuring!.requestKey}#${c.kind}#${c.target}`),
  });
}

/**
 * Every snapshot a deployed resource names exists (and is completed if the request that took it
 * waited for completion), and an instance's resource names one per attached volume.
 */
function checkAllSnapshots(world: SimWorld, stack: CfnStack, result: StackOperationResult, out: Violation[]) {
  if (!['CREATE_COMPLETE', 'UPDATE_COMPLETE', 'UPDATE_ROLLBACK_COMPLETE'].includes(result.status)) return;
  for (const [logicalId, r] of result.resources) {
    const ids = snapshotIdsOf(r.physicalId);
    const copies = ids.map((id) => world.copy(id));
    const took = stack.requests.find((q) => q.logicalId === logicalId && q.counted && q.status === 'SUCCESS' &&
      q.physicalIdOut === r.physicalId && q.data?.Origin === 'created');
    const notReady = copies.filter((c) => c && !c.ready);
    if (took?.properties.WaitForCompletion === 'true' && notReady.length) {
      out.push({ invariant: 'success-points-at-copy', detail: `${result.status}: ${logicalId} waited, yet ${notReady.map((c) => `${c!.id} ${c!.state}`).join(',')}` });
    }
    const missing = ids.filter((_, i) => !copies[i]?.exists && !copies[i]?.serviceFailed);
    if (missing.length) out.push({ invariant: 'success-points-at-copy', detail: `${result.status}: ${logicalId} -> ${missing.join(',')} missing` });
    const targets = copies.map((c) => c?.target);
    if (new Set(targets).size !== targets.length) out.push({ invariant: 'no-duplicates', detail: `${logicalId} -> two snapshots of one volume: ${r.physicalId}` });
    if (r.properties.InstanceId === I1 && ids.length > 0 && ids.length !== 2) {
      out.push({ invariant: 'success-points-at-copy', detail: `${logicalId} -> ${r.physicalId}: not one snapshot per volume of ${I1}` });
    }
  }
}

function existing(world: SimWorld, volumeId: string): CopyView[] {
  return world.copies().filter((c) => !c.foreign && c.exists && c.target === volumeId);
}

describe('scenarios', () => {
  test.each(['retain', 'destroy'] as const)('volume and instance sources: create, update by trigger, stack delete (%s)', async (policy) => {
    const world = ebsWorld(1);
    try {
      const stack = new CfnStack(world, handler, { resourceType: 'Custom::EbsSnapshotOnDeploy' });
      const inv = ebsInvariants(world);
      const created = await stack.deploy({ Snap1: volume('v1', policy, true), Snap2: instance('v1', policy) });
      inv.afterOperation(created);
      expect(created.status).toBe('CREATE_COMPLETE');
      const first = created.resources.get('Snap1')!.physicalId;
      expect(world.copy(first)).toMatchObject({ state: 'completed', target: VOL_C }); // waited for
      const fromInstance = snapshotIdsOf(created.resources.get('Snap2')!.physicalId);
      expect(fromInstance.map((id) => world.copy(id)?.target)).toEqual([VOL_B, VOL_A]); // /dev/sdf < /dev/xvda
      const data = stack.requests.find((r) => r.logicalId === 'Snap2' && r.requestType === 'Create')!.data!;
      expect(data).toMatchObject({ 'Device:/dev/xvda': fromInstance[1], 'Device:/dev/sdf': fromInstance[0], 'SourceFound': 'true' });

      const updated = await stack.deploy({ Snap1: volume('v2', policy, true), Snap2: instance('v2', policy) });
      inv.afterOperation(updated);
      expect(updated.status).toBe('UPDATE_COMPLETE');
      const second = updated.resources.get('Snap1')!.physicalId;
      expect(second).not.toBe(first);
      expect(world.copy(first)?.exists).toBe(policy === 'retain');
      expect(fromInstance.every((id) => world.copy(id)?.exists === (policy === 'retain'))).toBe(true);

      const deleted = await stack.deleteStack();
      inv.afterOperation(deleted);
      expect(deleted.status).toBe('DELETE_COMPLETE');
      expect(world.copy(second)?.exists).toBe(policy === 'retain');
      inv.atEnd([stack]);
      inv.assertNone();
      expect(world.copies().filter((c) => c.foreign && c.exists)).toHaveLength(3);
    } finally {
      world.dispose();
    }
  });

  test('guarding the instance it snapshots: no snapshot on the first deploy, then one per volume before each change', async () => {
    const world = ebsWorld(2);
    try {
      const stack = new CfnStack(world, handler);
      const inv = ebsInvariants(world);
      const first = await stack.deploy({ Snap3: guarded('h1', 'retain') });
      inv.afterOperation(first);
      expect(first.status).toBe('CREATE_COMPLETE');
      expect(first.resources.get('Snap3')!.physicalId).toMatch(/^no-snapshot-/);
      expect(stack.requests[0].data).toMatchObject({ SourceFound: 'false', SnapshotIds: '' });
      const id = createGuardedInstance(world, stack.stackId!);

      const second = await stack.deploy({ Snap3: guarded('h2', 'retain') });
      inv.afterOperation(second);
      expect(second.status).toBe('UPDATE_COMPLETE');
      const ids = snapshotIdsOf(second.resources.get('Snap3')!.physicalId);
      expect(ids.map((s) => world.copy(s)?.target).sort()).toEqual(world.copies().filter((c) => !c.foreign && c.exists).map((c) => c.target).sort());
      expect(ids).toHaveLength(2);
      expect(world.core.log.find((c) => c.command === 'CreateSnapshotsCommand')?.input).toMatchObject({ InstanceSpecification: { InstanceId: id } });
      inv.atEnd([stack]);
      inv.assertNone();
    } finally {
      world.dispose();
    }
  });

  test('a lost CreateSnapshot response while reads lag: one snapshot is left, the duplicate (if any) is deleted by its own request', async () => {
    for (const seed of [3, 4, 5, 6, 7, 8]) {
      const world = ebsWorld(seed, {}, [{ kind: 'lost-response', command: 'CreateSnapshotCommand' }]);
      try {
        const stack = new CfnStack(world, handler);
        const inv = ebsInvariants(world);
        const created = await stack.deploy({ Snap1: volume('v1', 'retain') });
        inv.afterOperation(created);
        expect(created.status).toBe('CREATE_COMPLETE');
        expect(existing(world, VOL_C).map((c) => c.id)).toEqual([created.resources.get('Snap1')!.physicalId]);
        inv.atEnd([stack]);
        inv.assertNone();
      } finally {
        world.dispose();
      }
    }
  });

  test('duplicate deliveries and a framework retry after a kill never leave two snapshots of a volume', async () => {
    const world = ebsWorld(9, { 'duplicate-delivery': 1 }, [{ kind: 'kill-after-create', command: 'CreateSnapshotsCommand' }]);
    try {
      const stack = new CfnStack(world, handler);
      const inv = ebsInvariants(world);
      const created = await stack.deploy({ Snap1: volume('v1', 'destroy'), Snap2: instance('v1', 'destroy') });
      inv.afterOperation(created);
      const violations = inv.atEnd([stack]);
      checkAllSnapshots(world, stack, created, violations);
      expect(violations).toEqual([]);
      expect(world.faults.injected['duplicate-delivery']).toBeGreaterThan(0);
      expect(existing(world, VOL_C).length).toBeLessThanOrEqual(1);
      expect(existing(world, VOL_A).length).toBeLessThanOrEqual(1);
    } finally {
      world.dispose();
    }
  });

  test('a rollback returns to the instance\'s old snapshots and takes none', async () => {
    const world = ebsWorld(10);
    try {
      const stack = new CfnStack(world, handler);
      const inv = ebsInvariants(world);
      const created = await stack.deploy({ Snap2: instance('v1', 'destroy') });
      const before = created.resources.get('Snap2')!.physicalId;
      const failed = await stack.deploy({ Snap2: instance('v2', 'destroy') }, { otherResourceFailsAt: 1 });
      inv.afterOperation(failed);
      expect(failed.status).toBe('UPDATE_ROLLBACK_COMPLETE');
      expect(failed.resources.get('Snap2')!.physicalId).toBe(before);
      // The failed update's snapshots were cleaned up (destroy), the old ones are all there.
      expect(snapshotIdsOf(before).every((id) => world.copy(id)?.exists)).toBe(true);
      expect(world.copies().filter((c) => !c.foreign && c.exists)).toHaveLength(2);
      inv.atEnd([stack]);
      inv.assertNone();
    } finally {
      world.dispose();
    }
  });

  test('waitForCompletion: a snapshot that ends in error fails the deploy and is deleted', async () => {
    const world = ebsWorld(11, {}, [{ kind: 'failed-lifecycle', command: 'CreateSnapshotCommand' }]);
    try {
      const stack = new CfnStack(world, handler);
      const result = await stack.deploy({ Snap1: volume('v1', 'retain', true) });
      expect(result.status).toBe('ROLLBACK_COMPLETE');
      expect(stack.requests[0].reason).toMatch(/is in state error: Internal error while creating the snapshot; the snapshots of this request have been deleted/);
      expect(existing(world, VOL_C)).toEqual([]);
    } finally {
      world.dispose();
    }
  });

  test('the invariants can fail: a handler whose token look-ups find nothing leaves duplicates', async () => {
    async function run(broken: boolean) {
      const world = ebsWorld(12, {}, [{ kind: 'duplicate-delivery' }]);
      try {
        if (broken) {
          // The handler as if it skipped the look-up by token: those reads find nothing.
          const fake = world.ec2 as any;
          const describe = fake.describeSnapshots.bind(fake);
          fake.describeSnapshots = (input: any) =>
            ((input.Filters ?? []).some((f: any) => f.Name === `tag:${OWNERSHIP_TAG_KEYS.token}`) ? { Snapshots: [] } : describe(input));
        }
        const stack = new CfnStack(world, handler);
        const inv = ebsInvariants(world);
        inv.afterOperation(await stack.deploy({ Snap1: volume('v1', 'retain') }));
        return inv.atEnd([stack]);
      } finally {
        world.dispose();
      }
    }
    expect(await run(false)).toEqual([]);
    expect(await run(true)).toContainEqual(expect.objectContaining({ invariant: 'no-duplicates' }));
  });
});

type Step =
  | { readonly kind: 'deploy'; readonly t1: number; readonly t2: number; readonly t3: number; readonly policy: Policy; readonly wait: boolean; readonly otherFailsAt?: number }
  | { readonly kind: 'delete' }
  | { readonly kind: 'wait'; readonly minutes: number };

const stepArb: fc.Arbitrary<Step> = fc.oneof(
  {
    weight: 6,
    arbitrary: fc.record({
      kind: fc.constant('deploy' as const),
      t1: fc.integer({ min: 0, max: 2 }),
      t2: fc.integer({ min: 0, max: 2 }),
      t3: fc.integer({ min: 0, max: 2 }),
      policy: fc.constantFrom('retain' as const, 'destroy' as const),
      wait: fc.boolean(),
      otherFailsAt: fc.option(fc.integer({ min: 0, max: 3 }), { nil: undefined, freq: 3 }),
    }),
  },
  { weight: 1, arbitrary: fc.constant({ kind: 'delete' as const }) },
  { weight: 1, arbitrary: fc.record({ kind: fc.constant('wait' as const), minutes: fc.integer({ min: 1, max: 180 }) }) },
);

const rate = fc.constantFrom(0, 0, 0.02, 0.1);
const faultsArb: fc.Arbitrary<FaultRates> = fc.record({
  'throttle': fc.constantFrom(0, 0.05, 0.3),
  'server-error': rate,
  'network': rate,
  'lost-response': rate,
  'hung-response': fc.constantFrom(0, 0, 0, 0.02),
  'kill-after-create': rate,
  'slow-lifecycle': rate,
  'failed-lifecycle': rate,
  'duplicate-delivery': fc.constantFrom(0, 0.1, 0.3),
  'framework-retry': fc.constantFrom(0, 0.5, 1),
});

const scenarioArb = fc.record({
  seed: fc.integer({ min: 1, max: 2 ** 31 - 1 }),
  faults: faultsArb,
  steps: fc.array(stepArb, { minLength: 1, maxLength: 5 }),
});

type Scenario = typeof scenarioArb extends fc.Arbitrary<infer S> ? S : never;

/** Runs one scenario: a volume, an instance and a guarded instance found by its tags; ends with a stack delete. */
async function runScenario(s: Scenario, stats?: Record<string, number>) {
  const world = ebsWorld(s.seed, s.faults);
  try {
    const stack = new CfnStack(world, handler, { resourceType: 'Custom::EbsSnapshotOnDeploy' });
    const inv = ebsInvariants(world);
    const extra: Violation[] = [];
    let guardedFor: string | undefined;
    const after = (result: StackOperationResult) => {
      inv.afterOperation(result);
      checkAllSnapshots(world, stack, result, extra);
      if (stats) stats[result.status] = (stats[result.status] ?? 0) + 1;
    };
    for (const step of s.steps) {
      if (step.kind === 'wait') {
        world.clock.advance(step.minutes * 60_000);
      } else if (step.kind === 'delete') {
        if (stack.stackId) after(await stack.deleteStack());
      } else {
        const desired: Record<string, Props> = {
          Snap1: volume(`t${step.t1}`, step.policy, step.wait),
          Snap2: instance(`t${step.t2}`, step.policy, step.wait),
          Snap3: guarded(`h${step.t3}`, step.policy, step.wait),
        };
        const otherFails = stack.stackId ? step.otherFailsAt : undefined;
        after(await stack.deploy(desired, { otherResourceFailsAt: otherFails }));
        // The guarded instance comes after its snapshot: it exists from the first deploy on.
        if (stack.stackId && guardedFor !== stack.stackId) {
          createGuardedInstance(world, stack.stackId);
          guardedFor = stack.stackId;
        }
      }
    }
    if (stack.stackId) after(await stack.deleteStack());
    const violations = [...inv.atEnd([stack]), ...extra];
    if (stats) {
      for (const [k, v] of Object.entries(world.faults.injected)) stats[`fault:${k}`] = (stats[`fault:${k}`] ?? 0) + v;
      for (const [k, v] of Object.entries(world.core.callCounts)) stats[k] = (stats[k] ?? 0) + v;
      const cleaned = world.copies().filter((c) => c.createdDuring && cleanedUpByItsRequest(world, c) && !c.serviceFailed);
      stats.duplicatesCleanedUp = (stats.duplicatesCleanedUp ?? 0) + cleaned.length;
      stats.noSourceYet = (stats.noSourceYet ?? 0) + stack.requests.filter((r) => r.data?.SourceFound === 'false').length;
      stats.scenarios = (stats.scenarios ?? 0) + 1;
    }
    return { violations, world, stack };
  } finally {
    world.dispose();
  }
}

describe('property: random deploy sequences with faults', () => {
  const replay = process.env.SIM_REPLAY ? test : test.skip;
  replay('replay SIM_REPLAY', async () => {
    const { violations, stack, world } = await runScenario(JSON.parse(process.env.SIM_REPLAY!));
    // eslint-disable-next-line no-console
    console.log(JSON.stringify({ violations, requests: stack.requests, log: world.core.log.map((c) => ({ ...c, input: undefined })) }, null, 1));
    expect(violations).toEqual([]);
  });

  test(`${RUNS} scenarios keep every invariant`, async () => {
    const stats: Record<string, number> = {};
    const started = Date.now();
    await fc.assert(
      fc.asyncProperty(scenarioArb, async (s) => {
        const { violations } = await runScenario(s, stats);
        if (violations.length) throw new Error(violations.slice(0, 10).map((v) => `[${v.invariant}] ${v.detail}`).join('\n'));
      }),
      { numRuns: RUNS, seed: SEED, endOnFailure: !!process.env.SIM_NO_SHRINK },
    );
    if (process.env.SIM_STATS) {
      // eslint-disable-next-line no-console
      console.log(`${RUNS} scenarios in ${Date.now() - started} ms`, stats);
    }
    expect(stats.scenarios).toBeGreaterThanOrEqual(RUNS);
    if (RUNS >= 200) {
      // The paths this file exists for were taken: the clean-up after a look-up missed, and first deploys without a source.
      expect(stats.duplicatesCleanedUp).toBeGreaterThan(0);
      expect(stats.noSourceYet).toBeGreaterThan(0);
    }
  });
});
