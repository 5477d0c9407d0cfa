import { createHash } from 'crypto';
import { CloudFormationClient, DescribeStacksCommand } from '@aws-sdk/client-cloudformation';
import { CompleteSnapshotCommand, EBSClient, ListSnapshotBlocksCommand, PutSnapshotBlockCommand, StartSnapshotCommand } from '@aws-sdk/client-ebs';
import {
  CreateSnapshotCommand as Ec2CreateSnapshot,
  CreateSnapshotsCommand,
  CreateTagsCommand,
  DeleteSnapshotCommand as Ec2DeleteSnapshot,
  DescribeSnapshotsCommand as Ec2DescribeSnapshots,
  DescribeVolumesCommand,
  EC2Client,
} from '@aws-sdk/client-ec2';
import {
  CreateBackupCommand,
  CreateSnapshotCommand,
  DeleteBackupCommand,
  DeleteSnapshotCommand,
  DescribeBackupsCommand,
  DescribeSnapshotsCommand,
  FSxClient,
  ListTagsForResourceCommand,
  TagResourceCommand,
} from '@aws-sdk/client-fsx';
import * as fc from 'fast-check';
import { withRetries } from '../../lambda/shared/errors';
import { MANAGED_BY, OWNERSHIP_TAG_KEYS, isOwnedBy, ownershipTags, requestOwner } from '../../lambda/shared/ownership';
import { requestToken, tickToken } from '../../lambda/shared/token';
import { rejection } from '../fixtures/events';
import { CfnStack, ProviderHandler } from '../support/cfn-driver';
import { EventBridgeDriver, ScheduledEvent } from '../support/eventbridge-driver';
import { EBS_BLOCK_SIZE, blockChecksum, linearChecksum } from '../support/fake-ebs';
import { FaultRates } from '../support/faults';
import { Invariants } from '../support/invariants';
import { SimWorld, SimWorldOptions } from '../support/sim-world';

const FS = 'fs-0123456789abcdef0';
const VOLUME = 'fsvol-0123456789abcdef0';
const fsx = new FSxClient({ region: 'us-east-1' });
const ec2 = new EC2Client({ region: 'us-east-1' });
const ebs = new EBSClient({ region: 'us-east-1' });

let world: SimWorld;
function newWorld(options: SimWorldOptions = {}): SimWorld {
  world = new SimWorld(options);
  world.fsx.addFileSystem(FS, 'OPENZFS');
  world.fsx.addVolume(VOLUME, FS);
  return world;
}
afterEach(() => world?.dispose());

// ---------------------------------------------------------------------------------------------
// Deliberately broken handlers: the invariants must catch each of them.
// ---------------------------------------------------------------------------------------------

interface BrokenOptions {
  /** Send the client token (the correct handler does). */
  readonly token: boolean;
  /** On Delete, delete every snapshot of the volume that says managed-by, whoever owns it. */
  readonly greedyDelete?: boolean;
  /** On a rollback Update, take a new snapshot as on any other Update. */
  readonly snapshotOnRollback?: boolean;
}

