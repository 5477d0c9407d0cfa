import { Backup, CreateBackupCommand, DescribeBackupsCommand } from '@aws-sdk/client-fsx';
import type { FsxBackupTargetInput, FsxBackupTickInput } from '../../src/private/fsx-backup-contract';
import { retrying } from '../schedule/calls';
import { requestCopy } from '../schedule/copies';
import { targetHash } from '../schedule/identity';
import { type CopyListing, type Listing, type TargetTick, beforeCopy, withCopy } from '../schedule/listed';
import type { Lookup } from '../schedule/targets';
import type { TargetOutcome } from '../schedule/tick';
import { fsx } from '../shared/clients/fsx';
import { clock } from '../shared/clock';
import { describeError, errorCode, isTransient } from '../shared/errors';
import { logger } from '../shared/logger';
import { OWNERSHIP_TAG_KEYS, Owner, isMadeFor, tagValue } from '../shared/ownership';
import { allPages } from '../shared/paging';

/*
 * One target's backup of one tick, and the listing of a schedule's backups that finds them again.
 * The targets are listed before their backups are made (lambda/schedule/listed.ts): a tick's
 * backup already there (found by its token tag) is used, not requested again; one that retention
 * would already have deleted is not made (judged by the tick tags of the schedule's backups of the
 * target: backups have no name to carry the tick); and the same listing is what the check of the
 * previous backup and retention read after.
 */

/** What one target's tick came to. */
export interface TargetResult extends TargetOutcome {
  readonly backupId?: string;
  /** When FSx says the backup was created (from CreateBackup, or the listing): orders it among the target's backups. */
  readonly created?: number;
  /** The target's previous backup by this schedule, found FAILED when this one was made. */
  readonly previousFailed?: string;
}

/** How the backups of a batch of targets (file systems, or volumes) are listed before theirs are made, and judged. */
export const BACKUP_LISTING: CopyListing<FsxBackupTargetInput, Backup> = {
  noun: 'backup',
  id: (target) => target.Id,
  group: (target) => target.Kind,
  list: (batch, deadline) => listBackups(batch[0].Kind, batch.map((t) => t.Id), deadline),
  ours: (listed, owner, target) => ourBackupsOf(listed, owner, target),
  deleted: (b) => b.Lifecycle === 'DELETED',
};

export async function backUp(
  event: FsxBackupTickInput,
  owner: Owner,
  target: FsxBackupTargetInput,
  lookup: Lookup,
  listing: Listing<Backup>,
  deadline: number,
): Promise<TargetTick<TargetResult, Backup>> {
  const id = target.Id;
  const before = beforeCopy(event, owner, id, lookup, listing, BACKUP_LISTING, deadline);
  if ('stop' in before) return { result: { target: id, pruned: [], tagsDropped: 0, ...before.stop }, ours: before.ours };
  const { request, own, ours } = before;
  const input = {
    ...(target.Kind === 'volume' ? { VolumeId: id } : { FileSystemId: id }),
    Tags: request.tags,
    ClientRequestToken: request.token,
  };
  const { copy, error } = await requestCopy<Backup>(id, {
    noun: 'backup',
    call: 'CreateBackup',
    found: own,
    create: async () => (await retrying('CreateBackup', () => fsx().send(new CreateBackupCommand(input)), deadline, isRetryableCreate)).Backup,
    findByToken: () => findByToken(target, owner, request.token, deadline),
    idOf: (b) => b.BackupId,
    failure: (b) => (b.Lifecycle === 'FAILED' ? failedBackup(id, b) : undefined),
    explain: (err) => explainCreateError(id, err),
  });
  const result = {
    target: id,
    pruned: [],
    tagsDropped: request.tagsDropped,
    backupId: copy?.BackupId,
    ...(error ? { error } : { created: copy?.CreationTime?.getTime() }),
  };
  return { result, ours: withCopy(ours, copy, (b) => b.BackupId) };
}

/** The reason of this tick's backup that FSx reports FAILED. */
function failedBackup(id: string, b: Backup): string {
  return `Backing up ${id}: this tick's backup ${b.BackupId} FAILED${b.FailureDetails?.Message ? `: ${b.FailureDetails.Message}` : ''}`;
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

/** The lifecycles a backup ends in. */
const FINAL = new Set<string>(['AVAILABLE', 'FAILED', 'DELETED']);

/**
 * The target's previous backup by this schedule: the newest of ours made before this tick's. FSx
 * makes one backup of a file system or volume at a time, so it had finished when this tick's was
 * made.
 */
function previousBackup(backups: readonly Backup[], owner: Owner, target: string, thisBackupId: string, thisCreatedMs: number): Backup | undefined {
  return ourBackupsOf(backups, owner, target).find((b) => b.BackupId !== thisBackupId && (b.CreationTime?.getTime() ?? 0) <= thisCreatedMs);
}

/**
 * The target's previous backup by this schedule, when FSx reports it FAILED. Each backup is the
 * previous one of exactly one later backup, so it is counted once (once per delivery of that
 * later tick).
 */
export function previousFailed(
  backups: readonly Backup[],
  owner: Owner,
  target: string,
  thisBackupId: string,
  thisCreatedMs: number,
): Backup | undefined {
  const previous = previousBackup(backups, owner, target, thisBackupId, thisCreatedMs);
  return previous?.Lifecycle === 'FAILED' ? previous : undefined;
}

/**
 * `previousFailed`, from the listing made before this tick's backup was requested. The previous
 * backup may still have been in progress when it was listed (this tick's CreateBackup then
 * retried BackupInProgress until it had finished): then it alone is described again, for the
 * state it ended in, so that its failure is still counted once.
 */
export async function previousFailedSince(
  backups: readonly Backup[],
  owner: Owner,
  target: string,
  thisBackupId: string,
  thisCreatedMs: number,
  deadline: number,
): Promise<Backup | undefined> {
  const previous = previousBackup(backups, owner, target, thisBackupId, thisCreatedMs);
  if (!previous || FINAL.has(previous.Lifecycle ?? '')) return previous?.Lifecycle === 'FAILED' ? previous : undefined;
  const now = await describeBackup(previous.BackupId!, deadline);
  return now?.Lifecycle === 'FAILED' ? now : undefined;
}

/** One backup as FSx describes it now; undefined when it is gone, or cannot be described (logged). */
async function describeBackup(id: string, deadline: number): Promise<Backup | undefined> {
  if (clock.now() >= deadline) return undefined;
  try {
    return (await retrying('DescribeBackups', () => fsx().send(new DescribeBackupsCommand({ BackupIds: [id] })), deadline)).Backups?.[0];
  } catch (err) {
    if (errorCode(err) !== 'BackupNotFound') logger.warn('cannot tell whether the previous backup failed', { id, reason: describeError(`Describing backup ${id}`, err) });
    return undefined;
  }
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
