import { createHash } from 'crypto';
import { Duration, Names, RemovalPolicy, Stack, Token } from 'aws-cdk-lib';
import * as cloudwatch from 'aws-cdk-lib/aws-cloudwatch';
import * as cloudwatchActions from 'aws-cdk-lib/aws-cloudwatch-actions';
import * as events from 'aws-cdk-lib/aws-events';
import * as iam from 'aws-cdk-lib/aws-iam';
import * as lambda from 'aws-cdk-lib/aws-lambda';
import * as destinations from 'aws-cdk-lib/aws-lambda-destinations';
import * as scheduler from 'aws-cdk-lib/aws-scheduler';
import * as sns from 'aws-cdk-lib/aws-sns';
import * as sqs from 'aws-cdk-lib/aws-sqs';
import { IConstruct } from 'constructs';
import { HandlerOptions } from '../handler-options';
import type { SchedulerSchedule } from '../scheduled-copy';
import { NagSuppression, suppressNag } from './nag';
import { SCHEDULE_ASSET } from './schedule-operations';
import { SCHEDULE_TIMEOUT_ENV } from './scheduled-copy-contract';
import { DEFAULT_MEMORY_SIZE, StackHandlers } from './stack-handlers';

/** The scheduled handler's timeout: one tick of many targets retries throttling within it. */
export const SCHEDULE_HANDLER_TIMEOUT = Duration.minutes(15);

/**
 * How long a tick may still be delivered or retried: EventBridge's delivery retries and Lambda's
 * asynchronous retries both stop at this age (Scheduler's by default, `maxEventAge`). A late retry
 * of one tick can therefore run beside a later tick (the next hourly backup, or up to four
 * 15-minute snapshots). That is safe: they use different client tokens (the token names the tick),
 * FSx makes one backup of a file system or volume at a time (the later call meets
 * `BackupInProgress` and retries with backoff), and two prunings of the same target never delete
 * more than the later one alone would: each keeps the newest copies of its own listing, and the
 * later listing holds every copy the earlier one kept.
 */
export const SCHEDULE_MAX_EVENT_AGE = Duration.hours(1);

/** Lambda's own retries of a failed asynchronous invocation (its maximum); the rules retry delivery as often. */
export const SCHEDULE_RETRY_ATTEMPTS = 2;

/** Scheduler's retries of a tick it could not deliver, by default (its maximum: it stops at `maxEventAge` anyway). */
export const SCHEDULER_RETRY_ATTEMPTS = 185;

/** EventBridge rule names: 1 to 64 characters of `[.\-_A-Za-z0-9]`. */
const MAX_RULE_NAME = 64;

/** The construct id of the stack's one set of scheduled handlers. */
export const SCHEDULE_HANDLERS_ID = 'CdkStorageSnapshotsScheduleHandlers';

/**
 * The one Lambda function per stack that every schedule invokes (`FsxBackupSchedule` and
 * `OpenZfsSnapshotSchedule`: the input's `Operation` says which), with its one
 * asynchronous-invocation configuration: two retries, then the on-failure destination, a
 * dead-letter queue created here or given by the user. Undeliverable ticks go to the same queue,
 * and one alarm watches it.
 *
 * Each schedule adds its rule or Scheduler schedule and nothing else here.
 * - Rules are named with a prefix of this stack's (`ruleName()`), and ONE Lambda permission and
 *   ONE queue-policy statement let exactly the rules with that prefix, in this account and region,
 *   invoke the function and send to the queue. Per-rule grants (what `targets.LambdaFunction`
 *   adds) would cost a resource and a policy statement per schedule: 200 schedules passed
 *   CloudFormation's 500 resources.
 * - Scheduler schedules go in ONE schedule group of the stack's, and run with ONE execution role
 *   that only Scheduler, for schedules of that group in this account, can assume; it may invoke
 *   the function and send to the queue, nothing else.
 * The rule grants, and the group and role, exist once the first schedule that needs them does.
 */
