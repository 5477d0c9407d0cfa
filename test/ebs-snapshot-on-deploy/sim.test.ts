import * as fc from 'fast-check';
import { READ_LAG_WINDOW_MS, identityHash, isComplete, onEvent, snapshotIdsOf } from '../../lambda/ebs-snapshot';
import { OWNERSHIP_TAG_KEYS } from '../../lambda/shared/ownership';
import { requestToken } from '../../lambda/shared/token';
import type { EbsSnapshotOnDeployProperties } from '../../src/private/ebs-contract';
import { ownershipTagsOf } from '../fixtures/ownership';
import { CfnDriverOptions, CfnStack, ConcurrentDuplicates, ProviderHandler, RequestRecord, StackOperationResult } from '../support/cfn-driver';
import { FakeDynamoDbOptions } from '../support/fake-dynamodb';
import { FakeEc2Options } from '../support/fake-ec2';
import { FaultRates, ScriptedFault } from '../support/faults';
import { Invariants, Violation } from '../support/invariants';
import { CopyView } from '../support/sim-core';
import { SIM_RUNS, SIM_TIMEOUT_MS, checkScenarios, faultRatesArb } from '../support/sim-property';
import { SimWorld } from '../support/sim-world';

const VOL_A = 'vol-0000000000000000a'; // instance I1, /dev/xvda
const VOL_B = 'vol-0000000000000000b'; // instance I1, /dev/sdf
const VOL_C = 'vol-0000000000000000c'; // not attached
const VOL_D = 'vol-0000000000000000d'; // made only in some tests
const I1 = 'i-00000000000000001';
const GUARDED = 'GuardedInstance1234'; // the logical id of an instance the snapshot guards (found by its tags)
const DELIVERY_TAG = 'cdk-storage-snapshots:delivery';
const handler: ProviderHandler = { onEvent, isComplete };
const RUNS = SIM_RUNS;
jest.setTimeout(SIM_TIMEOUT_MS);

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

/** The claim table of a stack: made with the stack, deleted once every snapshot resource is (the construct's dependencies). */
function tableOf(stackId: string): string {
  return `claims-${stackId.split('/')[2]}`;
}

/** The stack's claim table, as the construct makes it: created with the stack, deleted after its resources. */
function claimTable(world: SimWorld): NonNullable<CfnDriverOptions['stackResources']> {
  return {
    created: (stackId) => {
      world.dynamodb.createTable(tableOf(stackId), 'Token', 'ExpiresAt');
      process.env.CLAIM_TABLE_NAME = tableOf(stackId);
    },
    deleted: (stackId) => world.dynamodb.deleteTable(tableOf(stackId)),
  };
}

/**
 * An account with an instance of two volumes, a lone volume, and snapshots the library did not
 * make. EC2 reads are eventually consistent: a new snapshot shows in reads 20–30 s after it is made.
 */
function ebsWorld(
  seed: number, faults: FaultRates = {}, scripted: ScriptedFault[] = [], ec2: FakeEc2Options = {}, dynamodb: FakeDynamoDbOptions = {},
): SimWorld {
  const world = new SimWorld({
    seed,
    faults,
    scripted,
    durations: { minMs: 5_000, maxMs: 180_000, slowMs: 3 * 3_600_000 },
    ec2: { visibilityDelayMs: 20_000, visibilityJitterMs: 10_000, ...ec2 },
    dynamodb: { seed, ...dynamodb },
  });
  world.ec2.addVolume(VOL_A, { instanceId: I1, device: '/dev/xvda', size: 8 });
  world.ec2.addVolume(VOL_B, { instanceId: I1, device: '/dev/sdf', size: 100 });
  world.ec2.addVolume(VOL_C, { size: 20 });
  world.ec2.addInstance(I1);
  world.ec2.seedSnapshot(VOL_C, []);
  world.ec2.seedSnapshot(VOL_A, [{ Key: 'team', Value: 'data' }]);
  // Another stack's snapshot made for the same properties: tempting to adopt, not ours to touch.
  world.ec2.seedSnapshot(VOL_C, ownershipTagsOf({
    stackId: 'arn:aws:cloudformation:us-east-1:111111111111:stack/other/1', owner: 'Snap1', propsHash: identityHash(volume('t0', 'retain')),
  }));
  return world;
}

/** A stack of EbsSnapshotOnDeploy resources, with its claim table. */
function ebsStack(world: SimWorld, options: CfnDriverOptions = {}): CfnStack {
  return new CfnStack(world, handler, { resourceType: 'Custom::EbsSnapshotOnDeploy', stackResources: claimTable(world), ...options });
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

/** Whether a DeleteSnapshot made during the request that created the copy removed it (an owner's clean-up after its failure). */
function cleanedUpByItsRequest(world: SimWorld, c: CopyView): boolean {
  return world.core.log.some((call) => call.command === 'DeleteSnapshotCommand' && call.resourceId === c.id &&
    call.outcome.startsWith('ok') && call.context?.requestKey === c.createdDuring?.requestKey);
}

/**
 * The invariants as they apply to EBS: one snapshot per volume per request (one its own request
 * deleted again does not count), and a resource points at snapshots that exist.
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

/** EC2 reads that lag 50–90 s behind a new snapshot. */
const SLOW_READS: FakeEc2Options = { visibilityDelayMs: 50_000, visibilityJitterMs: 40_000 };

const keyOf = (r: RequestRecord) => `${r.stackId}/${r.logicalId}/${r.requestId}`;

/** The claim table's item of a request's token as it was right before call `seq`. */
function claimBefore(world: SimWorld, stackId: string, token: string, seq: number): Record<string, any> | undefined {
  return world.dynamodb.itemBefore(tableOf(stackId), token, seq);
}

/** Why an invocation could not clean up what it made (killed, or it failed saying what it kept and why): undefined if it could. */
function couldNotCleanUp(stack: CfnStack, delivery: string | undefined): boolean {
  const invocation = stack.invocations.get((delivery ?? '').split('.')[0]);
  if (!invocation) return false;
  return invocation.outcome === 'killed' ||
    (invocation.outcome === 'failed' && /may have acted|kept|stopped after it may have created/.test(invocation.reason ?? ''));
}

/**
 * Whether CloudFormation took a failure the delivery that made the snapshot could not hear of, and
 * that came after the snapshot was created: another delivery killed (here, frozen until its Lambda
 * timed out), or one that could not reach the claim table at all (its writes, the failure record
 * included, all refused). Nothing tells the maker, which answers success. (Such a failure before
 * the create is the handler's business: a delivery that takes over afterwards finds the stack
 * rolling back, and creates nothing.)
 */
function unheardFailureAfterCreate(world: SimWorld, stack: CfnStack, failed: RequestRecord, c: CopyView): boolean {
  const last = stack.invocations.get(failed.invocations.at(-1) ?? '');
  const unheard = last?.outcome === 'killed' || /\(DynamoDB [^)]+\): /.test(failed.reason ?? '');
  if (!last || !unheard) return false;
  const maker = c.tags.find((t) => t.Key === DELIVERY_TAG)?.Value?.split('.')[0];
  const created = world.core.log.find((call) => /^CreateSnapshots?Command$/.test(call.command) && (call.resourceId ?? '').split(',').includes(c.id));
  return maker !== last.id && created !== undefined && created.at <= (failed.endedAt ?? 0);
}

