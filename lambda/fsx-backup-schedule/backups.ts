import { Backup, CreateBackupCommand, DescribeBackupsCommand } from '@aws-sdk/client-fsx';
import { retrying } from './calls';
import { Lookup, backupTags } from './targets';
import type { FsxBackupTargetInput, FsxBackupTickInput } from '../../src/private/fsx-backup-contract';
import { fsx } from '../shared/clients/fsx';
import { clock } from '../shared/clock';
import { HandlerError, describeError, errorCode, isTransient } from '../shared/errors';
import { logger } from '../shared/logger';
import { OWNERSHIP_TAG_KEYS, Owner, isMadeFor, ownershipTags, tagValue } from '../shared/ownership';
import { allPages } from '../shared/paging';
import { stableHash, tickToken } from '../shared/token';

/*
 * One target's backup of one tick, and the listing of a schedule's backups that finds them again.
 */

/** What one target's tick came to. */
export interface TargetResult {
  readonly target: string;
  readonly backupId?: string;
  /** The reason the backup could not be requested. */
  readonly error?: string;
  /** When FSx says the backup was created (from CreateBackup): orders it among the target's backups. */
  readonly created?: number;
  readonly pruned: string[];
  readonly pruneError?: string;
  readonly tagsDropped: number;
  /** The target's previous backup by this schedule, found FAILED when this one was made. */
  readonly previousFailed?: string;
}

/**
 * The scheduled time, rounded down to the minute: what the token is derived from and retention
 * ages are measured from. Deliveries of one tick whose `time` differs in its seconds share it,
 * and ticks (at least an hour apart) never do.
 */
export function scheduledMinute(time: string): string {
  const minute = Math.floor(Date.parse(time) / 60_000) * 60_000;
  return new Date(minute).toISOString().replace(/:00\.000Z$/, 'Z');
}

/** The tag that says which target a backup is of (the props-hash tag of the contract). */
export function targetHash(target: string): string {
  return stableHash({ target });
}

export async function backUp(
  event: FsxBackupTickInput,
  owner: Owner,
  target: FsxBackupTargetInput,
  lookup: Lookup,
  deadline: number,
): Promise<TargetResult> {
  const id = target.Id;
  const base = { target: id, pruned: [] as string[], tagsDropped: 0 };
  if (clock.now() >= deadline) return { ...base, error: `${id}: not attempted, the invocation ran out of time` };
  if ('error' in lookup) {
    logger.error('cannot back up', { target: id, reason: lookup.error });
    return { ...base, error: lookup.error };
  }
  const token = tickToken({ scheduleId: `${event.StackId}|${event.Schedule}`, target: id, scheduledTime: scheduledMinute(event.Time) });
  const { tags, dropped } = backupTags(lookup.info.tags, event.Tags ?? {}, ownershipTags(owner, targetHash(id), token));
  if (dropped.length > 0) {
    logger.warn('tags of the target were not copied: FSx refuses their characters, or they did not fit in the backup\'s 50 tags', { target: id, dropped });
  }
  const input = {
    ...(target.Kind === 'volume' ? { VolumeId: id } : { FileSystemId: id }),
    Tags: tags,
    ClientRequestToken: token,
  };
  try {
    const out = await retrying('CreateBackup', () => fsx().send(new CreateBackupCommand(input)), deadline, isRetryableCreate);
    const backupId = out.Backup?.BackupId;
    if (!backupId) throw new HandlerError(`FSx CreateBackup of ${id} returned no backup id`);
    // A later delivery of the tick gets the tick's backup back, in whatever state it is now.
    if (out.Backup?.Lifecycle === 'FAILED') return { ...base, backupId, error: failedBackup(id, out.Backup), tagsDropped: dropped.length };
    logger.info('backup requested', { target: id, backupId, lifecycle: out.Backup?.Lifecycle, token });
    return { ...base, backupId, created: out.Backup?.CreationTime?.getTime(), tagsDropped: dropped.length };
  } catch (err) {
    if (errorCode(err) === 'IncompatibleParameterError') {
      // The token was used with other parameters: an earlier delivery of this tick sent other
      // tags (the target's tags changed in between). Its backup is this tick's backup.
      const earlier = await findByToken(target, owner, token, deadline).catch(() => undefined);
      if (earlier?.Lifecycle === 'FAILED') {
        return { ...base, backupId: earlier.BackupId, error: failedBackup(id, earlier), tagsDropped: dropped.length };
      }
      if (earlier) {
        logger.info('backup already requested by an earlier delivery of this tick', { target: id, backupId: earlier.BackupId });
        return { ...base, backupId: earlier.BackupId, created: earlier.CreationTime?.getTime(), tagsDropped: dropped.length };
      }
    }
    const reason = explainCreateError(id, err);
    logger.error('backup failed', { target: id, reason, error: err as Error });
    return { ...base, error: reason, tagsDropped: dropped.length };
  }
}

