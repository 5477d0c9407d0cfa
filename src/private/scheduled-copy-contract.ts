/*
 * What the scheduled handlers of both operations emit alike (lambda/schedule), with the same
 * names in both contracts (fsx-backup-contract.ts, openzfs-snapshot-schedule-contract.ts): the
 * metrics `ScheduledCopy` offers for every schedule. It imports nothing.
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