/**
 * What the claim promises, checked at the end of a scenario:
 * - every SUCCESS of a request (counted or not; rollbacks aside) carries the same physical id and `Data`;
 * - every create was sent while its delivery held the request's claim, unexpired;
 * - a request leaves at most one snapshot per volume, and one CloudFormation failed leaves none,
 *   unless the delivery that made it could not clean up (killed after its create, or its create's
 *   or its record's outcome unknown to it: then a retry of the request adopts it), or the failure
 *   CloudFormation took was one its maker could not hear of, after the create (unheardFailureAfterCreate);
 * - no success names a snapshot its own request deleted; what is left keeps its request's token.
 */
function checkClaims(world: SimWorld, stack: CfnStack, out: Violation[]): { makerCouldNotCleanUp: number; unheardFailure: number } {
  /** Snapshots failed requests left, by the exemption that allows them. */
  const leftovers = { makerCouldNotCleanUp: 0, unheardFailure: 0 };
  const byRequest = new Map<string, RequestRecord[]>();
  for (const r of stack.requests) byRequest.set(keyOf(r), [...(byRequest.get(keyOf(r)) ?? []), r]);
  for (const [key, records] of byRequest) {
    // (A rollback takes no claim: it never creates, and answers what it reads.)
    const answers = new Set(records.filter((r) => r.status === 'SUCCESS' && r.requestType !== 'Delete' && !r.rollback)
      .map((r) => JSON.stringify([r.physicalIdOut, r.data ?? {}])));
    if (answers.size > 1) out.push({ invariant: 'success-points-at-copy', detail: `${key} answered differently: ${[...answers].join(' / ')}` });
  }
  for (const call of world.core.log) {
    if (call.command !== 'CreateSnapshotCommand' && call.command !== 'CreateSnapshotsCommand') continue;
    const tags: Array<{ Key: string; Value: string }> = (call.input as any)?.TagSpecifications?.[0]?.Tags ?? [];
    const token = tags.find((t) => t.Key === OWNERSHIP_TAG_KEYS.token)?.Value ?? '';
    const delivery = tags.find((t) => t.Key === DELIVERY_TAG)?.Value;
    const claim = claimBefore(world, call.context!.stackId!, token, call.seq);
    // (A waiter whose time ran out may have recorded the request's failure meanwhile: that takes
    // nothing from the owner, which deletes what it made once its record meets the failure.)
    if (!claim || claim.Owner !== delivery || !['claimed', 'failed'].includes(claim.State) || !(claim.Fence > call.at)) {
      out.push({ invariant: 'no-duplicates', detail: `create ${call.seq} by ${delivery} sent without holding the claim: ${JSON.stringify(claim)}` });
    }
  }
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
    // The answer CloudFormation acted on last for the request that made it.
    const acted = (byRequest.get(c.createdDuring.requestKey) ?? []).filter((r) => r.counted).at(-1);
    if (acted?.status === 'FAILED') {
      if (couldNotCleanUp(stack, c.tags.find((t) => t.Key === DELIVERY_TAG)?.Value)) leftovers.makerCouldNotCleanUp++;
      else if (unheardFailureAfterCreate(world, stack, acted, c)) leftovers.unheardFailure++;
      else out.push({ invariant: 'no-orphans', detail: `${c.id} is left by ${c.createdDuring.requestKey}, which failed (${acted.reason})` });
    }
  }
  for (const [key, copies] of left) {
    if (copies.length > 1) out.push({ invariant: 'no-duplicates', detail: `${copies.length} snapshots left for ${key}: ${copies.map((c) => c.id).join(', ')}` });
  }
  for (const r of stack.requests) {
    if (!r.counted || r.status !== 'SUCCESS' || r.requestType === 'Delete') continue;
    // A set with a snapshot EBS failed is deleted by whoever sees it in error.
    if (snapshotIdsOf(r.physicalIdOut).some((id) => world.copy(id)?.serviceFailed)) continue;
    for (const id of snapshotIdsOf(r.physicalIdOut)) {
      const deleter = world.core.log.find((call) => call.command === 'DeleteSnapshotCommand' && call.resourceId === id &&
        call.outcome.startsWith('ok') && call.context?.requestKey === keyOf(r));
      if (deleter) out.push({ invariant: 'success-points-at-copy', detail: `${r.requestType} ${keyOf(r)} answered ${id}, and deleted it (call ${deleter.seq})` });
    }
  }
  return leftovers;
}

