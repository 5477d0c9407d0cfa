import {
  Backup,
  CreateBackupCommand,
  DeleteBackupCommand,
  DescribeBackupsCommand,
  DescribeFileSystemsCommand,
  DescribeVolumesCommand,
  FSxClient,
  ListTagsForResourceCommand,
} from '@aws-sdk/client-fsx';
import { mockClient } from 'aws-sdk-client-mock';
import 'aws-sdk-client-mock-jest';
import { backupTags, backupsToPrune, handler, liveCreationTimes, metrics, previousFailed, scheduledMinute, staleReason, targetHash } from '../../lambda/fsx-backup-schedule';
import { handler as router } from '../../lambda/schedule';
import { logger } from '../../lambda/shared/logger';
import { OWNERSHIP_TAG_KEYS } from '../../lambda/shared/ownership';
import { tickToken } from '../../lambda/shared/token';
import type { FsxBackupTickInput } from '../../src/private/fsx-backup-contract';
import { SCHEDULED_TICK_TAG_KEY } from '../../src/private/ownership-tags';
import { ownershipTagsOf } from '../fixtures/ownership';
import { tickTagMs, useCapturedMetrics, useTickClock } from '../fixtures/scheduled-tick';
import { awsError } from '../support/aws-errors';

const fsxMock = mockClient(FSxClient);

const STACK_ID = 'arn:aws:cloudformation:us-east-1:111111111111:stack/app/0e1a2b3c-0000-0000-0000-000000000000';
const SCHEDULE = 'AppNightly5A33CB59';
const FS = 'fs-0123456789abcdef0';
const FS2 = 'fs-0123456789abcdef1';
const VOL = 'fsvol-0123456789abcdef0';
const TIME = '2026-11-22T02:00:00Z';
const TICK_MS = Date.parse(TIME);
const DAY = 86_400_000;

function tick(overrides: Partial<FsxBackupTickInput> = {}): FsxBackupTickInput {
  return {
    Time: TIME,
    EventId: 'event-1',
    StackId: STACK_ID,
    Schedule: SCHEDULE,
    Targets: [{ Kind: 'file-system', Id: FS }],
    ...overrides,
  };
}

/** The tick's token: derived from the scheduled time rounded down to the minute. */
function token(target: string, time = TIME) {
  return tickToken({ scheduleId: `${STACK_ID}|${SCHEDULE}`, target, scheduledTime: scheduledMinute(time) });
}

function ours(target: string, time = TIME, owner = SCHEDULE, stackId = STACK_ID): Array<{ Key: string; Value: string }> {
  // Sorted by key, as the handler sends them.
  return ownershipTagsOf({ stackId, owner, propsHash: targetHash(target), token: token(target, time) }).sort((a, b) => (a.Key < b.Key ? -1 : 1));
}

/** The tick tag every scheduled backup carries: the tick's scheduled minute. */
const tickTagOf = (time = TIME) => ({ Key: SCHEDULED_TICK_TAG_KEY, Value: scheduledMinute(time) });
const byKey = (a: { Key: string }, b: { Key: string }) => (a.Key < b.Key ? -1 : 1);

function fileSystem(id: string, copyTags = false, tags: Array<{ Key: string; Value: string }> | undefined = [], type = 'OPENZFS') {
  const config = { CopyTagsToBackups: copyTags };
  return {
    FileSystemId: id,
    FileSystemType: type as any,
    ResourceARN: `arn:aws:fsx:us-east-1:111111111111:file-system/${id}`,
    Tags: tags,
    OpenZFSConfiguration: type === 'OPENZFS' ? config : undefined,
    WindowsConfiguration: type === 'WINDOWS' ? config : undefined,
    LustreConfiguration: type === 'LUSTRE' ? config : undefined,
  };
}

/** A backup made `ageDays` before the tick; by default this schedule's, of the tick it was made at (its token and tick tag). */
function backup(id: string, target: string, ageDays: number, tags?: Array<{ Key: string; Value: string }>, lifecycle = 'AVAILABLE'): Backup {
  const at = new Date(TICK_MS - ageDays * DAY).toISOString();
  return {
    BackupId: id,
    Lifecycle: lifecycle as any,
    Type: 'USER_INITIATED',
    CreationTime: new Date(TICK_MS - ageDays * DAY),
    Tags: tags ?? [...ours(target, at), tickTagOf(at)].sort(byKey),
    FileSystem: { FileSystemId: target.startsWith('fsvol-') ? 'fs-00000000000000009' : target },
    Volume: target.startsWith('fsvol-') ? { VolumeId: target } : undefined,
  } as Backup;
}

function created(id = 'backup-00000000000000001', lifecycle = 'CREATING'): any {
  return {
    Backup: {
      BackupId: id,
      Lifecycle: lifecycle,
      Type: 'USER_INITIATED',
      CreationTime: new Date(TICK_MS),
      FailureDetails: lifecycle === 'FAILED' ? { Message: 'The file system was busy' } : undefined,
    },
  };
}

/** The metrics of a tick that pruned nothing and dropped no tag. */
const NOTHING_PRUNED = { BackupsPruned: 0, PruneFailures: 0, CopiedTagsDropped: 0 };

const time = useTickClock(() => TICK_MS + 30_000);
const { published, emf, addMetric } = useCapturedMetrics(metrics);

beforeEach(() => {
  fsxMock.reset();
  fsxMock.on(DescribeFileSystemsCommand).callsFake((input) => ({ FileSystems: input.FileSystemIds.map((id: string) => fileSystem(id)) }));
  fsxMock.on(DescribeVolumesCommand).callsFake((input) => ({
    Volumes: input.VolumeIds.map((id: string) => ({ VolumeId: id, VolumeType: 'ONTAP', Tags: [], OntapConfiguration: { CopyTagsToBackups: false } })),
  }));
});