/** The OpenZFS flow, cut down, with one mistake switched on. */
function brokenHandler(opts: BrokenOptions): ProviderHandler {
  let attempts = 0;
  const create = async (e: any) => {
    const token = requestToken(e);
    const out = await withRetries(
      () => fsx.send(new CreateSnapshotCommand({
        VolumeId: e.ResourceProperties.VolumeId,
        // FSx refuses a second snapshot of one name on a volume, so one name per request would
        // stop a retry without the token from making a duplicate: the token-ignoring handler names
        // every attempt anew (as one naming snapshots by the time of the call would).
        Name: `snap-${token.slice(4, 12)}${opts.token ? '' : `-${++attempts}`}`,
        Tags: ownershipTags(requestOwner(e), 'hash', token),
        ClientRequestToken: opts.token ? token : undefined,
      })),
      { budgetMs: 60_000 },
    );
    return { PhysicalResourceId: out.Snapshot!.SnapshotId!, Data: { Origin: 'created' } };
  };
  return {
    async onEvent(e: any) {
      if (e.RequestType === 'Create') return create(e);
      if (e.RequestType === 'Update') {
        const status = (await new CloudFormationClient({}).send(new DescribeStacksCommand({ StackName: e.StackId }))).Stacks?.[0]?.StackStatus;
        if (status === 'UPDATE_ROLLBACK_IN_PROGRESS' && !opts.snapshotOnRollback) return { PhysicalResourceId: e.PhysicalResourceId };
        return create(e);
      }
      const id = e.PhysicalResourceId;
      if (opts.greedyDelete) {
        const all = await fsx.send(new DescribeSnapshotsCommand({ Filters: [{ Name: 'volume-id', Values: [VOLUME] }], MaxResults: 100 }));
        for (const s of all.Snapshots ?? []) {
          if (s.Tags?.some((t) => t.Key === OWNERSHIP_TAG_KEYS.managedBy) && s.Lifecycle !== 'DELETING') {
            await fsx.send(new DeleteSnapshotCommand({ SnapshotId: s.SnapshotId }));
          }
        }
      } else {
        const s = (await fsx.send(new DescribeSnapshotsCommand({ SnapshotIds: [id] }))).Snapshots?.[0];
        if (s && isOwnedBy(s.Tags, requestOwner(e))) await fsx.send(new DeleteSnapshotCommand({ SnapshotId: id }));
      }
      return { PhysicalResourceId: id };
    },
    async isComplete(e: any) {
      if (e.RequestType === 'Delete' || e.Data?.Origin !== 'created') return { IsComplete: true };
      const s = (await fsx.send(new DescribeSnapshotsCommand({ SnapshotIds: [e.PhysicalResourceId] }))).Snapshots?.[0];
      return { IsComplete: s?.Lifecycle === 'AVAILABLE' };
    },
  };
}

const props = (trigger: string, policy = 'destroy') => ({ VolumeId: VOLUME, SnapshotName: 's', Trigger: trigger, RemovalPolicy: policy, TimeoutSeconds: '1800' });

describe('the invariants catch broken handlers', () => {
  test('a handler that ignores the client token makes a duplicate when a response is lost', async () => {
    const w = newWorld({ scripted: [{ kind: 'lost-response', command: 'CreateSnapshotCommand' }] });
    const stack = new CfnStack(w, brokenHandler({ token: false }));
    const inv = new Invariants(w);
    inv.afterOperation(await stack.deploy({ Snap1: props('a') }));
    inv.afterOperation(await stack.deleteStack());
    const violations = inv.atEnd([stack]);
    expect(violations.map((v) => v.invariant)).toContain('no-duplicates');
    expect(() => inv.assertNone()).toThrow(/no-duplicates/);
  });

  test('the same handler with the token passes the same scenario', async () => {
    const w = newWorld({ scripted: [{ kind: 'lost-response', command: 'CreateSnapshotCommand' }] });
    const stack = new CfnStack(w, brokenHandler({ token: true }));
    const inv = new Invariants(w);
    inv.afterOperation(await stack.deploy({ Snap1: props('a') }));
    inv.afterOperation(await stack.deleteStack());
    expect(inv.atEnd([stack])).toEqual([]);
  });

  test('a handler that deletes without checking the owner is caught', async () => {
    const w = newWorld();
    w.fsx.seedSnapshot(VOLUME, [
      { Key: OWNERSHIP_TAG_KEYS.managedBy, Value: MANAGED_BY },
      { Key: OWNERSHIP_TAG_KEYS.stackId, Value: 'arn:aws:cloudformation:us-east-1:111111111111:stack/other/1' },
      { Key: OWNERSHIP_TAG_KEYS.owner, Value: 'Snap1' },
    ]);
    const stack = new CfnStack(w, brokenHandler({ token: true, greedyDelete: true }));
    const inv = new Invariants(w);
    inv.afterOperation(await stack.deploy({ Snap1: props('a') }));
    inv.afterOperation(await stack.deleteStack());
    expect(inv.atEnd([stack]).filter((v) => v.invariant === 'only-ours-touched')).toHaveLength(1);
  });

  test('a handler that snapshots during a rollback is caught', async () => {
    const w = newWorld();
    const stack = new CfnStack(w, brokenHandler({ token: true, snapshotOnRollback: true }));
    const inv = new Invariants(w);
    inv.afterOperation(await stack.deploy({ Snap1: props('a') }));
    inv.afterOperation(await stack.deploy({ Snap1: props('b') }, { otherResourceFailsAt: 1 }));
    expect(inv.atEnd([stack]).map((v) => v.invariant)).toContain('rollback-safe');
  });

  test('a property run over the token-ignoring handler fails', async () => {
    const found = new Set<string>();
    const run = fc.assert(
      fc.asyncProperty(fc.integer({ min: 1, max: 1_000_000 }), async (seed) => {
        const w = newWorld({ seed, faults: { 'lost-response': 0.5, 'network': 0.2 } });
        try {
          const stack = new CfnStack(w, brokenHandler({ token: false }));
          const inv = new Invariants(w);
          inv.afterOperation(await stack.deploy({ Snap1: props('a') }));
          inv.afterOperation(await stack.deploy({ Snap1: props('b') }));
          for (const v of inv.atEnd([stack])) found.add(v.invariant);
          inv.assertNone();
        } finally {
          w.dispose();
        }
      }),
      { numRuns: 50, seed: 42 },
    );
    await expect(run).rejects.toThrow(/Property failed/);
    expect(found).toContain('no-duplicates');
  });
});

