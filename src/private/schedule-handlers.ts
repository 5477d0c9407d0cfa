import { createHash } from 'crypto';
import { Duration, Names, Stack, Token } from 'aws-cdk-lib';
import * as cloudwatch from 'aws-cdk-lib/aws-cloudwatch';
import * as cloudwatchActions from 'aws-cdk-lib/aws-cloudwatch-actions';
import * as events from 'aws-cdk-lib/aws-events';
import * as iam from 'aws-cdk-lib/aws-iam';
import * as lambda from 'aws-cdk-lib/aws-lambda';
import * as destinations from 'aws-cdk-lib/aws-lambda-destinations';
import * as sns from 'aws-cdk-lib/aws-sns';
import * as sqs from 'aws-cdk-lib/aws-sqs';
import { IConstruct } from 'constructs';
import { HandlerOptions } from '../handler-options';
import { SCHEDULE_TIMEOUT_ENV } from './fsx-backup-contract';
import { NagSuppression, suppressNag } from './nag';
import { DEFAULT_MEMORY_SIZE, HandlerSpec, StackHandlers } from './stack-handlers';

/** The scheduled handler's timeout: one tick of many targets retries throttling within it. */
export const SCHEDULE_HANDLER_TIMEOUT = Duration.minutes(15);

/**
 * How long a tick may still be delivered or retried: EventBridge's delivery retries and Lambda's
 * asynchronous retries both stop at this age. It equals the shortest interval allowed (hourly),
 * so a late retry of one tick can run beside the next tick. That is safe: the two use different
 * client tokens (the token names the tick), FSx makes one backup of a file system or volume at a
 * time (the later call meets `BackupInProgress` and retries with backoff), and two prunings of
 * the same target never delete more than the later one alone would: each keeps the newest
 * backups of its own listing, and the later listing holds every backup the earlier one kept.
 */
export const SCHEDULE_MAX_EVENT_AGE = Duration.hours(1);

/** Lambda's own retries of a failed asynchronous invocation (its maximum); the rules retry delivery as often. */
export const SCHEDULE_RETRY_ATTEMPTS = 2;

/** EventBridge rule names: 1 to 64 characters of `[.\-_A-Za-z0-9]`. */
const MAX_RULE_NAME = 64;

/**
 * The one Lambda function per stack that every schedule of a construct type invokes (the rule's
 * input names the targets), with its one asynchronous-invocation configuration: two retries,
 * then the on-failure destination, a dead-letter queue created here or given by the user. The
 * rules' own delivery failures go to the same queue, and one alarm watches it.
 *
 * Each schedule adds its rule and nothing else here: the rules are named with a prefix of this
 * stack's (`ruleName()`), and ONE Lambda permission and ONE queue-policy statement let exactly
 * the rules with that prefix, in this account and region, invoke the function and send to the
 * queue. Per-rule grants (what `targets.LambdaFunction` adds) would cost a resource and a
 * policy statement per schedule: 200 schedules passed CloudFormation's 500 resources.
 */
export class ScheduleHandlers extends StackHandlers {
  /** The handlers of `spec.kind` in the stack of `scope`, created on first use. */
  public static of(scope: IConstruct, spec: HandlerSpec, options: HandlerOptions | undefined, deadLetterQueue?: sqs.IQueue): ScheduleHandlers {
    const handlers = StackHandlers.singleton(scope, `CdkStorageSnapshots${spec.kind}Handlers`, options,
      (stack, id) => new ScheduleHandlers(stack, id, spec, options, scope, deadLetterQueue));
    handlers.checkSameQueue(scope, deadLetterQueue);
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

  private constructor(
    scope: Stack,
    id: string,
    spec: HandlerSpec,
    options: HandlerOptions | undefined,
    requester: IConstruct,
    queue: sqs.IQueue | undefined,
  ) {
    super(scope, id, { description: spec.kind, asset: spec.handler, sharedBy: `every ${spec.kind}` }, options, requester);
    this.addWildcardReasons(spec.wildcardReasons);
    this.queueGiven = queue !== undefined;
    this.queueFrom = requester.node.path;
    this.deadLetterQueue = queue ?? new sqs.Queue(this, 'DeadLetters', {
      encryption: sqs.QueueEncryption.SQS_MANAGED,
      enforceSSL: true,
      retentionPeriod: Duration.days(14),
    });
    this.function = this.handlerFunction('Function', 'handler', SCHEDULE_HANDLER_TIMEOUT, spec.defaultMemorySize ?? DEFAULT_MEMORY_SIZE, {
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
    this.rulePrefix = `css-${createHash('sha256').update(JSON.stringify([spec.kind, identity])).digest('hex').slice(0, 10)}-`;
    const rules = scope.formatArn({ service: 'events', resource: 'rule', resourceName: `${this.rulePrefix}*` });
    const eventsPrincipal = new iam.ServicePrincipal('events.amazonaws.com');
    // Least privilege without a grant per rule: EventBridge in this account, for the rules whose
    // names carry this stack's prefix (only someone allowed to create rules here could add one).
    this.function.addPermission('InvokeFromScheduleRules', {
      principal: eventsPrincipal,
      action: 'lambda:InvokeFunction',
      sourceAccount: scope.account,
      sourceArn: rules,
    });
    // The rules' undeliverable ticks (a queue of the user's in another account is left alone, as
    // CDK does: its owner adds the statement).
    this.deadLetterQueue.addToResourcePolicy(new iam.PolicyStatement({
      sid: 'AllowScheduleRules',
      principals: [eventsPrincipal],
      actions: ['sqs:SendMessage'],
      resources: [this.deadLetterQueue.queueArn],
      conditions: { ArnLike: { 'aws:SourceArn': rules }, StringEquals: { 'aws:SourceAccount': scope.account } },
    }));

    this.deadLetterAlarm = new cloudwatch.Alarm(this, 'DeadLettersAlarm', {
      alarmDescription: `A scheduled ${spec.kind} tick failed after Lambda's retries, or could not be delivered: ` +
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
   * The name of the rule of `schedule`: this stack's prefix, then a readable name unique in the
   * stack (from the construct path, with a hash), 64 characters at most.
   */
  public ruleName(schedule: IConstruct): string {
    return this.rulePrefix + Names.uniqueResourceName(schedule, { maxLength: MAX_RULE_NAME - this.rulePrefix.length, separator: '' });
  }

  /** Makes `rule` (named by `ruleName()`) invoke the shared function with `input`. */
  public addSchedule(rule: events.Rule, input: events.RuleTargetInput): void {
    rule.addTarget(new SharedFunctionTarget(this, input));
    // The first tick must not arrive before the function may be invoked.
    rule.node.addDependency(this.function.permissionsNode.findChild('InvokeFromScheduleRules'));
  }

  /** Sends the dead-letter alarm to `topic` too (once per topic). */
  public notify(topic: sns.ITopic): void {
    if (this.notified.has(topic)) return;
    this.notified.add(topic);
    this.deadLetterAlarm.addAlarmAction(new cloudwatchActions.SnsAction(topic));
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
  reason: 'This queue is itself the dead-letter destination (of the scheduled function\'s failed invocations and of the rules\' undeliverable ticks).',
};
