import {
  CreateBackupCommand,
  CreateSnapshotCommand,
  DeleteSnapshotCommand,
  DescribeFileSystemsCommand,
  DescribeSnapshotsCommand,
  DescribeVolumesCommand,
  FSxClient,
  ListTagsForResourceCommand,
  Snapshot,
  type Backup,
} from '@aws-sdk/client-fsx';
import { mockClient } from 'aws-sdk-client-mock';
import 'aws-sdk-client-mock-jest';
import { handler, liveCreationTimes, metrics, snapshotsToPrune, staleReason } from '../../lambda/openzfs-snapshot-schedule';
import { handler as router } from '../../lambda/schedule';
import { scheduledMinute, targetHash } from '../../lambda/schedule/identity';
import { logger } from '../../lambda/shared/logger';
import { OWNERSHIP_TAG_KEYS } from '../../lambda/shared/ownership';
import { tickToken } from '../../lambda/shared/token';
import { type OpenZfsSnapshotTickInput, MAX_NAME_PREFIX, snapshotName } from '../../src/private/openzfs-snapshot-schedule-contract';
import { SCHEDULED_TICK_TAG_KEY } from '../../src/private/ownership-tags';
import { STACK_ID } from '../fixtures/events';
import { ownershipTagsOf } from '../fixtures/ownership';
import { tickTagMs, useCapturedMetrics, useTickClock } from '../fixtures/scheduled-tick';
import { awsError } from '../support/aws-errors';

const SCHEDULE = 'AppHourlySnapshots0A1B2C3D';
const PREFIX = 'hourly';
const [VOL, VOL2] = ['fsvol-0123456789abcdef0', 'fsvol-0123456789abcdef1'];
const TIME = '2026-11-22T02:00:00Z';
const TICK_MS = Date.parse(TIME);
const HOUR = 3_600_000;
type Tags = Array<{ Key: string; Value: string }>;

function tick(overrides: Partial<OpenZfsSnapshotTickInput> = {}): OpenZfsSnapshotTickInput {
  return {
    Operation: 'OpenZfsSnapshot',
    Time: TIME,
    EventId: 'event-1',
    StackId: STACK_ID,
    Schedule: SCHEDULE,
    VolumeIds: [VOL],
    NamePrefix: PREFIX,
    ...overrides,
  };
}

/** The tick's token: derived from the scheduled time rounded down to the minute. */
function token(vol: string, time = TIME, schedule = SCHEDULE) {
  return tickToken({ scheduleId: `${STACK_ID}|${schedule}`, target: vol, scheduledTime: scheduledMinute(time) });
}

/** This schedule's ownership tags on a snapshot of `vol` made at `time`, sorted by key as the handler sends them. */
function ours(vol: string, time = TIME, owner = SCHEDULE, stackId = STACK_ID): Tags {
  const tags = ownershipTagsOf({ stackId, owner, propsHash: targetHash(vol), token: token(vol, time, owner) });
  return tags.sort((a, b) => (a.Key < b.Key ? -1 : 1));
}

/** The tick tag every scheduled snapshot carries: the tick's scheduled minute. */
const tickTagOf = (time = TIME) => ({ Key: SCHEDULED_TICK_TAG_KEY, Value: scheduledMinute(time) });
const byKey = (a: { Key: string }, b: { Key: string }) => (a.Key < b.Key ? -1 : 1);

const arnOf = (vol: string) => `arn:aws:fsx:us-east-1:111111111111:volume/fs-0123456789abcdef0/${vol}`;

function volume(id: string, opts: { type?: string; copyTags?: boolean; tags?: Tags } = {}) {
  const type = opts.type ?? 'OPENZFS';
  return {
    VolumeId: id,
    VolumeType: type as any,
    ResourceARN: arnOf(id),
    Tags: opts.tags ?? [],
    OpenZFSConfiguration: type === 'OPENZFS' ? { CopyTagsToSnapshots: opts.copyTags ?? false } : undefined,
    OntapConfiguration: type === 'ONTAP' ? {} : undefined,
  };
}

/** A snapshot `ageHours` before the tick. */
function snapshot(id: string, vol: string, ageHours: number, tags: Tags | undefined = ours(vol, new Date(TICK_MS - ageHours * HOUR).toISOString()), lifecycle = 'AVAILABLE'): Snapshot {
  return {
    SnapshotId: id,
    VolumeId: vol,
    Name: `s-${id}`,
    Lifecycle: lifecycle as any,
    CreationTime: new Date(TICK_MS - ageHours * HOUR),
    ResourceARN: `arn:aws:fsx:us-east-1:111111111111:snapshot/${vol}/${id}`,
    Tags: tags,
  };
}

const fsxMock = mockClient(FSxClient);
const time = useTickClock(() => TICK_MS + 30_000);
const { published, emf, addMetric } = useCapturedMetrics(metrics);
/** What DescribeSnapshots lists (filtered by volume-id); CreateSnapshot adds to it. */
let listed: Snapshot[] = [];

beforeEach(() => {
  fsxMock.reset();
  listed = [];
  fsxMock.on(DescribeVolumesCommand).callsFake((input) => ({ Volumes: input.VolumeIds.map((id: string) => volume(id)) }));
  fsxMock.on(CreateSnapshotCommand).callsFake((input) => {
    const s = { ...snapshot(`fsvolsnap-new-${input.VolumeId.slice(-1)}`, input.VolumeId, 0, input.Tags, 'CREATING'), Name: input.Name };
    listed.push(s);
    return { Snapshot: s };
  });
  fsxMock.on(DescribeSnapshotsCommand).callsFake((input) => {
    const filter = input.Filters?.find((f: any) => f.Name === 'volume-id');
    if (!filter || input.Filters.length !== 1) throw awsError('BadRequest', 'expected exactly one volume-id filter');
    return { Snapshots: listed.filter((s) => filter.Values.includes(s.VolumeId)) };
  });
  fsxMock.on(DeleteSnapshotCommand).callsFake((input) => ({ SnapshotId: input.SnapshotId, Lifecycle: 'DELETING' }));
});

const createInputs = () => fsxMock.commandCalls(CreateSnapshotCommand).map((c) => c.args[0].input);
const deleted = () => fsxMock.commandCalls(DeleteSnapshotCommand).map((c) => c.args[0].input.SnapshotId).sort();

