import { Duration, ITaggable, Lazy, Names, Stack, TagManager, Token } from 'aws-cdk-lib';
import * as cloudwatch from 'aws-cdk-lib/aws-cloudwatch';
import * as cloudwatchActions from 'aws-cdk-lib/aws-cloudwatch-actions';
import * as events from 'aws-cdk-lib/aws-events';
import * as sns from 'aws-cdk-lib/aws-sns';
import * as sqs from 'aws-cdk-lib/aws-sqs';
import { Construct } from 'constructs';
import { BackupTarget } from './backup-target';
import { HandlerOptions } from './handler-options';
import { CopyTags } from './private/copy-tags';
import { FSX_BACKUP_METRICS as METRICS, type FsxBackupTickInput } from './private/fsx-backup-contract';
import { OWNERSHIP_TAG_COUNT, stackOwnershipCondition } from './private/ownership-tags';
import { validateSchedule } from './private/schedule-expression';
import { ScheduleHandlers } from './private/schedule-handlers';
import { METRIC_NAMESPACE as NAMESPACE } from './private/shared-values';
import { HandlerSpec } from './private/stack-handlers';
import { FSX_TAG_CHARACTERS, invalid, validateTags } from './private/validation';

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
export interface FsxBackupScheduleProps {
  /**
   * When to take the backups: at most once an hour (a `rate` of at least 1 hour, or a `cron` whose
   * minute field is one number). EventBridge rules take only `rate` and `cron` expressions (`at`
   * is EventBridge Scheduler's).
   */
  readonly schedule: events.Schedule;

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
   * Tags for every backup, besides the library's own ownership tags (which take 5 of the 50 tags
   * AWS allows). Tags added with `Tags.of()` to the construct or a scope above it are added too.
   * Keys and values may contain only letters, numbers, spaces and `_ . : / = + - @` (FSx's rule).
   * When a file system or volume has `CopyTagsToBackups` on, its tags are copied as well (these
   * tags win), as FSx would have done without tags in the request.
   *
   * @default - only the copied tags and the library's ownership tags
   */
  readonly tags?: { [key: string]: string };

  /**
   * A topic to notify when the failure alarm or the stack's dead-letter alarm goes off.
   *
   * @default - the alarm has no action
   */
  readonly alarmTopic?: sns.ITopic;

  /**
   * Whether the schedule runs.
   *
   * @default true
   */
  readonly enabled?: boolean;

  /**
   * A queue of yours for the invocations that still fail after Lambda's two retries. The stack's
   * schedules share one function, and so one queue: give it to every schedule of the stack, or
   * to the first one only.
   *
   * @default - an encrypted queue created for the stack's schedules, keeping messages 14 days
   */
  readonly deadLetterQueue?: sqs.IQueue;

  /**
   * Settings of the Lambda function, shared by every `FsxBackupSchedule` in the stack.
   *
   * @default - see `HandlerOptions`
   */
  readonly handlerOptions?: HandlerOptions;
}

/** EventBridge allows 8,192 characters of input template. */
const MAX_INPUT_LENGTH = 8192;
/** What a token (the stack id, a construct's id) takes at most once resolved, for the size estimate. */
const TOKEN_LENGTH_ESTIMATE = 128;

/**
 * FSx backups of file systems and ONTAP volumes on a schedule: one EventBridge rule that invokes
 * the stack's one scheduled function, which calls `CreateBackup` for each target with a client
 * token derived from the schedule, the target and the scheduled time (so that a duplicate delivery
 * or a retry of a tick never makes a second backup), prunes the schedule's own old backups, and
 * reports what failed in CloudWatch metrics and an alarm.
 *
 * @example
 *
 * declare const topic: sns.ITopic;
 * new FsxBackupSchedule(this, 'Nightly', {
 *   schedule: events.Schedule.cron({ hour: '2', minute: '0' }),
 *   fileSystemIds: ['fs-0123456789abcdef0'],
 *   volumeIds: ['fsvol-0123456789abcdef0'],
 *   retention: { keepLast: 14, maxAge: Duration.days(30) },
 *   tags: { costCenter: '42' },
 *   alarmTopic: topic,
 * });
 */
