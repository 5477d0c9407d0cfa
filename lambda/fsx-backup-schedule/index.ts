import type { Backup } from '@aws-sdk/client-fsx';
import { BACKUP_LISTING, TargetResult, backUp } from './backups';
import { afterBackup } from './retention';
import { describeTargets } from './targets';
import {
  FSX_BACKUP_METRICS as METRICS,
  type FsxBackupTargetInput,
  type FsxBackupTickInput,
} from '../../src/private/fsx-backup-contract';
import { type ListedOperation, listedOperation } from '../schedule/listed';
import { Summary, count, retentionProblems, runTick, tickCounts, tickMetrics, uniqueBy } from '../schedule/tick';

export type { TargetResult } from './backups';
export { ourBackupsOf, previousFailed } from './backups';
export { backupsToPrune } from './retention';
export { CONCURRENCY } from '../schedule/calls';
export { tagsOfCopy as backupTags } from '../schedule/copies';
export { scheduledMinute, targetHash } from '../schedule/identity';
export { liveCreationTimes, staleReason } from '../schedule/stale';
export { metrics } from '../schedule/metrics';

/** The counts of a tick of backups. */
export interface BackupCounts {
  readonly started: number;
  readonly failed: number;
  /** Targets whose backup of this tick was not made: retention would already have deleted it (a stale tick). */
  readonly skipped: number;
  /** Earlier ticks' backups found FAILED (counted in the BackupsFailed metric, not failing this tick). */
  readonly failedEarlier: number;
  readonly pruned: number;
}

/** What the handler returns when every target succeeded. */
export type TickSummary = Summary<TargetResult, BackupCounts>;

const BACKUP_METRIC_NAMES = { made: METRICS.started, failed: METRICS.failed, pruned: METRICS.pruned };

const BACKUPS: ListedOperation<FsxBackupTickInput, FsxBackupTargetInput, TargetResult, Backup, BackupCounts> = {
  copies: 'backups',
  target: 'target',
  check: (event) => [
    ...(event.Operation !== undefined && event.Operation !== 'FsxBackup' ? [`Operation ${JSON.stringify(event.Operation)} is not FsxBackup`] : []),
    ...(!Array.isArray(event.Targets) || event.Targets.length === 0 ? ['Targets is empty'] : []),
    ...retentionProblems(event),
  ],
  // A target given twice (a token and a literal of the same id, say) is backed up once.
  targets: (event) => uniqueBy(event.Targets, (t) => t.Id),
  // The targets are listed 20 a call, file systems and volumes apart (every page), and each
  // batch's backups made from its listing; with retention, a listing that fails fails only its
  // batch's targets.
  listing: BACKUP_LISTING,
  lookUp: describeTargets,
  copy: backUp,
  afterCopy: afterBackup,
  // A backup that failed after its CreateBackup returned is counted failed at its target's next backup.
  metrics: (results, notReached) => tickMetrics(results, BACKUP_METRIC_NAMES, count(results, (r) => r.previousFailed) + notReached),
  counts: (results) => {
    const { made, ...counts } = tickCounts(results);
    return { started: made, ...counts, failedEarlier: count(results, (r) => r.previousFailed) };
  },
};

export function handler(event: FsxBackupTickInput): Promise<TickSummary> {
  return runTick(event, listedOperation(BACKUPS));
}