describe('creating snapshots', () => {
  test('CreateSnapshot per volume: the tick token, the name from the prefix, minute and token, user + ownership tags and the tick tag, sorted', async () => {
    const res = await handler(tick({ VolumeIds: [VOL, VOL2], Tags: { team: 'data', costCenter: '42' } }));

    expect(fsxMock).toHaveReceivedCommandTimes(CreateSnapshotCommand, 2);
    expect(fsxMock).toHaveReceivedCommandWith(CreateSnapshotCommand, {
      VolumeId: VOL,
      Name: `hourly-20261122T0200Z-${token(VOL).slice(4, 12)}`,
      ClientRequestToken: token(VOL),
      Tags: [...ours(VOL), tickTagOf(), { Key: 'costCenter', Value: '42' }, { Key: 'team', Value: 'data' }].sort(byKey),
    });
    expect(createInputs()[0].Tags).toContainEqual({ Key: 'cdk-storage-snapshots:tick', Value: '2026-11-22T02:00Z' });
    expect(createInputs().find((i) => i.VolumeId === VOL2)).toMatchObject({ ClientRequestToken: token(VOL2), Name: snapshotName(PREFIX, '2026-11-22T02:00Z', token(VOL2)) });
    expect(res).toMatchObject({ schedule: SCHEDULE, time: TIME, created: 2, failed: 0, skipped: 0, pruned: 0, kept: 0 });
    expect(res.results.map((r) => r.snapshotId)).toEqual(['fsvolsnap-new-0', 'fsvolsnap-new-1']);
    const none = { StaleTicksSkipped: 0, SnapshotsPruned: 0, PruneFailures: 0, SnapshotsKeptInUse: 0, CopiedTagsDropped: 0 };
    expect(published()).toEqual({ SnapshotsCreated: 2, SnapshotsFailed: 0, ...none });
    // The volumes are listed once, before their snapshots are made (to find a snapshot of this tick already made), nothing deleted.
    expect(fsxMock).toHaveReceivedCommandTimes(DescribeSnapshotsCommand, 1);
    expect(fsxMock.call(1).args[0]).toBeInstanceOf(DescribeSnapshotsCommand);
    expect(fsxMock).toHaveReceivedCommandWith(DescribeSnapshotsCommand, { Filters: [{ Name: 'volume-id', Values: [VOL, VOL2] }] });
    expect(fsxMock).toHaveReceivedCommandTimes(DeleteSnapshotCommand, 0);
  });

  test('token and name come from the scheduled minute: deliveries of a tick share them, the next tick has others', async () => {
    // Each delivery finds no snapshot listed (FSx's listing not showing the first yet), so each asks.
    await handler(tick({ Time: '2026-11-22T02:00:00Z' }));
    listed = [];
    await handler(tick({ Time: '2026-11-22T02:00:41Z', EventId: 'event-2' }));
    listed = [];
    await handler(tick({ Time: '2026-11-22T02:15:00Z', EventId: 'event-3' }));
    const [a, b, c] = createInputs();
    expect(b).toEqual(a);
    expect(c.ClientRequestToken).not.toBe(a.ClientRequestToken);
    expect(c.Name).toBe(`hourly-20261122T0215Z-${token(VOL, '2026-11-22T02:15:00Z').slice(4, 12)}`);
    expect(a.Tags).toContainEqual(tickTagOf('2026-11-22T02:00:00Z'));
    expect(c.Tags).toContainEqual(tickTagOf('2026-11-22T02:15:00Z'));
    expect(a.ClientRequestToken).toMatch(/^[A-Za-z0-9_.-]{1,63}$/);
    // Another schedule with the same prefix makes another name on the same volume.
    expect(snapshotName(PREFIX, '2026-11-22T02:00Z', token(VOL, TIME, 'Other'))).not.toBe(a.Name);
  });

  test('a volume given twice (a token and a literal of the same id) gets one snapshot', async () => {
    const res = await handler(tick({ VolumeIds: [VOL, VOL] }));
    expect(fsxMock).toHaveReceivedCommandTimes(CreateSnapshotCommand, 1);
    expect(res.created).toBe(1);
  });

  test('CopyTagsToSnapshots on: the volume\'s tags go in the request (ours and the user\'s win)', async () => {
    fsxMock.on(DescribeVolumesCommand).resolves({
      Volumes: [volume(VOL, { copyTags: true, tags: [{ Key: 'app', Value: 'orders' }, { Key: 'team', Value: 'vol' }, { Key: OWNERSHIP_TAG_KEYS.owner, Value: 'forged' }] })],
    });
    await handler(tick({ Tags: { team: 'data' } }));
    const tags = createInputs()[0].Tags!;
    expect(tags).toContainEqual({ Key: 'app', Value: 'orders' });
    expect(tags).toContainEqual({ Key: 'team', Value: 'data' });
    expect(tags.filter((t) => t.Key === OWNERSHIP_TAG_KEYS.owner)).toEqual([{ Key: OWNERSHIP_TAG_KEYS.owner, Value: SCHEDULE }]);
  });

  test('CopyTagsToSnapshots off: nothing of the volume\'s is copied, and its tags are not listed', async () => {
    fsxMock.on(DescribeVolumesCommand).resolves({ Volumes: [{ ...volume(VOL, { tags: [{ Key: 'app', Value: 'orders' }] }) }] });
    await handler(tick());
    expect(createInputs()[0].Tags!.map((t) => t.Key)).not.toContain('app');
    expect(fsxMock).toHaveReceivedCommandTimes(ListTagsForResourceCommand, 0);
  });

  test('tags the description leaves out are listed, every page', async () => {
    fsxMock.on(DescribeVolumesCommand).resolves({ Volumes: [{ ...volume(VOL, { copyTags: true }), Tags: undefined }] });
    fsxMock.on(ListTagsForResourceCommand, { ResourceARN: arnOf(VOL) })
      .resolvesOnce({ Tags: [{ Key: 'a', Value: '1' }], NextToken: 'p2' })
      .resolvesOnce({ Tags: [{ Key: 'b', Value: '2' }] });
    await handler(tick());
    expect(createInputs()[0].Tags).toEqual(expect.arrayContaining([{ Key: 'a', Value: '1' }, { Key: 'b', Value: '2' }]));
  });

  test('copied tags that FSx refuses or that do not fit in 50 are left out and counted; the snapshot is still made', async () => {
    const many = Array.from({ length: 46 }, (_, i) => ({ Key: `k${String(i).padStart(2, '0')}`, Value: 'v' }));
    fsxMock.on(DescribeVolumesCommand).resolves({ Volumes: [volume(VOL, { copyTags: true, tags: [...many, { Key: 'cost#center', Value: '1' }] })] });
    const res = await handler(tick({ Tags: { team: 'data' } }));
    const tags = createInputs()[0].Tags!;
    expect(tags).toHaveLength(50);
    expect(tags.map((t) => t.Key)).not.toContain('cost#center');
    // 5 ownership tags, the tick tag and 1 user tag leave room for 43 of the 46 valid ones; 3 + the invalid one dropped.
    expect(res.results[0].tagsDropped).toBe(4);
    expect(published()).toMatchObject({ SnapshotsCreated: 1, CopiedTagsDropped: 4 });
  });

  test('a volume that is not OpenZFS is refused with the reason; the others are snapshotted', async () => {
    fsxMock.on(DescribeVolumesCommand).resolves({ Volumes: [volume(VOL), volume(VOL2, { type: 'ONTAP' })] });
    await expect(handler(tick({ VolumeIds: [VOL, VOL2] })))
      .rejects.toThrow(`1 of 2 snapshots failed: ${VOL2} is an ONTAP volume: FSx takes snapshots of OpenZFS volumes only`);
    expect(createInputs().map((i) => i.VolumeId)).toEqual([VOL]);
    expect(published()).toMatchObject({ SnapshotsCreated: 1, SnapshotsFailed: 1 });
  });

  test('a volume that does not exist fails alone: the batch is read again one id at a time', async () => {
    fsxMock.on(DescribeVolumesCommand).callsFake((input) => {
      if (input.VolumeIds.includes(VOL2)) throw awsError('VolumeNotFound', `Volume ${VOL2} not found`);
      return { Volumes: input.VolumeIds.map((id: string) => volume(id)) };
    });
    await expect(handler(tick({ VolumeIds: [VOL, VOL2] }))).rejects.toThrow(new RegExp(`^1 of 2 snapshots failed: Reading ${VOL2}: VolumeNotFound`));
    expect(fsxMock).toHaveReceivedCommandTimes(DescribeVolumesCommand, 3);
    expect(createInputs().map((i) => i.VolumeId)).toEqual([VOL]);
  });

  test('a describe that stays throttled fails the volumes, without a snapshot', async () => {
    fsxMock.on(DescribeVolumesCommand).rejects(awsError('ThrottlingException', 'Rate exceeded'));
    await expect(handler(tick())).rejects.toThrow(`Reading volume ${VOL}: ThrottlingException: Rate exceeded`);
    expect(fsxMock).toHaveReceivedCommandTimes(CreateSnapshotCommand, 0);
  });

  test('volumes are independent: one CreateSnapshot failing does not stop the others, nor their retention', async () => {
    listed = [snapshot('a1', VOL, 1), snapshot('a2', VOL, 2), snapshot('b1', VOL2, 1), snapshot('b2', VOL2, 2)];
    fsxMock.on(CreateSnapshotCommand).callsFake((input) => {
      if (input.VolumeId === VOL) throw awsError('ServiceLimitExceeded', 'Snapshot limit exceeded for the volume');
      const s = { ...snapshot('fsvolsnap-new-1', VOL2, 0, input.Tags, 'CREATING'), Name: input.Name };
      listed.push(s);
      return { Snapshot: s };
    });
    await expect(handler(tick({ VolumeIds: [VOL, VOL2], KeepLast: 1 })))
      .rejects.toThrow(`1 of 2 snapshots failed: Taking a snapshot of ${VOL} (a snapshot quota is reached (delete snapshots, or keep fewer)): ` +
        'ServiceLimitExceeded: Snapshot limit exceeded for the volume');
    // The failed volume keeps every snapshot it has; the other is pruned.
    expect(deleted()).toEqual(['b2']);
    expect(fsxMock).toHaveReceivedCommandTimes(DescribeSnapshotsCommand, 1);
    expect(fsxMock).toHaveReceivedCommandWith(DescribeSnapshotsCommand, { Filters: [{ Name: 'volume-id', Values: [VOL, VOL2] }] });
    expect(published()).toMatchObject({ SnapshotsCreated: 1, SnapshotsFailed: 1, SnapshotsPruned: 1 });
  });

  test('throttling and 5xx are retried with backoff; VolumeNotFound is not', async () => {
    const create = fsxMock.on(CreateSnapshotCommand);
    create.rejectsOnce(awsError('ThrottlingException')).rejectsOnce(awsError('InternalServerError', 'oops', 500))
      .resolves({ Snapshot: snapshot('fsvolsnap-new-0', VOL, 0, ours(VOL), 'CREATING') });
    await expect(handler(tick())).resolves.toMatchObject({ created: 1 });
    expect(fsxMock).toHaveReceivedCommandTimes(CreateSnapshotCommand, 3);
    expect(time.now()).toBeGreaterThan(TICK_MS + 30_000);

    fsxMock.on(CreateSnapshotCommand).rejects(awsError('VolumeNotFound', 'no such volume'));
    fsxMock.resetHistory();
    await expect(handler(tick())).rejects.toThrow(/the volume does not exist/);
    expect(fsxMock).toHaveReceivedCommandTimes(CreateSnapshotCommand, 1);
  });

  test('IncompatibleParameterError: the snapshot an earlier delivery made with this token is this tick\'s', async () => {
    fsxMock.on(CreateSnapshotCommand).rejects(awsError('IncompatibleParameterError'));
    listed = [snapshot('fsvolsnap-earlier', VOL, 0, ours(VOL), 'CREATING')];
    const res = await handler(tick());
    expect(res.results[0]).toMatchObject({ snapshotId: 'fsvolsnap-earlier' });
    expect(res.results[0].error).toBeUndefined();
    expect(published()).toMatchObject({ SnapshotsCreated: 1, SnapshotsFailed: 0 });
  });

  test('IncompatibleParameterError without a snapshot of ours carrying the token fails', async () => {
    fsxMock.on(CreateSnapshotCommand).rejects(awsError('IncompatibleParameterError', 'token reused'));
    // Another schedule's snapshot, and one of ours from another tick.
    listed = [snapshot('other', VOL, 0, ours(VOL, TIME, 'OtherSchedule')), snapshot('older', VOL, 1)];
    await expect(handler(tick())).rejects.toThrow(/no snapshot of this schedule carries it\): IncompatibleParameterError: token reused/);
  });

  test('BadRequest (this tick\'s name taken since the listing, the token forgotten): the snapshot with the token is this tick\'s; otherwise explained', async () => {
    fsxMock.on(CreateSnapshotCommand).rejects(awsError('BadRequest', 'A snapshot with that name already exists'));
    // A delivery running at the same time made it after this one listed the volume.
    fsxMock.on(DescribeSnapshotsCommand).resolvesOnce({ Snapshots: [] }).resolves({ Snapshots: [snapshot('fsvolsnap-earlier', VOL, 0, ours(VOL))] });
    await expect(handler(tick())).resolves.toMatchObject({ created: 1, results: [{ snapshotId: 'fsvolsnap-earlier' }] });
    expect(fsxMock).toHaveReceivedCommandTimes(CreateSnapshotCommand, 1);
    fsxMock.on(DescribeSnapshotsCommand).resolves({ Snapshots: [] });
    await expect(handler(tick())).rejects.toThrow(/FSx refused the request .*BadRequest: A snapshot with that name already exists/);
  });

  test('this tick\'s snapshot returned DELETING (a later delivery gets a failed one back) is failed, with FSx\'s reason', async () => {
    fsxMock.on(CreateSnapshotCommand).resolves({
      Snapshot: { ...snapshot('fsvolsnap-f', VOL, 0, ours(VOL), 'DELETING'), LifecycleTransitionReason: { Message: 'The volume ran out of space' } },
    });
    listed = [snapshot('a1', VOL, 1), snapshot('a2', VOL, 2)];
    await expect(handler(tick({ KeepLast: 1 }))).rejects.toThrow(`Taking a snapshot of ${VOL}: this tick's snapshot fsvolsnap-f is DELETING: The volume ran out of space`);
    expect(published()).toMatchObject({ SnapshotsCreated: 0, SnapshotsFailed: 1, SnapshotsPruned: 0 });
    // Listed once, before: the volume keeps every snapshot it has.
    expect(fsxMock).toHaveReceivedCommandTimes(DescribeSnapshotsCommand, 1);
    expect(fsxMock).toHaveReceivedCommandTimes(DeleteSnapshotCommand, 0);
  });

  test('this tick\'s snapshot found DELETING in the listing (FSx failed it): failed with FSx\'s reason, not requested again, its volume not pruned', async () => {
    listed = [
      snapshot('a1', VOL, 1),
      snapshot('a2', VOL, 2),
      { ...snapshot('fsvolsnap-f', VOL, 0, ours(VOL), 'DELETING'), LifecycleTransitionReason: { Message: 'The volume ran out of space' } },
    ];
    await expect(handler(tick({ KeepLast: 1 }))).rejects.toThrow(`Taking a snapshot of ${VOL}: this tick's snapshot fsvolsnap-f is DELETING: The volume ran out of space`);
    expect(fsxMock).toHaveReceivedCommandTimes(CreateSnapshotCommand, 0);
    expect(fsxMock).toHaveReceivedCommandTimes(DeleteSnapshotCommand, 0);
    expect(published()).toMatchObject({ SnapshotsCreated: 0, SnapshotsFailed: 1, SnapshotsPruned: 0, StaleTicksSkipped: 0 });
  });

  test('CreateSnapshot without a snapshot id fails the volume', async () => {
    fsxMock.on(CreateSnapshotCommand).resolves({});
    await expect(handler(tick())).rejects.toThrow(`FSx CreateSnapshot of ${VOL} returned no snapshot id`);
  });

  test('volumes not reached before the time runs out are failed, not left hanging; the error stays short', async () => {
    process.env.TIMEOUT_MS = '100000'; // 10 s of work after the 90 s margin
    try {
      fsxMock.on(CreateSnapshotCommand).callsFake(async (input) => {
        time.set(time.now() + 6_000);
        return { Snapshot: snapshot(`fsvolsnap-${input.VolumeId.slice(-2)}`, input.VolumeId, 0, input.Tags, 'CREATING') };
      });
      const volumes = Array.from({ length: 40 }, (_, i) => `fsvol-0123456789abcde${i.toString(16).padStart(2, '0')}`);
      const err = await handler(tick({ VolumeIds: volumes })).catch((e) => e);
      expect(err.message).toMatch(/snapshots failed: .*not attempted, the invocation ran out of time.*; and \d+ more \(see the log\)$/);
      expect(err.message.length).toBeLessThanOrEqual(1000);
    } finally {
      delete process.env.TIMEOUT_MS;
    }
  });

  test.each([
    [{ Time: 'yesterday' }, /Time "yesterday" is not a time/],
    [{ StackId: '' }, /StackId is missing/],
    [{ Operation: 'FsxBackup' as any }, /Operation "FsxBackup" is not OpenZfsSnapshot/],
    [{ VolumeIds: [] }, /VolumeIds is empty/],
    [{ VolumeIds: [VOL, 'fs-0123456789abcdef0', 'vol-1'] }, /VolumeIds \["fs-0123456789abcdef0","vol-1"\] are not volume ids/],
    [{ NamePrefix: 'hourly snap' }, /NamePrefix "hourly snap" is not 1 to 179 of the characters/],
    [{ NamePrefix: 'x'.repeat(MAX_NAME_PREFIX + 1) }, /NamePrefix "x+" is not/],
    [{ NamePrefix: undefined as any }, /NamePrefix undefined is not/],
    [{ KeepLast: 0 }, /KeepLast 0 is not a whole number of at least 1/],
    [{ MaxAgeSeconds: -5 }, /MaxAgeSeconds -5 is not a positive number/],
    [{ Tags: ['a'] as any }, /Tags is not an object/],
  ])('input %j is refused with the reason, and counted as a failure of its schedule', async (overrides, reason) => {
    await expect(handler(tick(overrides))).rejects.toThrow(/^invalid schedule input \(was the schedule's input changed by hand\?\): /);
    await expect(handler(tick(overrides))).rejects.toThrow(reason);
    expect(published()).toMatchObject({ SnapshotsCreated: 0, SnapshotsFailed: 1 });
    expect(fsxMock.calls()).toHaveLength(0);
  });

  test('an input that is not an object is refused, counted under an unknown schedule', async () => {
    await expect(handler(undefined as any)).rejects.toThrow(/not an object/);
    expect(published()).toMatchObject({ SnapshotsFailed: 1 });
  });

  test('an invocation that crashes counts every volume it did not finish as failed', async () => {
    const info = jest.spyOn(logger, 'info').mockImplementation((...args: unknown[]) => {
      if (args[0] === 'tick') throw new Error('crash');
    });
    try {
      await expect(handler(tick({ VolumeIds: [VOL, VOL2] }))).rejects.toThrow('crash');
      expect(published()).toMatchObject({ SnapshotsCreated: 0, SnapshotsFailed: 2 });
    } finally {
      info.mockRestore();
    }
  });
});

describe('retention', () => {
  const owner = { stackId: STACK_ID, owner: SCHEDULE };

  test('keepLast: deletes this schedule\'s older AVAILABLE snapshots of the volume, and only those', async () => {
    listed = [
      snapshot('s1', VOL, 1),
      snapshot('s2', VOL, 2),
      snapshot('s3', VOL, 3),
      snapshot('s4', VOL, 4),
      snapshot('creating', VOL, 5, undefined, 'CREATING'),
      snapshot('deleting', VOL, 6, undefined, 'DELETING'),
      snapshot('user', VOL, 10, [{ Key: 'made-by', Value: 'user' }]),
      snapshot('other-schedule', VOL, 10, ours(VOL, TIME, 'Other')),
      snapshot('other-stack', VOL, 10, ours(VOL, TIME, SCHEDULE, 'arn:aws:cloudformation:us-east-1:111111111111:stack/other/1')),
      // Tagged as ours of another volume (a forged or copied tag set): not this volume's.
      { ...snapshot('other-volume', VOL, 10, ours(VOL2)) },
    ];
    const res = await handler(tick({ KeepLast: 2 }));
    // This tick's snapshot is still CREATING: s1 is the newest available and s2 the second.
    expect(deleted()).toEqual(['s3', 's4']);
    expect(res).toMatchObject({ created: 1, pruned: 2, kept: 0 });
    expect(res.results[0].pruned.sort()).toEqual(['s3', 's4']);
    expect(published()).toMatchObject({ SnapshotsPruned: 2, PruneFailures: 0 });
  });

  test('snapshotsToPrune: the newest AVAILABLE stays whatever the limits; maxAge from the scheduled time; both limits apply', () => {
    const list = [snapshot('h40', VOL, 40), snapshot('h31', VOL, 31), snapshot('h29', VOL, 29), snapshot('now', VOL, 0, ours(VOL), 'CREATING')];
    const ids = (r: { keepLast?: number; maxAgeSeconds?: number }, l = list) => snapshotsToPrune(l, owner, VOL, r, TICK_MS).map((s) => s.SnapshotId);
    expect(ids({ maxAgeSeconds: 30 * 3600 })).toEqual(['h31', 'h40']);
    expect(ids({ maxAgeSeconds: 3600 }, [snapshot('h40', VOL, 40), snapshot('h50', VOL, 50)])).toEqual(['h50']);
    expect(ids({ keepLast: 2, maxAgeSeconds: 35 * 3600 })).toEqual(['h40']);
    expect(ids({ keepLast: 1 })).toEqual(['h31', 'h40']);
    expect(ids({})).toEqual([]);
  });

  test('maxAge through the handler: snapshots older than the age at the scheduled time (not at delivery)', async () => {
    time.set(TICK_MS + 2 * HOUR); // delivered late: ages still count from 02:00
    listed = [snapshot('h1', VOL, 1), snapshot('h23', VOL, 23), snapshot('h25', VOL, 25)];
    await handler(tick({ MaxAgeSeconds: 24 * 3600 }));
    expect(deleted()).toEqual(['h25']);
  });

  test('a snapshot a volume was cloned from: FSx refuses the delete; it is kept, counted and logged, the other deletes go on, the tick succeeds', async () => {
    // This tick's snapshot is still CREATING: s1, the newest available, stays.
    listed = [snapshot('s1', VOL, 1), snapshot('cloned', VOL, 2), snapshot('s3', VOL, 3), snapshot('s4', VOL, 4)];
    fsxMock.on(DeleteSnapshotCommand, { SnapshotId: 'cloned' })
      .rejects(awsError('BadRequest', 'Unable to delete snapshot cloned: it has dependent clone volumes'));
    const warn = jest.spyOn(logger, 'warn');
    const res = await handler(tick({ KeepLast: 1 }));
    expect(deleted()).toEqual(['cloned', 's3', 's4']);
    expect(res).toMatchObject({ created: 1, pruned: 2, kept: 1 });
    expect(res.results[0]).toMatchObject({ kept: ['cloned'] });
    expect(res.results[0].pruneError).toBeUndefined();
    expect(published()).toMatchObject({ SnapshotsPruned: 2, SnapshotsKeptInUse: 1, PruneFailures: 0, SnapshotsFailed: 0 });
    expect(warn).toHaveBeenCalledWith('snapshot kept: FSx refused to delete it', expect.objectContaining({
      id: 'cloned', reason: expect.stringContaining('BadRequest: Unable to delete snapshot cloned: it has dependent clone volumes'),
    }));
    warn.mockRestore();
  });

  test('a snapshot already gone is not a failure; another delete error fails the tick after the other deletes', async () => {
    listed = [snapshot('s1', VOL, 1), snapshot('gone', VOL, 2), snapshot('denied', VOL, 3), snapshot('s4', VOL, 4)];
    fsxMock.on(DeleteSnapshotCommand, { SnapshotId: 'gone' }).rejects(awsError('SnapshotNotFound'));
    fsxMock.on(DeleteSnapshotCommand, { SnapshotId: 'denied' }).rejects(awsError('AccessDeniedException', 'not authorized'));
    await expect(handler(tick({ KeepLast: 1 })))
      .rejects.toThrow(`0 of 1 snapshots failed, pruning failed for 1 volume(s): Deleting snapshot denied of ${VOL}: AccessDeniedException: not authorized`);
    expect(deleted()).toEqual(['denied', 'gone', 's4']);
    expect(published()).toMatchObject({ SnapshotsCreated: 1, SnapshotsFailed: 0, SnapshotsPruned: 1, PruneFailures: 1 });
  });

  test('pruning that runs out of time stops and fails the tick (the next tick goes on)', async () => {
    process.env.TIMEOUT_MS = '100000'; // 10 s of work after the 90 s margin
    try {
      listed = [snapshot('s1', VOL, 1), snapshot('s2', VOL, 2), snapshot('s3', VOL, 3), snapshot('s4', VOL, 4), snapshot('s5', VOL, 5)];
      fsxMock.on(DeleteSnapshotCommand).callsFake(async (input) => {
        time.set(time.now() + 4_000);
        return { SnapshotId: input.SnapshotId, Lifecycle: 'DELETING' };
      });
      await expect(handler(tick({ KeepLast: 1 }))).rejects.toThrow(`pruning failed for 1 volume(s): ${VOL}: pruning stopped, the invocation ran out of time`);
      expect(deleted().length).toBeLessThan(4);
      expect(published()).toMatchObject({ SnapshotsCreated: 1, PruneFailures: 1 });
    } finally {
      delete process.env.TIMEOUT_MS;
    }
  });

  test('with retention, a listing that fails fails its batch\'s snapshots with FSx\'s reason (no stale check possible), and only those; without retention the snapshots are requested anyway', async () => {
    // 21 volumes: two batches (FSx filters take 20 values); the first batch's listing is denied.
    const volumes = Array.from({ length: 21 }, (_, i) => `fsvol-0123456789abcde${i.toString(16).padStart(2, '0')}`);
    fsxMock.on(DescribeSnapshotsCommand).callsFake((input) => {
      const values: string[] = input.Filters[0].Values;
      if (values.includes(volumes[0])) throw awsError('AccessDeniedException', 'not authorized');
      return { Snapshots: listed.filter((s) => values.includes(s.VolumeId!)) };
    });
    const err = await handler(tick({ VolumeIds: volumes, MaxAgeSeconds: 86_400 })).catch((e) => e);
    expect(err.message).toMatch(new RegExp(`^20 of 21 snapshots failed: Listing the snapshots of ${volumes[0]}: AccessDeniedException: not authorized; `));
    expect(fsxMock.commandCalls(DescribeSnapshotsCommand).map((c) => c.args[0].input.Filters![0].Values!.length)).toEqual([20, 1]);
    expect(createInputs().map((i) => i.VolumeId)).toEqual([volumes[20]]);
    expect(published()).toMatchObject({ SnapshotsCreated: 1, SnapshotsFailed: 20, PruneFailures: 0 });

    addMetric().mockClear();
    fsxMock.resetHistory();
    const warn = jest.spyOn(logger, 'warn');
    await expect(handler(tick({ VolumeIds: volumes }))).resolves.toMatchObject({ created: 21, failed: 0 });
    expect(warn).toHaveBeenCalledWith('snapshots not listed: requesting the snapshot without looking for it first', expect.objectContaining({
      target: volumes[0], reason: `Listing the snapshots of ${volumes[0]}: AccessDeniedException: not authorized`,
    }));
    warn.mockRestore();
  });

  test('every page of DescribeSnapshots is read; snapshots listed without tags get theirs listed', async () => {
    const untagged = { ...snapshot('s3', VOL, 3), Tags: undefined };
    fsxMock.on(DescribeSnapshotsCommand)
      .resolvesOnce({ Snapshots: [snapshot('fsvolsnap-new-0', VOL, 0, ours(VOL), 'AVAILABLE'), snapshot('s1', VOL, 1)], NextToken: 'n' })
      .resolvesOnce({ Snapshots: [snapshot('s2', VOL, 2), untagged] });
    fsxMock.on(ListTagsForResourceCommand, { ResourceARN: untagged.ResourceARN })
      .resolves({ Tags: ours(VOL, new Date(TICK_MS - 3 * HOUR).toISOString()) });
    await handler(tick({ KeepLast: 2 }));
    expect(deleted()).toEqual(['s2', 's3']);
    // This tick's snapshot was listed (found by its token tag): not requested again.
    expect(fsxMock).toHaveReceivedCommandTimes(CreateSnapshotCommand, 0);
    expect(fsxMock).toHaveReceivedCommandTimes(DescribeSnapshotsCommand, 2);
  });
});

describe('a tick whose snapshot retention would already have deleted (a stale tick)', () => {
  const MINUTE = 60_000;
  /**
   * This schedule's (or `owner`'s) snapshot of `vol` for the tick `minutes` after TIME, named and
   * tagged as the handler does (the tick tag too, unless `untagged`: made before there was one),
   * made 30 s after its tick (or exactly `createdMinutes` after TIME).
   */
  type Opts = { lifecycle?: string; owner?: string; stackId?: string; tags?: Tags; name?: string; untagged?: boolean; createdMinutes?: number };
  function ofTick(id: string, vol: string, minutes: number, opts: Opts = {}): Snapshot {
    const at = new Date(TICK_MS + minutes * MINUTE).toISOString();
    const owner = opts.owner ?? SCHEDULE;
    const tags = opts.tags ?? [...ours(vol, at, owner, opts.stackId), ...(opts.untagged ? [] : [tickTagOf(at)])].sort(byKey);
    return {
      ...snapshot(id, vol, -(opts.createdMinutes !== undefined ? opts.createdMinutes * MINUTE : minutes * MINUTE + 30_000) / HOUR, tags, opts.lifecycle ?? 'AVAILABLE'),
      Name: opts.name ?? snapshotName(PREFIX, scheduledMinute(at), token(vol, at, owner)),
    };
  }
  const warnings = () => jest.spyOn(logger, 'warn');

  test('this tick\'s snapshot found by its token tag (a retry, or FSx forgot the token): used, CreateSnapshot not called, retention goes on', async () => {
    listed = [ofTick('own', VOL, 0, { lifecycle: 'CREATING' }), ofTick('older1', VOL, -15), ofTick('older2', VOL, -30)];
    const res = await handler(tick({ KeepLast: 1 }));
    expect(fsxMock).toHaveReceivedCommandTimes(CreateSnapshotCommand, 0);
    expect(res).toMatchObject({ created: 1, skipped: 0, pruned: 1, results: [{ snapshotId: 'own', name: listed[0].Name }] });
    expect(deleted()).toEqual(['older2']);
    // Without retention too, and even with later ticks' snapshots there.
    fsxMock.resetHistory();
    listed = [ofTick('own', VOL, 0), ofTick('later', VOL, 15)];
    await expect(handler(tick())).resolves.toMatchObject({ created: 1, results: [{ snapshotId: 'own' }] });
    expect(fsxMock).toHaveReceivedCommandTimes(CreateSnapshotCommand, 0);
  });

  test('keepLast: as many snapshots made after the tick (PENDING, CREATING or AVAILABLE) as keepLast: no snapshot, no pruning, logged, counted, not a failure', async () => {
    const older = [ofTick('older1', VOL, -15), ofTick('older2', VOL, -30), ofTick('older3', VOL, -45)];
    listed = [ofTick('later1', VOL, 15, { lifecycle: 'PENDING' }), ofTick('later2', VOL, 30, { lifecycle: 'CREATING' }), ...older];
    const warn = warnings();
    const res = await handler(tick({ KeepLast: 2 }));
    expect(fsxMock).toHaveReceivedCommandTimes(CreateSnapshotCommand, 0);
    expect(fsxMock).toHaveReceivedCommandTimes(DeleteSnapshotCommand, 0);
    expect(res).toMatchObject({ created: 0, failed: 0, skipped: 1, pruned: 0 });
    expect(res.results[0]).toMatchObject({ target: VOL, skipped: '2 snapshot(s) were made after this tick\'s scheduled time, and keepLast is 2' });
    expect(res.results[0].snapshotId).toBeUndefined();
    expect(published()).toMatchObject({ SnapshotsCreated: 0, SnapshotsFailed: 0, StaleTicksSkipped: 1, SnapshotsPruned: 0, PruneFailures: 0 });
    expect(warn).toHaveBeenCalledWith('no snapshot for this tick: retention would already have deleted it', {
      target: VOL, tick: '2026-11-22T02:00Z', reason: '2 snapshot(s) were made after this tick\'s scheduled time, and keepLast is 2',
    });
    warn.mockRestore();
  });

  test('keepLast: fewer snapshots made after the tick than keepLast (a flexible window longer than the interval): the late tick gets its snapshot, and retention prunes', async () => {
    // The 02:15 and 02:30 ticks came before this 02:00 one.
    listed = [ofTick('later1', VOL, 15), ofTick('later2', VOL, 30), ofTick('older1', VOL, -15), ofTick('older2', VOL, -30)];
    const res = await handler(tick({ KeepLast: 3 }));
    expect(fsxMock).toHaveReceivedCommandTimes(CreateSnapshotCommand, 1);
    expect(res).toMatchObject({ created: 1, skipped: 0 });
    expect(deleted()).toEqual(['older2']);
    expect(published()).toMatchObject({ StaleTicksSkipped: 0 });
  });

  test('maxAge: skipped when the tick is more than maxAge older than the latest snapshot (when it was made); at maxAge exactly it is made', async () => {
    listed = [ofTick('later', VOL, 61, { createdMinutes: 61 }), ofTick('older', VOL, -15)];
    await expect(handler(tick({ MaxAgeSeconds: 3600 }))).resolves.toMatchObject({
      created: 0, skipped: 1, results: [{ skipped: 'it is 3660 s older than the latest snapshot (2026-11-22T03:01:00.000Z), and maxAge is 3600 s' }],
    });
    expect(fsxMock).toHaveReceivedCommandTimes(CreateSnapshotCommand, 0);
    listed = [ofTick('later', VOL, 60, { createdMinutes: 60 }), ofTick('older', VOL, -15)];
    await expect(handler(tick({ MaxAgeSeconds: 3600 }))).resolves.toMatchObject({ created: 1, skipped: 0 });
    // The next hour's tick's snapshot, made 30 s after it: more than maxAge after this tick (when it was made counts, not its tick).
    listed = [ofTick('later', VOL, 60), ofTick('older', VOL, -15)];
    await expect(handler(tick({ MaxAgeSeconds: 3600 }))).resolves.toMatchObject({
      created: 0, skipped: 1, results: [{ skipped: 'it is 3630 s older than the latest snapshot (2026-11-22T03:00:30.000Z), and maxAge is 3600 s' }],
    });
    // With both limits, either one makes the tick stale.
    listed = [ofTick('later', VOL, 61)];
    await expect(handler(tick({ KeepLast: 5, MaxAgeSeconds: 3600 }))).resolves.toMatchObject({ skipped: 1 });
  });

  test('without retention a late tick always gets its snapshot (nothing is deleted: its name guards it)', async () => {
    listed = Array.from({ length: 10 }, (_, i) => ofTick(`later${i}`, VOL, 15 * (i + 1)));
    await expect(handler(tick())).resolves.toMatchObject({ created: 1, skipped: 0 });
    expect(fsxMock).toHaveReceivedCommandTimes(CreateSnapshotCommand, 1);
  });

  test('only this schedule\'s own live snapshots of the volume count, whatever their tick tag or name: not another schedule\'s, stack\'s or volume\'s, not unowned or DELETING ones', async () => {
    const other = 'arn:aws:cloudformation:us-east-1:111111111111:stack/other/1';
    const foreign = [
      ofTick('other-schedule', VOL, 15, { owner: 'OtherSchedule' }),
      ofTick('other-stack', VOL, 15, { stackId: other }),
      // Tagged as ours of another volume, on this one.
      ofTick('other-volume', VOL, 15, { tags: ours(VOL2, new Date(TICK_MS + 15 * MINUTE).toISOString()) }),
      ofTick('unowned', VOL, 15, { tags: [{ Key: 'made-by', Value: 'user' }] }),
      ofTick('deleting', VOL, 15, { lifecycle: 'DELETING' }),
      // Another volume's own later snapshot.
      ofTick('vol2-later', VOL2, 15),
    ];
    listed = [...foreign];
    await expect(handler(tick({ KeepLast: 1, MaxAgeSeconds: 60 }))).resolves.toMatchObject({ created: 1, skipped: 0 });
    // Ours of VOL, but DELETING: not counted.
    expect(liveCreationTimes(foreign.filter((s) => s.SnapshotId === 'deleting'))).toEqual([]);
    expect(staleReason(liveCreationTimes([ofTick('x', VOL, 15)]), TICK_MS, { keepLast: 1 }, 'snapshot'))
      .toBe('1 snapshot(s) were made after this tick\'s scheduled time, and keepLast is 1');
    // One of its own made after the tick, and it is stale: named and tagged for its tick; made before there was a
    // tick tag and renamed since (UpdateSnapshot can); or with a tick tag that is not a minute. Neither is read.
    const renamed = ofTick('renamed', VOL, 15, { name: 'before-upgrade', untagged: true });
    const badTag = ofTick('bad-tag', VOL, 15, { tags: [...ours(VOL, new Date(TICK_MS + 15 * MINUTE).toISOString()), { Key: SCHEDULED_TICK_TAG_KEY, Value: 'later' }].sort(byKey) });
    for (const own of [ofTick('later', VOL, 15), renamed, badTag]) {
      listed = [...foreign, own];
      fsxMock.resetHistory();
      await expect(handler(tick({ KeepLast: 1 }))).resolves.toMatchObject({ created: 0, skipped: 1 });
      expect(fsxMock).toHaveReceivedCommandTimes(CreateSnapshotCommand, 0);
    }
  });

  test('judged by when snapshots were made (what retention ranks them by): an earlier tick\'s snapshot made after this tick\'s scheduled time (a late delivery) counts', async () => {
    listed = [ofTick('late-earlier', VOL, -15, { createdMinutes: 20 })];
    await expect(handler(tick({ KeepLast: 1 }))).resolves.toMatchObject({
      created: 0, skipped: 1, results: [{ skipped: '1 snapshot(s) were made after this tick\'s scheduled time, and keepLast is 1' }],
    });
    expect(fsxMock).toHaveReceivedCommandTimes(CreateSnapshotCommand, 0);
    // Made before this tick's scheduled minute, it does not count, whatever its tick tag or name says (here 02:15).
    listed = [ofTick('earlier', VOL, 15, { createdMinutes: -1 })];
    await expect(handler(tick({ KeepLast: 1 }))).resolves.toMatchObject({ created: 1, skipped: 0 });
    expect(fsxMock).toHaveReceivedCommandTimes(CreateSnapshotCommand, 1);
    // The tick tag stays on every snapshot, informational.
    expect(tickTagMs(listed[0].Tags)).toBe(TICK_MS + 15 * MINUTE);
  });

  describe('ticks delivered out of order, with a FSx that has forgotten every token (a reviewer\'s case)', () => {
    const T = [0, 1, 2, 3, 4].map((h) => new Date(TICK_MS + h * HOUR).toISOString()); // T[1]..T[4]: hourly ticks
    let made = 0;
    beforeEach(() => {
      made = 0;
      // CreateSnapshot always makes a new snapshot (the token forgotten; a deleted one's name is free again), made now.
      fsxMock.on(CreateSnapshotCommand).callsFake((input) => {
        const s = { ...snapshot(`fsvolsnap-${++made}`, input.VolumeId, 0, input.Tags), Name: input.Name, CreationTime: new Date(time.now()) };
        listed.push(s);
        return { Snapshot: s };
      });
      fsxMock.on(DeleteSnapshotCommand).callsFake((input) => {
        listed = listed.filter((x) => x.SnapshotId !== input.SnapshotId);
        return { SnapshotId: input.SnapshotId, Lifecycle: 'DELETING' };
      });
    });
    /** A delivery of tick `n` (T[n]) `atMinutes` after T[3]. */
    async function deliver(n: number, atMinutes: number) {
      time.set(Date.parse(T[3]) + atMinutes * MINUTE);
      return handler(tick({ Time: T[n], EventId: `event-${n}`, KeepLast: 2 }));
    }
    const ofTickTag = (n: number) => listed.filter((x) => tickTagMs(x.Tags) === Date.parse(T[n])).map((x) => x.SnapshotId);
    const STALE = '2 snapshot(s) were made after this tick\'s scheduled time, and keepLast is 2';

    test('T3, T1, T2, then T4, then T3 again (keepLast 2): never a second snapshot of a tick', async () => {
      await expect(deliver(3, 1)).resolves.toMatchObject({ created: 1, skipped: 0 });
      // T1, late: one snapshot (T3's) made after its time, fewer than keepLast.
      await expect(deliver(1, 2)).resolves.toMatchObject({ created: 1, skipped: 0, pruned: 0 });
      // T2, late: T3's and T1's snapshots were both made after its time. (Judged by tick tags, T1's was earlier:
      // T2 made a snapshot, and its retention deleted T3's, the one made first.)
      await expect(deliver(2, 3)).resolves.toMatchObject({ created: 0, skipped: 1, results: [{ skipped: STALE }] });
      // T4 on time: its retention deletes the snapshot made first, T3's.
      await expect(deliver(4, 61)).resolves.toMatchObject({ created: 1, pruned: 1 });
      expect(ofTickTag(3)).toEqual([]);
      // A redelivery of T3: its snapshot is gone and FSx forgot its token, but two snapshots were made after T3.
      await expect(deliver(3, 62)).resolves.toMatchObject({ created: 0, skipped: 1 });
      expect(made).toBe(3);
      expect(ofTickTag(3)).toEqual([]);
      expect(listed.map((x) => x.SnapshotId)).toEqual(['fsvolsnap-2', 'fsvolsnap-3']);
    });

    test('from what the tick-tag rule left (T3, T1, T2 each made, T2\'s retention deleted T3\'s), T4 then T3 again: no second snapshot of T3', async () => {
      await deliver(3, 1);
      await deliver(1, 2);
      // T2's snapshot and retention as the tick-tag rule made them: T3's snapshot, made first, deleted.
      listed = [...listed.filter((x) => tickTagMs(x.Tags) !== Date.parse(T[3])), ofTick('t2', VOL, 60, { createdMinutes: 123 })];
      await expect(deliver(4, 61)).resolves.toMatchObject({ created: 1, pruned: 1 });
      // Judged by tick tags, only T4 is later than T3 (one, keepLast 2): a second snapshot of T3. By when they were made, T2's and T4's.
      await expect(deliver(3, 62)).resolves.toMatchObject({ created: 0, skipped: 1, results: [{ skipped: STALE }] });
      expect(ofTickTag(3)).toEqual([]);
      expect(fsxMock).toHaveReceivedCommandTimes(CreateSnapshotCommand, 3);
    });
  });

  test('volumes are independent: one skipped, the other made and pruned, in one tick', async () => {
    listed = [ofTick('a-later', VOL, 15), ofTick('b-older1', VOL2, -15), ofTick('b-older2', VOL2, -30)];
    const res = await handler(tick({ VolumeIds: [VOL, VOL2], KeepLast: 1 }));
    expect(res).toMatchObject({ created: 1, skipped: 1, pruned: 1 });
    expect(createInputs().map((i) => i.VolumeId)).toEqual([VOL2]);
    expect(deleted()).toEqual(['b-older2']);
    expect(published()).toMatchObject({ SnapshotsCreated: 1, StaleTicksSkipped: 1, SnapshotsPruned: 1 });
    // One listing for both, before the snapshots; none after.
    expect(fsxMock).toHaveReceivedCommandTimes(DescribeSnapshotsCommand, 1);
  });

  test('this tick\'s snapshot DELETING on a stale tick is retention\'s doing: skipped, not failed', async () => {
    listed = [ofTick('own', VOL, 0, { lifecycle: 'DELETING' }), ofTick('later', VOL, 15)];
    await expect(handler(tick({ KeepLast: 1 }))).resolves.toMatchObject({ created: 0, failed: 0, skipped: 1 });
    expect(fsxMock).toHaveReceivedCommandTimes(CreateSnapshotCommand, 0);
  });

  test('through the router too', async () => {
    listed = [ofTick('later', VOL, 15)];
    await expect(router(tick({ KeepLast: 1 }))).resolves.toMatchObject({ created: 0, skipped: 1 });
  });
});

describe('metrics', () => {
  test('EMF on stdout with only the Schedule dimension, in the CdkStorageSnapshots namespace', async () => {
    const lines = await emf(() => handler(tick()));
    expect(lines).toHaveLength(1);
    expect(lines[0]._aws.CloudWatchMetrics).toEqual([expect.objectContaining({ Namespace: 'CdkStorageSnapshots', Dimensions: [['Schedule']] })]);
    expect(lines[0]).toMatchObject({ Schedule: SCHEDULE, SnapshotsCreated: 1, SnapshotsFailed: 0, SnapshotsKeptInUse: 0 });
  });
});

describe('the scheduled function\'s router', () => {
  beforeEach(() => {
    fsxMock.on(DescribeFileSystemsCommand).callsFake((input) => ({
      FileSystems: input.FileSystemIds.map((id: string) => ({ FileSystemId: id, FileSystemType: 'OPENZFS', Tags: [], OpenZFSConfiguration: {} })),
    }));
    fsxMock.on(CreateBackupCommand).resolves({ Backup: { BackupId: 'backup-1', Lifecycle: 'CREATING', CreationTime: new Date(TICK_MS) } as Backup });
  });
  const backupTick = { Time: TIME, StackId: STACK_ID, Schedule: 'AppNightly5A33CB59', Targets: [{ Kind: 'file-system', Id: 'fs-0123456789abcdef0' }] };

  test('OpenZfsSnapshot goes to the snapshot handler', async () => {
    await expect(router(tick())).resolves.toMatchObject({ created: 1 });
    expect(fsxMock).toHaveReceivedCommandTimes(CreateSnapshotCommand, 1);
    expect(fsxMock).toHaveReceivedCommandTimes(CreateBackupCommand, 0);
  });

  test.each([['FsxBackup'], [undefined]])('Operation %s goes to the backup handler (rules deployed before there was an Operation have none)', async (operation) => {
    await expect(router({ ...backupTick, ...(operation ? { Operation: operation } : {}) })).resolves.toMatchObject({ started: 1 });
    expect(fsxMock).toHaveReceivedCommandTimes(CreateBackupCommand, 1);
    expect(fsxMock).toHaveReceivedCommandTimes(CreateSnapshotCommand, 0);
  });

  test.each([['EbsSnapshot'], [42], ['toString']])('an unknown Operation %j is refused with the operations served, before any call', async (operation) => {
    await expect(router({ ...tick(), Operation: operation } as any))
      .rejects.toThrow(`unknown scheduled operation ${JSON.stringify(operation)} (this function serves FsxBackup, OpenZfsSnapshot)`);
    expect(fsxMock.calls()).toHaveLength(0);
  });

  test('no event at all goes to the backup handler, which refuses it and counts the failure', async () => {
    await expect(router(undefined)).rejects.toThrow(/not an object/);
    expect(published()).toMatchObject({ BackupsFailed: 1 });
  });
});
