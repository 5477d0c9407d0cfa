import { Duration, Stack, Token } from 'aws-cdk-lib';
import * as cloudwatch from 'aws-cdk-lib/aws-cloudwatch';
import * as fsx from 'aws-cdk-lib/aws-fsx';
import { Construct } from 'constructs';
import { FSX_DESCRIBE_REASON, FSX_VOLUME_ARN_REASON, OPENZFS_SNAPSHOT_ARN_REASON } from './private/nag';
import {
  MAX_NAME_PREFIX,
  OPENZFS_SNAPSHOT_METRICS as METRICS,
  type OpenZfsSnapshotTickInput,
} from './private/openzfs-snapshot-schedule-contract';
import { stackOwnershipCondition } from './private/ownership-tags';
import { ScheduleHandlers } from './private/schedule-handlers';
import { ScheduledCopySpec, validateRetention } from './private/scheduled-copy';
import { invalid, validatePattern } from './private/validation';
import { ScheduledCopy, ScheduledCopyProps } from './scheduled-copy';

/** How many of a schedule's snapshots to keep, per volume. */
export interface SnapshotRetention {
  /**
   * Keep at most this many of the schedule's `AVAILABLE` snapshots of each volume (at least 1);
   * older ones are deleted after each tick.
   *
   * @default - no limit by count
   */
  readonly keepLast?: number;

  /**
   * Delete the schedule's `AVAILABLE` snapshots older than this (at least one hour), measured
   * from the scheduled time of the tick.
   *
   * @default - no limit by age
   */
  readonly maxAge?: Duration;
}

/** Properties of an `OpenZfsSnapshotSchedule`. */
export interface OpenZfsSnapshotScheduleProps extends ScheduledCopyProps {
  /**
   * FSx for OpenZFS volumes to snapshot (`fsvol-…`, or tokens).
   *
   * @default - none; give at least one of `volumeIds` and `volumes`
   */
  readonly volumeIds?: string[];

  /**
   * FSx for OpenZFS volumes of this app to snapshot (their `volumeType` must be `OPENZFS`).
   *
   * @default - none; give at least one of `volumeIds` and `volumes`
   */
  readonly volumes?: fsx.CfnVolume[];

  /**
   * The start of every snapshot's name. A name is the prefix, the tick's scheduled time in UTC
   * and 8 hex digits unique to the schedule, volume and tick: `hourly-20261203T1400Z-1a2b3c4d`.
   * Letters, digits and `_ : . -`, at most 179 characters (FSx's rule for names, less the suffix).
   *
   * @default - the construct's id, with other characters replaced by `-`
   */
  readonly namePrefix?: string;

  /**
   * Which of this schedule's snapshots to delete after each tick. Only snapshots that carry this
   * schedule's ownership tags and are `AVAILABLE` are ever deleted, never the newest available one
   * of a volume, and none of a volume whose snapshot failed in that tick. A snapshot FSx refuses
   * to delete because a volume was cloned from it is kept (counted in
   * `metricSnapshotsKeptInUse()`) and tried again at the next tick.
   *
   * Retention follows the schedule's identity (`scheduleName` and the stack's id): snapshots made
   * before the construct was renamed or moved in the tree are never pruned by it.
   *
   * @default - keep every snapshot
   */
  readonly retention?: SnapshotRetention;

  /**
   * Tags for every snapshot, besides the library's own (its 5 ownership tags and the tick's: 6 of
   * the 50 tags AWS allows). Tags added with `Tags.of()` are added too. Keys and values may contain only
   * letters, numbers, spaces and `_ . : / = + - @`. When a volume has `CopyTagsToSnapshots` on,
   * its tags are copied as well (these tags win), as FSx would have done without tags in the
   * request.
   *
   * @default - only the copied tags and the library's ownership tags
   */
  readonly tags?: { [key: string]: string };
}

/** What a volume id looks like. */
const VOLUME_ID = /^fsvol-[0-9a-f]{17}$/;