/** The creates sent for a request (EC2 calls that reached the fake, refused or not). */
function creates(world: SimWorld): number {
  return world.core.log.filter((c) => /^CreateSnapshots?Command$/.test(c.command)).length;
}

describe('scenarios', () => {
  test.each(['retain', 'destroy'] as const)('volume and instance sources: create, update by trigger, stack delete (%s), no waiting', async (policy) => {
    const world = ebsWorld(1);
    try {
      const stack = ebsStack(world);
      const inv = ebsInvariants(world);
      const created = await stack.deploy({ Snap1: volume('v1', policy, true), Snap2: instance('v1', policy) });
      inv.afterOperation(created);
      expect(created.status).toBe('CREATE_COMPLETE');
      const first = created.resources.get('Snap1')!.physicalId;
      expect(world.copy(first)).toMatchObject({ state: 'completed', target: VOL_C }); // waited for
      const fromInstance = snapshotIdsOf(created.resources.get('Snap2')!.physicalId);
      expect(fromInstance.map((id) => world.copy(id)?.target)).toEqual([VOL_B, VOL_A]); // /dev/sdf < /dev/xvda
      const snap2 = stack.requests.find((r) => r.logicalId === 'Snap2' && r.requestType === 'Create')!;
      expect(snap2.data).toMatchObject({ 'Device:/dev/xvda': fromInstance[1], 'Device:/dev/sdf': fromInstance[0], 'SourceFound': 'true' });
      // Nothing to settle: the request is answered as soon as its create and record are (0 s of simulated time).
      expect(snap2.endedAt! - snap2.startedAt!).toBe(0);

      const updated = await stack.deploy({ Snap1: volume('v2', policy, true), Snap2: instance('v2', policy) });
      inv.afterOperation(updated);
      expect(updated.status).toBe('UPDATE_COMPLETE');
      const second = updated.resources.get('Snap1')!.physicalId;
      expect(second).not.toBe(first);
      expect(world.copy(first)?.exists).toBe(policy === 'retain');
      expect(fromInstance.every((id) => world.copy(id)?.exists === (policy === 'retain'))).toBe(true);

      // A stack deletion waits for nothing (the snapshots show in reads by now: one made moments
      // ago is deleted once it shows, see 'a Delete of snapshots made moments ago').
      world.clock.advance(10 * 60_000);
      const before = world.clock.now();
      const deleted = await stack.deleteStack();
      inv.afterOperation(deleted);
      expect(deleted.status).toBe('DELETE_COMPLETE');
      expect(world.clock.now() - before).toBe(0);
      expect(world.copy(second)?.exists).toBe(policy === 'retain');
      inv.atEnd([stack]);
      inv.assertNone();
      const out: Violation[] = [];
      checkClaims(world, stack, out);
      expect(out).toEqual([]);
      expect(world.copies().filter((c) => c.foreign && c.exists)).toHaveLength(3);
    } finally {
      world.dispose();
    }
  });

  test('a Delete of snapshots made moments ago (not in reads yet) deletes them once they show, and waits for nothing else', async () => {
    const world = ebsWorld(16, {}, [], SLOW_READS);
    try {
      const stack = ebsStack(world);
      const created = await stack.deploy({ Snap1: volume('v1', 'destroy'), Snap2: instance('v1', 'destroy') });
      const before = world.clock.now();
      expect((await stack.deleteStack()).status).toBe('DELETE_COMPLETE');
      for (const r of created.resources.values()) for (const id of snapshotIdsOf(r.physicalId)) expect(world.copy(id)?.exists).toBe(false);
      // Only as long as EC2 reads lagged (50–90 s here), in polls of 10 s.
      expect(world.clock.now() - before).toBeLessThanOrEqual(100_000);
    } finally {
      world.dispose();
    }
  });

  test('guarding the instance it snapshots: no snapshot on the first deploy, then one per volume before each change', async () => {
    const world = ebsWorld(2);
    try {
      const stack = ebsStack(world);
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
      expect(ids).toHaveLength(2);
      expect(world.core.log.find((c) => c.command === 'CreateSnapshotsCommand')?.input).toMatchObject({ InstanceSpecification: { InstanceId: id } });
      inv.atEnd([stack]);
      inv.assertNone();
    } finally {
      world.dispose();
    }
  });

  test('a duplicate delivery after the answer returns the recorded answer, identical, and sends no create', async () => {
    const world = ebsWorld(3, { 'duplicate-delivery': 1 });
    try {
      const stack = ebsStack(world);
      const created = await stack.deploy({ Snap1: volume('v1', 'retain'), Snap2: instance('v1', 'retain') });
      expect(created.status).toBe('CREATE_COMPLETE');
      expect(stack.requests.filter((r) => r.duplicate)).toHaveLength(2);
      for (const logicalId of ['Snap1', 'Snap2']) {
        const [first, dup] = stack.requests.filter((r) => r.logicalId === logicalId);
        expect(dup).toMatchObject({ duplicate: true, status: 'SUCCESS', physicalIdOut: first.physicalIdOut, data: first.data });
      }
      expect(world.core.log.filter((c) => c.command === 'CreateSnapshotCommand')).toHaveLength(1);
      expect(world.core.log.filter((c) => c.command === 'CreateSnapshotsCommand')).toHaveLength(1);
    } finally {
      world.dispose();
    }
  });

  test('concurrent duplicates: one delivery creates, the other waits for its record and answers the same', async () => {
    for (const seed of [4, 5, 6, 7]) {
      const world = ebsWorld(seed, {}, [{ kind: 'duplicate-delivery' }], seed % 2 ? SLOW_READS : {});
      try {
        const stack = ebsStack(world, { concurrentDuplicates: true });
        const created = await stack.deploy({ Snap2: instance('v1', 'destroy') });
        expect(created.status).toBe('CREATE_COMPLETE');
        expect(stack.concurrency).toEqual({ pairs: 1, overlapped: 1 });
        const [a, b] = stack.requests;
        expect(a.physicalIdOut).toBe(b.physicalIdOut);
        expect(a.data).toEqual(b.data);
        expect(creates(world)).toBe(1);
        // The waiter polled the claim for a few seconds at most: no settle window.
        expect(Math.max(a.endedAt!, b.endedAt!) - Math.min(a.startedAt!, b.startedAt!)).toBeLessThanOrEqual(5_000);
        const out: Violation[] = [];
        checkClaims(world, stack, out);
        expect(out).toEqual([]);
      } finally {
        world.dispose();
      }
    }
  });

  test('a lost PutItem response: the retried claim is recognised as this delivery\'s own', async () => {
    const world = ebsWorld(8, {}, [{ kind: 'lost-response', service: 'dynamodb', command: 'PutItemCommand' }]);
    try {
      const stack = ebsStack(world);
      const created = await stack.deploy({ Snap1: volume('v1', 'retain') });
      expect(created.status).toBe('CREATE_COMPLETE');
      expect(world.faults.injected['lost-response']).toBe(1);
      expect(creates(world)).toBe(1);
    } finally {
      world.dispose();
    }
  });

  test('killed after its create: the framework retry takes over, adopts that snapshot (no second create) and answers', async () => {
    for (const reads of [{}, SLOW_READS]) {
      const world = ebsWorld(9, { 'framework-retry': 1 }, [{ kind: 'kill-after-create', command: 'CreateSnapshotCommand' }], reads);
      try {
        const stack = ebsStack(world);
        const created = await stack.deploy({ Snap1: volume('v1', 'retain') });
        expect(created.status).toBe('CREATE_COMPLETE');
        expect(creates(world)).toBe(1);
        const made = world.core.log.find((c) => c.command === 'CreateSnapshotCommand')!.resourceId;
        expect(created.resources.get('Snap1')!.physicalId).toBe(made);
        const out: Violation[] = [];
        checkClaims(world, stack, out);
        expect(out).toEqual([]);
      } finally {
        world.dispose();
      }
    }
  });

  test('killed before its create: the take-over creates once the fence has passed, without the read-lag window', async () => {
    const world = ebsWorld(10, { 'framework-retry': 1 });
    try {
      const stack = ebsStack(world, {
        // The first delivery dies right after its claim (its Lambda killed before the source look-up).
        beforeRequest: () => world.faults.script({ kind: 'kill-after-create', service: 'dynamodb', command: 'PutItemCommand' }),
      });
      const start = world.clock.now();
      const created = await stack.deploy({ Snap1: volume('v1', 'retain') });
      expect(created.status).toBe('CREATE_COMPLETE');
      expect(creates(world)).toBe(1);
      // The retry came a minute later and waited out the dead owner's fence (2 min): well under the 5-minute window.
      expect(world.clock.now() - start).toBeLessThan(READ_LAG_WINDOW_MS);
    } finally {
      world.dispose();
    }
  });

  test('a claim table that is missing or throttled fails the request clearly and takes no snapshot', async () => {
    const world = ebsWorld(11);
    try {
      // The construct's table is missing: no table is made with the stack.
      const noTable = { created: (id: string) => { process.env.CLAIM_TABLE_NAME = tableOf(id); }, deleted: () => undefined };
      const stack = ebsStack(world, { stackResources: noTable });
      const result = await stack.deploy({ Snap1: volume('v1', 'retain') });
      expect(result.status).toBe('ROLLBACK_COMPLETE');
      expect(stack.requests[0].reason).toMatch(/^Claiming this request \(no snapshot was taken\): the claim table claims-.+ does not exist/);
      expect(creates(world)).toBe(0);
    } finally {
      world.dispose();
    }
    const throttled = ebsWorld(12, { throttle: 1 });
    try {
      const stack = ebsStack(throttled);
      const result = await stack.deploy({ Snap1: volume('v1', 'retain') });
      expect(result.status).toBe('ROLLBACK_COMPLETE');
      expect(stack.requests[0].reason).toMatch(/^Claiming this request \(no snapshot was taken\) \(DynamoDB table claims-.+\): ThrottlingException: Rate exceeded\. Deploy again\.$/);
      expect(creates(throttled)).toBe(0);
    } finally {
      throttled.dispose();
    }
  });

  test('a duplicate long after the request ended, or after the resource was deleted, creates nothing', async () => {
    const world = ebsWorld(13);
    try {
      const stack = ebsStack(world);
      const created = await stack.deploy({ Snap1: volume('v1', 'destroy') });
      const first = stack.requests[0];
      const event = {
        RequestType: 'Create',
        RequestId: first.requestId,
        StackId: first.stackId,
        LogicalResourceId: 'Snap1',
        ResourceType: 'Custom::EbsSnapshotOnDeploy',
        ResourceProperties: first.properties,
      } as any;
      world.core.context = { kind: 'cfn', stackId: event.StackId, owner: 'Snap1', requestKey: keyOf(first), requestType: 'Create' };
      world.clock.advance(6 * 3_600_000);
      // Six hours later (Lambda's longest event age): the recorded answer, no create.
      await expect(onEvent(event)).resolves.toEqual({ PhysicalResourceId: created.resources.get('Snap1')!.physicalId, Data: first.data });
      expect(creates(world)).toBe(1);
      // After the stack (and its claim table) was deleted: a clear failure, no create.
      world.core.context = undefined;
      await stack.deleteStack();
      world.core.context = { kind: 'cfn', stackId: event.StackId, owner: 'Snap1', requestKey: keyOf(first), requestType: 'Create' };
      await expect(onEvent(event)).rejects.toThrow(/^Claiming this request \(no snapshot was taken\): the claim table .* does not exist/);
      expect(creates(world)).toBe(1);
    } finally {
      world.core.context = undefined;
      world.dispose();
    }
  });

  test('a retried deployment re-sends a failed request\'s RequestId: a failure recorded in an earlier operation reopens; within it, it is final', async () => {
    const world = ebsWorld(14);
    try {
      const stack = ebsStack(world, { retryFailedRequestId: 1 });
      expect((await stack.deploy({ Snap1: volume('v1', 'retain') })).status).toBe('CREATE_COMPLETE');
      // VOL_D does not exist yet: the update fails (recorded), and the stack rolls back.
      const failed = await stack.deploy({ Snap1: volume('v1', 'retain', false, { VolumeId: VOL_D }) });
      expect(failed.status).toBe('UPDATE_ROLLBACK_COMPLETE');
      const failedRequest = stack.requests.find((r) => r.requestType === 'Update' && r.status === 'FAILED')!;
      expect(failedRequest.reason).toMatch(/EC2 could not find volume vol-0+d \(InvalidVolume.NotFound\)/);
      world.ec2.addVolume(VOL_D, { size: 10 });
      world.clock.advance(60_000);
      // The same properties again: the retried deployment sends the failed RequestId, which reopens the claim.
      const retried = await stack.deploy({ Snap1: volume('v1', 'retain', false, { VolumeId: VOL_D }) });
      expect(retried.status).toBe('UPDATE_COMPLETE');
      expect(stack.retriedRequestIds).toBe(1);
      const again = stack.requests.filter((r) => r.requestId === failedRequest.requestId);
      expect(again.map((r) => r.status)).toEqual(['FAILED', 'SUCCESS']);
      expect(world.copy(retried.resources.get('Snap1')!.physicalId)).toMatchObject({ target: VOL_D, exists: true });
      const token = requestToken({ StackId: stack.stackId!, LogicalResourceId: 'Snap1', RequestId: failedRequest.requestId });
      expect(world.dynamodb.history(tableOf(stack.stackId!), token).map((v) => v.item?.State)).toEqual(
        expect.arrayContaining(['claimed', 'failed', 'answered']));
    } finally {
      world.dispose();
    }
  });

  test('waitForCompletion: a snapshot that ends in error fails the deploy and is deleted', async () => {
    const world = ebsWorld(15, {}, [{ kind: 'failed-lifecycle', command: 'CreateSnapshotCommand' }]);
    try {
      const stack = ebsStack(world);
      const result = await stack.deploy({ Snap1: volume('v1', 'retain', true) });
      expect(result.status).toBe('ROLLBACK_COMPLETE');
      expect(stack.requests[0].reason).toMatch(/is in state error: Internal error while creating the snapshot; the snapshots of this request have been deleted/);
      expect(existing(world, VOL_C)).toEqual([]);
    } finally {
      world.dispose();
    }
  });
});

