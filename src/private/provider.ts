import { CustomResource, Duration, Stack } from 'aws-cdk-lib';
import * as iam from 'aws-cdk-lib/aws-iam';
import { SqsEventSource } from 'aws-cdk-lib/aws-lambda-event-sources';
import * as sqs from 'aws-cdk-lib/aws-sqs';
import * as sfn from 'aws-cdk-lib/aws-stepfunctions';
import * as cr from 'aws-cdk-lib/custom-resources';
import { IConstruct } from 'constructs';
import type { EbsSnapshotQueueDrainProperties } from './ebs-contract';
import { HandlerOptions } from '../handler-options';
import { NagSuppression, suppressNag } from './nag';
import { HandlerSpec, StackHandlers } from './stack-handlers';

/**
 * The Provider framework keeps the whole wait bounded by this; each instance's own `timeout`
 * (at most this) is enforced by `isComplete` from the start time `onEvent` returns.
 */
export const PROVIDER_TOTAL_TIMEOUT = Duration.hours(1);

/**
 * How often the framework calls `isComplete`. The framework only offers a fixed interval (its waiter
 * retries with BackoffRate 1). Measured in the simulator (bench/RESULTS.md, "Waiting cost"): at
 * 10 s a copy is seen complete 4.4 s after it is (mean; 8.8 s worst) at one Describe call per 10 s
 * of lifecycle; 5 s saves 2.2 s of that for 1.4 to 2 times the calls, and 30 s saves two thirds
 * of the calls for three times the latency (13 s), which every deploy would wait. At 10 s even
 * 200 copies waited for at once stay near 20 Describe calls a second in the account.
 */
export const PROVIDER_QUERY_INTERVAL = Duration.seconds(10);

/** The delayed-sweep function's timeout: one message's look-up and a few deletes (each retries throttling for up to a minute). */
export const SWEEP_HANDLER_TIMEOUT = Duration.minutes(2);
/** How often SQS delivers a sweep message that keeps failing before keeping it in the dead-letter queue. */
export const SWEEP_MAX_RECEIVES = 5;

/**
 * One custom-resource Provider per stack per construct type, shared by all its instances: the
 * N-th instance adds only its own custom resource and, where it names a new resource, an ARN in
 * the shared policy. The bundle exports `onEvent` and `isComplete`.
 */
export class SnapshotProvider extends StackHandlers {
  /** The provider of `spec.kind` in the stack of `scope`, created on first use. */
  public static of(scope: IConstruct, spec: HandlerSpec, options: HandlerOptions | undefined): SnapshotProvider {
    return StackHandlers.singleton(scope, spec, options, (stack, id) => new SnapshotProvider(stack, id, spec, options, scope));
  }

  public readonly serviceToken: string;
  /**
   * For a spec with `delayedSweep`: the resource every custom resource of this provider must
   * depend on (`dependOnDrain`), whose Delete waits until the queue is empty.
   */
  private readonly sweepDrain?: CustomResource;

  private constructor(scope: Stack, id: string, spec: HandlerSpec, options: HandlerOptions | undefined, requester: IConstruct) {
    super(scope, id, spec, options, requester);
    const sweep = spec.delayedSweep ? this.delayedSweep(spec.delayedSweep.exportName) : undefined;
    const onEventEnvironment: Record<string, string> = spec.delayedSweep && sweep ? { [spec.delayedSweep.queueUrlEnv]: sweep.queue.queueUrl } : {};
    const provider = new cr.Provider(this, 'Provider', {
      onEventHandler: this.handlerFunction('OnEvent', 'onEvent', spec.onEventTimeout ?? Duration.minutes(5), onEventEnvironment),
      isCompleteHandler: this.handlerFunction('IsComplete', 'isComplete', spec.isCompleteTimeout ?? Duration.minutes(2)),
      totalTimeout: PROVIDER_TOTAL_TIMEOUT,
      queryInterval: PROVIDER_QUERY_INTERVAL,
      logGroup: this.logGroup,
      // The waiter state machine logs its errors to the handlers' log group (Control Tower
      // CT.STEPFUNCTIONS.PR.1, cdk-nag AwsSolutions-SF1); execution data stays out of the logs.
      disableWaiterStateMachineLogging: false,
      waiterStateMachineLogOptions: { destination: this.logGroup, level: sfn.LogLevel.ERROR, includeExecutionData: false },
      vpc: options?.vpc,
      vpcSubnets: options?.vpcSubnets,
      securityGroups: options?.securityGroups,
    });
    this.serviceToken = provider.serviceToken;
    if (sweep) {
      // Deleted after every custom resource of this provider (they depend on it) and before the
      // queue and its reader (it depends on them): its Delete waits until no sweep is left.
      this.sweepDrain = new CustomResource(this, 'SweepDrain', {
        serviceToken: provider.serviceToken,
        resourceType: 'Custom::EbsSnapshotQueueDrain',
        properties: { Drain: 'late-duplicate-queue', QueueUrl: sweep.queue.queueUrl } satisfies EbsSnapshotQueueDrainProperties,
      });
      this.sweepDrain.node.addDependency(sweep.queue, sweep.reader);
    }

    // Every handler reads its own stack's status, to tell a rollback from an update.
    this.role.addToPrincipalPolicy(
      new iam.PolicyStatement({ actions: ['cloudformation:DescribeStacks'], resources: [Stack.of(this).stackId] }),
    );
    suppressNag(this, FRAMEWORK_SUPPRESSIONS);
    suppressNag(provider.node.findChild('waiter-state-machine'), [{
      id: 'AwsSolutions-IAM5',
      reason: 'Step Functions delivers its logs through CloudWatch Logs log delivery, whose actions (logs:CreateLogDelivery and the rest) ' +
        'have no resource-level permissions: aws-cdk-lib\'s waiter state machine role gets them on "*".',
      appliesTo: ['Resource::*'],
    }]);
  }

