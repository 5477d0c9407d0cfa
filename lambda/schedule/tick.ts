import { ScheduleIdentity, scheduleOwner } from './identity';
import { emitMetrics } from './metrics';
import { SCHEDULE_TIMEOUT_ENV, SCHEDULED_COPY_METRICS } from '../../src/private/scheduled-copy-contract';
import { clock } from '../shared/clock';
import { HandlerError } from '../shared/errors';
import { logger } from '../shared/logger';
import type { Owner } from '../shared/ownership';

/*
 * One tick of a scheduled operation, whatever it makes: the input checked, a copy requested per
 * target, what follows (checks, retention), the metrics emitted whatever happened, and a failure
 * that Lambda retries (the same tokens find the copies already made) and then sends to the
 * dead-letter queue. The operations (lambda/fsx-backup-schedule, lambda/openzfs-snapshot-schedule)
 * supply only what differs.
 */

/** Work stops this long before the function's timeout, so that the summary and metrics still go out. */
const SAFETY_MARGIN_MS = 90_000;
/** How many reasons the error of a failed tick names (the rest are in the log). */
const REASONS_SHOWN = 5;

/** What every scheduled operation's input says. */
export interface TickInput extends ScheduleIdentity {
  readonly Operation?: string;
  readonly EventId?: string;
  readonly Tags?: Record<string, string>;
  readonly KeepLast?: number;
  readonly MaxAgeSeconds?: number;
}

/** What one target's tick came to, in every operation. */
export interface TargetOutcome {
  readonly target: string;
  /** The reason its copy could not be made in this tick. */
  readonly error?: string;
  /** Why no copy was made in this tick: retention would already have deleted it (a stale tick; not a failure). */
  readonly skipped?: string;
  /** The copies retention deleted. */
  readonly pruned: string[];
  readonly pruneError?: string;
  /** Tags of the target that did not fit in the copy's. */
  readonly tagsDropped: number;
}

/** What the handler returns when every target succeeded: the operation's counts, and each target's result. */
export type Summary<R, C> = { readonly schedule: string; readonly time: string } & C & { readonly results: R[] };

/** What differs between the scheduled operations. */
export interface TickOperation<E extends TickInput, T, R extends TargetOutcome, C> {
  /** What a tick makes, in the plural (`backups`), and what of (`target`), for the error of a failed tick. */
  readonly copies: string;
  readonly target: string;
  /** The problems of the input's own fields of the operation (the common ones are checked before). */
  check(event: E): string[];
  /** The targets of the tick, each once. */
  targets(event: E): T[];
  /** One copy requested per target. */
  create(event: E, owner: Owner, targets: T[], deadline: number): Promise<R[]>;
  /** What follows the copies (checks, retention). */
  after(event: E, owner: Owner, targets: T[], results: R[], deadline: number): Promise<R[]>;
  /** The metrics of the tick; `notReached`: targets an invocation that did not complete counts as failed besides `results`' errors. */
  metrics(results: R[], notReached: number): Record<string, number>;
  /** The summary's counts. */
  counts(results: R[]): C;
}

export async function runTick<E extends TickInput, T, R extends TargetOutcome, C>(
  event: E,
  op: TickOperation<E, T, R, C>,
): Promise<Summary<R, C>> {
  const started = clock.now();
  const deadline = started + Number(process.env[SCHEDULE_TIMEOUT_ENV] ?? 15 * 60_000) - SAFETY_MARGIN_MS;
  // The metric dimension even for an input that is refused, so that the schedule's alarm sees it.
  const schedule = typeof event?.Schedule === 'string' && event.Schedule ? event.Schedule : 'unknown';
  let targets: T[] = [];
  let results: R[] = [];
  let completed = false;
  try {
    checkInput(event, op);
    logger.appendKeys({ schedule: event.Schedule, tick: event.Time });
    targets = op.targets(event);
    logger.info('tick', { operation: event.Operation, eventId: event.EventId, targets: targets.length, keepLast: event.KeepLast, maxAgeSeconds: event.MaxAgeSeconds });
    const owner = scheduleOwner(event);
    results = await op.create(event, owner, targets, deadline);
    results = await op.after(event, owner, targets, results, deadline);
    completed = true;
  } finally {
    // An invocation that did not complete (bad input, or an unexpected error) counts at least one
    // failure, and every target it did not get to.
    emitMetrics(schedule, op.metrics(results, completed ? 0 : Math.max(1, targets.length - results.length)));
  }

  const counts = op.counts(results);
  logger.info('tick done', { ...counts, ms: clock.now() - started });
  const failed = results.filter((r) => r.error);
  const pruneFailed = results.filter((r) => r.pruneError);
  if (failed.length > 0 || pruneFailed.length > 0) {
    // Failing the invocation lets Lambda retry it (the same tokens find the copies already made)
    // and, after the retries, sends it to the dead-letter queue.
    const reasons = [...failed.map((r) => r.error!), ...pruneFailed.map((r) => r.pruneError!)];
    throw new HandlerError(
      `${failed.length} of ${results.length} ${op.copies} failed${pruneFailed.length ? `, pruning failed for ${pruneFailed.length} ${op.target}(s)` : ''}: ` +
        reasons.slice(0, REASONS_SHOWN).join('; ') + (reasons.length > REASONS_SHOWN ? `; and ${reasons.length - REASONS_SHOWN} more (see the log)` : ''),
    );
  }
  return { schedule: event.Schedule, time: event.Time, ...counts, results };
}

