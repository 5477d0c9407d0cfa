import { Duration, ITaggable, Names, TagManager } from 'aws-cdk-lib';
import * as cloudwatch from 'aws-cdk-lib/aws-cloudwatch';
import * as events from 'aws-cdk-lib/aws-events';
import * as scheduler from 'aws-cdk-lib/aws-scheduler';
import * as sns from 'aws-cdk-lib/aws-sns';
import * as sqs from 'aws-cdk-lib/aws-sqs';
import { Construct } from 'constructs';
import { HandlerOptions } from './handler-options';
import type { ScheduleHandlers } from './private/schedule-handlers';
import { FailureAlarmSpec, ScheduledCopyParts, ScheduledCopySpec, scheduleMetric, setUpScheduledCopy } from './private/scheduled-copy';
import { SCHEDULED_COPY_METRICS } from './private/scheduled-copy-contract';

/**
 * When a schedule runs, on EventBridge Scheduler: in a time zone of yours, once (`at`), or within
 * a flexible window.
 *
 * Daylight saving time: a `cron` time that falls in the spring-forward gap (02:30 in
 * Europe/Berlin on the last Sunday of March) does not happen that day, and one in the fall-back
 * hour happens only once; `rate` counts real hours.
 */
export interface SchedulerSchedule {
  /**
   * When: `ScheduleExpression.cron({ hour: '2', minute: '30', timeZone: TimeZone.EUROPE_BERLIN })`,
   * `ScheduleExpression.rate(Duration.hours(6))` or `ScheduleExpression.at(date, timeZone)`. For
   * `at`, CDK writes the date's UTC fields as the local time in `timeZone`: 02:30 in Berlin is
   * `at(new Date('2027-03-28T02:30:00Z'), TimeZone.EUROPE_BERLIN)`.
   */
  readonly expression: scheduler.ScheduleExpression;

  /**
   * Run at some time within this window after each scheduled time (1 minute to 24 hours, and
   * shorter than the schedule's interval, so that ticks arrive in order), to spread the load. The
   * copy is named and identified by the scheduled time all the same.
   *
   * @default - at the scheduled time
   */
  readonly flexibleTimeWindow?: Duration;

  /**
   * The schedule runs from this date on. Scheduler refuses a start date in the past when the
   * schedule is created or updated: once it has passed, remove it, or the next update of the
   * schedule (a change of its targets, retention or tags, which are in its input, or a library
   * upgrade that changes the input) fails the deploy.
   *
   * @default - from when it is deployed
   */
  readonly start?: Date;

  /**
   * The schedule runs until this date.
   *
   * @default - no end
   */
  readonly end?: Date;

  /**
   * How long Scheduler keeps retrying a tick it could not deliver to the function (1 minute to
   * 24 hours). Then the tick goes to the stack's dead-letter queue.
   *
   * @default Duration.hours(1)
   */
  readonly maxEventAge?: Duration;

  /**
   * How many times Scheduler retries a tick it could not deliver (0 to 185).
   *
   * @default 185
   */
  readonly retryAttempts?: number;
}

/** What every scheduled copy construct takes: when, where failures go, and the shared function's settings. */
export interface ScheduledCopyProps {
  /**
   * When to run, as an EventBridge rule (always UTC). Give this or `scheduler`, not both.
   *
   * @default - none; give `schedule` or `scheduler`
   */
  readonly schedule?: events.Schedule;

  /**
   * When to run, on EventBridge Scheduler (a time zone, `at`, a flexible window, start and end
   * dates). Give this or `schedule`, not both.
   *
   * @default - none; give `schedule` or `scheduler`
   */
  readonly scheduler?: SchedulerSchedule;

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
   * A standard queue of yours for the ticks that still fail after Lambda's two retries, or that
   * could not be delivered. The stack's schedules share one function, and so one queue: give it to
   * every schedule of the stack, or to the first one only. The library adds a statement to the
   * queue's policy that lets this stack's rules send to it; it cannot change the policy of a queue
   * you imported (`Queue.fromQueueArn`): add that statement yourself, or undeliverable rule ticks
   * are lost (Scheduler sends through its execution role and needs none).
   *
   * @default - an encrypted queue created for the stack's schedules, keeping messages 14 days
   */
  readonly deadLetterQueue?: sqs.IQueue;

  /**
   * Settings of the Lambda function, shared by every schedule in the stack (`FsxBackupSchedule`
   * and `OpenZfsSnapshotSchedule`).
   *
   * @default - see `HandlerOptions`
   */
  readonly handlerOptions?: HandlerOptions;
}