  /** Makes `resource` (a custom resource of this provider) come after the queue drain, if there is one. */
  public dependOnDrain(resource: IConstruct): void {
    if (this.sweepDrain) resource.node.addDependency(this.sweepDrain);
  }

  /**
   * A queue whose messages the handler sends itself with a delay (SQS `DelaySeconds`), read by one
   * more function of the same bundle and role: work that must happen after the request has been
   * answered, even if no further event for the resource comes. A message that keeps failing is
   * kept, after SWEEP_MAX_RECEIVES receives, in a dead-letter queue for 14 days (while the stack exists).
   */
  private delayedSweep(exportName: string): { queue: sqs.Queue; reader: IConstruct } {
    const failures = new sqs.Queue(this, 'SweepFailures', {
      encryption: sqs.QueueEncryption.SQS_MANAGED,
      enforceSSL: true,
      retentionPeriod: Duration.days(14),
      // Marks it as a dead-letter queue (Control Tower CT.SQS.PR.1); allowAll is SQS's default.
      redriveAllowPolicy: { redrivePermission: sqs.RedrivePermission.ALLOW_ALL },
    });
    const queue = new sqs.Queue(this, 'Sweeps', {
      encryption: sqs.QueueEncryption.SQS_MANAGED,
      enforceSSL: true,
      // At least six times the function's timeout, as Lambda advises for SQS event sources.
      visibilityTimeout: Duration.seconds(SWEEP_HANDLER_TIMEOUT.toSeconds() * 6),
      deadLetterQueue: { queue: failures, maxReceiveCount: SWEEP_MAX_RECEIVES },
    });
    // The stack it sweeps for: a message naming another stack is refused. Its concurrency is capped
    // by the event source instead (2, the least SQS allows), not by reservedConcurrentExecutions.
    const sweeper = this.handlerFunction('Sweep', exportName, SWEEP_HANDLER_TIMEOUT, { STACK_ID: Stack.of(this).stackId }, false);
    // One message at a time: a failing one is retried alone.
    const source = new SqsEventSource(queue, { batchSize: 1, reportBatchItemFailures: true, maxConcurrency: 2 });
    sweeper.addEventSource(source);
    queue.grantSendMessages(this.role);
    return { queue, reader: sweeper };
  }
}

/** What cdk-nag AwsSolutions reports about the handlers and aws-cdk-lib's Provider framework, and why it stands. */
const FRAMEWORK_SUPPRESSIONS: NagSuppression[] = [
  {
    id: 'AwsSolutions-L1',
    reason: 'The handlers are pinned to nodejs22.x so that synth output does not change when CDK\'s latest runtime moves; ' +
      'the Provider framework functions use the runtime aws-cdk-lib chooses for them.',
  },
  {
    id: 'AwsSolutions-IAM4',
    reason: 'aws-cdk-lib\'s Provider framework gives its own functions AWSLambdaBasicExecutionRole (log writing only).',
    appliesTo: ['Policy::arn:<AWS::Partition>:iam::aws:policy/service-role/AWSLambdaBasicExecutionRole'],
  },
  {
    id: 'AwsSolutions-IAM5',
    reason: 'aws-cdk-lib\'s Provider framework invokes the handler functions and their versions (<function arn>:*).',
    appliesTo: [{ regex: '/^Resource::<.+\\.Arn>:\\*$/' }],
  },
  {
    id: 'AwsSolutions-SF1',
    reason: 'The waiter state machine logs ERROR events to the handlers\' log group, not ALL: its only other events are the ' +
      'isComplete polls (one per 10 s), which the handlers log themselves with the request id.',
  },
  {
    id: 'AwsSolutions-SF2',
    reason: 'The Provider framework does not offer X-Ray tracing for its waiter state machine; the handlers log each request with its id.',
  },
];
