import { Backup, CreateBackupCommand, DescribeBackupsCommand } from '@aws-sdk/client-fsx';
import type { FsxBackupTargetInput, FsxBackupTickInput } from '../../src/private/fsx-backup-contract';
import { retrying } from '../schedule/calls';
import { copyRequest, requestCopy } from '../schedule/copies';
import { targetHash } from '../schedule/identity';
import type { Lookup } from '../schedule/targets';
import type { TargetOutcome } from '../schedule/tick';
import { fsx } from '../shared/clients/fsx';
import { describeError, errorCode, isTransient } from '../shared/errors';
import { OWNERSHIP_TAG_KEYS, Owner, isMadeFor, tagValue } from '../shared/ownership';
import { allPages } from '../shared/paging';

/*
 * One target's backup of one tick, and the listing of a schedule's backups that finds them again.
 */

/** What one target's tick came to. */
export interface TargetResult extends TargetOutcome {
  readonly backupId?: string;
  /** When FSx says the backup was created (from CreateBackup): orders it among the target's backups. */
  readonly created?: number;
  /** The target's previous backup by this schedule, found FAILED when this one was made. */
  readonly previousFailed?: string;
}

export async function backUp(
  event: FsxBackupTickInput,
  owner: Owner,
  target: FsxBackupTargetInput,
  lookup: Lookup,
  deadline: number,
): Promise<TargetResult> {
  const id = target.Id;
  const request = copyRequest(event, owner, id, lookup, deadline);
  if ('error' in request) return { target: id, pruned: [], tagsDropped: 0, error: request.error };
  const input = {
    ...(target.Kind === 'volume' ? { VolumeId: id } : { FileSystemId: id }),
    Tags: request.tags,
    ClientRequestToken: request.token,
  };
  const { copy, error } = await requestCopy<Backup>(id, {
    noun: 'backup',
    call: 'CreateBackup',
    create: async () => (await retrying('CreateBackup', () => fsx().send(new CreateBackupCommand(input)), deadline, isRetryableCreate)).Backup,
    findByToken: () => findByToken(target, owner, request.token, deadline),
    idOf: (b) => b.BackupId,
    failure: (b) => (b.Lifecycle === 'FAILED' ? failedBackup(id, b) : undefined),
    explain: (err) => explainCreateError(id, err),
  });
  return {
    target: id,
    pruned: [],
    tagsDropped: request.tagsDropped,
    backupId: copy?.BackupId,
    ...(error ? { error } : { created: copy?.CreationTime?.getTime() }),
  };
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