function checkInput<E extends TickInput>(event: E, op: TickOperation<E, any, any, any>): void {
  if (!event || typeof event !== 'object') throw new HandlerError('the input is not an object: was the schedule\'s input changed by hand?');
  const problems: string[] = [];
  if (typeof event.Time !== 'string' || Number.isNaN(Date.parse(event.Time))) problems.push(`Time ${JSON.stringify(event.Time)} is not a time`);
  if (!event.StackId) problems.push('StackId is missing');
  if (!event.Schedule) problems.push('Schedule is missing');
  problems.push(...op.check(event));
  if (problems.length) throw new HandlerError(`invalid schedule input (was the schedule's input changed by hand?): ${problems.join('; ')}`);
}

/** The common checks of the retention fields. */
export function retentionProblems(event: TickInput): string[] {
  const problems: string[] = [];
  if (event.KeepLast !== undefined && (!Number.isInteger(event.KeepLast) || event.KeepLast < 1)) {
    problems.push(`KeepLast ${JSON.stringify(event.KeepLast)} is not a whole number of at least 1`);
  }
  if (event.MaxAgeSeconds !== undefined && (typeof event.MaxAgeSeconds !== 'number' || !(event.MaxAgeSeconds > 0))) {
    problems.push(`MaxAgeSeconds ${JSON.stringify(event.MaxAgeSeconds)} is not a positive number`);
  }
  return problems;
}

/** Each item once, in the order given. */
export function uniqueBy<T>(items: readonly T[], key: (item: T) => string): T[] {
  const seen = new Set<string>();
  return items.filter((item) => !seen.has(key(item)) && !!seen.add(key(item)));
}

/** How many of the results `p` holds for. */
export function count<R>(results: readonly R[], p: (r: R) => unknown): number {
  return results.filter(p).length;
}

/** The sum of `n` over the results. */
export function sum<R>(results: readonly R[], n: (r: R) => number): number {
  return results.reduce((total, r) => total + n(r), 0);
}

/** An operation's names of the metrics every operation emits: copies made (or found made), copies failed, copies pruned. */
export interface TickMetricNames {
  readonly made: string;
  readonly failed: string;
  readonly pruned: string;
}

/**
 * The metrics every scheduled operation emits: its copies made, failed (with `failedBesides`:
 * targets an invocation did not get to, earlier copies found failed) and pruned, under its names;
 * and under the names both share, stale ticks skipped, prunes that failed, tags dropped.
 */
export function tickMetrics(results: readonly TargetOutcome[], names: TickMetricNames, failedBesides: number): Record<string, number> {
  const { made, failed, pruned } = tickCounts(results);
  return {
    [names.made]: made,
    [names.failed]: failed + failedBesides,
    [names.pruned]: pruned,
    [SCHEDULED_COPY_METRICS.stale]: count(results, (r) => r.skipped),
    [SCHEDULED_COPY_METRICS.pruneFailed]: count(results, (r) => r.pruneError),
    [SCHEDULED_COPY_METRICS.tagsDropped]: sum(results, (r) => r.tagsDropped),
  };
}

/**
 * The counts every scheduled operation's summary has: the targets whose copy this tick has (made,
 * or made by an earlier delivery), whose copy failed, or that were skipped as stale; the copies pruned.
 */
export function tickCounts(results: readonly TargetOutcome[]): { made: number; failed: number; skipped: number; pruned: number } {
  return {
    made: count(results, (r) => !r.error && !r.skipped),
    failed: count(results, (r) => r.error),
    skipped: count(results, (r) => r.skipped),
    pruned: sum(results, (r) => r.pruned.length),
  };
}
