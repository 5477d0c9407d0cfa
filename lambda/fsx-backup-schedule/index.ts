import { MetricUnit, Metrics } from '@aws-lambda-powertools/metrics';
import { TargetResult, backUp } from './backups';
import { CONCURRENCY, mapLimit } from './calls';
import { afterBackups } from './retention';
import { describeTargets } from './targets';
import {
  FSX_BACKUP_METRICS as METRICS,
  type FsxBackupTargetInput,
  type FsxBackupTickInput,
  SCHEDULE_DIMENSION,
  SCHEDULE_TIMEOUT_ENV,
} from '../../src/private/fsx-backup-contract';
import { METRIC_NAMESPACE } from '../../src/private/shared-values';
import { clock } from '../shared/clock';
import { HandlerError } from '../shared/errors';
import { logger } from '../shared/logger';
import { Owner } from '../shared/ownership';

export type { TargetResult } from './backups';
export { ourBackupsOf, previousFailed, scheduledMinute, targetHash } from './backups';
export { CONCURRENCY } from './calls';
export { backupsToPrune } from './retention';
export { backupTags } from './targets';

/** CloudWatch metrics in the embedded metric format: written to the log, no PutMetricData call. */
export const metrics = new Metrics({ namespace: METRIC_NAMESPACE });
// Only the Schedule dimension, so that the construct's metrics (and alarm) name exactly these.
metrics.clearDefaultDimensions();

/** Work stops this long before the function's timeout, so that the summary and metrics still go out. */
const SAFETY_MARGIN_MS = 90_000;

/** What the handler returns when every target succeeded. */
export interface TickSummary {
  readonly schedule: string;
  readonly time: string;
  readonly started: number;
  readonly failed: number;
  /** Earlier ticks' backups found FAILED (counted in the BackupsFailed metric, not failing this tick). */
  readonly failedEarlier: number;
  readonly pruned: number;
  readonly results: TargetResult[];
}

export async function handler(event: FsxBackupTickInput): Promise<TickSummary> {
  const started = clock.now();
  const deadline = started + Number(process.env[SCHEDULE_TIMEOUT_ENV] ?? 15 * 60_000) - SAFETY_MARGIN_MS;
  // The metric dimension even for an input that is refused, so that the schedule's alarm sees it.
  const schedule = typeof event?.Schedule === 'string' && event.Schedule ? event.Schedule : 'unknown';
  let targets: FsxBackupTargetInput[] = [];
  let results: TargetResult[] = [];
  let completed = false;
  try {
    checkInput(event);
    logger.appendKeys({ schedule: event.Schedule, tick: event.Time });
    // A target given twice (a token and a literal of the same id, say) is backed up once.
    targets = uniqueById(event.Targets);
    logger.info('tick', { eventId: event.EventId, targets: targets.length, keepLast: event.KeepLast, maxAgeSeconds: event.MaxAgeSeconds });
    const owner: Owner = { stackId: event.StackId, owner: event.Schedule };
    const lookups = await describeTargets(targets, deadline);
    results = await mapLimit(targets, CONCURRENCY, (t) => backUp(event, owner, t, lookups.get(t.Id)!, deadline));
    results = await afterBackups(event, owner, targets, results, deadline);
    completed = true;
  } finally {
    // An invocation that did not complete (bad input, or an unexpected error) counts at least one
    // failure, and every target it did not get to.
    emitMetrics(schedule, results, completed ? 0 : Math.max(1, targets.length - results.length));
  }

  const failed = results.filter((r) => r.error);
  const pruneFailed = results.filter((r) => r.pruneError);
  const summary: TickSummary = {
    schedule: event.Schedule,
    time: event.Time,
    started: results.length - failed.length,
    failed: failed.length,
    failedEarlier: results.filter((r) => r.previousFailed).length,
    pruned: results.reduce((n, r) => n + r.pruned.length, 0),
    results,
  };
  logger.info('tick done', {
    started: summary.started, failed: summary.failed, failedEarlier: summary.failedEarlier, pruned: summary.pruned, ms: clock.now() - started,
  });
  if (failed.length > 0 || pruneFailed.length > 0) {
    // Failing the invocation lets Lambda retry it (the same tokens find the backups already made)
    // and, after the retries, sends it to the dead-letter queue.
    const reasons = [...failed.map((r) => r.error!), ...pruneFailed.map((r) => r.pruneError!)];
    throw new HandlerError(
      `${failed.length} of ${results.length} backups failed${pruneFailed.length ? `, pruning failed for ${pruneFailed.length} target(s)` : ''}: ` +
        reasons.slice(0, 5).join('; ') + (reasons.length > 5 ? `; and ${reasons.length - 5} more (see the log)` : ''),
    );
  }
  return summary;
}

function checkInput(event: FsxBackupTickInput): void {
  const problems: string[] = [];
  if (!event || typeof event !== 'object') throw new HandlerError('the input is not an object: was the rule\'s input changed by hand?');
  if (!event.Time || Number.isNaN(Date.parse(event.Time))) problems.push(`Time ${JSON.stringify(event.Time)} is not a time`);
  if (!event.StackId) problems.push('StackId is missing');
  if (!event.Schedule) problems.push('Schedule is missing');
  if (!Array.isArray(event.Targets) || event.Targets.length === 0) problems.push('Targets is empty');
  if (problems.length) throw new HandlerError(`invalid schedule input (was the rule's input changed by hand?): ${problems.join('; ')}`);
}

function uniqueById(targets: FsxBackupTargetInput[]): FsxBackupTargetInput[] {
  const seen = new Set<string>();
  return targets.filter((t) => !seen.has(t.Id) && !!seen.add(t.Id));
}

/** `notReached`: targets an invocation that did not complete counts as failed besides `results`' errors. */
function emitMetrics(schedule: string, results: TargetResult[], notReached: number): void {
  const failed = results.filter((r) => r.error).length + results.filter((r) => r.previousFailed).length + Math.max(0, notReached);
  metrics.addDimension(SCHEDULE_DIMENSION, schedule);
  metrics.addMetric(METRICS.started, MetricUnit.Count, results.length - results.filter((r) => r.error).length);
  metrics.addMetric(METRICS.failed, MetricUnit.Count, failed);
  metrics.addMetric(METRICS.pruned, MetricUnit.Count, results.reduce((n, r) => n + r.pruned.length, 0));
  metrics.addMetric(METRICS.pruneFailed, MetricUnit.Count, results.filter((r) => r.pruneError).length);
  metrics.addMetric(METRICS.tagsDropped, MetricUnit.Count, results.reduce((n, r) => n + r.tagsDropped, 0));
  metrics.publishStoredMetrics();
}
