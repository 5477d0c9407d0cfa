import { Backup, DeleteBackupCommand } from '@aws-sdk/client-fsx';
import { TargetResult, listBackups, ourBackupsOf, previousFailed } from './backups';
import type { FsxBackupTargetInput, FsxBackupTickInput } from '../../src/private/fsx-backup-contract';
import { CopyStore, Retention, afterCopies, beyondRetention, pruneCopies } from '../schedule/retention';
import { fsx } from '../shared/clients/fsx';
import { clock } from '../shared/clock';
import { logger } from '../shared/logger';
import { Owner } from '../shared/ownership';

/*
 * What follows the backups of a tick: the check of each target's previous backup, and retention.
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
 * After the backups are requested, one listing of the targets whose backup was: the previous
 * backup of each that FSx reports FAILED is counted (a backup that fails after CreateBackup
 * returned is seen nowhere else), and retention prunes. A target whose backup failed in this tick
 * keeps every backup it has (and its previous one is looked at when its next backup is made).
 */
export async function afterBackups(
  event: FsxBackupTickInput,
  owner: Owner,
  targets: FsxBackupTargetInput[],
  results: TargetResult[],
  deadline: number,
): Promise<TargetResult[]> {
  const requested = new Set(results.filter((r) => !r.error).map((r) => r.target));
  let out = results;
  for (const kind of ['file-system', 'volume'] as const) {
    out = await afterCopies(event, out, targets.filter((t) => t.Kind === kind && requested.has(t.Id)).map((t) => t.Id), {
      copies: 'backups',
      deadline,
      list: (batch) => listBackups(kind, batch, deadline),
      each: async (result, backups, { retention, tickMs }) => {
        let r = result;
        const id = r.target;
        const listed = backups.find((b) => b.BackupId === r.backupId);
        const earlier = previousFailed(backups, owner, id, r.backupId!, listed?.CreationTime?.getTime() ?? r.created ?? clock.now());
        if (earlier) {
          logger.error('an earlier backup failed', { target: id, backupId: earlier.BackupId, created: earlier.CreationTime, reason: earlier.FailureDetails?.Message });
          r = { ...r, previousFailed: earlier.BackupId };
        }
        if (!retention) return r;
        const { pruned, pruneError } = await pruneCopies(id, backupsToPrune(backups, owner, id, retention, tickMs), owner, deadline, BACKUPS);
        return { ...r, pruned, ...(pruneError ? { pruneError } : {}) };
      },
    });
  }
  return out;
}