/** A handler that claims without `attribute_not_exists`: every delivery thinks it owns the request. */
const PUT_WITHOUT_CONDITION = (command: string, input: any) => (command === 'PutItemCommand'
  ? { ...input, ConditionExpression: undefined, ExpressionAttributeNames: undefined, ExpressionAttributeValues: undefined } : input);
/**
 * A handler that records its answer without the check that it still owns an open claim (an
 * unconditional record): it overwrites a failure a waiter recorded, or a new owner's answer.
 */
const RECORD_WITHOUT_OWNER_CHECK = (command: string, input: any) => {
  if (command !== 'UpdateItemCommand' || !String(input.UpdateExpression).includes('#a = :answer')) return input;
  const { ':me': _me, ':claimed': _claimed, ...values } = input.ExpressionAttributeValues;
  const { '#o': _o, ...names } = input.ExpressionAttributeNames;
  return { ...input, ConditionExpression: undefined, ExpressionAttributeNames: names, ExpressionAttributeValues: values };
};
/** A handler that reads the claim without ConsistentRead. */
const READS_WITHOUT_CONSISTENT_READ = (command: string, input: any) => (command === 'GetItemCommand' ? { ...input, ConsistentRead: false } : input);

describe('the invariants can fail: broken claims', () => {
  async function violationsOf(
    rewriteInput: FakeDynamoDbOptions['rewriteInput'], seeds: number[], faults: FaultRates, reads: FakeEc2Options = {}, concurrent = true,
  ) {
    const found: Violation[] = [];
    for (const seed of seeds) {
      const world = ebsWorld(seed, faults, [], reads, { rewriteInput });
      try {
        const stack = ebsStack(world, { concurrentDuplicates: concurrent && { share: 0.5 } });
        const inv = ebsInvariants(world);
        for (const trigger of ['v1', 'v2']) inv.afterOperation(await stack.deploy({ Snap1: volume(trigger, 'retain'), Snap2: instance(trigger, 'retain') }));
        checkClaims(world, stack, found);
        found.push(...inv.atEnd([stack]));
      } finally {
        world.dispose();
      }
    }
    return found;
  }
  const DUPLICATES: FaultRates = { 'duplicate-delivery': 1 };
  const KILLS: FaultRates = { 'duplicate-delivery': 1, 'kill-after-create': 0.3, 'framework-retry': 1, 'throttle': 0.1 };

  test('the handler as it is keeps them', async () => {
    expect(await violationsOf(undefined, [31, 32, 33, 34], DUPLICATES)).toEqual([]);
    expect(await violationsOf(undefined, [31, 32, 33, 34], DUPLICATES, {}, false)).toEqual([]);
    expect(await violationsOf(undefined, [31, 32, 33, 34], KILLS, SLOW_READS)).toEqual([]);
  });
  test('a put without its condition: a duplicate delivered after the answer claims the request again and creates', async () => {
    expect(await violationsOf(PUT_WITHOUT_CONDITION, [31, 32, 33, 34], DUPLICATES, {}, false)).toContainEqual(expect.objectContaining({ invariant: 'no-duplicates' }));
  });
  test('a record without the owner check: an owner frozen before its record overwrites the answer of the delivery that took over', async () => {
    async function run(rewriteInput?: FakeDynamoDbOptions['rewriteInput']) {
      // The owner freezes right before its record (its second UpdateItem) for longer than its fence:
      // the duplicate takes over, adopts the owner's snapshot and records its answer.
      const scripted: ScriptedFault[] = [{ kind: 'duplicate-delivery' }, { kind: 'stall', service: 'dynamodb', command: 'UpdateItemCommand', skip: 1 }];
      const world = ebsWorld(41, {}, scripted, {}, { rewriteInput });
      try {
        // Clocks a few seconds apart: the two deliveries' answers differ (their start times).
        const stack = ebsStack(world, { concurrentDuplicates: true, clockSkewMs: 3_000 });
        await stack.deploy({ Snap1: volume('v1', 'retain') });
        const out: Violation[] = [];
        checkClaims(world, stack, out);
        return {
          out,
          world,
          owners: new Set(world.dynamodb.history(tableOf(stack.stackId!), requestToken({
            StackId: stack.stackId!, LogicalResourceId: 'Snap1', RequestId: stack.requests[0].requestId,
          })).map((v) => v.item?.Owner)).size,
        };
      } finally {
        world.dispose();
      }
    }
    const ok = await run();
    expect(ok.out).toEqual([]);
    // The path was taken: the owner froze, the claim changed owner, and one create was sent.
    expect(ok.world.faults.injected.stall).toBe(1);
    expect(ok.owners).toBe(2);
    expect(creates(ok.world)).toBe(1);
    expect((await run(RECORD_WITHOUT_OWNER_CHECK)).out).toContainEqual(expect.objectContaining({ detail: expect.stringMatching(/answered differently/) }));
  });
  test('reads without ConsistentRead: the claim\'s safety rests on its conditional writes, not on fresh reads', async () => {
    // Every decision a read leads to (take over, reopen, answer) is a conditional write on the
    // version read, or a recorded answer, which never changes: a stale read only delays.
    expect(await violationsOf(READS_WITHOUT_CONSISTENT_READ, [31, 32, 33, 34], KILLS, SLOW_READS)).toEqual([]);
  });
});