export class FsxBackupSchedule extends Construct implements ITaggable {
  /** The EventBridge rule of this schedule. */
  public readonly rule: events.Rule;
  /** The alarm on failed backups (including those that failed after they were started) and failed pruning. */
  public readonly alarm: cloudwatch.Alarm;
  /**
   * The stack's alarm on its schedules' dead-letter queue (shared by the stack's schedules): a
   * tick that still failed after Lambda's retries, or that the function could not finish (a
   * crash or a timeout emits no metric). A failure a retry fixed does not reach it.
   */
  public readonly deadLetterAlarm: cloudwatch.IAlarm;
  /** Where the invocations that still fail after Lambda's retries go (shared by the stack's schedules). */
  public readonly deadLetterQueue: sqs.IQueue;
  /**
   * The schedule's identity in its stack, derived from its construct path: the value of the
   * ownership tag `cdk-storage-snapshots:owner` on its backups and of the metrics' `Schedule`
   * dimension. Renaming or moving the construct changes it: the backups made before then are
   * no longer this schedule's, and its retention leaves them alone.
   */
  public readonly scheduleName: string;
  /** What the schedule backs up: a snapshot taken at construction (changing this array changes nothing). */
  public readonly targets: BackupTarget[];
  /**
   * The tags of the backups: the `tags` prop and what `Tags.of()` adds to this construct or a
   * scope above it. They apply to the backups of the ticks after the next deploy.
   */
  public readonly tags: TagManager;

