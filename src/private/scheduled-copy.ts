import { Duration, Lazy, TagManager, Token } from 'aws-cdk-lib';
import * as cloudwatch from 'aws-cdk-lib/aws-cloudwatch';
import * as cloudwatchActions from 'aws-cdk-lib/aws-cloudwatch-actions';
import * as events from 'aws-cdk-lib/aws-events';
import * as scheduler from 'aws-cdk-lib/aws-scheduler';
import { Construct } from 'constructs';
import type { ScheduledCopyProps } from '../scheduled-copy';
import { CopyTags } from './copy-tags';
import { NagSuppression } from './nag';
import { SCHEDULED_COPY_TAG_COUNT } from './ownership-tags';
import { Cadence, validateRuleSchedule, validateSchedulerSchedule } from './schedule-expression';
import { ScheduleHandlers } from './schedule-handlers';
import { METRIC_NAMESPACE } from './shared-values';
import { FSX_TAG_CHARACTERS, invalid, validateTags } from './validation';

/*
 * What FsxBackupSchedule and OpenZfsSnapshotSchedule share: the choice of engine (a rule or a
 * Scheduler schedule, one of them), the tick's input and its size, the copies' tags, the failure
 * alarm and the metrics.
 */

/** EventBridge allows 8,192 characters of input for a rule target; Scheduler allows more, and is held to the same. */
const MAX_INPUT_LENGTH = 8192;
/** What a token (the stack id, a construct's id) takes at most once resolved, for the size estimate. */
const TOKEN_LENGTH_ESTIMATE = 128;

/** What a scheduled copy construct is made of, once set up. */
export interface ScheduledCopyParts {
  readonly handlers: ScheduleHandlers;
  /** The copies' tags (the `tags` prop and what `Tags.of()` adds). */
  readonly tags: TagManager;
  readonly rule?: events.Rule;
  readonly schedulerSchedule?: scheduler.Schedule;
  readonly alarm: cloudwatch.Alarm;
}

/** The failure alarm of one schedule: on the sum of `metrics`. */
export interface FailureAlarmSpec {
  readonly description: string;
  readonly label: string;
  readonly metrics: Record<string, cloudwatch.IMetric>;
}

/** How one construct type sets itself up. */
export interface ScheduledCopySpec {
  /** The construct's type, for the tag manager (`Custom::FsxBackupSchedule`). */
  readonly resourceType: string;
  /** Why the wildcards of the construct type's statements are there (cdk-nag AwsSolutions-IAM5). */
  readonly wildcardReasons: NagSuppression[];
  readonly cadence: Cadence;
  /** What the rule or schedule does, for its description (no props: an edit would update it needlessly). */
  readonly description: string;
  /** The prop that holds what makes the input large, for the error when it is too large. */
  readonly largeProp: string;
}

/**
 * Checks the schedule props, makes the stack's handlers and the rule or Scheduler schedule of
 * `scope` with `input` (its `Time` and `EventId` filled in by the engine, its `Tags` with the
 * construct's tags at synth).
 */
export function setUpScheduledCopy(
  scope: Construct,
  props: ScheduledCopyProps & { readonly tags?: Record<string, string> },
  spec: ScheduledCopySpec,
  input: object,
  alarm: FailureAlarmSpec,
): ScheduledCopyParts {
  validateEngine(scope, props, spec.cadence);
  if (props.deadLetterQueue?.fifo) {
    invalid(scope, 'deadLetterQueue', 'must be a standard queue: Lambda\'s on-failure destinations and Scheduler\'s dead-letter queues do not take FIFO queues',
      props.deadLetterQueue.node.path);
  }
  validateTags(scope, props.tags, SCHEDULED_COPY_TAG_COUNT, 'tags', FSX_TAG_CHARACTERS);
  const tags = new CopyTags(scope, spec.resourceType, props.tags, SCHEDULED_COPY_TAG_COUNT).tags;
  const handlers = ScheduleHandlers.of(scope, spec.wildcardReasons, props.handlerOptions, props.deadLetterQueue);
  const full = {
    ...input,
    // Rendered at synth, once Tags.of() has added its tags.
    Tags: Lazy.any({ produce: () => sortedTags(tags.renderTags()) }),
  };
  // Checked once Tags.of() has added its tags (they are part of the input, and FSx's characters apply to them).
  scope.node.addValidation({
    validate: () => {
      const rendered = sortedTags(tags.renderTags());
      try {
        validateTags(scope, rendered, SCHEDULED_COPY_TAG_COUNT, 'tags (with those added by Tags.of)', FSX_TAG_CHARACTERS);
        validateInputSize(scope, { ...input, Tags: rendered, Time: 'x'.repeat(24), EventId: 'x'.repeat(36) }, spec.largeProp);
        return [];
      } catch (err) {
        return [(err as Error).message];
      }
    },
  });
  const enabled = props.enabled ?? true;
  const description = `cdk-storage-snapshots: ${spec.description} (${scope.node.path})`;
  if (props.alarmTopic) handlers.notify(props.alarmTopic);
  const engine = props.scheduler
    ? { schedulerSchedule: handlers.addSchedulerSchedule(scope, props.scheduler, enabled, description, full) }
    : { rule: handlers.addRule(scope, props.schedule!, enabled, description, full) };
  return { handlers, tags, ...engine, alarm: failureAlarm(scope, props, alarm) };
}