type Step =
  | { readonly kind: 'deploy'; readonly t1: number; readonly t2: number; readonly t3: number; readonly policy: Policy; readonly wait: boolean; readonly otherFailsAt?: number }
  | { readonly kind: 'delete' }
  | { readonly kind: 'wait'; readonly minutes: number }
  /** The last deploy again (a retried deployment: a request that failed may be re-sent with its RequestId). */
  | { readonly kind: 'redeploy' };

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
  { weight: 2, arbitrary: fc.constant({ kind: 'redeploy' as const }) },
);

const faultsArb = faultRatesArb({
  'duplicate-delivery': fc.constantFrom(0, 0.1, 0.3),
  'framework-retry': fc.constantFrom(0, 0.5, 1),
  'stall': fc.constantFrom(0, 0, 0.01, 0.03),
});

/**
 * How deliveries run: duplicates after the first, or at the same time (a share of them), starting
 * together or when the first is about to send a random call; EC2 reads lag 20–30 s or 50–90 s;
 * each invocation's clock off by up to 3 s; a failed request re-sent with its RequestId by the next
 * deployment (a share of them).
 */
const deliveryArb = fc.record({
  concurrent: fc.constantFrom(0, 0.5, 1),
  start: fc.constantFrom('at-once' as const, 'at-a-random-call' as const),
  slowReads: fc.boolean(),
  skew: fc.constantFrom(0, 3_000),
  retryFailed: fc.constantFrom(0, 0.5, 1),
});