  constructor(scope: Construct, id: string, props: FsxBackupScheduleProps) {
    super(scope, id);
    this.scheduleName = Names.uniqueId(this);
    this.targets = [
      ...(props.fileSystemIds ?? []).map((i) => BackupTarget.fileSystemId(i)),
      ...(props.volumeIds ?? []).map((i) => BackupTarget.volumeId(i)),
      ...(props.targets ?? []),
    ];
    this.validateTargets(props);
    validateSchedule(this, props.schedule);
    validateRetention(this, props.retention);
    validateTags(this, props.tags, OWNERSHIP_TAG_COUNT, 'tags', FSX_TAG_CHARACTERS);
    this.tags = new CopyTags(this, 'Custom::FsxBackupSchedule', props.tags, OWNERSHIP_TAG_COUNT).tags;

    const handlers = ScheduleHandlers.of(this, HANDLERS, props.handlerOptions, props.deadLetterQueue);
    this.deadLetterQueue = handlers.deadLetterQueue;
    this.deadLetterAlarm = handlers.deadLetterAlarm;
    this.grant(handlers);

    const stack = Stack.of(this);
    const input: FsxBackupTickInput = {
      Time: events.EventField.time,
      EventId: events.EventField.eventId,
      StackId: stack.stackId,
      Schedule: this.scheduleName,
      Targets: this.targets.map((t) => t._input()),
      // Rendered at synth, once Tags.of() has added its tags.
      Tags: Lazy.any({ produce: () => sortedTags(this.tags.renderTags()) }) as unknown as Record<string, string>,
      KeepLast: props.retention?.keepLast,
      MaxAgeSeconds: props.retention?.maxAge?.toSeconds(),
    };
    // Checked once Tags.of() has added its tags (they are part of the input, and FSx's characters apply to them).
    this.node.addValidation({
      validate: () => {
        const tags = sortedTags(this.tags.renderTags());
        try {
          validateTags(this, tags, OWNERSHIP_TAG_COUNT, 'tags (with those added by Tags.of)', FSX_TAG_CHARACTERS);
          this.validateInputSize({ ...input, Tags: tags });
          return [];
        } catch (err) {
          return [(err as Error).message];
        }
      },
    });

    this.rule = new events.Rule(this, 'Rule', {
      ruleName: handlers.ruleName(this),
      schedule: props.schedule,
      enabled: props.enabled ?? true,
      // Nothing that changes with the props: a description edit is a needless update of the rule.
      description: `cdk-storage-snapshots: scheduled FSx backups (${this.node.path})`,
    });
    handlers.addSchedule(this.rule, events.RuleTargetInput.fromObject(input));

    this.alarm = new cloudwatch.Alarm(this, 'FailureAlarm', {
      alarmDescription: `FSx backups of ${this.node.path} failed, or its old backups could not be pruned: see the function's logs`,
      metric: new cloudwatch.MathExpression({
        expression: 'FILL(failed, 0) + FILL(pruneFailed, 0)',
        usingMetrics: { failed: this.metricBackupsFailed(), pruneFailed: this.metricPruneFailures() },
        label: 'Failed backups and prunes',
        period: Duration.minutes(5),
      }),
      threshold: 1,
      comparisonOperator: cloudwatch.ComparisonOperator.GREATER_THAN_OR_EQUAL_TO_THRESHOLD,
      evaluationPeriods: 1,
      treatMissingData: cloudwatch.TreatMissingData.NOT_BREACHING,
    });
    if (props.alarmTopic) {
      this.alarm.addAlarmAction(new cloudwatchActions.SnsAction(props.alarmTopic));
      handlers.notify(props.alarmTopic);
    }
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

  /** Targets whose pruning could not finish (a read or a delete failed). */
  public metricPruneFailures(props?: cloudwatch.MetricOptions): cloudwatch.Metric {
    return this.metric(METRICS.pruneFailed, props);
  }

  /** Tags of a file system or volume that did not fit in a backup's 50 tags (and were not copied). */
  public metricCopiedTagsDropped(props?: cloudwatch.MetricOptions): cloudwatch.Metric {
    return this.metric(METRICS.tagsDropped, props);
  }

  /** One of the schedule's metrics (sum over 5 minutes by default). */
  public metric(metricName: string, props?: cloudwatch.MetricOptions): cloudwatch.Metric {
    return new cloudwatch.Metric({
      namespace: NAMESPACE,
      metricName,
      dimensionsMap: { Schedule: this.scheduleName },
      statistic: cloudwatch.Stats.SUM,
      period: Duration.minutes(5),
      ...props,
    });
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

  private validateInputSize(input: FsxBackupTickInput): void {
    const estimate = JSON.stringify(input, (_key, value) =>
      (typeof value === 'string' && Token.isUnresolved(value) ? 'x'.repeat(TOKEN_LENGTH_ESTIMATE) : value)).length;
    if (estimate > MAX_INPUT_LENGTH) {
      invalid(this, 'targets', `the schedule's input (its targets and tags) takes about ${estimate} characters, more than the ` +
        `${MAX_INPUT_LENGTH} EventBridge allows for a rule target's input: split the targets across two schedules`);
    }
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

const HANDLERS: HandlerSpec = {
  kind: 'FsxBackupSchedule',
  handler: 'fsx-backup-schedule',
  wildcardReasons: [
    {
      id: 'AwsSolutions-IAM5',
      reason: 'An ONTAP volume ARN names its file system (volume/<fs id>/<volume id>), which only the volume id does not tell: ' +
        'volume/*/<volume id> is the one volume.',
      appliesTo: [{ regex: '/^Resource::arn:<AWS::Partition>:fsx:[^:]*:[^:]*:volume\\/\\*\\/.+$/' }],
    },
    {
      id: 'AwsSolutions-IAM5',
      reason: 'The id of a backup is not known before it is made (FSx backup ARNs do not name their file system): ' +
        'creating needs backup/*, tagging the library\'s request tags, and deleting this stack\'s ownership tags.',
      appliesTo: [{ regex: '/^Resource::arn:<AWS::Partition>:fsx:[^:]*:[^:]*:backup\\/\\*$/' }],
    },
    {
      id: 'AwsSolutions-IAM5',
      reason: 'fsx:DescribeBackups, fsx:DescribeFileSystems and fsx:DescribeVolumes have no resource-level permissions.',
      appliesTo: ['Resource::*'],
    },
  ],
};

function validateRetention(scope: Construct, retention: BackupRetention | undefined): void {
  if (!retention) return;
  const { keepLast, maxAge } = retention;
  if (keepLast === undefined && maxAge === undefined) {
    invalid(scope, 'retention', 'give keepLast, maxAge or both (leave retention out to keep every backup)');
  }
  if (keepLast !== undefined && !Token.isUnresolved(keepLast) && (!Number.isInteger(keepLast) || keepLast < 1)) {
    invalid(scope, 'retention.keepLast', 'must be a whole number of at least 1 (the newest backup is always kept)', keepLast);
  }
  if (maxAge !== undefined && !Token.isUnresolved(maxAge.toSeconds()) && maxAge.toSeconds() < Duration.days(1).toSeconds()) {
    invalid(scope, 'retention.maxAge', `must be at least 1 day, not ${maxAge.toHumanString()}`);
  }
}

function sortedTags(tags: Record<string, string> | undefined): Record<string, string> | undefined {
  if (!tags || Object.keys(tags).length === 0) return undefined;
  return Object.fromEntries(Object.entries(tags).sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0)));
}