// ---------------------------------------------------------------------------------------------
// The CloudFormation driver behaves as the Provider framework does.
// ---------------------------------------------------------------------------------------------

describe('CloudFormation driver', () => {
  test('a failed Create answers the CREATE_FAILED marker and its Delete is skipped', async () => {
    const w = newWorld();
    const onEvent = jest.fn(async (e: any) => {
      if (e.RequestType === 'Create') throw new Error('boom');
      return { PhysicalResourceId: e.PhysicalResourceId };
    });
    const stack = new CfnStack(w, { onEvent });
    const result = await stack.deploy({ R: { A: '1' } });
    expect(result.status).toBe('ROLLBACK_COMPLETE');
    expect(stack.requests.map((r) => [r.requestType, r.status, r.physicalIdOut])).toEqual([
      ['Create', 'FAILED', 'AWSCDK::CustomResourceProviderFramework::CREATE_FAILED'],
      ['Delete', 'SUCCESS', 'AWSCDK::CustomResourceProviderFramework::CREATE_FAILED'],
    ]);
    expect(onEvent).toHaveBeenCalledTimes(1);
  });

  test('default physical id, Data merging, Data with IsComplete false, and the total timeout', async () => {
    const w = newWorld();
    let polls = 0;
    const stack = new CfnStack(w, {
      onEvent: async () => ({ Data: { A: 'a' } }),
      isComplete: async (e: any) => {
        polls++;
        if (e.ResourceProperties.Mode === 'data') return { IsComplete: false, Data: { X: '1' } };
        if (e.ResourceProperties.Mode === 'never') return { IsComplete: false };
        return polls < 3 ? { IsComplete: false } : { IsComplete: true, Data: { B: 'b' } };
      },
    }, { queryIntervalMs: 5_000, totalTimeoutMs: 60_000 });
    await stack.deploy({ R: { Mode: 'ok' } });
    const created = stack.requests[0];
    expect(created).toMatchObject({ status: 'SUCCESS', physicalIdOut: created.requestId, data: { A: 'a', B: 'b' } });
    await stack.deploy({ R: { Mode: 'data' } });
    expect(stack.requests[1]).toMatchObject({ status: 'FAILED', reason: '"Data" is not allowed if "IsComplete" is "False"' });
    const start = w.clock.now();
    await stack.deploy({ R: { Mode: 'never' } });
    const timedOut = stack.requests.find((r) => r.reason === 'Operation timed out');
    expect(timedOut).toBeDefined();
    expect(w.clock.now() - start).toBeGreaterThanOrEqual(60_000);
  });

  test('a Delete must not change the physical id; a rollback swaps properties with a new RequestId', async () => {
    const w = newWorld();
    const seen: any[] = [];
    const stack = new CfnStack(w, {
      onEvent: async (e: any) => {
        seen.push({ ...e, status: w.cloudformation.status(e.StackId) });
        if (e.RequestType === 'Delete') return { PhysicalResourceId: 'other' };
        return { PhysicalResourceId: `id-${e.ResourceProperties.V}` };
      },
    });
    await stack.deploy({ R: { V: '1' } });
    const failed = await stack.deploy({ R: { V: '2' } }, { otherResourceFailsAt: 1 });
    expect(failed.status).toBe('UPDATE_ROLLBACK_COMPLETE');
    const [, update, rollback, cleanup] = seen;
    expect(update).toMatchObject({ RequestType: 'Update', PhysicalResourceId: 'id-1', ResourceProperties: { V: '2' }, OldResourceProperties: { V: '1' } });
    expect(rollback).toMatchObject({
      RequestType: 'Update',
      PhysicalResourceId: 'id-2',
      ResourceProperties: { V: '1' },
      OldResourceProperties: { V: '2' },
      status: 'UPDATE_ROLLBACK_IN_PROGRESS',
    });
    expect(rollback.RequestId).not.toBe(update.RequestId);
    expect(cleanup).toMatchObject({ RequestType: 'Delete', PhysicalResourceId: 'id-2' });
    expect(stack.requests.find((r) => r.requestType === 'Delete')).toMatchObject({ status: 'FAILED', reason: expect.stringMatching(/cannot change the physical resource ID/) });
  });

  test('a killed handler answers FAILED; with the framework killed too, Lambda reruns it with the same RequestId', async () => {
    const w = newWorld({ scripted: [{ kind: 'kill-after-create' }, { kind: 'framework-retry' }] });
    const events: string[] = [];
    const stack = new CfnStack(w, {
      onEvent: async (e: any) => {
        events.push(e.RequestId);
        const out = await fsx.send(new CreateSnapshotCommand({ VolumeId: VOLUME, Name: 'n', ClientRequestToken: requestToken(e) }));
        return { PhysicalResourceId: out.Snapshot!.SnapshotId };
      },
    });
    const result = await stack.deploy({ R: {} });
    expect(result.status).toBe('CREATE_COMPLETE');
    expect(events).toHaveLength(2);
    expect(events[1]).toBe(events[0]);
    expect(w.copies().filter((c) => !c.foreign)).toHaveLength(1);
  });

  test('duplicate delivery runs the same request again', async () => {
    const w = newWorld({ faults: { 'duplicate-delivery': 1 } });
    const ids: string[] = [];
    const stack = new CfnStack(w, { onEvent: async (e: any) => { ids.push(e.RequestId); return {}; } });
    await stack.deploy({ R: {} });
    expect(ids).toEqual([ids[0], ids[0]]);
    expect(stack.requests.filter((r) => r.duplicate)).toHaveLength(1);
  });
});