/**
 * FSx for OpenZFS snapshots of one or more volumes on a schedule, as often as every 15 minutes:
 * an EventBridge rule (`schedule`, in UTC) or an EventBridge Scheduler schedule (`scheduler`, in a
 * time zone of yours) invokes the stack's one scheduled function, which calls `CreateSnapshot` for
 * each volume with a client token derived from the schedule, the volume and the tick's scheduled
 * time (a duplicate delivery or a retry never makes a second snapshot), prunes the schedule's own
 * old snapshots, and reports what failed in CloudWatch metrics and an alarm. Volumes are
 * independent: one that fails does not stop the others.
 *
 * @example
 *
 * new OpenZfsSnapshotSchedule(this, 'Hourly', {
 *   scheduler: {
 *     expression: scheduler.ScheduleExpression.cron({ minute: '0', timeZone: TimeZone.EUROPE_BERLIN }),
 *   },
 *   volumeIds: ['fsvol-0123456789abcdef0'],
 *   namePrefix: 'hourly',
 *   retention: { keepLast: 24, maxAge: Duration.days(2) },
 * });
 */
export class OpenZfsSnapshotSchedule extends ScheduledCopy {
  /** The volumes snapshotted (ids or tokens). */
  public readonly volumeIds: string[];
  /** The start of every snapshot's name. */
  public readonly namePrefix: string;

  constructor(scope: Construct, id: string, props: OpenZfsSnapshotScheduleProps) {
    super(scope, id);
    this.validateVolumes(props);
    this.volumeIds = [...(props.volumeIds ?? []), ...(props.volumes ?? []).map((v) => v.attrVolumeId)];
    this.namePrefix = props.namePrefix ?? id.replace(/[^a-zA-Z0-9_:.-]/g, '-').slice(0, MAX_NAME_PREFIX);
    validatePattern(this, 'namePrefix', this.namePrefix, /^[a-zA-Z0-9_:.-]+$/,
      'may contain only letters, digits and _ : . - (FSx\'s rule for snapshot names), and not be empty');
    if (!Token.isUnresolved(this.namePrefix) && this.namePrefix.length > MAX_NAME_PREFIX) {
      invalid(this, 'namePrefix', `must be at most ${MAX_NAME_PREFIX} characters (FSx allows 203 in a name, and the tick and a hash take 24), not ${this.namePrefix.length}`);
    }
    validateRetention(this, props.retention, Duration.hours(1), 'snapshot');

    // Time, EventId and Tags are filled in by the rule or Scheduler, and at synth.
    const input: Omit<OpenZfsSnapshotTickInput, 'Time' | 'EventId' | 'Tags'> = {
      Operation: 'OpenZfsSnapshot',
      StackId: Stack.of(this).stackId,
      Schedule: this.scheduleName,
      VolumeIds: this.volumeIds,
      NamePrefix: this.namePrefix,
      KeepLast: props.retention?.keepLast,
      MaxAgeSeconds: props.retention?.maxAge?.toSeconds(),
    };
    const handlers = this._setUp(props, SPEC, input, {
      description: `OpenZFS snapshots of ${this.node.path} could not be made, or its old snapshots could not be pruned: see the function's logs`,
      label: 'Failed snapshots and prunes',
      metrics: { failed: this.metricSnapshotsFailed(), pruneFailed: this.metricPruneFailures() },
    });
    this.grant(handlers, props);
  }

  /** Snapshots requested per tick (a replay of a tick counts its snapshots again). */
  public metricSnapshotsCreated(props?: cloudwatch.MetricOptions): cloudwatch.Metric {
    return this.metric(METRICS.created, props);
  }

  /** Volumes whose snapshot could not be made in a tick (FSx's reason is in the function's logs). */
  public metricSnapshotsFailed(props?: cloudwatch.MetricOptions): cloudwatch.Metric {
    return this.metric(METRICS.failed, props);
  }

  /** Snapshots the retention deleted. */
  public metricSnapshotsPruned(props?: cloudwatch.MetricOptions): cloudwatch.Metric {
    return this.metric(METRICS.pruned, props);
  }