const scenarioArb = fc.record({
  seed: fc.integer({ min: 1, max: 2 ** 31 - 1 }),
  faults: faultsArb,
  delivery: deliveryArb,
  steps: fc.array(stepArb, { minLength: 1, maxLength: 5 }),
});

type Scenario = typeof scenarioArb extends fc.Arbitrary<infer S> ? S : never;

/** Runs one scenario: a volume, an instance and a guarded instance found by its tags; ends with a stack delete. */
async function runScenario(s: Scenario, stats?: Record<string, number>, rewriteInput?: FakeDynamoDbOptions['rewriteInput']) {
  const { delivery } = s;
  const world = ebsWorld(s.seed, s.faults, [], delivery.slowReads ? SLOW_READS : {}, { rewriteInput });
  try {
    const concurrentDuplicates: ConcurrentDuplicates | false = delivery.concurrent > 0 && {
      share: delivery.concurrent,
      startWhen: delivery.start === 'at-once' ? undefined : () => world.faults.next() < 0.25,
      resumeWhen: () => world.faults.next() < 0.5,
    };
    const stack = ebsStack(world, { concurrentDuplicates, clockSkewMs: delivery.skew, retryFailedRequestId: delivery.retryFailed });
    const inv = ebsInvariants(world);
    const extra: Violation[] = [];
    let guardedFor: string | undefined;
    let lastDesired: Record<string, Props> | undefined;
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
      } else if (step.kind === 'redeploy') {
        if (lastDesired) after(await stack.deploy(lastDesired));
      } else {
        const desired: Record<string, Props> = {
          Snap1: volume(`t${step.t1}`, step.policy, step.wait),
          Snap2: instance(`t${step.t2}`, step.policy, step.wait),
          Snap3: guarded(`h${step.t3}`, step.policy, step.wait),
        };
        const otherFails = stack.stackId ? step.otherFailsAt : undefined;
        lastDesired = desired;
        after(await stack.deploy(desired, { otherResourceFailsAt: otherFails }));
        // The guarded instance comes after its snapshot: it exists from the first deploy on.
        if (stack.stackId && guardedFor !== stack.stackId) {
          createGuardedInstance(world, stack.stackId);
          guardedFor = stack.stackId;
        }
      }
    }
    if (stack.stackId) after(await stack.deleteStack());
    const leftovers = checkClaims(world, stack, extra);
    const violations = [...inv.atEnd([stack]), ...extra];
    if (stats) {
      for (const [k, v] of Object.entries(world.faults.injected)) stats[`fault:${k}`] = (stats[`fault:${k}`] ?? 0) + v;
      for (const [k, v] of Object.entries(world.core.callCounts)) stats[k] = (stats[k] ?? 0) + v;
      const owners = [...stack.requests].map((r) => requestToken({ StackId: r.stackId, LogicalResourceId: r.logicalId, RequestId: r.requestId }));
      for (const token of new Set(owners)) {
        const r = stack.requests.find((q) => requestToken({ StackId: q.stackId, LogicalResourceId: q.logicalId, RequestId: q.requestId }) === token)!;
        const history = world.dynamodb.history(tableOf(r.stackId), token);
        const claimed = history.map((v) => v.item).filter((i) => i?.State === 'claimed');
        stats.takeOvers = (stats.takeOvers ?? 0) + claimed.filter((i, k) => k > 0 && i!.Owner !== claimed[k - 1]!.Owner).length;
        stats.reopened = (stats.reopened ?? 0) + history.filter((v, k) => k > 0 && v.item?.State === 'claimed' && history[k - 1].item?.State === 'failed').length;
        stats.waiterFailures = (stats.waiterFailures ?? 0) + history.filter((v) => /still taking its snapshot/.test(v.item?.Reason ?? '')).length;
      }
      stats.retriedRequestIds = (stats.retriedRequestIds ?? 0) + stack.retriedRequestIds;
      stats.leftByMakerThatCouldNotCleanUp = (stats.leftByMakerThatCouldNotCleanUp ?? 0) + leftovers.makerCouldNotCleanUp;
      stats.leftAfterUnheardFailure = (stats.leftAfterUnheardFailure ?? 0) + leftovers.unheardFailure;
      stats.noSourceYet = (stats.noSourceYet ?? 0) + stack.requests.filter((r) => r.data?.SourceFound === 'false').length;
      stats.scenarios = (stats.scenarios ?? 0) + 1;
      stats.concurrentPairs = (stats.concurrentPairs ?? 0) + stack.concurrency.pairs;
      stats.overlappedPairs = (stats.overlappedPairs ?? 0) + stack.concurrency.overlapped;
      if (delivery.slowReads) stats.slowReads = (stats.slowReads ?? 0) + 1;
    }
    return { violations, world, stack };
  } finally {
    world.dispose();
  }
}

