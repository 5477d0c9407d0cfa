import { Backup, DeleteBackupCommand } from '@aws-sdk/client-fsx';
import { TargetResult, listBackups, ourBackupsOf, previousFailed, scheduledMinute } from './backups';
import { CONCURRENCY, chunks, mapLimit, retrying } from './calls';
import type { FsxBackupTargetInput, FsxBackupTickInput } from '../../src/private/fsx-backup-contract';
import { fsx } from '../shared/clients/fsx';
import { clock } from '../shared/clock';
import { describeError, errorCode } from '../shared/errors';
import { logger } from '../shared/logger';
import { Owner, isOwnedBy } from '../shared/ownership';

/*
 * What follows the backups of a tick: the check of each target's previous backup, and retention.
 */

/** FSx filters take at most 20 values. */
const FILTER_VALUES = 20;

/** What retention deletes of one target's backups: only ours, only AVAILABLE, never the newest. */
export function backupsToPrune(
  backups: readonly Backup[],
  owner: Owner,
  target: string,
  retention: { readonly keepLast?: number; readonly maxAgeSeconds?: number },
  tickMs: number,
): Backup[] {
  if (retention.keepLast === undefined && retention.maxAgeSeconds === undefined) return [];
  const ours = ourBackupsOf(backups, owner, target).filter((b) => b.Lifecycle === 'AVAILABLE');
  return ours.filter((b, i) => {
    if (i === 0) return false; // the newest available backup stays, whatever the limits say
    if (retention.keepLast !== undefined && i >= retention.keepLast) return true;
    const created = b.CreationTime?.getTime();
    return retention.maxAgeSeconds !== undefined && created !== undefined && tickMs - created > retention.maxAgeSeconds * 1000;
  });
}

/**
 * After the backups are requested, one listing of the targets whose backup was: the previous
 * backup of each that FSx reports FAILED is counted (a backup that fails after CreateBackup
 * returned is seen nowhere else), and retention prunes.
 */
export async function afterBackups(
  event: FsxBackupTickInput,
  owner: Owner,
  targets: FsxBackupTargetInput[],
  results: TargetResult[],
  deadline: number,
): Promise<TargetResult[]> {
  const retention = event.KeepLast !== undefined || event.MaxAgeSeconds !== undefined;
  const byId = new Map(results.map((r) => [r.target, r]));
  const tickMs = Date.parse(scheduledMinute(event.Time));
  for (const kind of ['file-system', 'volume'] as const) {
    // A target whose backup failed in this tick keeps every backup it has (and its previous one
    // is looked at when its next backup is made).
    const ids = targets.filter((t) => t.Kind === kind && !byId.get(t.Id)?.error).map((t) => t.Id);
    for (const batch of chunks(ids, FILTER_VALUES)) {
      if (clock.now() >= deadline) {
        if (!retention) continue;
        for (const id of batch) byId.set(id, { ...byId.get(id)!, pruneError: `${id}: pruning not attempted, the invocation ran out of time` });
        continue;
      }
      let backups: Backup[];
      try {
        backups = await listBackups(kind, batch, deadline);
      } catch (err) {
        const reason = describeError(`Listing the backups of ${batch.join(', ')}${retention ? ' to prune them' : ''}`, err);
        // Without retention only the check of the previous backups is lost: said in the log, and
        // made at the next tick (which looks at its own previous backup only).
        if (!retention) {
          logger.warn('cannot check the previous backups', { targets: batch, reason });
          continue;
        }
        logger.error('cannot prune', { targets: batch, reason });
        for (const id of batch) byId.set(id, { ...byId.get(id)!, pruneError: reason });
        continue;
      }
      for (const id of batch) {
        const r = byId.get(id)!;
        const listed = backups.find((b) => b.BackupId === r.backupId);
        const earlier = previousFailed(backups, owner, id, r.backupId!, listed?.CreationTime?.getTime() ?? r.created ?? clock.now());
        if (earlier) {
          logger.error('an earlier backup failed', { target: id, backupId: earlier.BackupId, created: earlier.CreationTime, reason: earlier.FailureDetails?.Message });
          byId.set(id, { ...r, previousFailed: earlier.BackupId });
        }
      }
      if (!retention) continue;
      await mapLimit(batch, CONCURRENCY, async (id) => {
        const doomed = backupsToPrune(backups, owner, id, { keepLast: event.KeepLast, maxAgeSeconds: event.MaxAgeSeconds }, tickMs);
        const pruned: string[] = [];
        let pruneError: string | undefined;
        for (const b of doomed) {
          // Checked again right before deleting: IAM cannot keep others from tagging a backup as ours,
          // but this list came from the service a moment ago with the backup's own tags.
          if (!isOwnedBy(b.Tags, owner)) continue;
          if (clock.now() >= deadline) {
            pruneError = `${id}: pruning stopped, the invocation ran out of time`;
            break;
          }
          try {
            await retrying('DeleteBackup', () => fsx().send(new DeleteBackupCommand({ BackupId: b.BackupId })), deadline);
            pruned.push(b.BackupId!);
            logger.info('backup pruned', { target: id, backupId: b.BackupId, created: b.CreationTime });
          } catch (err) {
            if (errorCode(err) === 'BackupNotFound') continue; // already gone: what we wanted
            pruneError = describeError(`Deleting backup ${b.BackupId} of ${id}`, err);
            logger.error('prune failed', { target: id, backupId: b.BackupId, reason: pruneError });
          }
        }
        byId.set(id, { ...byId.get(id)!, pruned, ...(pruneError ? { pruneError } : {}) });
      });
    }
  }
  return results.map((r) => byId.get(r.target) ?? r);
}