/** Exactly one of `schedule` and `scheduler`, each valid. */
function validateEngine(scope: Construct, props: ScheduledCopyProps, cadence: Cadence): void {
  if (props.schedule && props.scheduler) {
    invalid(scope, 'schedule', 'give schedule (an EventBridge rule) or scheduler (EventBridge Scheduler), not both');
  }
  if (props.schedule) validateRuleSchedule(scope, props.schedule, cadence);
  else if (props.scheduler) validateSchedulerSchedule(scope, props.scheduler, cadence);
  else invalid(scope, 'schedule', 'give schedule (an EventBridge rule, in UTC) or scheduler (EventBridge Scheduler, in a time zone of yours)');
}

/**
 * An alarm on the sum of `metrics` (each filled with 0 where missing) over 5 minutes, sent to
 * `props.alarmTopic` too.
 */
function failureAlarm(scope: Construct, props: ScheduledCopyProps, spec: FailureAlarmSpec): cloudwatch.Alarm {
  const alarm = new cloudwatch.Alarm(scope, 'FailureAlarm', {
    alarmDescription: spec.description,
    metric: new cloudwatch.MathExpression({
      expression: Object.keys(spec.metrics).map((k) => `FILL(${k}, 0)`).join(' + '),
      usingMetrics: spec.metrics,
      label: spec.label,
      period: Duration.minutes(5),
    }),
    threshold: 1,
    comparisonOperator: cloudwatch.ComparisonOperator.GREATER_THAN_OR_EQUAL_TO_THRESHOLD,
    evaluationPeriods: 1,
    treatMissingData: cloudwatch.TreatMissingData.NOT_BREACHING,
  });
  if (props.alarmTopic) alarm.addAlarmAction(new cloudwatchActions.SnsAction(props.alarmTopic));
  return alarm;
}

/** One of a schedule's metrics: the library's namespace, the `Schedule` dimension, sum over 5 minutes by default. */
export function scheduleMetric(scheduleName: string, metricName: string, props?: cloudwatch.MetricOptions): cloudwatch.Metric {
  return new cloudwatch.Metric({
    namespace: METRIC_NAMESPACE,
    metricName,
    dimensionsMap: { Schedule: scheduleName },
    statistic: cloudwatch.Stats.SUM,
    period: Duration.minutes(5),
    ...props,
  });
}

/** How many copies to keep, per target (the props of `BackupRetention` and `SnapshotRetention`). */
export interface RetentionProps {
  readonly keepLast?: number;
  readonly maxAge?: Duration;
}

/** keepLast at least 1, maxAge at least `minAge`, at least one of them. */
export function validateRetention(scope: Construct, retention: RetentionProps | undefined, minAge: Duration, copies: string): void {
  if (!retention) return;
  const { keepLast, maxAge } = retention;
  if (keepLast === undefined && maxAge === undefined) {
    invalid(scope, 'retention', `give keepLast, maxAge or both (leave retention out to keep every ${copies})`);
  }
  if (keepLast !== undefined && !Token.isUnresolved(keepLast) && (!Number.isInteger(keepLast) || keepLast < 1)) {
    invalid(scope, 'retention.keepLast', `must be a whole number of at least 1 (the newest ${copies} is always kept)`, keepLast);
  }
  if (maxAge !== undefined && !Token.isUnresolved(maxAge.toSeconds()) && maxAge.toSeconds() < minAge.toSeconds()) {
    invalid(scope, 'retention.maxAge', `must be at least ${minAge.toHumanString()}, not ${maxAge.toHumanString()}`);
  }
}

function validateInputSize(scope: Construct, input: Record<string, unknown>, prop: string): void {
  const estimate = JSON.stringify(input, (_key, value) =>
    (typeof value === 'string' && Token.isUnresolved(value) ? 'x'.repeat(TOKEN_LENGTH_ESTIMATE) : value)).length;
  if (estimate > MAX_INPUT_LENGTH) {
    invalid(scope, prop, `the schedule's input (its targets and tags) takes about ${estimate} characters, more than the ` +
      `${MAX_INPUT_LENGTH} EventBridge allows for a target's input: split the ${prop} across two schedules`);
  }
}

function sortedTags(tags: Record<string, string> | undefined): Record<string, string> | undefined {
  if (!tags || Object.keys(tags).length === 0) return undefined;
  return Object.fromEntries(Object.entries(tags).sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0)));
}
