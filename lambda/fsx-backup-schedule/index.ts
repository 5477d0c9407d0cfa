import { TargetResult, backUp } from './backups';
import { afterBackups } from './retention';
import { describeTargets } from './targets';
import {
  FSX_BACKUP_METRICS as METRICS,
  type FsxBackupTargetInput,
  type FsxBackupTickInput,
} from '../../src/private/fsx-backup-contract';
import { CONCURRENCY, mapLimit } from '../schedule/calls';
import { Summary, TickOperation, retentionProblems, runTick, uniqueBy } from '../schedule/tick';

export type { TargetResult } from './backups';
export { ourBackupsOf, previousFailed } from './backups';
export { backupsToPrune } from './retention';
export { CONCURRENCY } from '../schedule/calls';
export { tagsOfCopy as backupTags } from '../schedule/copies';
export { scheduledMinute, targetHash } from '../schedule/identity';
export { metrics } from '../schedule/metrics';

/** The counts of a tick of backups. */
export interface BackupCounts {
  readonly started: number;
  readonly failed: number;
  /** Earlier ticks' backups found FAILED (counted in the BackupsFailed metric, not failing this tick). */
  readonly failedEarlier: number;
  readonly pruned: number;
}

/** What the handler returns when every target succeeded. */
export type TickSummary = Summary<TargetResult, BackupCounts>;

const BACKUPS: TickOperation<FsxBackupTickInput, FsxBackupTargetInput, TargetResult, BackupCounts> = {
  copies: 'backups',
  target: 'target',
  check: (event) => [
    ...(event.Operation !== undefined && event.Operation !== 'FsxBackup' ? [`Operation ${JSON.stringify(event.Operation)} is not FsxBackup`] : []),
    ...(!Array.isArray(event.Targets) || event.Targets.length === 0 ? ['Targets is empty'] : []),
    ...retentionProblems(event),
  ],
  // A target given twice (a token and a literal of the same id, say) is backed up once.
  targets: (event) => uniqueBy(event.Targets, (t) => t.Id),
  create: async (event, owner, targets, deadline) => {
    const lookups = await describeTargets(targets, deadline);
    return mapLimit(targets, CONCURRENCY, (t) => backUp(event, owner, t, lookups.get(t.Id)!, deadline));
  },
  after: afterBackups,
  metrics: (results, notReached) => ({
    [METRICS.started]: results.filter((r) => !r.error).length,
    [METRICS.failed]: results.filter((r) => r.error).length + results.filter((r) => r.previousFailed).length + notReached,
    [METRICS.pruned]: results.reduce((n, r) => n + r.pruned.length, 0),
    [METRICS.pruneFailed]: results.filter((r) => r.pruneError).length,
    [METRICS.tagsDropped]: results.reduce((n, r) => n + r.tagsDropped, 0),
  }),
  counts: (results) => ({
    started: results.filter((r) => !r.error).length,
    failed: results.filter((r) => r.error).length,
    failedEarlier: results.filter((r) => r.previousFailed).length,
    pruned: results.reduce((n, r) => n + r.pruned.length, 0),
  }),
};

export function handler(event: FsxBackupTickInput): Promise<TickSummary> {
  return runTick(event, BACKUPS);
}
