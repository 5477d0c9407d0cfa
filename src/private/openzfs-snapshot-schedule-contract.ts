/*
 * The contract between `OpenZfsSnapshotSchedule` (src/) and its part of the stack's scheduled
 * handler (lambda/openzfs-snapshot-schedule): the input each schedule sends per tick, the snapshot
 * names it makes, and the names of the CloudWatch metrics it emits and the construct alarms on. It
 * imports only the shared metric names (scheduled-copy-contract.ts, dependency-free too), so that
 * both sides import its values.
 */

import { SCHEDULED_COPY_METRICS, type ScheduledCopyMetricNames } from './scheduled-copy-contract';

/** The input of one tick, as the rule's or the Scheduler schedule's input renders it. */
export interface OpenZfsSnapshotTickInput {
  /** Which scheduled operation: the stack's one scheduled function serves both constructs. */
  readonly Operation: 'OpenZfsSnapshot';
  /**
   * The scheduled time of the tick (the rule's `time`, Scheduler's `<aws.scheduler.scheduled-time>`),
   * not when it arrived: rounded down to the minute, it names the tick (ticks are at least 15
   * minutes apart), in the token and in the snapshot's name.
   */
  readonly Time: string;
  /** EventBridge's event id or Scheduler's execution id, for logs only. */
  readonly EventId?: string;
  /** The stack that owns the schedule (its ARN): the `stack-id` ownership tag. */
  readonly StackId: string;
  /** The schedule's stable id in the stack (from its construct path): the `owner` tag and the metric dimension. */
  readonly Schedule: string;
  /** The OpenZFS volumes (`fsvol-…`) to snapshot. */
  readonly VolumeIds: string[];
  /** The start of every snapshot's name (`snapshotName()`). */
  readonly NamePrefix: string;
  /** User tags for every snapshot (keys sorted at synth). */
  readonly Tags?: Record<string, string>;
  /** Keep at most this many of the schedule's available snapshots per volume. */
  readonly KeepLast?: number;
  /** Delete the schedule's available snapshots older than this (seconds before the tick). */
  readonly MaxAgeSeconds?: number;
}

/** The metrics an OpenZFS snapshot schedule emits, with the one dimension `Schedule`. */
export interface OpenZfsSnapshotMetricNames extends ScheduledCopyMetricNames {
  /** Snapshots requested (or found already requested by this tick) per tick. */
  readonly created: 'SnapshotsCreated';
  /** Volumes whose snapshot could not be made in this tick (FSx's reason is in the log). */
  readonly failed: 'SnapshotsFailed';
  /** Snapshots the retention deleted. */
  readonly pruned: 'SnapshotsPruned';
  /** Snapshots the retention would delete but FSx refused to (a volume was cloned from it): kept, and tried again next tick. */
  readonly kept: 'SnapshotsKeptInUse';
}

export const OPENZFS_SNAPSHOT_METRICS: OpenZfsSnapshotMetricNames = {
  ...SCHEDULED_COPY_METRICS,
  created: 'SnapshotsCreated',
  failed: 'SnapshotsFailed',
  pruned: 'SnapshotsPruned',
  kept: 'SnapshotsKeptInUse',
};

/** FSx snapshot names: 1 to 203 of these characters. */
export const SNAPSHOT_NAME_PATTERN = /^[a-zA-Z0-9_:.-]{1,203}$/;
export const MAX_SNAPSHOT_NAME = 203;
/** What `snapshotName()` appends to the prefix: `-20260329T0130Z-` and 8 hex digits. */
export const SNAPSHOT_NAME_SUFFIX_LENGTH = '-20260329T0130Z-'.length + 8;
/** The longest name prefix: what leaves room for the suffix. */
export const MAX_NAME_PREFIX = MAX_SNAPSHOT_NAME - SNAPSHOT_NAME_SUFFIX_LENGTH;

/**
 * The name of one volume's snapshot of one tick: the prefix, the tick's scheduled minute in UTC,
 * and 8 hex digits of the tick's client token (which names the stack, schedule, volume and tick),
 * so that two schedules with the same prefix never make the same name on one volume.
 * `minute` is ISO 8601 rounded to the minute (`2026-03-29T01:30Z`); `token` is `css-` and hex.
 */
export function snapshotName(prefix: string, minute: string, token: string): string {
  const stamp = minute.replace(/[-:]/g, '').replace(/Z$/, 'Z');
  return `${prefix}-${stamp}-${token.replace(/^css-/, '').slice(0, 8)}`;
}