// ---------------------------------------------------------------------------------------------
// EventBridge driver, with a tiny scheduled handler.
// ---------------------------------------------------------------------------------------------

describe('EventBridge driver', () => {
  const SCHEDULE = 'arn:aws:cloudformation:us-east-1:111111111111:stack/app/1|Nightly';
  const scheduled = (useToken: boolean) => async (event: ScheduledEvent) => {
    const token = tickToken({ scheduleId: SCHEDULE, target: FS, scheduledTime: event.time });
    await withRetries(
      () => fsx.send(new CreateBackupCommand({
        FileSystemId: FS,
        ClientRequestToken: useToken ? token : undefined,
        Tags: ownershipTags({ stackId: 'arn:aws:cloudformation:us-east-1:111111111111:stack/app/1', owner: 'Nightly' }, 'hash', token),
      })),
      { budgetMs: 60_000, retryable: (e) => (e as Error).name !== 'BackupInProgress' },
    );
  };

  test('ticks at the scheduled times, delivers some twice and retries failures', async () => {
    const w = newWorld({ seed: 7, faults: { 'duplicate-tick': 0.5, 'async-retry': 0.5, 'lost-response': 0.2 } });
    const driver = new EventBridgeDriver(w, scheduled(true), { scheduleId: SCHEDULE, rateMs: 3_600_000 });
    await driver.runTicks(10);
    const ticks = new Set(driver.deliveries.map((d) => d.tick));
    expect(ticks.size).toBe(10);
    for (const t of ticks) expect(new Date(t).getTime() % 3_600_000).toBe(0);
    expect(driver.deliveries.some((d) => d.duplicate)).toBe(true);
    expect(driver.deliveries.some((d) => d.attempt > 0)).toBe(true);
    const backups = w.copies().filter((c) => c.kind === 'fsx-backup');
    expect(backups).toHaveLength(10);
    expect(new Invariants(w).atEnd()).toEqual([]);
  });

  test('without the tick token, duplicates are caught', async () => {
    const w = newWorld({ seed: 7, faults: { 'duplicate-tick': 1 } });
    w.clock.advance(3_600_000); // past the first backup, so BackupInProgress does not hide the duplicate
    const driver = new EventBridgeDriver(w, scheduled(false), { scheduleId: SCHEDULE, rateMs: 3_600_000 });
    await driver.runTicks(3);
    w.clock.advance(3_600_000);
    const violations = new Invariants(w).atEnd();
    expect(violations.filter((v) => v.invariant === 'no-duplicates').length).toBeGreaterThan(0);
  });

  test('a failed invocation is retried at most twice, with the same event', async () => {
    const w = newWorld();
    const ids: string[] = [];
    const driver = new EventBridgeDriver(w, async (e) => { ids.push(e.id); throw new Error('nope'); }, { scheduleId: 's', rateMs: 60_000 });
    await driver.runTicks(1);
    expect(ids).toHaveLength(3);
    expect(new Set(ids).size).toBe(1);
  });
});

