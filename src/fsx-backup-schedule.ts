import { Duration, Stack } from 'aws-cdk-lib';
import * as cloudwatch from 'aws-cdk-lib/aws-cloudwatch';
import { Construct } from 'constructs';
import { BackupTarget } from './backup-target';
import { FSX_BACKUP_METRICS as METRICS, type FsxBackupTickInput } from './private/fsx-backup-contract';
import { FSX_DESCRIBE_REASON, FSX_VOLUME_ARN_REASON } from './private/nag';
import { stackOwnershipCondition } from './private/ownership-tags';
import { ScheduleHandlers } from './private/schedule-handlers';
import { ScheduledCopySpec, validateRetention } from './private/scheduled-copy';
import { invalid } from './private/validation';
import { ScheduledCopy, ScheduledCopyProps } from './scheduled-copy';

/** How many of a schedule's backups to keep, per target. */
export interface BackupRetention {
  /**
   * Keep at most this many of the schedule's `AVAILABLE` backups of each target (at least 1); older
   * ones are deleted after each tick.
   *
   * @default - no limit by count
   */
  readonly keepLast?: number;

  /**
   * Delete the schedule's `AVAILABLE` backups older than this (at least one day), measured from
   * the scheduled time of the tick.
   *
   * @default - no limit by age
   */
  readonly maxAge?: Duration;
}

/** Properties of an `FsxBackupSchedule`. */
export interface FsxBackupScheduleProps extends ScheduledCopyProps {
  /**
   * Windows, Lustre or OpenZFS file systems to back up (`fs-…`, or tokens).
   *
   * @default - none; give at least one of `fileSystemIds`, `volumeIds` and `targets`
   */
  readonly fileSystemIds?: string[];

  /**
   * ONTAP volumes to back up (`fsvol-…`, or tokens).
   *
   * @default - none; give at least one of `fileSystemIds`, `volumeIds` and `targets`
   */
  readonly volumeIds?: string[];

  /**
   * File systems and volumes to back up, from constructs (`BackupTarget.fileSystem(lustre)`,
   * `BackupTarget.ontapVolume(cfnVolume)`) or ids. Read when the schedule is constructed: adding
   * to the array afterwards changes nothing.
   *
   * @default - none; give at least one of `fileSystemIds`, `volumeIds` and `targets`
   */
  readonly targets?: BackupTarget[];

  /**
   * Which of this schedule's backups to delete after each tick. Only backups that carry this
   * schedule's ownership tags and are `AVAILABLE` are ever deleted, never the newest available one
   * of a target, and none of a target whose backup failed in that tick. Copies of those backups
   * (`CopyBackup`, which can copy the tags) and backups FSx or AWS Backup made are never deleted.
   *
   * Retention follows the schedule's identity (`scheduleName` and the stack's id): backups made
   * before the construct was renamed or moved in the tree, or before the stack was deleted and
   * created again, carry the old identity, and this schedule never prunes them (delete them
   * yourself when they are no longer needed).
   *
   * @default - keep every backup
   */
  readonly retention?: BackupRetention;

  /**
   * Tags for every backup, besides the library's own (its 5 ownership tags and the tick's: 6 of
   * the 50 tags AWS allows). Tags added with `Tags.of()` to the construct or a scope above it are
   * added too.
   * Keys and values may contain only letters, numbers, spaces and `_ . : / = + - @` (FSx's rule).
   * When a file system or volume has `CopyTagsToBackups` on, its tags are copied as well (these
   * tags win), as FSx would have done without tags in the request.
   *
   * @default - only the copied tags and the library's ownership tags
   */
  readonly tags?: { [key: string]: string };
}

/**
 * FSx backups of file systems and ONTAP volumes on a schedule, at most once an hour: an
 * EventBridge rule (`schedule`, in UTC) or an EventBridge Scheduler schedule (`scheduler`, in a
 * time zone of yours) invokes the stack's one scheduled function, which calls `CreateBackup` for
 * each target with a client token derived from the schedule, the target and the tick's scheduled
 * time (so that a duplicate delivery or a retry of a tick never makes a second backup), prunes the
 * schedule's own old backups, and reports what failed in CloudWatch metrics and an alarm.
 *
 * @example
 *
 * declare const topic: sns.ITopic;
 * new FsxBackupSchedule(this, 'Nightly', {
 *   scheduler: {
 *     expression: scheduler.ScheduleExpression.cron({ hour: '2', minute: '30', timeZone: TimeZone.EUROPE_BERLIN }),
 *     flexibleTimeWindow: Duration.minutes(15),
 *   },
 *   fileSystemIds: ['fs-0123456789abcdef0'],
 *   volumeIds: ['fsvol-0123456789abcdef0'],
 *   retention: { keepLast: 14, maxAge: Duration.days(30) },
 *   tags: { costCenter: '42' },
 *   alarmTopic: topic,
 * });
 */
export class FsxBackupSchedule extends ScheduledCopy {
  /** What the schedule backs up: a snapshot taken at construction (changing this array changes nothing). */
  public readonly targets: BackupTarget[];

