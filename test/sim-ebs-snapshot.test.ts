import * as fc from 'fast-check';
import { identityHash, isComplete, onEvent, onLateDuplicateSweep, snapshotIdsOf } from '../lambda/ebs-snapshot';
import { CfnStack, ConcurrentDuplicates, DeliveryCall, ProviderHandler, StackOperationResult } from './support/cfn-driver';
import { FakeEc2Options } from './support/fake-ec2';
import { FaultRates, ScriptedFault } from './support/faults';
import { Invariants, Violation } from './support/invariants';
import { CopyView } from './support/sim-core';
import { SIM_RUNS, SIM_TIMEOUT_MS, checkScenarios, faultRatesArb } from './support/sim-property';
import { SimWorld } from './support/sim-world';
import { clock } from '../lambda/shared/clock';
import { MANAGED_BY, OWNERSHIP_TAG_KEYS } from '../lambda/shared/ownership';
import { requestToken } from '../lambda/shared/token';
import type { EbsSnapshotOnDeployProperties, EbsSnapshotQueueDrainProperties } from '../src/private/ebs-contract';

const VOL_A = 'vol-0000000000000000a'; // instance I1, /dev/xvda
const VOL_B = 'vol-0000000000000000b'; // instance I1, /dev/sdf
const VOL_C = 'vol-0000000000000000c'; // not attached
const I1 = 'i-00000000000000001';
const GUARDED = 'GuardedInstance1234'; // the logical id of an instance the snapshot guards (found by its tags)
const handler: ProviderHandler = { onEvent, isComplete, onQueueMessage: onLateDuplicateSweep };
const RUNS = SIM_RUNS;
jest.setTimeout(SIM_TIMEOUT_MS);