  /** Snapshots the retention would have deleted, kept because FSx refused (a volume was cloned from them). */
  public metricSnapshotsKeptInUse(props?: cloudwatch.MetricOptions): cloudwatch.Metric {
    return this.metric(METRICS.kept, props);
  }

  private validateVolumes(props: OpenZfsSnapshotScheduleProps): void {
    const ids = props.volumeIds ?? [];
    const volumes = props.volumes ?? [];
    if (ids.length + volumes.length === 0) invalid(this, 'volumeIds', 'give at least one OpenZFS volume to snapshot (volumeIds or volumes)');
    const seen = new Set<string>();
    for (const id of ids) {
      validatePattern(this, 'volumeIds', id, VOLUME_ID, 'must be "fsvol-" followed by 17 lowercase hex digits');
      if (seen.has(id)) invalid(this, 'volumeIds', `${id} is given twice: each volume is snapshotted once per tick`);
      seen.add(id);
    }
    for (const volume of volumes) {
      if (!Token.isUnresolved(volume.volumeType) && volume.volumeType !== 'OPENZFS') {
        invalid(this, 'volumes', `${volume.node.path} is an ${volume.volumeType} volume: FSx snapshots are of OpenZFS volumes ` +
          '(back up ONTAP volumes with FsxBackupSchedule)', volume.volumeType);
      }
      if (seen.has(volume.node.path)) invalid(this, 'volumes', `${volume.node.path} is given twice: each volume is snapshotted once per tick`);
      seen.add(volume.node.path);
    }
  }

  private grant(handlers: ScheduleHandlers, props: OpenZfsSnapshotScheduleProps): void {
    const stack = Stack.of(this);
    const fsxArn = (resource: string, resourceName: string) => stack.formatArn({ service: 'fsx', resource, resourceName });
    // A volume ARN names its file system (volume/<fs id>/<volume id>), which an id does not tell.
    const volumeArns = [
      ...(props.volumeIds ?? []).map((id) => fsxArn('volume', `*/${id}`)),
      ...(props.volumes ?? []).map((v) => v.attrResourceArn),
    ];
    // A snapshot's ARN names its volume: snapshot/<volume id>/<snapshot id>.
    const snapshots = this.volumeIds.map((id) => fsxArn('snapshot', `${id}/*`));
    // CreateSnapshot authorizes the volume and the new snapshot; tags on creation need
    // TagResource too, which IAM cannot limit to creation (the ownership check in code guards
    // pruning against a snapshot tagged to look like ours).
    handlers.allow(['fsx:CreateSnapshot'], [...volumeArns, ...snapshots]);
    handlers.allow(['fsx:TagResource'], snapshots, { StringEquals: stackOwnershipCondition('RequestTag', stack.stackId) });
    handlers.allow(['fsx:ListTagsForResource'], volumeArns);
    // Deletes only of snapshots tagged as this stack's; which schedule and volume a snapshot
    // belongs to is checked in code before each delete, on the tags the service just listed.
    handlers.allow(['fsx:DeleteSnapshot'], snapshots, { StringEquals: stackOwnershipCondition('ResourceTag', stack.stackId) });
    // The describe calls have no resource-level permissions.
    handlers.allow(['fsx:DescribeSnapshots', 'fsx:DescribeVolumes'], ['*']);
  }
}

const SPEC: ScheduledCopySpec = {
  resourceType: 'Custom::OpenZfsSnapshotSchedule',
  wildcardReasons: [FSX_VOLUME_ARN_REASON, OPENZFS_SNAPSHOT_ARN_REASON, FSX_DESCRIBE_REASON],
  // FSx documents no minimum interval for snapshots; AWS's own sample schedules them every 6 hours.
  cadence: { minMinutes: 15, reason: 'each tick lists and prunes every volume\'s snapshots' },
  description: 'scheduled OpenZFS snapshots',
  largeProp: 'volumeIds',
};
