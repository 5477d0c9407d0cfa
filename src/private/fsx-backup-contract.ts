/*
 * The contract between `FsxBackupSchedule` (src/) and its part of the stack's scheduled handler
 * (lambda/fsx-backup-schedule): the input each schedule's rule or Scheduler schedule sends, and
 * the names of the CloudWatch metrics the handler emits and the construct alarms on. It imports
 * only the shared metric names (scheduled-copy-contract.ts, dependency-free too), so that both the
 * construct and the handler (whose bundle copies it) import its values.
 *
 * Unlike a custom resource's properties, an EventBridge input is JSON: numbers stay numbers.
 */

import { SCHEDULED_COPY_METRICS, type ScheduledCopyMetricNames } from './scheduled-copy-contract';

/** What a schedule backs up. */
export interface FsxBackupTargetInput {
  /** `file-system`: CreateBackup `FileSystemId` (Windows, Lustre, OpenZFS); `volume`: `VolumeId` (ONTAP). */
  readonly Kind: 'file-system' | 'volume';
  /** `fs-…` or `fsvol-…`. */
  readonly Id: string;
}

/** The input of one tick, as the rule's input transformer renders it. */
export interface FsxBackupTickInput {
  /**
   * Which scheduled operation: the stack's one scheduled function serves both schedule
   * constructs. Ticks of rules deployed before it existed have none, and are backups.
   */
  readonly Operation?: 'FsxBackup';
  /**
   * The scheduled time of the tick, not when it arrived: the rule's `time`, or Scheduler's
   * `<aws.scheduler.scheduled-time>` (which Scheduler's retries and a flexible window keep).
   * The handler rounds it down to the minute before deriving the token (ticks are at least an
   * hour apart), so that deliveries of one tick whose `time` differs in its seconds still share
   * a token.
   */
  readonly Time: string;
  /**
   * EventBridge's event id or Scheduler's execution id, for logs only: Lambda's retries keep it,
   * and a duplicate delivery of a tick may or may not share it, so nothing is derived from it.
   */
  readonly EventId?: string;
  /** The stack that owns the schedule (its ARN): the `stack-id` ownership tag. */
  readonly StackId: string;
  /** The schedule's stable id in the stack (from its construct path): the `owner` tag and the metric dimension. */
  readonly Schedule: string;
  readonly Targets: FsxBackupTargetInput[];
  /** User tags for every backup (keys sorted at synth). */
  readonly Tags?: Record<string, string>;
  /** Keep at most this many of the schedule's available backups per target. */
  readonly KeepLast?: number;
  /** Delete the schedule's available backups older than this (seconds before the tick). */
  readonly MaxAgeSeconds?: number;
}

/** The CloudWatch namespace of the library's metrics. */
export type MetricNamespace = 'CdkStorageSnapshots';

/** The metrics a backup schedule emits, with one dimension `Schedule` (`FsxBackupTickInput.Schedule`). */
export interface FsxBackupMetricNames extends ScheduledCopyMetricNames {
  /** Backups requested (or found already requested by this tick) per tick. */
  readonly started: 'BackupsStarted';
  /**
   * Backups that failed: targets whose backup could not be requested in this tick, this tick's
   * backup found FAILED, and the previous backup of a target found FAILED when its next one is made.
   */
  readonly failed: 'BackupsFailed';
  /** Backups the retention deleted. */
  readonly pruned: 'BackupsPruned';
}

/** The metrics' names, for the handler that emits them and the construct that alarms on them. */
export const FSX_BACKUP_METRICS: FsxBackupMetricNames = {
  ...SCHEDULED_COPY_METRICS,
  started: 'BackupsStarted',
  failed: 'BackupsFailed',
  pruned: 'BackupsPruned',
};