type Props = EbsSnapshotOnDeployProperties;
/** The stack's queue drain (one per stack, as the construct makes it). */
const DRAIN: EbsSnapshotQueueDrainProperties = { Drain: 'late-duplicate-queue', QueueUrl: process.env.LATE_DUPLICATE_QUEUE_URL! };
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
function ebsWorld(seed: number, faults: FaultRates = {}, scripted: ScriptedFault[] = [], ec2: FakeEc2Options = {}): SimWorld {
  const world = new SimWorld({
    seed,
    faults,
    scripted,
    durations: { minMs: 5_000, maxMs: 180_000, slowMs: 3 * 3_600_000 },
    ec2: { visibilityDelayMs: 20_000, visibilityJitterMs: 10_000, ...ec2 },
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
 * Whether the sweep removed the copy: a DeleteSnapshot by the same resource during a later request
 * or by the late-duplicate sweep (a queued message), of a copy no answer of the stack ever named (a
 * delivery killed after its create, whose snapshot showed in reads only after the answering
 * delivery had stopped reading, is cleaned up by the request's isComplete, the next event for the
 * resource, or the late-duplicate sweep queued before its create).
 */
function sweptLater(world: SimWorld, stack: CfnStack, c: CopyView): boolean {
  if (stack.requests.some((r) => snapshotIdsOf(r.physicalIdOut).includes(c.id))) return false;
  return world.core.log.some((call) => call.command === 'DeleteSnapshotCommand' && call.resourceId === c.id &&
    call.outcome.startsWith('ok') && call.context?.owner === c.createdDuring?.owner && call.context?.stackId === c.createdDuring?.stackId &&
    call.context?.requestKey !== c.createdDuring?.requestKey);
}

/**
 * The invariants as they apply to EBS: one snapshot per volume per request is left (a duplicate the
 * request itself deleted again, or the sweep of a later event or of the late-duplicate queue, does
 * not count; the strict check that none is LEFT at the end is checkDeliveries), and a resource
 * points at snapshots that exist. No exception: a request that failed (CloudFormation took a killed
 * delivery's answer, or no delivery answered) is held to the same.
 */
function ebsInvariants(world: SimWorld, stack: CfnStack): Invariants {
  return new Invariants(world, {
    // A snapshot EBS failed after a deploy that did not wait for it is not the library's doing
    // (one that was waited for fails the deploy: checkAllSnapshots checks those).
    copyIdOf: (id) => {
      const first = snapshotIdsOf(id)[0];
      return first && world.copy(first)?.serviceFailed ? undefined : first;
    },
    // waitForCompletion applies to the snapshots taken from then on: checkAllSnapshots checks them.
    waitsForCopy: () => false,
    duplicateKeyOf: (c) => (cleanedUpByItsRequest(world, c) || sweptLater(world, stack, c)
      ? undefined : `${c.createdDuring!.requestKey}#${c.kind}#${c.target}`),
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

/** EC2 reads that lag 50–90 s behind a new snapshot. */
const SLOW_READS: FakeEc2Options = { visibilityDelayMs: 50_000, visibilityJitterMs: 40_000 };

/**
 * What concurrent deliveries and lagging reads must never do: leave two snapshots of one volume
 * made for one request (at the END of a scenario, after the sweeps had their chance: call
 * `stack.drainQueue()` first), whether the request succeeded or failed; delete a snapshot a
 * counted answer named during that same request; or leave a snapshot without the token of the
 * request that made it (a retry could not adopt it).
 */
function checkDeliveries(world: SimWorld, stack: CfnStack, out: Violation[]) {
  // A stack deleted (or whose creation rolled back) with sweeps still queued deleted them with the queue.
  for (const m of world.sqs.lost) out.push({ invariant: 'no-duplicates', detail: `the late-duplicate sweep ${m.body} was deleted with the queue before it ran` });
  const left = new Map<string, CopyView[]>();
  for (const c of world.copies()) {
    if (c.foreign || !c.exists || !c.createdDuring) continue;
    const key = `${c.createdDuring.requestKey}#${c.target}`;
    left.set(key, [...(left.get(key) ?? []), c]);
    const [stackId, logicalId, requestId] = [c.createdDuring.stackId!, c.createdDuring.owner!, c.createdDuring.requestKey.split('/').pop()!];
    const token = requestToken({ StackId: stackId, LogicalResourceId: logicalId, RequestId: requestId });
    if (!c.tags.some((t) => t.Key === OWNERSHIP_TAG_KEYS.token && t.Value === token)) {
      out.push({ invariant: 'no-orphans', detail: `${c.id} is left without the token of ${c.createdDuring.requestKey}` });
    }
  }
  for (const [key, copies] of left) {
    if (copies.length > 1) out.push({ invariant: 'no-duplicates', detail: `${copies.length} snapshots left for ${key}: ${copies.map((c) => c.id).join(', ')}` });
  }
  for (const r of stack.requests) {
    if (!r.counted || r.status !== 'SUCCESS' || r.requestType === 'Delete') continue;
    const key = `${r.stackId}/${r.logicalId}/${r.requestId}`;
    // A set with a snapshot EBS failed is no point in time: a delivery that sees it in error fails and
    // deletes the set, which another delivery may have answered a moment earlier (its read came first).
    if (snapshotIdsOf(r.physicalIdOut).some((id) => world.copy(id)?.serviceFailed)) continue;
    for (const id of snapshotIdsOf(r.physicalIdOut)) {
      const deleter = world.core.log.find((call) => call.command === 'DeleteSnapshotCommand' && call.resourceId === id &&
        call.outcome.startsWith('ok') && call.context?.requestKey === key);
      // Was a known weak case (a delivery that made the answer and then failed deleted it): a failing
      // delivery now keeps what another delivery may have answered.
      if (deleter) out.push({ invariant: 'success-points-at-copy', detail: `${r.requestType} ${key} answered ${id}, and deleted it (call ${deleter.seq})` });
    }
  }
}

describe('scenarios', () => {
  test.each(['retain', 'destroy'] as const)('volume and instance sources: create, update by trigger, stack delete (%s)', async (policy) => {
    const world = ebsWorld(1);
    try {
      const stack = new CfnStack(world, handler, { resourceType: 'Custom::EbsSnapshotOnDeploy' });
      const inv = ebsInvariants(world, stack);
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
      await stack.drainQueue();
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
      const inv = ebsInvariants(world, stack);
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
      await stack.drainQueue();
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
        const inv = ebsInvariants(world, stack);
        const created = await stack.deploy({ Snap1: volume('v1', 'retain') });
        inv.afterOperation(created);
        expect(created.status).toBe('CREATE_COMPLETE');
        expect(existing(world, VOL_C).map((c) => c.id)).toEqual([created.resources.get('Snap1')!.physicalId]);
        await stack.drainQueue();
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
      const inv = ebsInvariants(world, stack);
      const created = await stack.deploy({ Snap1: volume('v1', 'destroy'), Snap2: instance('v1', 'destroy') });
      inv.afterOperation(created);
      await stack.drainQueue();
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
      const inv = ebsInvariants(world, stack);
      const created = await stack.deploy({ Snap2: instance('v1', 'destroy') });
      const before = created.resources.get('Snap2')!.physicalId;
      const failed = await stack.deploy({ Snap2: instance('v2', 'destroy') }, { otherResourceFailsAt: 1 });
      inv.afterOperation(failed);
      expect(failed.status).toBe('UPDATE_ROLLBACK_COMPLETE');
      expect(failed.resources.get('Snap2')!.physicalId).toBe(before);
      // The failed update's snapshots were cleaned up (destroy), the old ones are all there.
      expect(snapshotIdsOf(before).every((id) => world.copy(id)?.exists)).toBe(true);
      expect(world.copies().filter((c) => !c.foreign && c.exists)).toHaveLength(2);
      await stack.drainQueue();
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
      expect(stack.requests[0].reason).toMatch(/is in state error: Internal error while creating the snapshot; the snapshots (of this request|this request made) have been deleted/);
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
        const inv = ebsInvariants(world, stack);
        inv.afterOperation(await stack.deploy({ Snap1: volume('v1', 'retain') }));
        await stack.drainQueue();
        return inv.atEnd([stack]);
      } finally {
        world.dispose();
      }
    }
    expect(await run(false)).toEqual([]);
    expect(await run(true)).toContainEqual(expect.objectContaining({ invariant: 'no-duplicates' }));
  });
});

const CREATE = /^CreateSnapshots?Command$/;

/** The duplicate starts when the first is about to send its first create (its look-up found nothing), and runs its own look-up first. */
const BETWEEN_LOOKUP_AND_CREATE: ConcurrentDuplicates = {
  startWhen: (c) => c.delivery === 0 && CREATE.test(c.command) && !c.before.some((x) => CREATE.test(x)),
  resumeWhen: (c) => c.command === 'DescribeSnapshotsCommand',
};
/** The duplicate starts when the first, its create sent, reads to settle and deduplicate. */
const WHILE_SETTLING: ConcurrentDuplicates = {
  startWhen: (c) => c.delivery === 0 && c.command === 'DescribeSnapshotsCommand' && c.before.some((x) => CREATE.test(x)),
  resumeWhen: (c) => CREATE.test(c.command) || c.command === 'DescribeSnapshotsCommand',
};

/** The duplicate starts 15 s or more after the first's create (EC2 takes its create), while the first still waits for it to show. */
const LATE_IN_SETTLING: ConcurrentDuplicates = {
  startWhen: (c) => c.delivery === 0 && c.command === 'DescribeSnapshotsCommand' &&
    c.before.slice(c.before.findIndex((x) => CREATE.test(x))).filter((x) => x === 'DescribeSnapshotsCommand').length >= 4,
  resumeWhen: (c) => CREATE.test(c.command),
};

/** Runs `options` with every call the hooks see traced. */
function traced(options: ConcurrentDuplicates, trace: DeliveryCall[]): ConcurrentDuplicates {
  return {
    startWhen: (c) => (trace.push(c), options.startWhen!(c)),
    resumeWhen: (c) => (trace.push(c), options.resumeWhen!(c)),
  };
}

describe('concurrent duplicate deliveries (both handlers in flight at once)', () => {
  const cases: Array<[string, ConcurrentDuplicates, 'volume' | 'instance', string, FakeEc2Options]> = [];
  for (const [when, options] of [
    ['between its look-up and its create', BETWEEN_LOOKUP_AND_CREATE], ['while it is settling', WHILE_SETTLING], ['late in its settling', LATE_IN_SETTLING],
  ] as const) {
    for (const source of ['volume', 'instance'] as const) {
      cases.push([when, options, source, '20–30 s', {}], [when, options, source, '50–90 s', SLOW_READS]);
    }
  }

  test.each(cases)('the duplicate starts while the first is %s (%s source, reads lag %s): one snapshot per volume, the answer kept',
    async (_when, options, source, _lag, reads) => {
      for (const seed of [21, 22, 23, 24]) {
        const world = ebsWorld(seed, {}, [{ kind: 'duplicate-delivery' }], reads);
        try {
          const trace: DeliveryCall[] = [];
          const stack = new CfnStack(world, handler, { concurrentDuplicates: traced(options, trace) });
          const inv = ebsInvariants(world, stack);
          const props = source === 'volume' ? volume('v1', 'destroy') : instance('v1', 'destroy');
          const created = await stack.deploy({ Snap1: props });
          inv.afterOperation(created);
          // The race took place: the duplicate started while the first was held before that call, and it read first.
          expect(stack.concurrency).toEqual({ pairs: 1, overlapped: 1 });
          const start = trace.findIndex((c) => c.delivery === 0 && options.startWhen!(c));
          expect(trace.slice(start + 1).find((c) => c.delivery === 1)?.command).toBe('DescribeSnapshotsCommand');
          const [first, second] = stack.requests;
          expect([first.duplicate, second.duplicate]).toEqual([false, true]);
          expect(created.status).toBe('CREATE_COMPLETE');
          const answered = snapshotIdsOf(created.resources.get('Snap1')!.physicalId);
          const volumes = source === 'volume' ? [VOL_C] : [VOL_A, VOL_B];
          expect(answered).toHaveLength(volumes.length);
          // Whatever each delivery answered, one snapshot per volume is left: the one CloudFormation keeps.
          expect(volumes.flatMap((v) => existing(world, v).map((c) => c.id)).sort()).toEqual([...answered].sort());
          await stack.drainQueue();
          const out = [...inv.atEnd([stack])];
          checkAllSnapshots(world, stack, created, out);
          checkDeliveries(world, stack, out);
          expect(out).toEqual([]);
          // And the stack delete removes it (destroy).
          expect((await stack.deleteStack()).status).toBe('DELETE_COMPLETE');
          expect(volumes.flatMap((v) => existing(world, v))).toEqual([]);
        } finally {
          world.dispose();
        }
      }
    });

  test('the first create\'s response is lost, and the duplicate starts while the first watches its look-up: neither sends the create again', async () => {
    for (const reads of [{}, SLOW_READS]) {
      const world = ebsWorld(31, {}, [{ kind: 'duplicate-delivery' }, { kind: 'lost-response', command: 'CreateSnapshotCommand' }], reads);
      try {
        const stack = new CfnStack(world, handler, { concurrentDuplicates: WHILE_SETTLING });
        const inv = ebsInvariants(world, stack);
        const created = await stack.deploy({ Snap1: volume('v1', 'retain') });
        inv.afterOperation(created);
        expect(created.status).toBe('CREATE_COMPLETE');
        expect(stack.concurrency.overlapped).toBe(1);
        const creates = world.core.log.filter((c) => c.command === 'CreateSnapshotCommand');
        // The first's (acted, response lost); the duplicate's, if any, refused: 15 s between snapshots of a volume.
        expect(creates[0].outcome).toBe('ok+lost-response');
        expect(creates.slice(1).every((c) => c.outcome === 'SnapshotCreationPerVolumeRateExceeded')).toBe(true);
        expect(existing(world, VOL_C).map((c) => c.id)).toEqual([created.resources.get('Snap1')!.physicalId]);
        expect(stack.requests.map((r) => r.physicalIdOut)).toEqual([creates[0].resourceId, creates[0].resourceId]);
        await stack.drainQueue();
        const out = [...inv.atEnd([stack])];
        checkDeliveries(world, stack, out);
        expect(out).toEqual([]);
      } finally {
        world.dispose();
      }
    }
  });

  test('each delivery has its own Lambda deadline: the first is killed by its own timeout, the duplicate (started with it) answers', async () => {
    // The first hangs until its Lambda times out; the duplicate, started at once, is not killed with it.
    const world = ebsWorld(32, {}, [{ kind: 'duplicate-delivery' }]);
    try {
      let hung = false;
      const hangsFirst = {
        onEvent: async (event: any) => {
          if (!hung) {
            hung = true;
            await clock.sleep(24 * 3_600_000);
          }
          return onEvent(event);
        },
        isComplete,
        onQueueMessage: onLateDuplicateSweep,
      };
      const stack = new CfnStack(world, hangsFirst, { concurrentDuplicates: true });
      const inv = ebsInvariants(world, stack);
      const created = await stack.deploy({ Snap1: volume('v1', 'retain') });
      inv.afterOperation(created);
      const [first, second] = stack.requests;
      expect(first.reason).toMatch(/Task timed out or was killed: the function timed out while sleeping/);
      expect(second.status).toBe('SUCCESS');
      expect(created.status).toBe(second.counted ? 'CREATE_COMPLETE' : 'ROLLBACK_COMPLETE');
      expect(existing(world, VOL_C).length).toBeLessThanOrEqual(1);
      await stack.drainQueue();
      const out = [...inv.atEnd([stack])];
      checkDeliveries(world, stack, out);
      expect(out).toEqual([]);
    } finally {
      world.dispose();
    }
  });

  test('the driver overlaps the two deliveries\' sleeps on the shared clock, and each has its own deadline', async () => {
    async function run(concurrent: boolean, sleeps: number[]) {
      const world = ebsWorld(33, {}, [{ kind: 'duplicate-delivery' }]);
      try {
        let deliveries = 0;
        const seen: Array<[number, number]> = [];
        const sleeper = {
          onEvent: async () => {
            const me = deliveries++;
            for (const ms of sleeps) {
              await clock.sleep(ms);
              seen.push([me, world.clock.now()]);
            }
            return { PhysicalResourceId: 'p' };
          },
        };
        const stack = new CfnStack(world, sleeper, { onEventTimeoutMs: 60_000, concurrentDuplicates: concurrent });
        const start = world.clock.now();
        await stack.deploy({ R: {} });
        return { elapsed: world.clock.now() - start, seen: seen.map(([d, t]) => [d, t - start]), requests: stack.requests };
      } finally {
        world.dispose();
      }
    }
    expect((await run(false, [10_000, 10_000])).elapsed).toBe(40_000);
    const both = await run(true, [10_000, 10_000]);
    expect(both.elapsed).toBe(20_000);
    expect(both.seen).toEqual([[0, 10_000], [1, 10_000], [0, 20_000], [1, 20_000]]);
    // 70 s of sleep in a 60 s Lambda: each is killed at its own deadline (not the other's, not twice as early).
    const killed = await run(true, [30_000, 40_000]);
    expect(killed.seen).toEqual([[0, 30_000], [1, 30_000]]);
    expect(killed.elapsed).toBe(60_000);
    expect(killed.requests.map((r) => r.reason)).toEqual([expect.stringMatching(/timed out while sleeping/), expect.stringMatching(/timed out while sleeping/)]);
  });
});

/**
 * Three races that used to leave two snapshots of a volume for one request (found by the simulator,
 * fixed in lambda/ebs-snapshot): each runs the duplicate 15 s or more after the first delivery's
 * create (EC2 takes a second CreateSnapshot of the volume then) while reads still miss it. The
 * handler now answers, in every delivery, the oldest snapshot of the request per volume, only once
 * reads had longer than they lag to show an older one, and deletes every other snapshot of the
 * request, whoever made it; the sweep (isComplete, later events) removes what shows later still.
 */
describe('fixed races: one snapshot of a volume left for one request (concurrent deliveries)', () => {
  async function lateDuplicate(seed: number, reads: FakeEc2Options, atStart: (world: SimWorld) => void = () => undefined) {
    const world = ebsWorld(seed, {}, [{ kind: 'duplicate-delivery' }], reads);
    try {
      const stack = new CfnStack(world, handler, {
        concurrentDuplicates: { ...LATE_IN_SETTLING, startWhen: (c) => LATE_IN_SETTLING.startWhen!(c) && (atStart(world), true) },
      });
      const inv = ebsInvariants(world, stack);
      inv.afterOperation(await stack.deploy({ Snap1: volume('v1', 'retain') }));
      await stack.drainQueue();
      const out = [...inv.atEnd([stack])];
      checkDeliveries(world, stack, out);
      const creates = world.core.log.filter((c) => c.command === 'CreateSnapshotCommand' && c.outcome.startsWith('ok'));
      return { out, creates, overlapped: stack.concurrency.overlapped };
    } finally {
      world.dispose();
    }
  }

  test('the scenarios below are races that happen: both deliveries\' creates act, 15 s or more apart', async () => {
    for (const [reads, atStart] of [
      [SLOW_READS, undefined],
      [{}, (w: SimWorld) => w.faults.script({ kind: 'kill-after-create', command: 'CreateSnapshotCommand' })],
      [{}, (w: SimWorld) => w.faults.script({ kind: 'lost-response', command: 'CreateSnapshotCommand' })],
    ] as const) {
      const { creates, overlapped } = await lateDuplicate(42, reads, atStart);
      expect(overlapped).toBe(1);
      expect(creates).toHaveLength(2);
      expect(creates[1].at - creates[0].at).toBeGreaterThanOrEqual(15_000);
    }
  });

  // Was a bug: the duplicate's own snapshot showed first and it answered with it at once; the first
  // left that newer one (not its own). Now neither answers before 100 s (longer than reads lag) have
  // passed since the snapshot it answers was made: the duplicate sees the older one, switches to it
  // and deletes its own.
  test('reads lagging 50–90 s: both deliveries answer the oldest snapshot, the newer one is deleted', async () => {
    const out: Violation[] = [];
    for (let seed = 1; seed <= 60; seed++) out.push(...(await lateDuplicate(seed, SLOW_READS)).out);
    expect(out).toEqual([]);
  });

  // Was a bug: the duplicate killed right after its create left its newer snapshot for good. Now the
  // first delivery, still settling when it shows, deletes it (not its answer, whoever made it).
  test('a duplicate killed after its create: its newer snapshot is deleted by the delivery that answers', async () => {
    const { out } = await lateDuplicate(42, {}, (w) => w.faults.script({ kind: 'kill-after-create', command: 'CreateSnapshotCommand' }));
    expect(out).toEqual([]);
  });

  // Was a bug: after a lost create response the duplicate adopted the first's snapshot and returned
  // before its own showed. Now it settles until 100 s after the create of unknown outcome, then
  // deletes every snapshot of the request that is not the answer (its own included).
  // (Also without concurrency: soak counterexample {"seed":1306211114, lost-response 0.1, kill-after-create 0.02, framework-retry 1, slowReads}.)
  test('a duplicate whose create response is lost adopts the first\'s snapshot and deletes its own', async () => {
    const { out } = await lateDuplicate(42, {}, (w) => w.faults.script({ kind: 'lost-response', command: 'CreateSnapshotCommand' }));
    expect(out).toEqual([]);
  });
});

/**
 * Was a bug (soak counterexample: 20,000 random scenarios, reads lagging 50–90 s, concurrent
 * deliveries): a duplicate delivery of an update created its snapshot ~34 s after the answering
 * delivery's and was killed; its snapshot showed in reads only after the rollback and the clean-up
 * Delete had swept, so it was left. Now a Delete of snapshots younger than 260 s sweeps their
 * request in isComplete until 260 s after they were taken (completeDelete).
 */
describe('a duplicate killed after its create, followed at once by a rollback and the clean-up Delete', () => {
  async function rolledBack(seed: number, policy: Policy) {
    const world = ebsWorld(seed, {}, [], SLOW_READS);
    try {
      const stack = new CfnStack(world, handler, {
        concurrentDuplicates: {
          ...LATE_IN_SETTLING,
          startWhen: (c) => LATE_IN_SETTLING.startWhen!(c) && (world.faults.script({ kind: 'kill-after-create', command: 'CreateSnapshotCommand' }), true),
        },
      });
      const inv = ebsInvariants(world, stack);
      const created = await stack.deploy({ Snap1: volume('v1', policy) });
      inv.afterOperation(created);
      const before = created.resources.get('Snap1')!.physicalId;
      // The update's request is delivered twice at once; another resource fails right after it: a rollback.
      world.faults.script({ kind: 'duplicate-delivery' });
      const failed = await stack.deploy({ Snap1: volume('v2', policy) }, { otherResourceFailsAt: 1 });
      inv.afterOperation(failed);
      expect(failed.status).toBe('UPDATE_ROLLBACK_COMPLETE');
      expect(failed.resources.get('Snap1')!.physicalId).toBe(before);
      expect(stack.concurrency.overlapped).toBe(1);
      // CloudFormation acted on the killed delivery's failure (its answer came first): no clean-up Delete, not this case.
      const cleanup = stack.requests.find((r) => r.requestType === 'Delete' && r.cleanup);
      if (!cleanup) return undefined;
      expect(cleanup.status).toBe('SUCCESS');
      const creates = world.core.log.filter((c) => c.command === 'CreateSnapshotCommand' && c.outcome.startsWith('ok'));
      const killed = creates.find((c) => c.outcome.includes('kill-after-create'));
      const cleanupKey = `${cleanup.stackId}/${cleanup.logicalId}/${cleanup.requestId}`;
      const sweptByCleanup = world.core.log.some((c) => c.command === 'DeleteSnapshotCommand' && c.resourceId === killed?.resourceId &&
        c.outcome.startsWith('ok') && c.context?.requestKey === cleanupKey);
      await stack.drainQueue();
      const out = [...inv.atEnd([stack])];
      checkAllSnapshots(world, stack, failed, out);
      checkDeliveries(world, stack, out);
      return { out, killed, sweptByCleanup, answered: cleanup.physicalIdIn, creates };
    } finally {
      world.dispose();
    }
  }

  test.each(['retain', 'destroy'] as const)('(%s) the killed duplicate\'s snapshot, showing after the clean-up Delete\'s onEvent, is swept', async (policy) => {
    const out: Violation[] = [];
    let cases = 0;
    let swept = 0;
    for (let seed = 1; seed <= 24; seed++) {
      const r = await rolledBack(seed, policy);
      if (!r) continue;
      cases++;
      if (r.sweptByCleanup) swept++;
      // The race took place: the duplicate's create acted 15 s or more after the answer's, and it was killed.
      expect(r.killed).toBeDefined();
      expect(r.killed!.at - r.creates[0].at).toBeGreaterThanOrEqual(15_000);
      expect(snapshotIdsOf(r.answered)).not.toContain(r.killed!.resourceId);
      out.push(...r.out);
    }
    expect(cases).toBeGreaterThan(5);
    // The clean-up Delete's late sweep is what deleted the killed duplicate's snapshot, in some of them.
    expect(swept).toBeGreaterThan(0);
    expect(out).toEqual([]);
  });
});

/** Whether a late-duplicate sweep (a queued message, not an event of the resource) deleted the snapshot. */
function sweptByQueue(world: SimWorld, id: string): boolean {
  return world.core.log.some((call) => call.command === 'DeleteSnapshotCommand' && call.resourceId === id &&
    call.outcome.startsWith('ok') && /\/queue:/.test(call.context?.requestKey ?? ''));
}

/**
 * Was the documented weaker case (soak seed 538869895, failing after 16,879 scenarios): the
 * duplicate delivery created after the first (reads had not shown the first's yet) and was killed;
 * CloudFormation took its failure. The Create failed, so no event follows (the Provider framework
 * skips the Delete of a failed Create), and the first delivery stopped reading before the
 * duplicate's snapshot showed: both were left. Now the sweep the killed delivery queued before its
 * create deletes its snapshot once it shows, and since this failure rolls back the stack's creation
 * (which deletes the queue), the queue drain holds the deletion until that sweep has run.
 * (Seed 2214: the same case found again once the drain was part of the stack.)
 */
describe('CloudFormation takes the failure of a duplicate delivery killed after its create', () => {
  const scenario: Scenario = {
    seed: 2214,
    faults: { 'throttle': 0.05, 'kill-after-create': 0.1, 'duplicate-delivery': 0.3 },
    delivery: { concurrent: 1, start: 'at-a-random-call', slowReads: true },
    steps: [{ kind: 'deploy', t1: 0, t2: 0, t3: 0, policy: 'retain', wait: false }],
  };

  test('the failed Create leaves one snapshot of the volume: the late-duplicate sweep deletes the killed delivery\'s', async () => {
    const { violations, stack, world } = await runScenario(scenario);
    expect(violations).toEqual([]);
    const create = stack.requests.filter((r) => r.logicalId === 'Snap1' && r.requestType === 'Create');
    expect(create.map((r) => [r.status, r.counted])).toEqual([['SUCCESS', false], ['FAILED', true]]);
    expect(create[1].reason).toMatch(/^Task timed out or was killed: killed after CreateSnapshotCommand/);
    expect(stack.operations[0].status).toBe('ROLLBACK_COMPLETE');
    const ofRequest = world.copies().filter((c) => c.target === VOL_C && c.createdDuring?.requestKey.endsWith(`/Snap1/${create[0].requestId}`));
    const killed = world.core.log.find((c) => c.outcome === 'ok+kill-after-create' && c.command === 'CreateSnapshotCommand')!;
    // The path this test is for: the killed delivery's snapshot showed after the answering delivery had answered.
    expect(world.ec2.snapshots.get(killed.resourceId!)!.visibleAt).toBeGreaterThan(create[0].endedAt!);
    expect(ofRequest.filter((c) => c.exists).map((c) => c.id)).toEqual([create[0].physicalIdOut]);
    expect(sweptByQueue(world, killed.resourceId!)).toBe(true);
    const token = requestToken({ StackId: create[0].stackId, LogicalResourceId: 'Snap1', RequestId: create[0].requestId });
    expect(world.copy(create[0].physicalIdOut)!.tags).toContainEqual({ Key: OWNERSHIP_TAG_KEYS.token, Value: token });
    // The rollback's drain waited for the sweep (at least a minute, as SQS's counts lag), and nothing was lost with the queue.
    const drain = stack.requests.find((r) => r.logicalId === 'QueueDrain' && r.requestType === 'Delete' && r.counted)!;
    const sweptAt = world.core.log.find((c) => c.command === 'DeleteSnapshotCommand' && c.resourceId === killed.resourceId)!.at;
    expect(drain.endedAt!).toBeGreaterThan(sweptAt);
    expect(world.sqs.lost).toEqual([]);
  });

  test('the check can fail: without the late-duplicate sweep, both snapshots are left and reported', async () => {
    const sweep = handler.onQueueMessage;
    handler.onQueueMessage = async () => ({ batchItemFailures: [] });
    try {
      const { violations } = await runScenario(scenario);
      // Both checks see it (the invariants' no-duplicates, and checkDeliveries of what is left), and nothing else is wrong.
      expect(violations.length).toBeGreaterThan(0);
      for (const v of violations) expect(v).toMatchObject({ invariant: 'no-duplicates', detail: expect.stringMatching(/^2 (copies|snapshots) .*snap-[0-9a-f]+, snap-[0-9a-f]+$/) });
    } finally {
      handler.onQueueMessage = sweep;
    }
  });

  test('the check can fail: with a drain that does not wait, the rollback deletes the queue with the sweep on it', async () => {
    const complete = handler.isComplete!;
    handler.isComplete = async (event: any) => (event.ResourceProperties?.Drain ? { IsComplete: true } : complete(event));
    let run: Awaited<ReturnType<typeof runScenario>>;
    try {
      run = await runScenario(scenario);
    } finally {
      handler.isComplete = complete;
    }
    const { violations, world } = run;
    expect(world.sqs.lost.length).toBeGreaterThan(0);
    expect(violations).toContainEqual(expect.objectContaining({ invariant: 'no-duplicates', detail: expect.stringMatching(/was deleted with the queue before it ran/) }));
  });
});

/** Counterexamples random soaks found, replayed on every run (each was a bug; see the handler tests named after them). */
describe('soak counterexamples', () => {
  test.each([
    // 22,355th scenario of a 50,000 soak: a delivery whose reads gave up (30 % throttling) deleted the
    // snapshot it made, which the concurrent duplicate had adopted and answered (UPDATE_COMPLETE named a deleted snapshot).
    ['no success names a snapshot a failing delivery deleted', '{"seed":1359044284,"faults":{"throttle":0.3,"server-error":0.1,"network":0.1,"lost-response":0,"hung-response":0,"kill-after-create":0.02,"slow-lifecycle":0.1,"failed-lifecycle":0.02,"duplicate-delivery":0.3,"framework-retry":0},"delivery":{"concurrent":0.5,"start":"at-once","slowReads":false},"steps":[{"kind":"deploy","t1":0,"t2":1,"t3":1,"policy":"destroy","wait":false,"otherFailsAt":3},{"kind":"deploy","t1":2,"t2":0,"t3":1,"policy":"retain","wait":false},{"kind":"deploy","t1":1,"t2":2,"t3":2,"policy":"retain","wait":false,"otherFailsAt":0},{"kind":"deploy","t1":2,"t2":2,"t3":1,"policy":"destroy","wait":true,"otherFailsAt":3}]}'],
    // 11,243rd scenario of a 20,000 soak (seed 538869895): the first delivery deleted the second's
    // snapshot as a duplicate before it showed in reads, then failed with its own set (one in error)
    // and deleted that; the second answered the snapshot already gone (UPDATE_COMPLETE named it).
    ['no success names a snapshot another delivery deleted before it showed', '{"seed":786587777,"faults":{"throttle":0.3,"server-error":0,"network":0,"lost-response":0.1,"hung-response":0,"kill-after-create":0.1,"slow-lifecycle":0.02,"failed-lifecycle":0.02,"duplicate-delivery":0.1,"framework-retry":1},"delivery":{"concurrent":1,"start":"at-a-random-call","slowReads":true},"steps":[{"kind":"deploy","t1":0,"t2":1,"t3":0,"policy":"destroy","wait":false,"otherFailsAt":0},{"kind":"deploy","t1":1,"t2":2,"t3":2,"policy":"retain","wait":false}]}'],
  ])('%s', async (_, scenario) => {
    const { violations, stack } = await runScenario(JSON.parse(scenario));
    expect(violations).toEqual([]);
    // The path was taken: two deliveries of one request ran at once.
    expect(stack.concurrency.overlapped).toBeGreaterThan(0);
  });
});

describe('EC2 reads lagging 50–90 s, with lost responses', () => {
  test('the request succeeds or fails clearly, never leaves two snapshots of a volume, and what it left keeps its token', async () => {
    const outcomes: Record<string, number> = {};
    for (let seed = 40; seed < 100; seed++) {
      const world = ebsWorld(seed, { 'lost-response': 0.3, 'throttle': 0.05, 'duplicate-delivery': 0.5, 'framework-retry': 0.5 }, [], SLOW_READS);
      try {
        const stack = new CfnStack(world, handler, { concurrentDuplicates: { share: 0.5 } });
        const inv = ebsInvariants(world, stack);
        const out: Violation[] = [];
        for (const trigger of ['v1', 'v2']) {
          const result = await stack.deploy({ Snap1: volume(trigger, 'retain'), Snap2: instance(trigger, 'destroy') });
          inv.afterOperation(result);
          checkAllSnapshots(world, stack, result, out);
          outcomes[result.status] = (outcomes[result.status] ?? 0) + 1;
        }
        for (const r of stack.requests.filter((q) => q.status === 'FAILED')) {
          // Short and human: no stack trace, no AWS SDK dump.
          expect(r.reason!.length).toBeLessThan(1_000);
          expect(r.reason).not.toMatch(/\n\s+at |\$metadata/);
        }
        await stack.drainQueue();
        out.push(...inv.atEnd([stack]));
        checkDeliveries(world, stack, out);
        expect(out).toEqual([]);
      } finally {
        world.dispose();
      }
    }
    expect(outcomes.CREATE_COMPLETE).toBeGreaterThan(0);
    expect(Object.keys(outcomes).length).toBeGreaterThan(1);
  });

  test('a lost create response and too little time left: a clear failure, the snapshot shows later with the token, and a retry adopts it', async () => {
    const world = ebsWorld(50, {}, [{ kind: 'lost-response', command: 'CreateSnapshotCommand' }], SLOW_READS);
    try {
      const event = {
        RequestType: 'Create',
        RequestId: 'retried-request',
        StackId: 'arn:aws:cloudformation:us-east-1:111111111111:stack/app/1',
        LogicalResourceId: 'Snap1',
        ResourceType: 'Custom::EbsSnapshotOnDeploy',
        ResponseURL: '...',
        ResourceProperties: { ServiceToken: 'x', ...volume('v1', 'retain') },
      } as any;
      world.core.context = { kind: 'cfn', stackId: event.StackId, owner: 'Snap1', requestKey: `${event.StackId}/Snap1/${event.RequestId}`, requestType: 'Create' };
      // 100 s left: 10 s to watch reads after the lost response, far less than they lag.
      await expect(onEvent(event, { getRemainingTimeInMillis: () => 100_000 })).rejects.toThrow(
        /EC2 CreateSnapshot on volume vol-0+c may have acted \(.+\), and no snapshot of this request showed in reads within \d+ seconds\. It was not sent again/);
      const made = world.core.log.filter((c) => c.command === 'CreateSnapshotCommand');
      expect(made).toHaveLength(1);
      const id = made[0].resourceId!;
      // Not deleted (it did not show), and tagged with the request's token.
      expect(world.copy(id)).toMatchObject({ exists: true });
      expect(world.copy(id)!.tags).toContainEqual({ Key: OWNERSHIP_TAG_KEYS.token, Value: requestToken(event) });
      world.clock.advance(90_000);
      // The retry of the same request adopts it: no second create.
      const retried = await onEvent(event, { getRemainingTimeInMillis: () => 300_000 });
      expect(retried).toMatchObject({ PhysicalResourceId: id, Data: { SnapshotId: id, Origin: 'created' } });
      expect(world.core.log.filter((c) => c.command === 'CreateSnapshotCommand')).toHaveLength(1);
      expect(existing(world, VOL_C).map((c) => c.id)).toEqual([id]);
    } finally {
      world.core.context = undefined;
      world.dispose();
    }
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

const faultsArb = faultRatesArb({
  'duplicate-delivery': fc.constantFrom(0, 0.1, 0.3),
  'framework-retry': fc.constantFrom(0, 0.5, 1),
});

/**
 * How duplicate deliveries run: after the first (as before), or at the same time (a share of them),
 * starting together or when the first is about to send a random call. EC2 reads lag 20–30 s, or
 * 50–90 s. Every fault is drawn with every delivery mode and read lag (kills and lost or hung
 * responses included): at the end of each scenario (after the stack delete) no two snapshots of a
 * volume made for one request may be left (checkDeliveries).
 */
const deliveryArb = fc.record({
  concurrent: fc.constantFrom(0, 0.5, 1),
  start: fc.constantFrom('at-once' as const, 'at-a-random-call' as const),
  slowReads: fc.boolean(),
});

const scenarioArb = fc.record({
  seed: fc.integer({ min: 1, max: 2 ** 31 - 1 }),
  faults: faultsArb,
  delivery: deliveryArb,
  steps: fc.array(stepArb, { minLength: 1, maxLength: 5 }),
});

type Scenario = typeof scenarioArb extends fc.Arbitrary<infer S> ? S : never;

/** Runs one scenario: a volume, an instance and a guarded instance found by its tags; ends with a stack delete. */
async function runScenario(s: Scenario, stats?: Record<string, number>) {
  const { delivery } = s;
  const concurrent = delivery.concurrent > 0;
  const slowReads = delivery.slowReads;
  const world = ebsWorld(s.seed, s.faults, [], slowReads ? SLOW_READS : {});
  try {
    const concurrentDuplicates: ConcurrentDuplicates | false = concurrent && {
      share: delivery.concurrent,
      startWhen: delivery.start === 'at-once' ? undefined : () => world.faults.next() < 0.25,
      resumeWhen: () => world.faults.next() < 0.5,
    };
    const stack = new CfnStack(world, handler, { resourceType: 'Custom::EbsSnapshotOnDeploy', concurrentDuplicates, queueDeletedWithStack: true });
    const inv = ebsInvariants(world, stack);
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
        const desired: Record<string, Props | EbsSnapshotQueueDrainProperties> = {
          // Created first and deleted last: every snapshot resource depends on it.
          QueueDrain: DRAIN,
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
    // Every delayed sweep has run.
    await stack.drainQueue();
    checkDeliveries(world, stack, extra);
    const violations = [...inv.atEnd([stack]), ...extra];
    if (stats) {
      for (const [k, v] of Object.entries(world.faults.injected)) stats[`fault:${k}`] = (stats[`fault:${k}`] ?? 0) + v;
      for (const [k, v] of Object.entries(world.core.callCounts)) stats[k] = (stats[k] ?? 0) + v;
      const cleaned = world.copies().filter((c) => c.createdDuring && cleanedUpByItsRequest(world, c) && !c.serviceFailed);
      stats.duplicatesCleanedUp = (stats.duplicatesCleanedUp ?? 0) + cleaned.length;
      stats.sweptByQueue = (stats.sweptByQueue ?? 0) + world.copies().filter((c) => c.createdDuring && sweptByQueue(world, c.id)).length;
      stats.sweepsDeadLettered = (stats.sweepsDeadLettered ?? 0) + world.sqs.deadLetters.length;
      stats.sweepsLostWithQueue = (stats.sweepsLostWithQueue ?? 0) + world.sqs.lost.length;
      // What the drain costs: how long its counted Deletes (stack deletes, creation rollbacks) took.
      for (const r of stack.requests.filter((q) => q.logicalId === 'QueueDrain' && q.requestType === 'Delete' && q.counted)) {
        const started = r.startedAt ?? r.endedAt!;
        stats.drainDeletes = (stats.drainDeletes ?? 0) + 1;
        stats.drainDeleteSeconds = (stats.drainDeleteSeconds ?? 0) + Math.round((r.endedAt! - started) / 1000);
        stats.drainDeleteMaxSeconds = Math.max(stats.drainDeleteMaxSeconds ?? 0, Math.round((r.endedAt! - started) / 1000));
      }
      stats.sweptLater = (stats.sweptLater ?? 0) + world.copies().filter((c) => c.createdDuring && sweptLater(world, stack, c)).length;
      stats.noSourceYet = (stats.noSourceYet ?? 0) + stack.requests.filter((r) => r.data?.SourceFound === 'false').length;
      stats.scenarios = (stats.scenarios ?? 0) + 1;
      stats.concurrentPairs = (stats.concurrentPairs ?? 0) + stack.concurrency.pairs;
      stats.overlappedPairs = (stats.overlappedPairs ?? 0) + stack.concurrency.overlapped;
      if (slowReads) stats.slowReads = (stats.slowReads ?? 0) + 1;
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
    const stats = await checkScenarios(scenarioArb, runScenario, 20261123);
    expect(stats.scenarios).toBeGreaterThanOrEqual(RUNS);
    if (RUNS >= 200) {
      // The paths this file exists for were taken: the clean-up after a look-up missed, and first deploys without a source.
      expect(stats.duplicatesCleanedUp).toBeGreaterThan(0);
      expect(stats.noSourceYet).toBeGreaterThan(0);
      // Concurrent deliveries ran, overlapping, and reads lagged 50–90 s.
      expect(stats.overlappedPairs).toBeGreaterThan(RUNS / 10);
      expect(stats.slowReads).toBeGreaterThan(RUNS / 10);
    }
  });
});

