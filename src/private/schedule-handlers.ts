import { Duration, Stack } from 'aws-cdk-lib';
import * as events from 'aws-cdk-lib/aws-events';
import * as targets from 'aws-cdk-lib/aws-events-targets';
import * as lambda from 'aws-cdk-lib/aws-lambda';
import * as destinations from 'aws-cdk-lib/aws-lambda-destinations';
import * as sqs from 'aws-cdk-lib/aws-sqs';
import { IConstruct } from 'constructs';
import { HandlerOptions } from '../handler-options';
import { NagSuppression, suppressNag } from './nag';
import { HandlerSpec, StackHandlers } from './stack-handlers';

/** The scheduled handler's timeout: one tick of many targets retries throttling within it. */
export const SCHEDULE_HANDLER_TIMEOUT = Duration.minutes(15);

/**
 * How long a tick may still be delivered or retried. Shorter than the most frequent schedule
 * allowed (hourly), so that a retry of one tick never runs beside the next tick.
 */
export const SCHEDULE_MAX_EVENT_AGE = Duration.hours(1);

/** Lambda's own retries of a failed asynchronous invocation (its maximum). */
export const SCHEDULE_RETRY_ATTEMPTS = 2;

/**
 * The one Lambda function per stack that every schedule of a construct type invokes (the rule's
 * input names the targets), with its one asynchronous-invocation configuration: two retries,
 * then the on-failure destination, a dead-letter queue created here or given by the user. The
 * rules' own delivery failures go to the same queue.
 */
export class ScheduleHandlers extends StackHandlers {
  /** The handlers of `spec.kind` in the stack of `scope`, created on first use. */
  public static of(scope: IConstruct, spec: HandlerSpec, options: HandlerOptions | undefined, deadLetterQueue?: sqs.IQueue): ScheduleHandlers {
    const handlers = StackHandlers.singleton(scope, spec, options,
      (stack, id) => new ScheduleHandlers(stack, id, spec, options, scope, deadLetterQueue));
    handlers.checkSameQueue(scope, deadLetterQueue);
    return handlers;
  }

  /** The function every schedule of the stack invokes. */
  public readonly function: lambda.Function;
  /** Where invocations that still fail after Lambda's retries (and undeliverable ticks) go. */
  public readonly deadLetterQueue: sqs.IQueue;
  private readonly queueGiven: boolean;
  private readonly queueFrom: string;

  private constructor(
    scope: Stack,
    id: string,
    spec: HandlerSpec,
    options: HandlerOptions | undefined,
    requester: IConstruct,
    queue: sqs.IQueue | undefined,
  ) {
    super(scope, id, spec, options, requester);
    this.queueGiven = queue !== undefined;
    this.queueFrom = requester.node.path;
    this.deadLetterQueue = queue ?? new sqs.Queue(this, 'DeadLetters', {
      encryption: sqs.QueueEncryption.SQS_MANAGED,
      enforceSSL: true,
      retentionPeriod: Duration.days(14),
    });
    this.function = this.handlerFunction('Function', 'handler', SCHEDULE_HANDLER_TIMEOUT, {
      // The handler stops starting new work this long before the function's timeout.
      TIMEOUT_MS: String(SCHEDULE_HANDLER_TIMEOUT.toMilliseconds()),
    });
    this.function.configureAsyncInvoke({
      retryAttempts: SCHEDULE_RETRY_ATTEMPTS,
      maxEventAge: SCHEDULE_MAX_EVENT_AGE,
      onFailure: new destinations.SqsDestination(this.deadLetterQueue),
    });
    suppressNag(this, [RUNTIME_SUPPRESSION], (r) => r instanceof lambda.CfnFunction);
    suppressNag(this, [QUEUE_SUPPRESSION], (r) => r instanceof sqs.CfnQueue);
  }

  /** Makes `rule` invoke the shared function with `input`. */
  public addSchedule(rule: events.Rule, input: events.RuleTargetInput): void {
    rule.addTarget(new targets.LambdaFunction(this.function, {
      event: input,
      deadLetterQueue: this.deadLetterQueue,
      retryAttempts: 2,
      maxEventAge: SCHEDULE_MAX_EVENT_AGE,
    }));
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

const RUNTIME_SUPPRESSION: NagSuppression = {
  id: 'AwsSolutions-L1',
  reason: 'The handler is pinned to nodejs22.x so that synth output does not change when CDK\'s latest runtime moves.',
};

const QUEUE_SUPPRESSION: NagSuppression = {
  id: 'AwsSolutions-SQS3',
  reason: 'This queue is itself the dead-letter destination (of the scheduled function\'s failed invocations and of the rules\' undeliverable ticks).',
};