/** Counterexamples random soaks found, replayed on every run (each was a bug). */
describe('soak counterexamples', () => {
  test.each([
    // 20,000-scenario soak, random seed: an Update's fallback without the claim table answered
    // what its reads gave (no StartTime) while another delivery answered under the claim.
    ['every delivery of an Update answers the same', '{"seed":1544586819,"faults":{"throttle":0.3,"server-error":0.02,"network":0,"lost-response":0.1,"hung-response":0,"kill-after-create":0,"slow-lifecycle":0.1,"failed-lifecycle":0,"duplicate-delivery":0.3,"framework-retry":0.5,"stall":0.01},"delivery":{"concurrent":0.5,"start":"at-a-random-call","slowReads":false,"skew":3000,"retryFailed":0.5},"steps":[{"kind":"deploy","t1":1,"t2":0,"t3":0,"policy":"retain","wait":false,"otherFailsAt":3},{"kind":"redeploy"},{"kind":"deploy","t1":1,"t2":0,"t3":1,"policy":"retain","wait":true,"otherFailsAt":3},{"kind":"delete"},{"kind":"delete"}]}'],
    // 20,000-scenario soak, random seed: the owner froze before its claim and again until its Lambda
    // timed out; the duplicate took over and created while CloudFormation took the owner's failure.
    ['a delivery that took over answers only while the operation goes forward', '{"seed":1081455907,"faults":{"throttle":0.05,"server-error":0.1,"network":0,"lost-response":0,"hung-response":0,"kill-after-create":0,"slow-lifecycle":0,"failed-lifecycle":0.02,"duplicate-delivery":0.3,"framework-retry":0,"stall":0.03},"delivery":{"concurrent":1,"start":"at-a-random-call","slowReads":false,"skew":3000,"retryFailed":0.5},"steps":[{"kind":"wait","minutes":4},{"kind":"deploy","t1":0,"t2":0,"t3":1,"policy":"destroy","wait":false},{"kind":"deploy","t1":0,"t2":0,"t3":2,"policy":"destroy","wait":true}]}'],
    // 20,000-scenario soak, random seed 2147483637: a delivery whose claim put was throttled past
    // its budget failed; the duplicate after it claimed and created while CloudFormation took that failure.
    ['a failure before anyone claimed is recorded', '{"seed":2147483637,"faults":{"throttle":0.3,"server-error":0,"network":0.02,"lost-response":0.02,"hung-response":0.02,"kill-after-create":0,"slow-lifecycle":0.02,"failed-lifecycle":0.1,"duplicate-delivery":0.3,"framework-retry":1,"stall":0.01},"delivery":{"concurrent":0,"start":"at-once","slowReads":true,"skew":3000,"retryFailed":1},"steps":[{"kind":"wait","minutes":40},{"kind":"deploy","t1":0,"t2":2,"t3":0,"policy":"retain","wait":false,"otherFailsAt":0},{"kind":"redeploy"},{"kind":"redeploy"},{"kind":"deploy","t1":2,"t2":1,"t3":1,"policy":"destroy","wait":true,"otherFailsAt":3}]}'],
    // 20,000-scenario soak, random seed: a late delivery of a forward Update, running while the
    // stack rolled back, answered as a rollback (adopted) while another delivery created.
    ['a late delivery of a forward Update answers what its claim says, even during the rollback', '{"seed":2147483629,"faults":{"throttle":0,"server-error":0,"network":0.1,"lost-response":0.02,"hung-response":0,"kill-after-create":0.1,"slow-lifecycle":0,"failed-lifecycle":0.1,"duplicate-delivery":0.3,"framework-retry":1,"stall":0.01},"delivery":{"concurrent":0.5,"start":"at-a-random-call","slowReads":true,"skew":0,"retryFailed":0.5},"steps":[{"kind":"deploy","t1":1,"t2":1,"t3":2,"policy":"retain","wait":true,"otherFailsAt":3},{"kind":"deploy","t1":2,"t2":1,"t3":1,"policy":"retain","wait":false,"otherFailsAt":3},{"kind":"redeploy"},{"kind":"deploy","t1":2,"t2":1,"t3":0,"policy":"retain","wait":false,"otherFailsAt":2}]}'],
    // 20,000-scenario soak, random seed: the owner's create had an unknown outcome when a waiter
    // recorded the request's failure; the owner gave up without deleting what showed later.
    ['an owner that lost its claim to a failure deletes what its create of unknown outcome made', '{"seed":185618549,"faults":{"throttle":0.3,"server-error":0.02,"network":0.02,"lost-response":0.1,"hung-response":0.02,"kill-after-create":0.02,"slow-lifecycle":0.02,"failed-lifecycle":0.02,"duplicate-delivery":0.3,"framework-retry":1,"stall":0},"delivery":{"concurrent":1,"start":"at-once","slowReads":false,"skew":3000,"retryFailed":1},"steps":[{"kind":"deploy","t1":1,"t2":0,"t3":2,"policy":"retain","wait":false,"otherFailsAt":2},{"kind":"deploy","t1":2,"t2":2,"t3":0,"policy":"destroy","wait":true}]}'],
    // 20,000-scenario soak, random seed: an owner frozen past its fence lost the claim to a delivery
    // that then died; back, it waited, recorded the request's failure, and left its own snapshot.
    ['a delivery that made snapshots, lost its claim, and then failed the request deletes them', '{"seed":666555355,"faults":{"throttle":0,"server-error":0.1,"network":0,"lost-response":0.1,"hung-response":0,"kill-after-create":0,"slow-lifecycle":0,"failed-lifecycle":0,"duplicate-delivery":0.1,"framework-retry":0,"stall":0.03},"delivery":{"concurrent":1,"start":"at-a-random-call","slowReads":true,"skew":0,"retryFailed":0.5},"steps":[{"kind":"deploy","t1":2,"t2":0,"t3":0,"policy":"retain","wait":true,"otherFailsAt":3},{"kind":"delete"}]}'],
    // 20,000-scenario soak, seed 538869895: a waiter recorded the request's failure between the
    // owner's fence extension and its create; the owner then deleted what it made and failed alike.
    ['a failure a waiter records between the owner\'s fence and its create: the owner cleans up', '{"seed":1790507984,"faults":{"throttle":0.3,"server-error":0.02,"network":0.1,"lost-response":0.02,"hung-response":0,"kill-after-create":0,"slow-lifecycle":0,"failed-lifecycle":0.1,"duplicate-delivery":0.3,"framework-retry":0,"stall":0.03},"delivery":{"concurrent":1,"start":"at-a-random-call","slowReads":false,"skew":3000,"retryFailed":1},"steps":[{"kind":"redeploy"},{"kind":"deploy","t1":2,"t2":1,"t3":2,"policy":"retain","wait":false},{"kind":"deploy","t1":0,"t2":1,"t3":0,"policy":"retain","wait":true},{"kind":"delete"}]}'],
    // 20,000-scenario soak, seed 538869895: a delivery whose claim put failed found, when it went to
    // record its failure, that another had just claimed: it now records its failure over that claim.
    ['a failing delivery that finds a claim made meanwhile records its failure over it', '{"seed":1791044611,"faults":{"throttle":0.3,"server-error":0.02,"network":0.02,"lost-response":0.02,"hung-response":0,"kill-after-create":0.1,"slow-lifecycle":0,"failed-lifecycle":0.1,"duplicate-delivery":0.1,"framework-retry":0.5,"stall":0.03},"delivery":{"concurrent":0.5,"start":"at-a-random-call","slowReads":true,"skew":0,"retryFailed":0.5},"steps":[{"kind":"deploy","t1":1,"t2":1,"t3":1,"policy":"destroy","wait":true},{"kind":"deploy","t1":1,"t2":2,"t3":0,"policy":"destroy","wait":false,"otherFailsAt":0},{"kind":"wait","minutes":85},{"kind":"deploy","t1":2,"t2":1,"t3":1,"policy":"retain","wait":true,"otherFailsAt":1},{"kind":"delete"}]}'],
  ])('%s', async (_, scenario) => {
    const { violations } = await runScenario(JSON.parse(scenario));
    expect(violations).toEqual([]);
  });
});