// ---------------------------------------------------------------------------------------------
// Contracts of the fakes.
// ---------------------------------------------------------------------------------------------

describe('FSx fake', () => {
  test('token replay returns the same snapshot; changed parameters give IncompatibleParameterError', async () => {
    newWorld();
    const a = await fsx.send(new CreateSnapshotCommand({ VolumeId: VOLUME, Name: 'n', ClientRequestToken: 'tok-1' }));
    const b = await fsx.send(new CreateSnapshotCommand({ VolumeId: VOLUME, Name: 'n', ClientRequestToken: 'tok-1' }));
    expect(b.Snapshot!.SnapshotId).toBe(a.Snapshot!.SnapshotId);
    const err = await rejection(fsx.send(new CreateSnapshotCommand({ VolumeId: VOLUME, Name: 'other', ClientRequestToken: 'tok-1' })));
    expect(err).toMatchObject({ name: 'IncompatibleParameterError', $metadata: { httpStatusCode: 400 } });
  });

  test('lifecycle advances with simulated time; DELETING instead of AVAILABLE; not found errors', async () => {
    const w = newWorld({ scripted: [{ kind: 'failed-lifecycle' }], durations: { minMs: 60_000, maxMs: 60_001, slowMs: 1 } });
    const bad = (await fsx.send(new CreateSnapshotCommand({ VolumeId: VOLUME, Name: 'bad' }))).Snapshot!.SnapshotId!;
    const good = (await fsx.send(new CreateSnapshotCommand({ VolumeId: VOLUME, Name: 'good' }))).Snapshot!.SnapshotId!;
    expect(w.fsx.snapshot(good)?.Lifecycle).toBe('CREATING');
    w.clock.advance(61_000);
    const out = await fsx.send(new DescribeSnapshotsCommand({ SnapshotIds: [good, bad] }));
    expect(Object.fromEntries(out.Snapshots!.map((s) => [s.SnapshotId, s.Lifecycle]))).toEqual({ [good]: 'AVAILABLE', [bad]: 'DELETING' });
    w.clock.advance(60_000);
    expect(await rejection(fsx.send(new DescribeSnapshotsCommand({ SnapshotIds: [bad] })))).toMatchObject({ name: 'SnapshotNotFound' });
    expect(await rejection(fsx.send(new DeleteSnapshotCommand({ SnapshotId: bad })))).toMatchObject({ name: 'SnapshotNotFound' });
    expect(await rejection(fsx.send(new CreateSnapshotCommand({ VolumeId: 'fsvol-00000000000000000', Name: 'x' })))).toMatchObject({ name: 'VolumeNotFound' });
    await fsx.send(new DeleteSnapshotCommand({ SnapshotId: good }));
    expect(w.core.log.at(-1)).toMatchObject({ command: 'DeleteSnapshotCommand', resourceId: good, foreign: false, tagsBefore: [] });
  });

  test('backups: BackupInProgress, ServiceLimitExceeded, FileSystemNotFound, BackupNotFound, tags', async () => {
    const w = newWorld({ fsx: { maxBackups: 2 }, durations: { minMs: 60_000, maxMs: 60_001, slowMs: 1 } });
    w.fsx.addFileSystem('fs-00000000000000002', 'WINDOWS', { copyTagsToBackups: true, tags: [{ Key: 'fs', Value: 'tag' }] });
    const first = (await fsx.send(new CreateBackupCommand({ FileSystemId: FS }))).Backup!;
    expect(await rejection(fsx.send(new CreateBackupCommand({ FileSystemId: FS })))).toMatchObject({ name: 'BackupInProgress' });
    expect(await rejection(fsx.send(new DeleteBackupCommand({ BackupId: first.BackupId })))).toMatchObject({ name: 'BackupInProgress' });
    const second = (await fsx.send(new CreateBackupCommand({ FileSystemId: 'fs-00000000000000002' }))).Backup!;
    expect(second.Tags).toEqual([{ Key: 'fs', Value: 'tag' }]);
    w.clock.advance(61_000);
    expect(await rejection(fsx.send(new CreateBackupCommand({ FileSystemId: FS })))).toMatchObject({ name: 'ServiceLimitExceeded' });
    expect(await rejection(fsx.send(new CreateBackupCommand({ FileSystemId: 'fs-0000000000000000f' })))).toMatchObject({ name: 'FileSystemNotFound' });
    const listed = await fsx.send(new DescribeBackupsCommand({ Filters: [{ Name: 'file-system-id', Values: [FS] }] }));
    expect(listed.Backups!.map((b) => [b.BackupId, b.Lifecycle])).toEqual([[first.BackupId, 'AVAILABLE']]);
    await fsx.send(new TagResourceCommand({ ResourceARN: first.ResourceARN, Tags: [{ Key: 'k', Value: 'v' }] }));
    expect((await fsx.send(new ListTagsForResourceCommand({ ResourceARN: first.ResourceARN }))).Tags).toEqual([{ Key: 'k', Value: 'v' }]);
    await fsx.send(new DeleteBackupCommand({ BackupId: first.BackupId }));
    expect(await rejection(fsx.send(new DescribeBackupsCommand({ BackupIds: [first.BackupId!] })))).toMatchObject({ name: 'BackupNotFound' });
  });

  test('faults are thrown as the SDK throws them, and a killed Lambda makes no more calls', async () => {
    const w = newWorld({ scripted: [{ kind: 'throttle' }, { kind: 'server-error' }, { kind: 'network' }, { kind: 'kill-after-create' }] });
    expect(await rejection(fsx.send(new DescribeSnapshotsCommand({})))).toMatchObject({ name: 'ThrottlingException', $metadata: { httpStatusCode: 400 } });
    expect(await rejection(fsx.send(new DescribeSnapshotsCommand({})))).toMatchObject({ name: 'InternalServerError', $metadata: { httpStatusCode: 500 } });
    expect(await rejection(fsx.send(new DescribeSnapshotsCommand({})))).toMatchObject({ code: 'ECONNRESET' });
    w.clock.startInvocation(60_000);
    expect(await rejection(fsx.send(new CreateSnapshotCommand({ VolumeId: VOLUME, Name: 'n' })))).toMatchObject({ name: 'LambdaKilled' });
    expect(await rejection(fsx.send(new DescribeSnapshotsCommand({})))).toMatchObject({ name: 'LambdaKilled' });
    expect(w.clock.endInvocation()).toMatch(/killed after CreateSnapshotCommand/);
    expect(w.copies().filter((c) => !c.foreign)).toHaveLength(1);
    expect(w.faults.injected).toEqual({ 'throttle': 1, 'server-error': 1, 'network': 1, 'kill-after-create': 1 });
  });
});

