import { Duration, RemovalPolicy, Stack } from 'aws-cdk-lib';
import * as dynamodb from 'aws-cdk-lib/aws-dynamodb';
import * as iam from 'aws-cdk-lib/aws-iam';
import * as sfn from 'aws-cdk-lib/aws-stepfunctions';
import * as cr from 'aws-cdk-lib/custom-resources';
import { IConstruct } from 'constructs';
import { HandlerOptions } from '../handler-options';
import { NagSuppression, suppressNag } from './nag';
import { ClaimTableSpec, HandlerSpec, StackHandlers } from './stack-handlers';

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
   * For a spec with `claimTable`: the stack's claim table, which every custom resource of this
   * provider must depend on (`dependOnClaims`).
   */
  private readonly claims?: dynamodb.Table;

  private constructor(scope: Stack, id: string, spec: HandlerSpec, options: HandlerOptions | undefined, requester: IConstruct) {
    super(scope, id, spec, options, requester);
    const handlerEnvironment: Record<string, string> = {};
    if (spec.claimTable) {
      this.claims = this.claimTable(spec.claimTable);
      handlerEnvironment[spec.claimTable.envName] = this.claims.tableName;
    }
    const provider = new cr.Provider(this, 'Provider', {
      onEventHandler: this.handlerFunction('OnEvent', 'onEvent', spec.onEventTimeout ?? Duration.minutes(5), handlerEnvironment),
      // isComplete records a failure it meets (a snapshot in error) in the claim too.
      isCompleteHandler: this.handlerFunction('IsComplete', 'isComplete', spec.isCompleteTimeout ?? Duration.minutes(2), handlerEnvironment),
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

  /**
   * Makes `resource` (a custom resource of this provider) depend on the claim table, if there is
   * one: CloudFormation then deletes the table only after every such resource.
   */
  public dependOnClaims(resource: IConstruct): void {
    if (this.claims) resource.node.addDependency(this.claims);
  }

  /**
   * The stack's claim table: one item per request token, written conditionally by the handler
   * before it acts. On demand (no capacity to scale), encrypted with the AWS managed key, with
   * point-in-time recovery (Control Tower CT.DYNAMODB.PR.1 and PR.2, cdk-nag AwsSolutions-DDB3).
   * Deleted with the stack, after every custom resource of this provider (`dependOnClaims`): by
   * then it holds only claims of requests that ended.
   */
  private claimTable(claims: ClaimTableSpec): dynamodb.Table {
    const table = new dynamodb.Table(this, 'Claims', {
      partitionKey: { name: claims.partitionKey, type: dynamodb.AttributeType.STRING },
      billingMode: dynamodb.BillingMode.PAY_PER_REQUEST,
      encryption: dynamodb.TableEncryption.AWS_MANAGED,
      pointInTimeRecoverySpecification: { pointInTimeRecoveryEnabled: true },
      timeToLiveAttribute: claims.timeToLiveAttribute,
      removalPolicy: RemovalPolicy.DESTROY,
    });
    // Only the item calls the handler makes, on the table itself (it has no index).
    this.role.addToPrincipalPolicy(new iam.PolicyStatement({
      actions: ['dynamodb:GetItem', 'dynamodb:PutItem', 'dynamodb:UpdateItem'],
      resources: [table.tableArn],
    }));
    // Before it creates, a delivery checks that CloudFormation still waits for its resource.
    this.role.addToPrincipalPolicy(new iam.PolicyStatement({ actions: ['cloudformation:DescribeStackResource'], resources: [Stack.of(this).stackId] }));
    return table;
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