describe('property: random deploy sequences with faults', () => {
  const replay = process.env.SIM_REPLAY ? test : test.skip;
  replay('replay SIM_REPLAY', async () => {
    const { violations, stack, world } = await runScenario(JSON.parse(process.env.SIM_REPLAY!));
    // eslint-disable-next-line no-console
    // SIM_REPLAY_INPUTS=1 keeps each call's input in the log.
    const log = world.core.log.map((c) => ({ ...c, input: process.env.SIM_REPLAY_INPUTS ? c.input : undefined }));
    console.log(JSON.stringify({ violations, requests: stack.requests, log }, null, 1));
    expect(violations).toEqual([]);
  });

  test(`${RUNS} scenarios keep every invariant`, async () => {
    const stats = await checkScenarios(scenarioArb, runScenario, 20261203);
    expect(stats.scenarios).toBeGreaterThanOrEqual(RUNS);
    if (RUNS >= 200) {
      // The paths this file exists for were taken: take-overs, failed requests re-sent with their
      // RequestId (a reopened failure itself is the scripted test's), first deploys without a source.
      expect(stats.takeOvers).toBeGreaterThan(0);
      expect(stats.retriedRequestIds).toBeGreaterThan(0);
      expect(stats.noSourceYet).toBeGreaterThan(0);
      // Concurrent deliveries ran, overlapping, and reads lagged 50–90 s.
      expect(stats.overlappedPairs).toBeGreaterThan(RUNS / 10);
      expect(stats.slowReads).toBeGreaterThan(RUNS / 10);
    }
  });
});