describe('EC2 fake', () => {
  function ec2World(options: SimWorldOptions = {}) {
    const w = newWorld({ ...options, ec2: { visibilityDelayMs: 20_000, ...options.ec2 } });
    w.ec2.addVolume('vol-00000000000000001', { instanceId: 'i-0000000000000001', size: 8 });
    w.ec2.addVolume('vol-00000000000000002', { instanceId: 'i-0000000000000001', size: 100, tags: [{ Key: 'app', Value: 'db' }] });
    return w;
  }
  const tagged = (value: string) => [{ ResourceType: 'snapshot' as const, Tags: [{ Key: 'sim:token', Value: value }] }];

  test('CreateSnapshot has no token: a retry makes a second snapshot; tag lookups see it only later', async () => {
    const w = ec2World({ ec2: { minSnapshotIntervalMs: 0 } });
    const a = await ec2.send(new Ec2CreateSnapshot({ VolumeId: 'vol-00000000000000001', TagSpecifications: tagged('t1') }));
    const b = await ec2.send(new Ec2CreateSnapshot({ VolumeId: 'vol-00000000000000001', TagSpecifications: tagged('t1') }));
    expect(a.SnapshotId).not.toBe(b.SnapshotId);
    const lookup = () => ec2.send(new Ec2DescribeSnapshots({ OwnerIds: ['self'], Filters: [{ Name: 'tag:sim:token', Values: ['t1'] }] }));
    expect((await lookup()).Snapshots).toEqual([]);
    expect(await rejection(ec2.send(new Ec2DescribeSnapshots({ SnapshotIds: [a.SnapshotId!] })))).toMatchObject({ name: 'InvalidSnapshot.NotFound' });
    expect(await rejection(ec2.send(new CreateTagsCommand({ Resources: [a.SnapshotId!], Tags: [{ Key: 'x', Value: 'y' }] })))).toMatchObject({ name: 'InvalidSnapshot.NotFound' });
    w.clock.advance(21_000);
    expect((await lookup()).Snapshots!.map((s) => s.SnapshotId)).toEqual([a.SnapshotId, b.SnapshotId]);
  });

  test('OwnerIds, rate limits, error state, DeleteSnapshot, CreateSnapshots, DescribeVolumes', async () => {
    const w = ec2World({ scripted: [{ kind: 'failed-lifecycle' }], durations: { minMs: 60_000, maxMs: 60_001, slowMs: 1 } });
    const shared = w.ec2.seedSnapshot('vol-00000000000000001', [{ Key: 'sim:token', Value: 't' }], { ownerId: '222222222222' });
    const mine = w.ec2.seedSnapshot('vol-00000000000000001', [{ Key: 'sim:token', Value: 't' }]);
    const self = await ec2.send(new Ec2DescribeSnapshots({ OwnerIds: ['self'], Filters: [{ Name: 'tag:sim:token', Values: ['t'] }] }));
    expect(self.Snapshots!.map((s) => s.SnapshotId)).toEqual([mine]);
    expect(await rejection(ec2.send(new Ec2DeleteSnapshot({ SnapshotId: shared })))).toMatchObject({ name: 'UnauthorizedOperation' });

    const failing = await ec2.send(new Ec2CreateSnapshot({ VolumeId: 'vol-00000000000000001' }));
    expect(await rejection(ec2.send(new Ec2CreateSnapshot({ VolumeId: 'vol-00000000000000001' })))).toMatchObject({
      name: 'SnapshotCreationPerVolumeRateExceeded',
    });
    expect(await rejection(ec2.send(new Ec2CreateSnapshot({ VolumeId: 'vol-0000000000000000f' })))).toMatchObject({ name: 'InvalidVolume.NotFound' });
    w.clock.advance(61_000);
    const [state] = (await ec2.send(new Ec2DescribeSnapshots({ SnapshotIds: [failing.SnapshotId!] }))).Snapshots!;
    expect(state.State).toBe('error');

    const multi = await ec2.send(new CreateSnapshotsCommand({
      InstanceSpecification: { InstanceId: 'i-0000000000000001', ExcludeBootVolume: true }, CopyTagsFromSource: 'volume', TagSpecifications: tagged('m'),
    }));
    expect(multi.Snapshots!.map((s) => [s.VolumeId, s.Tags])).toEqual([
      ['vol-00000000000000002', [{ Key: 'app', Value: 'db' }, { Key: 'sim:token', Value: 'm' }]],
    ]);
    const vols = await ec2.send(new DescribeVolumesCommand({ Filters: [{ Name: 'attachment.instance-id', Values: ['i-0000000000000001'] }] }));
    expect(vols.Volumes!.map((v) => v.VolumeId)).toEqual(['vol-00000000000000001', 'vol-00000000000000002']);

    await ec2.send(new Ec2DeleteSnapshot({ SnapshotId: mine }));
    expect(w.core.log.at(-1)).toMatchObject({ command: 'DeleteSnapshotCommand', resourceId: mine, foreign: true });
    expect(new Invariants(w).atEnd().map((v) => v.invariant)).toContain('only-ours-touched');
  });
});

