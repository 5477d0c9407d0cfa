import { Duration } from 'aws-cdk-lib';
import * as events from 'aws-cdk-lib/aws-events';
import * as scheduler from 'aws-cdk-lib/aws-scheduler';
import * as sns from 'aws-cdk-lib/aws-sns';
import * as sqs from 'aws-cdk-lib/aws-sqs';
import { HandlerOptions } from './handler-options';

/**
 * When a schedule runs, on EventBridge Scheduler: in a time zone of yours, once (`at`), or within
 * a flexible window.
 *
 * Daylight saving time: a `cron` time that falls in the spring-forward gap (02:30 in
 * Europe/Berlin on the last Sunday of March) does not happen that day, and one in the fall-back
 * hour happens once; `rate` counts real hours.
 */
export interface SchedulerSchedule {
  /**
   * When: `ScheduleExpression.cron({ hour: '2', minute: '30', timeZone: TimeZone.EUROPE_BERLIN })`,
   * `ScheduleExpression.rate(Duration.hours(6))` or `ScheduleExpression.at(date, timeZone)`.
   */
  readonly expression: scheduler.ScheduleExpression;

  /**
   * Run at some time within this window after each scheduled time (1 minute to 24 hours), to
   * spread the load. The copy is named and identified by the scheduled time all the same.
   *
   * @default - at the scheduled time
   */
  readonly flexibleTimeWindow?: Duration;

  /**
   * The schedule runs from this date on. Scheduler refuses a start date in the past when the
   * schedule is created or updated: once it has passed, remove it (any later change to the
   * schedule, such as a tag, would otherwise fail the deploy).
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
   * A queue of yours for the ticks that still fail after Lambda's two retries, or that could not
   * be delivered. The stack's schedules share one function, and so one queue: give it to every
   * schedule of the stack, or to the first one only.
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
