import { Backup, DeleteBackupCommand } from '@aws-sdk/client-fsx';
import { TargetResult, ourBackupsOf, previousFailedSince } from './backups';
import type { FsxBackupTickInput } from '../../src/private/fsx-backup-contract';
import type { AfterContext } from '../schedule/listed';
import { CopyStore, Retention, beyondRetention, pruneCopies } from '../schedule/retention';
import { fsx } from '../shared/clients/fsx';
import { clock } from '../shared/clock';
import { logger } from '../shared/logger';
import { Owner } from '../shared/ownership';

/*
 * What follows the backups of a tick: the check of each target's previous backup, and retention,
 * both from the listing the tick made before its backups (no second listing).
 */

const BACKUPS: CopyStore<Backup> = {
  noun: 'Backup',
  idOf: (b) => b.BackupId!,
  delete: (id) => fsx().send(new DeleteBackupCommand({ BackupId: id })),
};

/** What retention deletes of one target's backups: only ours, only AVAILABLE, never the newest. */
export function backupsToPrune(backups: readonly Backup[], owner: Owner, target: string, retention: Retention, tickMs: number): Backup[] {
  return beyondRetention(ourBackupsOf(backups, owner, target).filter((b) => b.Lifecycle === 'AVAILABLE'), retention, tickMs);
}

/**
 * What follows the backup of a target whose backup this tick has (made, or found made by an
 * earlier delivery), from its backups as the tick's listing had them (with the tick's): the
 * previous backup that FSx reports FAILED is counted (a backup that fails after CreateBackup
 * returned is seen nowhere else), and retention prunes. A target whose backup failed in this
 * tick, or whose tick was skipped as stale, is not looked at (and its previous backup is when its
 * next backup is made).
 */
export async function afterBackup(
  _event: FsxBackupTickInput,
  owner: Owner,
  result: TargetResult,
  { ours, retention, tickMs }: AfterContext<Backup>,
  deadline: number,
): Promise<TargetResult> {
  let r = result;
  const id = r.target;
  const listed = ours.find((b) => b.BackupId === r.backupId);
  const earlier = await previousFailedSince(ours, owner, id, r.backupId!, listed?.CreationTime?.getTime() ?? r.created ?? clock.now(), deadline);
  if (earlier) {
    logger.error('an earlier backup failed', { target: id, backupId: earlier.BackupId, created: earlier.CreationTime, reason: earlier.FailureDetails?.Message });
    r = { ...r, previousFailed: earlier.BackupId };
  }
  if (!retention) return r;
  const { pruned, pruneError } = await pruneCopies(id, backupsToPrune(ours, owner, id, retention, tickMs), owner, deadline, BACKUPS);
  return { ...r, pruned, ...(pruneError ? { pruneError } : {}) };
}