/**
 * What `FsxBackupSchedule` and `OpenZfsSnapshotSchedule` share: the rule or Scheduler schedule,
 * the failure alarm, the stack's dead-letter queue and alarm, the schedule's identity, the copies'
 * tags, and the metrics both emit. Not meant to be extended outside this library (its set-up is
 * internal): use the two constructs.
 */
export abstract class ScheduledCopy extends Construct implements ITaggable {
  /**
   * The schedule's identity in its stack, derived from its construct path: the value of the
   * ownership tag `cdk-storage-snapshots:owner` on its copies and of the metrics' `Schedule`
   * dimension. Renaming or moving the construct changes it: the copies made before then are no
   * longer this schedule's, and its retention leaves them alone.
   */
  public readonly scheduleName: string;
  private parts?: ScheduledCopyParts;

  protected constructor(scope: Construct, id: string) {
    super(scope, id);
    this.scheduleName = Names.uniqueId(this);
  }

  /** The EventBridge rule of this schedule, when it runs on a rule (`schedule`). */
  public get rule(): events.Rule | undefined {
    return this.setUp.rule;
  }

  /** The EventBridge Scheduler schedule, when it runs on Scheduler (`scheduler`). */
  public get schedulerSchedule(): scheduler.Schedule | undefined {
    return this.setUp.schedulerSchedule;
  }

  /** The alarm on this schedule's copies that could not be made and on its failed pruning. */
  public get alarm(): cloudwatch.Alarm {
    return this.setUp.alarm;
  }

  /**
   * The stack's alarm on its schedules' dead-letter queue (shared by the stack's schedules): a
   * tick that still failed after Lambda's retries, or that the function could not finish (a crash
   * or a timeout emits no metric), or that could not be delivered. A failure a retry fixed does
   * not reach it.
   */
  public get deadLetterAlarm(): cloudwatch.IAlarm {
    return this.setUp.handlers.deadLetterAlarm;
  }

  /** Where the ticks that still fail after Lambda's retries go (shared by the stack's schedules). */
  public get deadLetterQueue(): sqs.IQueue {
    return this.setUp.handlers.deadLetterQueue;
  }

  /**
   * The tags of the copies: the `tags` prop and what `Tags.of()` adds to this construct or a scope
   * above it. They apply to the copies of the ticks after the next deploy.
   */
  public get tags(): TagManager {
    return this.setUp.tags;
  }

  /** Targets whose pruning could not finish (a read or a delete failed). */
  public metricPruneFailures(props?: cloudwatch.MetricOptions): cloudwatch.Metric {
    return this.metric(SCHEDULED_COPY_METRICS.pruneFailed, props);
  }

  /** Tags of a target that did not fit in a copy's 50 tags (and were not copied). */
  public metricCopiedTagsDropped(props?: cloudwatch.MetricOptions): cloudwatch.Metric {
    return this.metric(SCHEDULED_COPY_METRICS.tagsDropped, props);
  }

  /**
   * Targets a tick made no copy of because retention had already passed the tick (a retry that
   * came after `keepLast` copies were made, or more than `maxAge` after the latest): a copy then
   * could be a second one of the tick.
   */
  public metricStaleTicksSkipped(props?: cloudwatch.MetricOptions): cloudwatch.Metric {
    return this.metric(SCHEDULED_COPY_METRICS.stale, props);
  }

  /** One of the schedule's metrics (sum over 5 minutes by default). */
  public metric(metricName: string, props?: cloudwatch.MetricOptions): cloudwatch.Metric {
    return scheduleMetric(this.scheduleName, metricName, props);
  }

  /**
   * Checks the schedule props and makes the rule or Scheduler schedule (with `input`), the tags,
   * and the failure alarm; the stack's handlers, returned to grant on.
   *
   * @internal
   */
  protected _setUp(
    props: ScheduledCopyProps & { readonly tags?: Record<string, string> },
    spec: ScheduledCopySpec,
    input: object,
    alarm: FailureAlarmSpec,
  ): ScheduleHandlers {
    this.parts = setUpScheduledCopy(this, props, spec, input, alarm);
    return this.parts.handlers;
  }

  private get setUp(): ScheduledCopyParts {
    if (!this.parts) throw new Error(`${this.node.path}: a ScheduledCopy was used before its constructor set it up`);
    return this.parts;
  }
}