describe('EBS direct fake', () => {
  const block = (fill: number) => Buffer.alloc(EBS_BLOCK_SIZE, fill);
  const start = (extra: Record<string, unknown> = {}) =>
    ebs.send(new StartSnapshotCommand({ VolumeSize: 1, ClientToken: 'ebs-token-1', Description: 'd', ...extra }));

  test('ClientToken replay returns the same snapshot; a changed replay is a ConflictException', async () => {
    newWorld();
    const a = await start();
    const b = await start();
    expect(b.SnapshotId).toBe(a.SnapshotId);
    expect(a).toMatchObject({ Status: 'pending', BlockSize: EBS_BLOCK_SIZE });
    expect(await rejection(start({ Description: 'changed' }))).toMatchObject({ name: 'ConflictException', $metadata: { httpStatusCode: 409 } });
    expect(await rejection(start({ ClientToken: 'other', Encrypted: true, ParentSnapshotId: 'snap-1' }))).toMatchObject({ name: 'ValidationException' });
  });

  test('blocks are checked (size and base64 SHA-256); complete; list blocks; LINEAR aggregate', async () => {
    const w = newWorld({ ebs: { notFoundAfterStartMs: 5_000, completeMs: 30_000 } });
    const { SnapshotId } = await start();
    const put = (index: number, data: Buffer, checksum = blockChecksum(data)) =>
      ebs.send(new PutSnapshotBlockCommand({ SnapshotId, BlockIndex: index, BlockData: data, DataLength: data.length, Checksum: checksum, ChecksumAlgorithm: 'SHA256' }));
    expect(await rejection(put(0, block(1)))).toMatchObject({ name: 'ResourceNotFoundException' });
    w.clock.advance(5_000);
    expect(await rejection(put(0, block(1), createHash('sha256').update('x').digest('base64')))).toMatchObject({ name: 'ValidationException' });
    expect(await rejection(put(0, Buffer.alloc(1000)))).toMatchObject({ name: 'ValidationException' });
    expect(await put(0, block(1))).toMatchObject({ Checksum: blockChecksum(block(1)) });
    await put(7, block(2));
    expect(await rejection(ebs.send(new ListSnapshotBlocksCommand({ SnapshotId })))).toMatchObject({ name: 'ValidationException' });
    const aggregate = linearChecksum([blockChecksum(block(1)), blockChecksum(block(2))]);
    await ebs.send(new CompleteSnapshotCommand({ SnapshotId, ChangedBlocksCount: 2, Checksum: aggregate, ChecksumAlgorithm: 'SHA256', ChecksumAggregationMethod: 'LINEAR' }));
    w.clock.advance(30_000);
    const listed = await ebs.send(new ListSnapshotBlocksCommand({ SnapshotId }));
    expect(listed.Blocks!.map((b) => b.BlockIndex)).toEqual([0, 7]);
    expect((await ec2.send(new Ec2DescribeSnapshots({ SnapshotIds: [SnapshotId!] }))).Snapshots![0].State).toBe('completed');
  });

  test('an upload that is left alone longer than its Timeout is cancelled', async () => {
    const w = newWorld();
    const { SnapshotId } = await start({ Timeout: 10 });
    w.clock.advance(11 * 60_000);
    expect((await ec2.send(new Ec2DescribeSnapshots({ SnapshotIds: [SnapshotId!] }))).Snapshots![0].State).toBe('error');
    const data = block(3);
    expect(await rejection(ebs.send(new PutSnapshotBlockCommand({
      SnapshotId, BlockIndex: 0, BlockData: data, DataLength: data.length, Checksum: blockChecksum(data), ChecksumAlgorithm: 'SHA256',
    })))).toMatchObject({ name: 'ValidationException' });
  });
});

describe('fault plan', () => {
  test('the same seed gives the same faults', () => {
    const rates: FaultRates = { 'throttle': 0.3, 'lost-response': 0.3 };
    const run = (seed: number) => {
      const w = new SimWorld({ seed, faults: rates });
      try {
        return Array.from({ length: 50 }, () => `${w.faults.beforeCall('fsx', 'X')?.name}/${w.faults.afterCall('fsx', 'X', false)}`);
      } finally {
        w.dispose();
      }
    };
    expect(run(3)).toEqual(run(3));
    expect(run(3)).not.toEqual(run(4));
  });
});