describe('creating backups', () => {
  test('CreateBackup per target with FileSystemId or VolumeId, the tick token and user + ownership tags and the tick tag, sorted', async () => {
    fsxMock.on(CreateBackupCommand).resolves(created());
    const res = await handler(tick({
      Targets: [{ Kind: 'file-system', Id: FS }, { Kind: 'volume', Id: VOL }],
      Tags: { team: 'data', costCenter: '42' },
    }));

    expect(fsxMock).toHaveReceivedCommandTimes(CreateBackupCommand, 2);
    expect(fsxMock).toHaveReceivedCommandWith(CreateBackupCommand, {
      FileSystemId: FS,
      ClientRequestToken: token(FS),
      Tags: [{ Key: 'cdk-storage-snapshots:managed-by', Value: 'cdk-storage-snapshots' }, ...ours(FS).slice(1), tickTagOf(), { Key: 'costCenter', Value: '42' }, { Key: 'team', Value: 'data' }]
        .sort(byKey),
    });
    expect(fsxMock.commandCalls(CreateBackupCommand)[0].args[0].input.Tags).toContainEqual({ Key: 'cdk-storage-snapshots:tick', Value: '2026-11-22T02:00Z' });
    const volumeCall = fsxMock.commandCalls(CreateBackupCommand).map((c) => c.args[0].input).find((i) => i.VolumeId)!;
    expect(volumeCall).toMatchObject({ VolumeId: VOL, ClientRequestToken: token(VOL) });
    expect(volumeCall.FileSystemId).toBeUndefined();
    expect(res).toMatchObject({ started: 2, failed: 0, skipped: 0, pruned: 0 });
    expect(published()).toEqual({ BackupsStarted: 2, BackupsFailed: 0, StaleTicksSkipped: 0, ...NOTHING_PRUNED });
    // No retention: the backups are still listed once per kind, before the backups are requested
    // (to find this tick's backup already made, and an earlier backup that failed), nothing deleted.
    expect(fsxMock).toHaveReceivedCommandTimes(DescribeBackupsCommand, 2);
    expect(fsxMock.calls().map((c) => c.args[0].constructor.name).filter((n) => /Backup/.test(n)))
      .toEqual(['DescribeBackupsCommand', 'CreateBackupCommand', 'DescribeBackupsCommand', 'CreateBackupCommand']);
    expect(fsxMock).toHaveReceivedCommandTimes(DeleteBackupCommand, 0);
  });

  test('the token depends on the scheduled minute: a delivery whose time differs in its seconds shares it', async () => {
    fsxMock.on(CreateBackupCommand).resolves(created());
    await handler(tick({ Time: '2026-11-22T02:00:00Z' }));
    await handler(tick({ Time: '2026-11-22T02:00:37Z', EventId: 'event-2' }));
    await handler(tick({ Time: '2026-11-22T02:00:59.999Z', EventId: 'event-3' }));
    await handler(tick({ Time: '2026-11-22T03:00:00Z' }));
    const inputs = fsxMock.commandCalls(CreateBackupCommand).map((c) => c.args[0].input);
    const tokens = inputs.map((i) => i.ClientRequestToken);
    expect(new Set(tokens.slice(0, 3)).size).toBe(1);
    // The whole request, tick tag and all, is the same for every delivery of the tick.
    expect(inputs[1]).toEqual(inputs[0]);
    expect(inputs[2]).toEqual(inputs[0]);
    expect(inputs[3].Tags).toContainEqual(tickTagOf('2026-11-22T03:00:00Z'));
    expect(tokens[3]).not.toBe(tokens[0]);
    expect(scheduledMinute('2026-11-22T02:00:37Z')).toBe('2026-11-22T02:00Z');
  });

  test('a target given twice (a token and a literal resolving to the same id) is backed up once', async () => {
    fsxMock.on(CreateBackupCommand).resolves(created());
    const res = await handler(tick({ Targets: [{ Kind: 'file-system', Id: FS }, { Kind: 'file-system', Id: FS }] }));
    expect(fsxMock).toHaveReceivedCommandTimes(CreateBackupCommand, 1);
    expect(res).toMatchObject({ started: 1, failed: 0 });
    expect(published()).toMatchObject({ BackupsStarted: 1 });
  });

  test('a later delivery that gets this tick\'s backup back FAILED counts it as failed, not started', async () => {
    fsxMock.on(CreateBackupCommand).resolves(created('backup-0000000000000000f', 'FAILED'));
    await expect(handler(tick())).rejects.toThrow(/Backing up fs-0123456789abcdef0: this tick's backup backup-0000000000000000f FAILED: The file system was busy/);
    expect(published()).toMatchObject({ BackupsStarted: 0, BackupsFailed: 1 });
  });

  test('IncompatibleParameterError whose earlier backup FAILED counts as failed', async () => {
    fsxMock.on(CreateBackupCommand).rejects(awsError('IncompatibleParameterError'));
    fsxMock.on(DescribeBackupsCommand).resolves({ Backups: [backup('backup-0000000000000000e', FS, 0, ours(FS), 'FAILED')] });
    await expect(handler(tick())).rejects.toThrow(/this tick's backup backup-0000000000000000e FAILED/);
    expect(published()).toMatchObject({ BackupsStarted: 0, BackupsFailed: 1 });
  });

  test('a duplicate delivery of a tick sends the same token; the next tick another', async () => {
    fsxMock.on(CreateBackupCommand).resolves(created());
    await handler(tick({ EventId: 'event-1' }));
    await handler(tick({ EventId: 'event-2' }));
    await handler(tick({ Time: '2026-11-22T03:00:00Z' }));
    const tokens = fsxMock.commandCalls(CreateBackupCommand).map((c) => c.args[0].input.ClientRequestToken);
    expect(tokens[0]).toBe(tokens[1]);
    expect(tokens[2]).not.toBe(tokens[0]);
    expect(tokens[0]).toMatch(/^[A-Za-z0-9_.-]{1,63}$/);
  });

  test.each(['OPENZFS', 'WINDOWS', 'LUSTRE'])('a %s file system with CopyTagsToBackups: its tags are copied, ours and the user\'s win', async (type) => {
    fsxMock.on(DescribeFileSystemsCommand).resolves({
      FileSystems: [fileSystem(FS, true, [{ Key: 'app', Value: 'orders' }, { Key: 'team', Value: 'fs-team' }, { Key: OWNERSHIP_TAG_KEYS.owner, Value: 'forged' }], type)],
    });
    fsxMock.on(CreateBackupCommand).resolves(created());
    await handler(tick({ Tags: { team: 'data' } }));
    const tags = fsxMock.commandCalls(CreateBackupCommand)[0].args[0].input.Tags!;
    expect(tags).toContainEqual({ Key: 'app', Value: 'orders' });
    expect(tags).toContainEqual({ Key: 'team', Value: 'data' });
    expect(tags.filter((t) => t.Key === OWNERSHIP_TAG_KEYS.owner)).toEqual([{ Key: OWNERSHIP_TAG_KEYS.owner, Value: SCHEDULE }]);
  });

  test('without CopyTagsToBackups nothing is copied', async () => {
    fsxMock.on(DescribeFileSystemsCommand).resolves({ FileSystems: [fileSystem(FS, false, [{ Key: 'app', Value: 'orders' }])] });
    fsxMock.on(CreateBackupCommand).resolves(created());
    await handler(tick());
    expect(fsxMock.commandCalls(CreateBackupCommand)[0].args[0].input.Tags!.map((t) => t.Key)).not.toContain('app');
  });

  test('an ONTAP volume with CopyTagsToBackups: its tags are copied; tags the description leaves out are listed', async () => {
    fsxMock.on(DescribeVolumesCommand).resolves({
      Volumes: [{ VolumeId: VOL, VolumeType: 'ONTAP', ResourceARN: 'arn:aws:fsx:us-east-1:111111111111:volume/fs-1/' + VOL, OntapConfiguration: { CopyTagsToBackups: true } }],
    });
    fsxMock.on(ListTagsForResourceCommand, { ResourceARN: 'arn:aws:fsx:us-east-1:111111111111:volume/fs-1/' + VOL })
      .resolvesOnce({ Tags: [{ Key: 'a', Value: '1' }], NextToken: 'p2' })
      .resolvesOnce({ Tags: [{ Key: 'b', Value: '2' }] });
    fsxMock.on(CreateBackupCommand).resolves(created());
    await handler(tick({ Targets: [{ Kind: 'volume', Id: VOL }] }));
    const tags = fsxMock.commandCalls(CreateBackupCommand)[0].args[0].input.Tags!;
    expect(tags).toEqual(expect.arrayContaining([{ Key: 'a', Value: '1' }, { Key: 'b', Value: '2' }]));
  });

  test('copied tags with characters FSx refuses are left out and reported; the others are copied', async () => {
    fsxMock.on(DescribeFileSystemsCommand).resolves({
      FileSystems: [fileSystem(FS, true, [{ Key: 'cost#center', Value: '1' }, { Key: 'team', Value: 'a,b' }, { Key: 'app', Value: 'Zoë @ ops/dev' }])],
    });
    fsxMock.on(CreateBackupCommand).resolves(created());
    await handler(tick());
    const keys = fsxMock.commandCalls(CreateBackupCommand)[0].args[0].input.Tags!.map((t) => t.Key);
    expect(keys).toContain('app');
    expect(keys).not.toContain('cost#center');
    expect(keys).not.toContain('team');
    expect(published()).toMatchObject({ BackupsStarted: 1, CopiedTagsDropped: 2 });
  });

  test('copied tags that do not fit in 50 are left out, reported in a metric, and the backup is still made', async () => {
    const many = Array.from({ length: 48 }, (_, i) => ({ Key: `k${String(i).padStart(2, '0')}`, Value: 'v' }));
    fsxMock.on(DescribeFileSystemsCommand).resolves({ FileSystems: [fileSystem(FS, true, many)] });
    fsxMock.on(CreateBackupCommand).resolves(created());
    await handler(tick({ Tags: { team: 'data' } }));
    const tags = fsxMock.commandCalls(CreateBackupCommand)[0].args[0].input.Tags!;
    expect(tags).toHaveLength(50);
    expect(tags).toContainEqual({ Key: 'team', Value: 'data' });
    expect(tags).toContainEqual(tickTagOf());
    // 5 ownership tags, the tick tag and the user's leave room for 43 of the 48.
    expect(published()).toMatchObject({ BackupsStarted: 1, CopiedTagsDropped: 5 });
  });

  test('backupTags: deterministic whatever the order of the copied tags', () => {
    const a = backupTags([{ Key: 'x', Value: '1' }, { Key: 'y', Value: '2' }], { u: '3' }, []);
    const b = backupTags([{ Key: 'y', Value: '2' }, { Key: 'x', Value: '1' }], { u: '3' }, []);
    expect(a).toEqual(b);
    expect(a.tags.map((t) => t.Key)).toEqual(['u', 'x', 'y']);
    // aws: tags cannot be set by anyone: never copied.
    expect(backupTags([{ Key: 'aws:cloudformation:stack-id', Value: 's' }], {}, []).tags).toEqual([]);
  });

  test('BackupInProgress and throttling are retried with backoff', async () => {
    fsxMock.on(CreateBackupCommand)
      .rejectsOnce(awsError('BackupInProgress'))
      .rejectsOnce(awsError('ThrottlingException'))
      .resolves(created());
    const res = await handler(tick());
    expect(fsxMock).toHaveReceivedCommandTimes(CreateBackupCommand, 3);
    expect(res.started).toBe(1);
    expect(time.now()).toBeGreaterThan(TICK_MS + 30_000);
  });

  test('targets are independent: one missing file system fails alone, the invocation ends in error naming it', async () => {
    fsxMock.on(DescribeFileSystemsCommand).callsFake((input) => {
      if (input.FileSystemIds.includes(FS2)) throw awsError('FileSystemNotFound', `File system ${FS2} not found`);
      return { FileSystems: input.FileSystemIds.map((id: string) => fileSystem(id)) };
    });
    fsxMock.on(CreateBackupCommand).resolves(created());
    await expect(handler(tick({ Targets: [{ Kind: 'file-system', Id: FS }, { Kind: 'file-system', Id: FS2 }] })))
      .rejects.toThrow(new RegExp(`^1 of 2 backups failed: Reading ${FS2}: FileSystemNotFound`));
    expect(fsxMock).toHaveReceivedCommandTimes(CreateBackupCommand, 1);
    expect(fsxMock).toHaveReceivedCommandWith(CreateBackupCommand, { FileSystemId: FS });
    expect(published()).toMatchObject({ BackupsStarted: 1, BackupsFailed: 1 });
  });

  test.each([
    ['UnsupportedOperation', /FSx cannot back it up \(a scratch Lustre file system/],
    ['ServiceLimitExceeded', /backup quota is reached/],
    ['BadRequest', /an ONTAP file system or an OpenZFS volume/],
    ['VolumeNotFound', /the volume does not exist/],
  ])('%s is not retried and is explained', async (code, reason) => {
    fsxMock.on(CreateBackupCommand).rejects(awsError(code, 'the service says no'));
    await expect(handler(tick())).rejects.toThrow(reason);
    expect(fsxMock).toHaveReceivedCommandTimes(CreateBackupCommand, 1);
  });

  test('BackupInProgress that outlasts the budget fails the target', async () => {
    fsxMock.on(CreateBackupCommand).rejects(awsError('BackupInProgress', 'Another backup is in progress'));
    await expect(handler(tick())).rejects.toThrow(/another backup of it was still in progress after retrying/);
    expect(fsxMock.commandCalls(CreateBackupCommand).length).toBeGreaterThan(3);
  });

  test('a describe that stays throttled fails the targets (their tags cannot be copied), without a backup', async () => {
    fsxMock.on(DescribeFileSystemsCommand).rejects(awsError('ThrottlingException', 'Rate exceeded'));
    await expect(handler(tick())).rejects.toThrow(/Reading fs-0123456789abcdef0 \(its tags\): ThrottlingException/);
    expect(fsxMock).toHaveReceivedCommandTimes(CreateBackupCommand, 0);
  });

  test('IncompatibleParameterError: the backup an earlier delivery made with this token is this tick\'s', async () => {
    fsxMock.on(CreateBackupCommand).rejects(awsError('IncompatibleParameterError'));
    fsxMock.on(DescribeBackupsCommand).resolves({ Backups: [backup('backup-0000000000000000e', FS, 0, ours(FS), 'CREATING')] });
    const res = await handler(tick());
    expect(res.results[0]).toMatchObject({ backupId: 'backup-0000000000000000e' });
  });

  test('IncompatibleParameterError without a backup of ours with the token fails', async () => {
    fsxMock.on(CreateBackupCommand).rejects(awsError('IncompatibleParameterError'));
    fsxMock.on(DescribeBackupsCommand).resolves({ Backups: [backup('backup-0000000000000000e', FS, 0, ours(FS, TIME, 'OtherSchedule'))] });
    await expect(handler(tick())).rejects.toThrow(/IncompatibleParameterError/);
  });

  test('CreateBackup without a backup id fails the target', async () => {
    fsxMock.on(CreateBackupCommand).resolves({});
    await expect(handler(tick())).rejects.toThrow(/returned no backup id/);
  });

  test('targets not reached before the time runs out are failed, not left hanging', async () => {
    process.env.TIMEOUT_MS = '100000'; // 10 s of work after the 90 s margin
    try {
      fsxMock.on(CreateBackupCommand).callsFake(async () => {
        time.set(time.now() + 6_000);
        return created();
      });
      const targets = Array.from({ length: 12 }, (_, i) => ({ Kind: 'file-system' as const, Id: `fs-0123456789abcde${i.toString(16).padStart(2, '0')}` }));
      await expect(handler(tick({ Targets: targets }))).rejects.toThrow(/not attempted, the invocation ran out of time/);
    } finally {
      delete process.env.TIMEOUT_MS;
    }
  });

  test('an input that is not the schedule\'s is refused with the reason, and counted as a failure of its schedule', async () => {
    await expect(handler({ ...tick(), Time: 'yesterday', Targets: [] })).rejects.toThrow(/invalid schedule input .*Time "yesterday" is not a time; Targets is empty/);
    expect(published()).toMatchObject({ BackupsStarted: 0, BackupsFailed: 1 });
    expect(addMetric()).toHaveBeenCalled();
    addMetric().mockClear();
    await expect(handler(undefined as any)).rejects.toThrow(/not an object/);
    expect(published()).toMatchObject({ BackupsFailed: 1 });
    expect(fsxMock).toHaveReceivedCommandTimes(CreateBackupCommand, 0);
  });
});

describe('backups that failed after they were started', () => {
  const listing = (backups: Backup[]) => fsxMock.on(DescribeBackupsCommand).resolves({ Backups: backups });

  test('the previous backup of a target, FAILED, is counted in BackupsFailed (logged, the tick itself succeeds)', async () => {
    fsxMock.on(CreateBackupCommand).resolves(created('backup-now'));
    listing([
      { ...backup('backup-now', FS, 0, ours(FS), 'CREATING') },
      { ...backup('backup-prev', FS, 1 / 24, ours(FS, '2026-11-22T01:00:00Z'), 'FAILED'), FailureDetails: { Message: 'disk error' } },
      backup('backup-older', FS, 2 / 24, ours(FS, '2026-11-22T00:00:00Z'), 'FAILED'),
    ]);
    const res = await handler(tick());
    expect(res).toMatchObject({ started: 1, failed: 0, failedEarlier: 1 });
    expect(res.results[0].previousFailed).toBe('backup-prev');
    expect(published()).toMatchObject({ BackupsStarted: 1, BackupsFailed: 1 });
  });

  test('previousFailed: only the newest of ours before this tick\'s backup, and only if FAILED; never a copy, another schedule\'s or a later one', () => {
    const owner = { stackId: STACK_ID, owner: SCHEDULE };
    const at = TICK_MS;
    const prevFailed = backup('prev', FS, 1 / 24, ours(FS, '2026-11-22T01:00:00Z'), 'FAILED');
    expect(previousFailed([backup('this', FS, 0), prevFailed], owner, FS, 'this', at)?.BackupId).toBe('prev');
    // The previous one succeeded: an older failure was counted at its own next backup.
    expect(previousFailed([backup('this', FS, 0), backup('ok', FS, 1 / 24), { ...prevFailed, CreationTime: new Date(at - 2 * 3_600_000) }], owner, FS, 'this', at))
      .toBeUndefined();
    // A failed copy of ours, another schedule's failure, or one made after this tick's: not ours to count.
    expect(previousFailed([backup('this', FS, 0), { ...prevFailed, SourceBackupId: 'backup-x' }], owner, FS, 'this', at)).toBeUndefined();
    expect(previousFailed([backup('this', FS, 0), backup('o', FS, 1 / 24, ours(FS, TIME, 'Other'), 'FAILED')], owner, FS, 'this', at)).toBeUndefined();
    expect(previousFailed([backup('this', FS, 0), backup('later', FS, -1 / 24, ours(FS), 'FAILED')], owner, FS, 'this', at)).toBeUndefined();
  });

  test('a target whose backup failed in this tick does not count its previous one yet (the next backup will)', async () => {
    fsxMock.on(CreateBackupCommand).rejects(awsError('ServiceLimitExceeded'));
    listing([backup('backup-prev', FS, 1 / 24, ours(FS, '2026-11-22T01:00:00Z'), 'FAILED')]);
    await expect(handler(tick())).rejects.toThrow(/backup quota/);
    expect(published()).toMatchObject({ BackupsFailed: 1 });
    // The one listing, made before the backup was requested; none after.
    expect(fsxMock).toHaveReceivedCommandTimes(DescribeBackupsCommand, 1);
  });

  test('without retention a listing that fails is logged and does not fail the tick', async () => {
    fsxMock.on(CreateBackupCommand).resolves(created());
    fsxMock.on(DescribeBackupsCommand).rejects(awsError('AccessDeniedException', 'not authorized'));
    await expect(handler(tick())).resolves.toMatchObject({ started: 1, failed: 0 });
  });
});

describe('retention', () => {
  const retention = { keepLast: 2 };

  test('keepLast: deletes the schedule\'s older AVAILABLE backups of the target', async () => {
    fsxMock.on(CreateBackupCommand).resolves(created());
    fsxMock.on(DescribeBackupsCommand, {
      Filters: [{ Name: 'file-system-id', Values: [FS] }, { Name: 'backup-type', Values: ['USER_INITIATED'] }],
    }).resolves({
      Backups: [
        backup('backup-00000000000000011', FS, 1),
        backup('backup-00000000000000012', FS, 2),
        backup('backup-00000000000000013', FS, 3),
        backup('backup-00000000000000014', FS, 4),
        backup('backup-00000000000000015', FS, 0, ours(FS), 'CREATING'),
      ],
    });
    fsxMock.on(DeleteBackupCommand).resolves({});
    const res = await handler(tick({ KeepLast: 2 }));
    expect(fsxMock.commandCalls(DeleteBackupCommand).map((c) => c.args[0].input.BackupId).sort()).toEqual(['backup-00000000000000013', 'backup-00000000000000014']);
    expect(res.pruned).toBe(2);
    expect(published()).toMatchObject({ BackupsPruned: 2 });
  });

  test('backupsToPrune: never a copy of ours (CopyBackup copies the ownership tags), nor a backup FSx or AWS Backup made', () => {
    const owner = { stackId: STACK_ID, owner: SCHEDULE };
    const list = [
      backup('backup-new', FS, 0.5),
      { ...backup('copy-in-region', FS, 1), SourceBackupId: 'backup-new', SourceBackupRegion: 'us-east-1' },
      { ...backup('copy-from-region', FS, 2), SourceBackupRegion: 'eu-west-1' },
      { ...backup('copy-of-id', FS, 3), SourceBackupId: 'backup-old' },
      { ...backup('automatic', FS, 4), Type: 'AUTOMATIC' },
      { ...backup('aws-backup', FS, 5), Type: 'AWS_BACKUP' },
      backup('backup-old', FS, 10),
    ] as Backup[];
    expect(backupsToPrune(list, owner, FS, { keepLast: 1 }, TICK_MS).map((b) => b.BackupId)).toEqual(['backup-old']);
    expect(backupsToPrune(list, owner, FS, { maxAgeSeconds: 86_400 }, TICK_MS).map((b) => b.BackupId)).toEqual(['backup-old']);
  });

  test('backupsToPrune: never a foreign backup, another schedule\'s or stack\'s, another target\'s, or one not AVAILABLE', () => {
    const owner = { stackId: STACK_ID, owner: SCHEDULE };
    const list = [
      backup('backup-new', FS, 0.5),
      backup('backup-user', FS, 10, [{ Key: 'made-by', Value: 'user' }]),
      backup('backup-other-schedule', FS, 10, ours(FS, TIME, 'Other')),
      backup('backup-other-stack', FS, 10, ours(FS, TIME, SCHEDULE, 'arn:aws:cloudformation:us-east-1:111111111111:stack/other/1')),
      backup('backup-other-target', FS, 10, ours(FS2)),
      backup('backup-failed', FS, 10, ours(FS), 'FAILED'),
      backup('backup-old', FS, 10),
    ];
    expect(backupsToPrune(list, owner, FS, retention, TICK_MS).map((b) => b.BackupId)).toEqual([]);
    expect(backupsToPrune(list, owner, FS, { keepLast: 1 }, TICK_MS).map((b) => b.BackupId)).toEqual(['backup-old']);
    expect(backupsToPrune(list, owner, FS, {}, TICK_MS)).toEqual([]);
  });

  test('maxAge: deletes backups older than the age at the scheduled time, but never the newest', () => {
    const owner = { stackId: STACK_ID, owner: SCHEDULE };
    const list = [backup('b40', FS, 40), backup('b31', FS, 31), backup('b29', FS, 29)];
    expect(backupsToPrune(list, owner, FS, { maxAgeSeconds: 30 * 86_400 }, TICK_MS).map((b) => b.BackupId)).toEqual(['b31', 'b40']);
    // Every backup is too old: the newest still stays.
    expect(backupsToPrune([backup('b40', FS, 40), backup('b50', FS, 50)], owner, FS, { maxAgeSeconds: 86_400 }, TICK_MS).map((b) => b.BackupId))
      .toEqual(['b50']);
    // Both limits apply.
    expect(backupsToPrune(list, owner, FS, { keepLast: 2, maxAgeSeconds: 35 * 86_400 }, TICK_MS).map((b) => b.BackupId)).toEqual(['b40']);
  });

  test('volume targets: only backups of that volume', () => {
    const owner = { stackId: STACK_ID, owner: SCHEDULE };
    const list = [backup('v1', VOL, 1), backup('v2', VOL, 2), { ...backup('fs-of-volume', VOL, 3), Volume: undefined }];
    expect(backupsToPrune(list, owner, VOL, { keepLast: 1 }, TICK_MS).map((b) => b.BackupId)).toEqual(['v2']);
  });

  test('a target whose backup failed in this tick is not pruned; the others are', async () => {
    fsxMock.on(CreateBackupCommand, { FileSystemId: FS }).rejects(awsError('ServiceLimitExceeded'));
    fsxMock.on(CreateBackupCommand, { FileSystemId: FS2 }).resolves(created());
    fsxMock.on(DescribeBackupsCommand).resolves({
      Backups: [backup('a1', FS, 1), backup('a2', FS, 2), backup('a3', FS, 3), backup('b1', FS2, 1), backup('b2', FS2, 2), backup('b3', FS2, 3)],
    });
    fsxMock.on(DeleteBackupCommand).resolves({});
    await expect(handler(tick({ KeepLast: 1, Targets: [{ Kind: 'file-system', Id: FS }, { Kind: 'file-system', Id: FS2 }] }))).rejects.toThrow(/1 of 2 backups failed/);
    expect(fsxMock.commandCalls(DeleteBackupCommand).map((c) => c.args[0].input.BackupId).sort()).toEqual(['b2', 'b3']);
    // Both listed in one call, before their backups.
    expect(fsxMock).toHaveReceivedCommandTimes(DescribeBackupsCommand, 1);
    expect(fsxMock).toHaveReceivedCommandWith(DescribeBackupsCommand, {
      Filters: [{ Name: 'file-system-id', Values: [FS, FS2] }, { Name: 'backup-type', Values: ['USER_INITIATED'] }],
    });
  });

  test('a backup already gone is not a failure; a delete that fails is, and the invocation says so', async () => {
    fsxMock.on(CreateBackupCommand).resolves(created());
    fsxMock.on(DescribeBackupsCommand).resolves({ Backups: [backup('a1', FS, 1), backup('a2', FS, 2), backup('a3', FS, 3)] });
    fsxMock.on(DeleteBackupCommand, { BackupId: 'a2' }).rejects(awsError('BackupNotFound'));
    fsxMock.on(DeleteBackupCommand, { BackupId: 'a3' }).rejects(awsError('AccessDeniedException', 'not authorized'));
    await expect(handler(tick({ KeepLast: 1 }))).rejects.toThrow(/^0 of 1 backups failed, pruning failed for 1 target\(s\): Deleting backup a3 of fs-0123456789abcdef0: AccessDeniedException/);
    expect(published()).toMatchObject({ BackupsStarted: 1, BackupsFailed: 0, BackupsPruned: 0, PruneFailures: 1 });
  });

  test('with retention, a listing that fails fails its batch\'s targets with FSx\'s reason (no stale check possible), and only those; without retention they are backed up anyway', async () => {
    fsxMock.on(CreateBackupCommand).resolves(created());
    fsxMock.on(DescribeBackupsCommand).callsFake((input) => {
      if (input.Filters[0].Name === 'volume-id') throw awsError('AccessDeniedException', 'not authorized');
      return { Backups: [] };
    });
    const targets = [{ Kind: 'volume' as const, Id: VOL }, { Kind: 'file-system' as const, Id: FS }, { Kind: 'file-system' as const, Id: FS2 }];
    await expect(handler(tick({ Targets: targets, KeepLast: 2 }))).rejects.toThrow(`1 of 3 backups failed: Listing the backups of ${VOL}: AccessDeniedException: not authorized`);
    expect(fsxMock.commandCalls(CreateBackupCommand).map((c) => c.args[0].input.FileSystemId)).toEqual([FS, FS2]);
    expect(published()).toMatchObject({ BackupsStarted: 2, BackupsFailed: 1, PruneFailures: 0 });
    fsxMock.resetHistory();
    await expect(handler(tick({ Targets: targets }))).resolves.toMatchObject({ started: 3, failed: 0 });
    expect(fsxMock).toHaveReceivedCommandWith(CreateBackupCommand, { VolumeId: VOL });
  });

  test('pages of DescribeBackups are all read', async () => {
    fsxMock.on(CreateBackupCommand).resolves(created());
    fsxMock.on(DescribeBackupsCommand)
      .resolvesOnce({ Backups: [backup('a1', FS, 1)], NextToken: 'n' })
      .resolvesOnce({ Backups: [backup('a2', FS, 2)] });
    fsxMock.on(DeleteBackupCommand).resolves({});
    await handler(tick({ KeepLast: 1 }));
    expect(fsxMock).toHaveReceivedCommandWith(DeleteBackupCommand, { BackupId: 'a2' });
  });
});

describe('a tick whose backup retention would already have deleted (a stale tick)', () => {
  const MINUTE = 60_000;
  type Tags = Array<{ Key: string; Value: string }>;
  type Opts = { lifecycle?: string; owner?: string; stackId?: string; tags?: Tags; untagged?: boolean; createdMinutes?: number };
  /**
   * This schedule's (or `owner`'s) backup of `target` for the hourly tick `minutes` after TIME,
   * tagged as the handler does (the tick tag too, unless `untagged`), made 30 s after its tick
   * (or exactly `createdMinutes` after TIME).
   */
  function ofTick(id: string, target: string, minutes: number, opts: Opts = {}): Backup {
    const at = new Date(TICK_MS + minutes * MINUTE).toISOString();
    const tags = opts.tags ?? [...ours(target, at, opts.owner, opts.stackId), ...(opts.untagged ? [] : [tickTagOf(at)])].sort(byKey);
    const createdMs = opts.createdMinutes !== undefined ? TICK_MS + opts.createdMinutes * MINUTE : TICK_MS + minutes * MINUTE + 30_000;
    return { ...backup(id, target, (TICK_MS - createdMs) / DAY, tags, opts.lifecycle ?? 'AVAILABLE'), CreationTime: new Date(createdMs) };
  }
  /** What DescribeBackups lists (by its filter, or by id); CreateBackup adds to it. */
  let listed: Backup[] = [];
  const idOf = (b: Backup) => b.Volume?.VolumeId ?? b.FileSystem?.FileSystemId;
  beforeEach(() => {
    listed = [];
    fsxMock.on(DescribeBackupsCommand).callsFake((input) => {
      if (input.BackupIds) {
        const found = listed.filter((b) => input.BackupIds.includes(b.BackupId));
        if (found.length !== input.BackupIds.length) throw awsError('BackupNotFound', 'not found');
        return { Backups: found };
      }
      const [byTarget, byType] = input.Filters;
      if (byType?.Name !== 'backup-type' || !['file-system-id', 'volume-id'].includes(byTarget.Name)) throw awsError('BadRequest', 'unexpected filters');
      return { Backups: listed.filter((b) => byTarget.Values.includes(idOf(b)) && (byTarget.Name === 'volume-id') === !!b.Volume && byType.Values.includes(b.Type)) };
    });
    fsxMock.on(CreateBackupCommand).callsFake((input) => {
      const target = input.VolumeId ?? input.FileSystemId;
      const b = { ...backup(`backup-new-${target.slice(-1)}`, target, -30_000 / DAY, input.Tags, 'CREATING') };
      listed.push(b);
      return { Backup: b };
    });
    fsxMock.on(DeleteBackupCommand).callsFake((input) => ({ BackupId: input.BackupId, Lifecycle: 'DELETED' }));
  });
  const creates = () => fsxMock.commandCalls(CreateBackupCommand).map((c) => c.args[0].input);
  const deletedIds = () => fsxMock.commandCalls(DeleteBackupCommand).map((c) => c.args[0].input.BackupId).sort();

  test.each<[string, Partial<FsxBackupTickInput>, string[]]>([
    ['keepLast 1: retention goes on from the same listing', { KeepLast: 1 }, ['older1', 'older2']],
    ['no retention', {}, []],
  ])('this tick\'s backup found by its token tag (a retry, or FSx forgot the token), later ticks\' there too, %s: used, CreateBackup not called', async (_, retention, pruned) => {
    listed = [ofTick('own', FS, 0, { lifecycle: 'CREATING' }), ofTick('later', FS, 60), ofTick('older1', FS, -60), ofTick('older2', FS, -120)];
    const res = await handler(tick(retention));
    expect(fsxMock).toHaveReceivedCommandTimes(CreateBackupCommand, 0);
    expect(res).toMatchObject({ started: 1, skipped: 0, pruned: pruned.length, results: [{ backupId: 'own', created: TICK_MS + 30_000 }] });
    expect(deletedIds()).toEqual(pruned);
    expect(fsxMock).toHaveReceivedCommandTimes(DescribeBackupsCommand, 1);
  });

  test('this tick\'s backup found FAILED: reported as failed with FSx\'s reason, not requested again', async () => {
    listed = [{ ...ofTick('own', FS, 0, { lifecycle: 'FAILED' }), FailureDetails: { Message: 'The file system was busy' } }, ofTick('older', FS, -60)];
    await expect(handler(tick({ KeepLast: 1 }))).rejects.toThrow(/^1 of 1 backups failed: Backing up fs-0123456789abcdef0: this tick's backup own FAILED: The file system was busy$/);
    expect(fsxMock).toHaveReceivedCommandTimes(CreateBackupCommand, 0);
    expect(fsxMock).toHaveReceivedCommandTimes(DeleteBackupCommand, 0);
    expect(published()).toMatchObject({ BackupsStarted: 0, BackupsFailed: 1, StaleTicksSkipped: 0 });
  });

  test('keepLast: as many backups made after the tick (PENDING, CREATING, TRANSFERRING or AVAILABLE) as keepLast: no backup, no pruning, logged, counted, not a failure', async () => {
    const older = [ofTick('older1', FS, -60), ofTick('older2', FS, -120), ofTick('older3', FS, -180)];
    listed = [ofTick('later1', FS, 60, { lifecycle: 'TRANSFERRING' }), ofTick('later2', FS, 120, { lifecycle: 'CREATING' }), ...older];
    const warn = jest.spyOn(logger, 'warn');
    const res = await handler(tick({ KeepLast: 2 }));
    expect(fsxMock).toHaveReceivedCommandTimes(CreateBackupCommand, 0);
    expect(fsxMock).toHaveReceivedCommandTimes(DeleteBackupCommand, 0);
    expect(res).toMatchObject({ started: 0, failed: 0, skipped: 1, failedEarlier: 0, pruned: 0 });
    expect(res.results[0]).toMatchObject({ target: FS, skipped: '2 backup(s) were made after this tick\'s scheduled time, and keepLast is 2' });
    expect(res.results[0].backupId).toBeUndefined();
    expect(published()).toEqual({ BackupsStarted: 0, BackupsFailed: 0, StaleTicksSkipped: 1, ...NOTHING_PRUNED });
    expect(warn).toHaveBeenCalledWith('no backup for this tick: retention would already have deleted it', {
      target: FS, tick: '2026-11-22T02:00Z', reason: '2 backup(s) were made after this tick\'s scheduled time, and keepLast is 2',
    });
    warn.mockRestore();
    listed = [ofTick('later', FS, 60, { lifecycle: 'PENDING' })];
    await expect(handler(tick({ KeepLast: 1 }))).resolves.toMatchObject({ started: 0, skipped: 1 });
  });

  const MAX_AGE_SKIP = 'it is 3660 s older than the latest backup (2026-11-22T03:01:00.000Z), and maxAge is 3600 s';
  // The minutes after TIME the later backups were made (each of the tick of its whole minutes).
  test.each<[string, Partial<FsxBackupTickInput>, number[], string | undefined]>([
    ['keepLast 3, two made after it (a flexible window longer than the interval): made', { KeepLast: 3 }, [60, 120], undefined],
    ['keepLast 2, two made after it: skipped', { KeepLast: 2 }, [60, 120], '2 backup(s) were made after this tick\'s scheduled time, and keepLast is 2'],
    ['maxAge 1 h, the latest made 61 minutes later: skipped', { MaxAgeSeconds: 3600 }, [61], MAX_AGE_SKIP],
    ['maxAge 1 h, the latest made exactly 1 h later: made', { MaxAgeSeconds: 3600 }, [60], undefined],
    ['maxAge 1 h, the latest of the tick 1 h later but made 30 s after it: skipped (when it was made counts, not its tick)', { MaxAgeSeconds: 3600 }, [60.5],
      'it is 3630 s older than the latest backup (2026-11-22T03:00:30.000Z), and maxAge is 3600 s'],
    ['keepLast 5 and maxAge 1 h: either limit makes the tick stale', { KeepLast: 5, MaxAgeSeconds: 3600 }, [61], MAX_AGE_SKIP],
    ['no retention, ten made after it: made (nothing is ever deleted)', {}, Array.from({ length: 10 }, (_, i) => 60 * (i + 1)), undefined],
  ])('a late tick, %s', async (_, retention, laterMinutes, skipped) => {
    listed = [...laterMinutes.map((m) => ofTick(`later${m}`, FS, Math.floor(m), { createdMinutes: m })), ofTick('older1', FS, -60), ofTick('older2', FS, -120)];
    const res = await handler(tick(retention));
    expect(res.results[0].skipped).toBe(skipped);
    expect(res).toMatchObject({ started: skipped ? 0 : 1, skipped: skipped ? 1 : 0 });
    expect(creates()).toHaveLength(skipped ? 0 : 1);
    expect(published()).toMatchObject({ BackupsStarted: skipped ? 0 : 1, StaleTicksSkipped: skipped ? 1 : 0 });
    // A tick made prunes (keepLast 3: the oldest of four AVAILABLE); a skipped one prunes nothing.
    if (skipped) expect(deletedIds()).toEqual([]);
    if (retention.KeepLast === 3) expect(deletedIds()).toEqual(['older2']);
  });

  test('only this schedule\'s own live backups of the target count, whatever their tick tag: not copies, FSx\'s or AWS Backup\'s, another schedule\'s, stack\'s or target\'s, unowned, DELETED or FAILED ones', async () => {
    const other = 'arn:aws:cloudformation:us-east-1:111111111111:stack/other/1';
    const later = (id: string, opts: Opts = {}) => ofTick(id, FS, 60, opts);
    const foreign = [
      { ...later('copy'), SourceBackupId: 'backup-x', SourceBackupRegion: 'us-east-1' },
      { ...later('copy-from-region'), SourceBackupRegion: 'eu-west-1' },
      { ...later('automatic'), Type: 'AUTOMATIC' },
      { ...later('aws-backup'), Type: 'AWS_BACKUP' },
      later('other-schedule', { owner: 'OtherSchedule' }),
      later('other-stack', { stackId: other }),
      // Tagged as ours of another target, of this one.
      later('other-target', { tags: [...ours(FS2, new Date(TICK_MS + 60 * MINUTE).toISOString()), tickTagOf(new Date(TICK_MS + 60 * MINUTE).toISOString())] }),
      later('unowned', { tags: [{ Key: 'made-by', Value: 'user' }, tickTagOf(new Date(TICK_MS + 60 * MINUTE).toISOString())] }),
      later('deleted', { lifecycle: 'DELETED' }),
      later('failed', { lifecycle: 'FAILED' }),
      // FS2's own later backup.
      ofTick('fs2-later', FS2, 60),
    ] as Backup[];
    listed = [...foreign];
    await expect(handler(tick({ KeepLast: 1, MaxAgeSeconds: 60 }))).resolves.toMatchObject({ started: 1, skipped: 0 });
    expect(creates()).toHaveLength(1);
    // Ours of FS, but not live: not counted.
    expect(liveCreationTimes(foreign.filter((b) => ['deleted', 'failed'].includes(b.BackupId!)))).toEqual([]);
    expect(staleReason(liveCreationTimes([later('x')]), TICK_MS, { keepLast: 1 }, 'backup')).toBe('1 backup(s) were made after this tick\'s scheduled time, and keepLast is 1');
    // One of its own made after the tick, and it is stale: tagged for its tick, without a tick tag (made before
    // there was one), or with a tick tag that is not a minute; the tag is not read.
    const untagged = later('untagged', { untagged: true });
    const badTag = later('bad-tag', { tags: [...ours(FS, new Date(TICK_MS + 60 * MINUTE).toISOString()), { Key: SCHEDULED_TICK_TAG_KEY, Value: 'tomorrow' }] });
    for (const own of [later('later'), untagged, badTag]) {
      listed = [...foreign, own];
      fsxMock.resetHistory();
      await expect(handler(tick({ KeepLast: 1 }))).resolves.toMatchObject({ started: 0, skipped: 1 });
      expect(fsxMock).toHaveReceivedCommandTimes(CreateBackupCommand, 0);
    }
    expect(liveCreationTimes([untagged, badTag])).toEqual([TICK_MS + 60 * MINUTE + 30_000, TICK_MS + 60 * MINUTE + 30_000]);
  });

  test('judged by when backups were made (what retention ranks them by): an earlier tick\'s backup made after this tick\'s scheduled time (a late delivery) counts', async () => {
    listed = [ofTick('late-earlier', FS, -60, { createdMinutes: 90 })];
    await expect(handler(tick({ KeepLast: 1 }))).resolves.toMatchObject({
      started: 0, skipped: 1, results: [{ skipped: '1 backup(s) were made after this tick\'s scheduled time, and keepLast is 1' }],
    });
    expect(fsxMock).toHaveReceivedCommandTimes(CreateBackupCommand, 0);
    // Made before this tick's scheduled minute, it does not count, whatever its tick.
    listed = [ofTick('earlier', FS, -60, { createdMinutes: -1 })];
    await expect(handler(tick({ KeepLast: 1 }))).resolves.toMatchObject({ started: 1, skipped: 0 });
    // The tick tag stays on every backup, informational: the tick's minute, or nothing for a value that is not one.
    expect(tickTagMs(listed[0].Tags)).toBe(TICK_MS - 60 * MINUTE);
    expect(tickTagMs([{ Key: SCHEDULED_TICK_TAG_KEY, Value: '2026-11-22T02:00:30Z' }])).toBeUndefined();
  });

  describe('ticks delivered out of order, with a FSx that has forgotten every token (a reviewer\'s case)', () => {
    const HOUR_MS = 60 * MINUTE;
    const T = [0, 1, 2, 3, 4].map((h) => new Date(TICK_MS + h * HOUR_MS).toISOString()); // T[1]..T[4]: hourly ticks
    let made = 0;
    beforeEach(() => {
      made = 0;
      // CreateBackup always makes a new backup (the token forgotten), made now; a deleted backup is gone.
      fsxMock.on(CreateBackupCommand).callsFake((input) => {
        const b = { ...backup(`backup-${++made}`, input.FileSystemId, 0, input.Tags, 'AVAILABLE'), CreationTime: new Date(time.now()) };
        listed.push(b);
        return { Backup: b };
      });
      fsxMock.on(DeleteBackupCommand).callsFake((input) => {
        listed = listed.filter((b) => b.BackupId !== input.BackupId);
        return { BackupId: input.BackupId, Lifecycle: 'DELETED' };
      });
    });
    /** A delivery of tick `n` (T[n]) `atMinutes` after T[3]. */
    async function deliver(n: number, atMinutes: number) {
      time.set(Date.parse(T[3]) + atMinutes * MINUTE);
      return handler(tick({ Time: T[n], EventId: `event-${n}`, KeepLast: 2 }));
    }
    const ofTickTag = (n: number) => listed.filter((b) => tickTagMs(b.Tags) === Date.parse(T[n])).map((b) => b.BackupId);

    test('T3, T1, T2, then T4, then T3 again (keepLast 2): never a second backup of a tick', async () => {
      await expect(deliver(3, 1)).resolves.toMatchObject({ started: 1, skipped: 0 });
      // T1, late: one backup (T3's) made after its time, fewer than keepLast.
      await expect(deliver(1, 2)).resolves.toMatchObject({ started: 1, skipped: 0, pruned: 0 });
      // T2, late: T3's and T1's backups were both made after its time. (Judged by tick tags, T1's was earlier:
      // T2 made a backup, and its retention deleted T3's, the one made first.)
      await expect(deliver(2, 3)).resolves.toMatchObject({
        started: 0, skipped: 1, results: [{ skipped: '2 backup(s) were made after this tick\'s scheduled time, and keepLast is 2' }],
      });
      // T4 on time: its retention deletes the backup made first, T3's.
      await expect(deliver(4, 61)).resolves.toMatchObject({ started: 1, pruned: 1 });
      expect(ofTickTag(3)).toEqual([]);
      // A redelivery of T3: its backup is gone and FSx forgot its token, but two backups were made after T3.
      await expect(deliver(3, 62)).resolves.toMatchObject({ started: 0, skipped: 1 });
      expect(made).toBe(3);
      expect(ofTickTag(3)).toEqual([]);
      expect(listed.map((b) => b.BackupId)).toEqual(['backup-2', 'backup-3']);
    });

    test('from what the tick-tag rule left (T3, T1, T2 each made, T2\'s retention deleted T3\'s), T4 then T3 again: no second backup of T3', async () => {
      await deliver(3, 1);
      await deliver(1, 2);
      // T2's backup and retention as the tick-tag rule made them: T3's backup, made first, deleted.
      time.set(Date.parse(T[3]) + 3 * MINUTE);
      listed = [...listed.filter((b) => tickTagMs(b.Tags) !== Date.parse(T[3])), ofTick('t2', FS, 60, { createdMinutes: 123 })];
      await expect(deliver(4, 61)).resolves.toMatchObject({ started: 1, pruned: 1 });
      // Judged by tick tags, only T4 is later than T3 (one, keepLast 2): a second backup of T3. By when they were made, T2's and T4's.
      await expect(deliver(3, 62)).resolves.toMatchObject({
        started: 0, skipped: 1, results: [{ skipped: '2 backup(s) were made after this tick\'s scheduled time, and keepLast is 2' }],
      });
      expect(ofTickTag(3)).toEqual([]);
      expect(fsxMock).toHaveReceivedCommandTimes(CreateBackupCommand, 3);
    });
  });

  test('this tick\'s backup DELETED on a stale tick is retention\'s doing: skipped, not failed, not made again', async () => {
    listed = [ofTick('own', FS, 0, { lifecycle: 'DELETED' }), ofTick('later', FS, 60)];
    await expect(handler(tick({ KeepLast: 1 }))).resolves.toMatchObject({ started: 0, failed: 0, skipped: 1 });
    expect(fsxMock).toHaveReceivedCommandTimes(CreateBackupCommand, 0);
  });

  test('targets are independent: one skipped, the others made and pruned, in one tick; one listing per kind, before the backups', async () => {
    listed = [ofTick('a-later', FS, 60), ofTick('b-older1', FS2, -60), ofTick('b-older2', FS2, -120), ofTick('v-older1', VOL, -60), ofTick('v-older2', VOL, -120)];
    const targets = [{ Kind: 'file-system' as const, Id: FS }, { Kind: 'volume' as const, Id: VOL }, { Kind: 'file-system' as const, Id: FS2 }];
    const res = await handler(tick({ Targets: targets, KeepLast: 1 }));
    expect(res).toMatchObject({ started: 2, skipped: 1, pruned: 2 });
    expect(res.results.map((r) => r.target)).toEqual([FS, VOL, FS2]);
    expect(creates().map((i) => i.VolumeId ?? i.FileSystemId).sort()).toEqual([FS2, VOL]);
    expect(deletedIds()).toEqual(['b-older2', 'v-older2']);
    expect(published()).toMatchObject({ BackupsStarted: 2, StaleTicksSkipped: 1, BackupsPruned: 2 });
    expect(fsxMock.commandCalls(DescribeBackupsCommand).map((c) => c.args[0].input.Filters![0])).toEqual([
      { Name: 'file-system-id', Values: [FS, FS2] },
      { Name: 'volume-id', Values: [VOL] },
    ]);
    // Each batch's listing before its backups.
    const inputs = fsxMock.calls().map((c) => c.args[0].input as any).filter((i) => i.Filters || i.ClientRequestToken);
    expect(inputs.map((i) => i.Filters?.[0].Name ?? i.VolumeId ?? i.FileSystemId))
      .toEqual(['file-system-id', FS2, 'volume-id', VOL]);
  });

  test('through the stack\'s function (the router) too: the summary and the metric', async () => {
    listed = [ofTick('later', FS, 60)];
    await expect(router({ ...tick({ KeepLast: 1 }), Operation: 'FsxBackup' })).resolves.toMatchObject({ started: 0, skipped: 1 });
    expect(published()).toMatchObject({ StaleTicksSkipped: 1 });
  });

  describe('the previous backup found FAILED, from the same listing', () => {
    test('FAILED when listed: counted once, no second listing', async () => {
      listed = [{ ...ofTick('prev', FS, -60, { lifecycle: 'FAILED' }), FailureDetails: { Message: 'disk error' } }];
      const res = await handler(tick({ KeepLast: 2 }));
      expect(res).toMatchObject({ started: 1, failedEarlier: 1, results: [{ previousFailed: 'prev' }] });
      expect(published()).toMatchObject({ BackupsStarted: 1, BackupsFailed: 1 });
      expect(fsxMock).toHaveReceivedCommandTimes(DescribeBackupsCommand, 1);
    });

    test('still in progress when listed (CreateBackup waited for it): described again, alone, and counted when it ended FAILED', async () => {
      listed = [ofTick('prev', FS, -60, { lifecycle: 'CREATING' })];
      fsxMock.on(CreateBackupCommand).callsFake((input) => {
        if (listed[0].Lifecycle === 'CREATING') {
          listed[0] = { ...listed[0], Lifecycle: 'FAILED', FailureDetails: { Message: 'disk error' } };
          throw awsError('BackupInProgress', 'Another backup is in progress');
        }
        const b = backup('backup-new', FS, -30_000 / DAY, input.Tags, 'CREATING');
        listed.push(b);
        return { Backup: b };
      });
      const res = await handler(tick({ KeepLast: 2 }));
      expect(res).toMatchObject({ started: 1, failedEarlier: 1, results: [{ backupId: 'backup-new', previousFailed: 'prev' }] });
      expect(fsxMock).toHaveReceivedCommandTimes(CreateBackupCommand, 2);
      expect(fsxMock).toHaveReceivedCommandTimes(DescribeBackupsCommand, 2);
      expect(fsxMock).toHaveReceivedCommandWith(DescribeBackupsCommand, { BackupIds: ['prev'] });
    });

    test('still in progress when listed, AVAILABLE or gone since: not counted', async () => {
      listed = [ofTick('prev', FS, -60, { lifecycle: 'CREATING' })];
      fsxMock.on(DescribeBackupsCommand, { BackupIds: ['prev'] }).resolves({ Backups: [{ ...listed[0], Lifecycle: 'AVAILABLE' }] });
      await expect(handler(tick())).resolves.toMatchObject({ started: 1, failedEarlier: 0 });
      fsxMock.on(DescribeBackupsCommand, { BackupIds: ['prev'] }).rejects(awsError('BackupNotFound', 'gone'));
      listed = [ofTick('prev', FS, -60, { lifecycle: 'CREATING' })];
      await expect(handler(tick())).resolves.toMatchObject({ started: 1, failedEarlier: 0 });
      expect(published()).toMatchObject({ BackupsFailed: 0 });
    });
  });
});

describe('metrics', () => {
  test('EMF on stdout with only the Schedule dimension, in the CdkStorageSnapshots namespace', async () => {
    fsxMock.on(CreateBackupCommand).resolves(created());
    const lines = await emf(() => handler(tick()));
    expect(lines).toHaveLength(1);
    expect(lines[0]._aws.CloudWatchMetrics).toEqual([expect.objectContaining({ Namespace: 'CdkStorageSnapshots', Dimensions: [['Schedule']] })]);
    expect(lines[0]).toMatchObject({ Schedule: SCHEDULE, BackupsStarted: 1, BackupsFailed: 0 });
  });
});