export class ScheduleHandlers extends StackHandlers {
  /** The stack's scheduled handlers, created on first use; registers a construct type's `wildcardReasons`. */
  public static of(
    scope: IConstruct, wildcardReasons: NagSuppression[], options: HandlerOptions | undefined, deadLetterQueue?: sqs.IQueue,
  ): ScheduleHandlers {
    const handlers = StackHandlers.singleton(scope, SCHEDULE_HANDLERS_ID, options,
      (stack, id) => new ScheduleHandlers(stack, id, options, scope, deadLetterQueue));
    handlers.checkSameQueue(scope, deadLetterQueue);
    handlers.addWildcardReasons(wildcardReasons);
    return handlers;
  }

  /** The function every schedule of the stack invokes. */
  public readonly function: lambda.Function;
  /** Where invocations that still fail after Lambda's retries (and undeliverable ticks) go. */
  public readonly deadLetterQueue: sqs.IQueue;
  /**
   * Goes off when the dead-letter queue holds a message: a tick that failed even after Lambda's
   * retries (or could not be delivered), whatever the reason, including a crash or a timeout that
   * emitted no metric. A failure that a retry fixed never reaches the queue, so it does not alarm.
   */
  public readonly deadLetterAlarm: cloudwatch.Alarm;
  /** The prefix of every schedule rule's name in this stack (what the grants are scoped to). */
  public readonly rulePrefix: string;
  private readonly queueGiven: boolean;
  private readonly queueFrom: string;
  private readonly notified = new Set<sns.ITopic>();
  private ruleGrants?: IConstruct;
  private schedulerParts?: { readonly group: scheduler.ScheduleGroup; readonly role: iam.Role };

  private constructor(
    scope: Stack,
    id: string,
    options: HandlerOptions | undefined,
    requester: IConstruct,
    queue: sqs.IQueue | undefined,
  ) {
    super(scope, id, {
      description: 'scheduled copy',
      asset: SCHEDULE_ASSET,
      sharedBy: 'every FsxBackupSchedule and OpenZfsSnapshotSchedule',
    }, options, requester);
    this.queueGiven = queue !== undefined;
    this.queueFrom = requester.node.path;
    this.deadLetterQueue = queue ?? new sqs.Queue(this, 'DeadLetters', {
      encryption: sqs.QueueEncryption.SQS_MANAGED,
      enforceSSL: true,
      retentionPeriod: Duration.days(14),
    });
    this.function = this.handlerFunction('Function', 'handler', SCHEDULE_HANDLER_TIMEOUT, DEFAULT_MEMORY_SIZE, {
      // The handler stops starting new work this long before the function's timeout.
      [SCHEDULE_TIMEOUT_ENV]: String(SCHEDULE_HANDLER_TIMEOUT.toMilliseconds()),
    });
    this.function.configureAsyncInvoke({
      retryAttempts: SCHEDULE_RETRY_ATTEMPTS,
      maxEventAge: SCHEDULE_MAX_EVENT_AGE,
      onFailure: new destinations.SqsDestination(this.deadLetterQueue),
    });

    // A stack-specific prefix: another stack's rules (same account and region) never match it.
    // The stack name is unique in its account and region; a stack whose name is a token (a
    // nested stack) uses its construct path instead.
    const identity = Token.isUnresolved(scope.stackName) ? scope.node.path : scope.stackName;
    this.rulePrefix = `css-${createHash('sha256').update(JSON.stringify(['schedules', identity])).digest('hex').slice(0, 10)}-`;

    this.deadLetterAlarm = new cloudwatch.Alarm(this, 'DeadLettersAlarm', {
      alarmDescription: 'A scheduled copy\'s tick failed after Lambda\'s retries, or could not be delivered: ' +
        'see the message in the dead-letter queue and the function\'s logs, then delete the message',
      metric: this.deadLetterQueue.metricApproximateNumberOfMessagesVisible({ period: Duration.minutes(5), statistic: cloudwatch.Stats.MAXIMUM }),
      threshold: 1,
      comparisonOperator: cloudwatch.ComparisonOperator.GREATER_THAN_OR_EQUAL_TO_THRESHOLD,
      evaluationPeriods: 1,
      treatMissingData: cloudwatch.TreatMissingData.NOT_BREACHING,
    });
    suppressNag(this, [RUNTIME_SUPPRESSION], (r) => r instanceof lambda.CfnFunction);
    suppressNag(this, [QUEUE_SUPPRESSION], (r) => r instanceof sqs.CfnQueue);
  }

