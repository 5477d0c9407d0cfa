/*
 * What the stack's one scheduled function (lambda/schedule) shares with the constructs for both
 * operations: the metrics `ScheduledCopy` offers for every schedule (the same names in both
 * contracts, fsx-backup-contract.ts and openzfs-snapshot-schedule-contract.ts), their dimension,
 * and how the function learns its timeout. It imports nothing.
 */

/** The metrics every scheduled copy emits, with the one dimension `Schedule`. */
export interface ScheduledCopyMetricNames {
  /** Targets whose retention could not finish in a tick (a read or a delete failed). */
  readonly pruneFailed: 'PruneFailures';
  /** Tags of a target that did not fit in a copy's 50 tags. */
  readonly tagsDropped: 'CopiedTagsDropped';
  /**
   * Targets a tick made no copy of because retention had already passed the tick: its own copy
   * is not there, and `KeepLast` copies of the schedule were made after its scheduled time, or it
   * is more than `MaxAgeSeconds` older than the latest one.
   */
  readonly stale: 'StaleTicksSkipped';
}

export const SCHEDULED_COPY_METRICS: ScheduledCopyMetricNames = {
  pruneFailed: 'PruneFailures',
  tagsDropped: 'CopiedTagsDropped',
  stale: 'StaleTicksSkipped',
};

/** The metric dimension that names the schedule. */
export type ScheduleDimension = 'Schedule';
export const SCHEDULE_DIMENSION: ScheduleDimension = 'Schedule';

/** The environment variable that tells the scheduled function its timeout (ms): it stops starting work before it. */
export const SCHEDULE_TIMEOUT_ENV = 'TIMEOUT_MS';