  constructor(scope: Construct, id: string, props: FsxBackupScheduleProps) {
    super(scope, id);
    this.targets = [
      ...(props.fileSystemIds ?? []).map((i) => BackupTarget.fileSystemId(i)),
      ...(props.volumeIds ?? []).map((i) => BackupTarget.volumeId(i)),
      ...(props.targets ?? []),
    ];
    this.validateTargets(props);
    validateRetention(this, props.retention, Duration.days(1), 'backup');

    // Time, EventId and Tags are filled in by the rule or Scheduler, and at synth.
    const input: Omit<FsxBackupTickInput, 'Time' | 'EventId' | 'Tags'> = {
      Operation: 'FsxBackup',
      StackId: Stack.of(this).stackId,
      Schedule: this.scheduleName,
      Targets: this.targets.map((t) => t._input()),
      KeepLast: props.retention?.keepLast,
      MaxAgeSeconds: props.retention?.maxAge?.toSeconds(),
    };
    const handlers = this._setUp(props, SPEC, input, {
      description: `FSx backups of ${this.node.path} failed, or its old backups could not be pruned: see the function's logs`,
      label: 'Failed backups and prunes',
      metrics: { failed: this.metricBackupsFailed(), pruneFailed: this.metricPruneFailures() },
    });
    this.grant(handlers);
  }

  /** Backups requested per tick (a replay of a tick counts its backups again). */
  public metricBackupsStarted(props?: cloudwatch.MetricOptions): cloudwatch.Metric {
    return this.metric(METRICS.started, props);
  }

  /**
   * Backups that failed: targets whose backup could not be requested, a backup of this tick found
   * `FAILED` (on a later delivery of the tick), and an earlier tick's backup found `FAILED` when
   * the next backup of its target is made (FSx makes one at a time, so the earlier one has
   * finished by then). A backup can be counted twice when a tick is delivered more than once.
   */
  public metricBackupsFailed(props?: cloudwatch.MetricOptions): cloudwatch.Metric {
    return this.metric(METRICS.failed, props);
  }

  /** Backups the retention deleted. */
  public metricBackupsPruned(props?: cloudwatch.MetricOptions): cloudwatch.Metric {
    return this.metric(METRICS.pruned, props);
  }

  private validateTargets(props: FsxBackupScheduleProps): void {
    if (this.targets.length === 0) {
      invalid(this, 'fileSystemIds', 'give at least one file system or volume to back up (fileSystemIds, volumeIds or targets)');
    }
    const fromIds = (props.fileSystemIds ?? []).length;
    const fromVolumeIds = fromIds + (props.volumeIds ?? []).length;
    const seen = new Set<string>();
    this.targets.forEach((t, i) => {
      const prop = i < fromIds ? 'fileSystemIds' : i < fromVolumeIds ? 'volumeIds' : 'targets';
      t._validate(this, prop);
      if (seen.has(t.id)) invalid(this, prop, `${t.id} is given twice: each target is backed up once per tick`);
      seen.add(t.id);
    });
  }

  private grant(handlers: ScheduleHandlers): void {
    const stack = Stack.of(this);
    const backups = stack.formatArn({ service: 'fsx', resource: 'backup', resourceName: '*' });
    const targetArns = this.targets.map((t) => t._arn(stack));
    // CreateBackup authorizes the file system or volume and the new backup; tags on creation need
    // TagResource too, which IAM cannot limit to creation (the ownership check in code guards
    // pruning against a backup tagged to look like ours).
    handlers.allow(['fsx:CreateBackup'], [...targetArns, backups]);
    handlers.allow(['fsx:TagResource'], [backups], {
      StringEquals: stackOwnershipCondition('RequestTag', stack.stackId),
    });
    handlers.allow(['fsx:ListTagsForResource'], targetArns);
    // Deletes only of backups tagged as this stack's: one statement for the stack's schedules,
    // which share the role anyway (a statement per schedule would grant the same union and grow
    // the policy with each schedule). Which schedule and target a backup belongs to is checked in
    // code before each delete, on the tags the service just listed.
    handlers.allow(['fsx:DeleteBackup'], [backups], {
      StringEquals: stackOwnershipCondition('ResourceTag', stack.stackId),
    });
    // The describe calls have no resource-level permissions.
    handlers.allow(['fsx:DescribeBackups', 'fsx:DescribeFileSystems', 'fsx:DescribeVolumes'], ['*']);
  }
}

const SPEC: ScheduledCopySpec = {
  resourceType: 'Custom::FsxBackupSchedule',
  wildcardReasons: [
    FSX_VOLUME_ARN_REASON,
    {
      id: 'AwsSolutions-IAM5',
      reason: 'The id of a backup is not known before it is made (FSx backup ARNs do not name their file system): ' +
        'creating needs backup/*, tagging the library\'s request tags, and deleting this stack\'s ownership tags.',
      appliesTo: [{ regex: '/^Resource::arn:<AWS::Partition>:fsx:[^:]*:[^:]*:backup\\/\\*$/' }],
    },
    FSX_DESCRIBE_REASON,
  ],
  cadence: { minMinutes: 60, reason: 'FSx backups take a while and each one is kept' },
  description: 'scheduled FSx backups',
  largeProp: 'targets',
};