  /**
   * An EventBridge rule under `owner` that invokes the function with `input`, where `Time` and
   * `EventId` are filled in with the event's time and id.
   */
  public addRule(owner: IConstruct, schedule: events.Schedule, enabled: boolean, description: string, input: Record<string, unknown>): events.Rule {
    const grants = this.grantRules();
    const rule = new events.Rule(owner, 'Rule', { ruleName: this.ruleName(owner), schedule, enabled, description });
    const rendered = events.RuleTargetInput.fromObject({ ...input, Time: events.EventField.time, EventId: events.EventField.eventId });
    rule.addTarget(new SharedFunctionTarget(this, rendered));
    // The first tick must not arrive before the function may be invoked.
    rule.node.addDependency(grants);
    return rule;
  }

  /**
   * A Scheduler schedule under `owner` that invokes the function with `input`, where `Time` and
   * `EventId` are filled in with Scheduler's scheduled time and execution id.
   */
  public addSchedulerSchedule(
    owner: IConstruct, schedule: SchedulerSchedule, enabled: boolean, description: string, input: Record<string, unknown>,
  ): scheduler.Schedule {
    const { group, role } = this.scheduler();
    // Rendered at synth (the input holds lazy values such as the tags): Scheduler's own
    // `fromObject` resolves when the schedule is constructed.
    const text = Stack.of(owner).toJsonString({
      ...input,
      Time: scheduler.ContextAttribute.scheduledTime,
      EventId: scheduler.ContextAttribute.executionId,
    });
    const target: scheduler.IScheduleTarget = {
      bind: () => ({
        arn: this.function.functionArn,
        role,
        input: scheduler.ScheduleTargetInput.fromText(text),
        deadLetterConfig: { arn: this.deadLetterQueue.queueArn },
        retryPolicy: {
          maximumEventAgeInSeconds: (schedule.maxEventAge ?? SCHEDULE_MAX_EVENT_AGE).toSeconds(),
          maximumRetryAttempts: schedule.retryAttempts ?? SCHEDULER_RETRY_ATTEMPTS,
        },
      }),
    };
    const created = new scheduler.Schedule(owner, 'Schedule', {
      schedule: schedule.expression,
      target,
      scheduleGroup: group,
      enabled,
      description,
      timeWindow: schedule.flexibleTimeWindow ? scheduler.TimeWindow.flexible(schedule.flexibleTimeWindow) : scheduler.TimeWindow.off(),
      start: schedule.start,
      end: schedule.end,
    });
    // The first tick must not arrive before the role may invoke the function.
    created.node.addDependency(role);
    return created;
  }

  /** Sends the dead-letter alarm to `topic` too (once per topic). */
  public notify(topic: sns.ITopic): void {
    if (this.notified.has(topic)) return;
    this.notified.add(topic);
    this.deadLetterAlarm.addAlarmAction(new cloudwatchActions.SnsAction(topic));
  }

  /**
   * The name of the rule of `schedule`: this stack's prefix, then a readable name unique in the
   * stack (from the construct path, with a hash), 64 characters at most.
   */
  private ruleName(schedule: IConstruct): string {
    return this.rulePrefix + Names.uniqueResourceName(schedule, { maxLength: MAX_RULE_NAME - this.rulePrefix.length, separator: '' });
  }

  /** The stack-wide grants of the rules with this stack's prefix (made with the first rule): the Lambda permission. */
  private grantRules(): IConstruct {
    if (this.ruleGrants) return this.ruleGrants;
    const stack = Stack.of(this);
    const rules = stack.formatArn({ service: 'events', resource: 'rule', resourceName: `${this.rulePrefix}*` });
    const eventsPrincipal = new iam.ServicePrincipal('events.amazonaws.com');
    // Least privilege without a grant per rule: EventBridge in this account, for the rules whose
    // names carry this stack's prefix (only someone allowed to create rules here could add one).
    this.function.addPermission('InvokeFromScheduleRules', {
      principal: eventsPrincipal,
      action: 'lambda:InvokeFunction',
      sourceAccount: stack.account,
      sourceArn: rules,
    });
    // The rules' undeliverable ticks (a queue of the user's in another account is left alone, as
    // CDK does: its owner adds the statement).
    this.deadLetterQueue.addToResourcePolicy(new iam.PolicyStatement({
      sid: 'AllowScheduleRules',
      principals: [eventsPrincipal],
      actions: ['sqs:SendMessage'],
      resources: [this.deadLetterQueue.queueArn],
      conditions: { ArnLike: { 'aws:SourceArn': rules }, StringEquals: { 'aws:SourceAccount': stack.account } },
    }));
    this.ruleGrants = this.function.permissionsNode.findChild('InvokeFromScheduleRules');
    return this.ruleGrants;
  }