/** The reason of this tick's backup that FSx reports FAILED. */
function failedBackup(id: string, b: Backup): string {
  const reason = `Backing up ${id}: this tick's backup ${b.BackupId} FAILED${b.FailureDetails?.Message ? `: ${b.FailureDetails.Message}` : ''}`;
  logger.error('backup failed', { target: id, backupId: b.BackupId, reason });
  return reason;
}

function isRetryableCreate(err: unknown): boolean {
  return isTransient(err) || errorCode(err) === 'BackupInProgress';
}

function explainCreateError(id: string, err: unknown): string {
  const code = errorCode(err);
  const hint: Record<string, string> = {
    BackupInProgress: 'another backup of it was still in progress after retrying',
    FileSystemNotFound: 'the file system does not exist',
    VolumeNotFound: 'the volume does not exist',
    UnsupportedOperation: 'FSx cannot back it up (a scratch Lustre file system, or one linked to a data repository?)',
    ServiceLimitExceeded: 'the account\'s backup quota is reached (delete backups or raise the quota)',
    BadRequest: 'FSx refused the request (an ONTAP file system or an OpenZFS volume? back up ONTAP volumes and OpenZFS file systems)',
  };
  return describeError(`Backing up ${id}${hint[code] ? ` (${hint[code]})` : ''}`, err);
}

/** The backup of this tick, found by its token tag. */
async function findByToken(target: FsxBackupTargetInput, owner: Owner, token: string, deadline: number): Promise<Backup | undefined> {
  const backups = await listBackups(target.Kind, [target.Id], deadline);
  return ourBackupsOf(backups, owner, target.Id).find((b) => tagValue(b.Tags, OWNERSHIP_TAG_KEYS.token) === token);
}

/**
 * The backups of `target` this schedule made, newest first: user-initiated, tagged as this
 * schedule's backups of this target, and not copies. `CopyBackup` can copy a backup's tags,
 * ownership tags included, so a copy someone made of one of ours (`SourceBackupId`) looks like
 * ours: it is never pruned, adopted or counted. Backups FSx (`AUTOMATIC`) or AWS Backup
 * (`AWS_BACKUP`) made are left out here as well as by the listing's filter.
 */
export function ourBackupsOf(backups: readonly Backup[], owner: Owner, target: string): Backup[] {
  return backups
    .filter((b) => b.Type === 'USER_INITIATED' && !b.SourceBackupId && !b.SourceBackupRegion)
    .filter((b) => isMadeFor(b.Tags, owner, targetHash(target)))
    .filter((b) => (target.startsWith('fsvol-') ? b.Volume?.VolumeId : b.FileSystem?.FileSystemId) === target)
    .sort((a, b) => (b.CreationTime?.getTime() ?? 0) - (a.CreationTime?.getTime() ?? 0));
}

/**
 * The target's previous backup by this schedule, when FSx reports it FAILED: the newest of ours
 * made before this tick's. FSx makes one backup of a file system or volume at a time, so it had
 * finished when this tick's was made; and each backup is the previous one of exactly one later
 * backup, so it is counted once (once per delivery of that later tick).
 */
export function previousFailed(
  backups: readonly Backup[],
  owner: Owner,
  target: string,
  thisBackupId: string,
  thisCreatedMs: number,
): Backup | undefined {
  const previous = ourBackupsOf(backups, owner, target)
    .find((b) => b.BackupId !== thisBackupId && (b.CreationTime?.getTime() ?? 0) <= thisCreatedMs);
  return previous?.Lifecycle === 'FAILED' ? previous : undefined;
}

/**
 * User-initiated backups of the targets (at most 20), every page. Without retention this grows
 * with the schedule's backups, up to the account's backup quota.
 */
export async function listBackups(kind: FsxBackupTargetInput['Kind'], ids: string[], deadline: number): Promise<Backup[]> {
  const filters = [
    { Name: kind === 'volume' ? ('volume-id' as const) : ('file-system-id' as const), Values: ids },
    { Name: 'backup-type' as const, Values: ['USER_INITIATED'] },
  ];
  return allPages(
    (NextToken) => retrying('DescribeBackups', () => fsx().send(new DescribeBackupsCommand({ Filters: filters, NextToken })), deadline),
    (page) => page.Backups,
  );
}