  /**
   * The stack's schedule group and Scheduler's execution role (made with the first Scheduler
   * schedule). The role trusts Scheduler only for schedules of this group in this account (the
   * confused-deputy conditions AWS documents), and may invoke the function and send undeliverable
   * ticks to the queue (and use the queue's key, if it has one), nothing else.
   */
  private scheduler(): { readonly group: scheduler.ScheduleGroup; readonly role: iam.Role } {
    if (this.schedulerParts) return this.schedulerParts;
    const stack = Stack.of(this);
    // Deleted with the stack (it holds only the library's schedules, which CloudFormation deletes first).
    const group = new scheduler.ScheduleGroup(this, 'ScheduleGroup', { removalPolicy: RemovalPolicy.DESTROY });
    const role = new iam.Role(this, 'SchedulerRole', {
      assumedBy: new iam.ServicePrincipal('scheduler.amazonaws.com', {
        conditions: { StringEquals: { 'aws:SourceAccount': stack.account, 'aws:SourceArn': group.scheduleGroupArn } },
      }),
      description: 'cdk-storage-snapshots: EventBridge Scheduler invokes the scheduled copy function',
    });
    role.addToPrincipalPolicy(new iam.PolicyStatement({ actions: ['lambda:InvokeFunction'], resources: [this.function.functionArn] }));
    role.addToPrincipalPolicy(new iam.PolicyStatement({ actions: ['sqs:SendMessage'], resources: [this.deadLetterQueue.queueArn] }));
    // A queue of the user's encrypted with a KMS key: sending needs the key too.
    this.deadLetterQueue.encryptionMasterKey?.grant(role, 'kms:GenerateDataKey', 'kms:Decrypt');
    this.schedulerParts = { group, role };
    return this.schedulerParts;
  }

  private checkSameQueue(scope: IConstruct, queue: sqs.IQueue | undefined): void {
    if (queue === undefined || queue === this.deadLetterQueue) return;
    const first = this.queueGiven ? `${this.queueFrom} already gave another queue` : `${this.queueFrom} already created one`;
    throw new Error(
      `${scope.node.path}: invalid deadLetterQueue: the stack's schedules share one function and so one dead-letter queue, and ${first}; ` +
        'give the same queue to every schedule of the stack, or to the first one only',
    );
  }
}

/**
 * The shared function as a rule target, without the per-rule Lambda permission and queue-policy
 * statement `targets.LambdaFunction` adds: the stack-wide ones above cover every schedule rule.
 */
class SharedFunctionTarget implements events.IRuleTarget {
  constructor(private readonly handlers: ScheduleHandlers, private readonly input: events.RuleTargetInput) {}

  public bind(): events.RuleTargetConfig {
    return {
      arn: this.handlers.function.functionArn,
      input: this.input,
      targetResource: this.handlers.function,
      deadLetterConfig: { arn: this.handlers.deadLetterQueue.queueArn },
      retryPolicy: {
        maximumRetryAttempts: SCHEDULE_RETRY_ATTEMPTS,
        maximumEventAgeInSeconds: SCHEDULE_MAX_EVENT_AGE.toSeconds(),
      },
    };
  }
}

const RUNTIME_SUPPRESSION: NagSuppression = {
  id: 'AwsSolutions-L1',
  reason: 'The handler is pinned to nodejs22.x so that synth output does not change when CDK\'s latest runtime moves.',
};

const QUEUE_SUPPRESSION: NagSuppression = {
  id: 'AwsSolutions-SQS3',
  reason: 'This queue is itself the dead-letter destination (of the scheduled function\'s failed invocations and of the schedules\' undeliverable ticks).',
};
