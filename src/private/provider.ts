import { Duration, Lazy, RemovalPolicy, Stack } from 'aws-cdk-lib';
import * as dynamodb from 'aws-cdk-lib/aws-dynamodb';
import * as iam from 'aws-cdk-lib/aws-iam';
import * as lambda from 'aws-cdk-lib/aws-lambda';
import * as sfn from 'aws-cdk-lib/aws-stepfunctions';
import * as cr from 'aws-cdk-lib/custom-resources';
import { IConstruct } from 'constructs';
import { HandlerOptions } from '../handler-options';
import { DEPLOY_TIME_HANDLERS, PROVIDER_ASSET } from './deploy-time-types';
import { ec2SnapshotArn } from './ec2-arns';
import { NagSuppression, suppressNag } from './nag';
import { stackOwnershipCondition } from './ownership-tags';
import { ClaimTableSpec, DEFAULT_MEMORY_SIZE, HandlerSpec, StackHandlers } from './stack-handlers';

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
 * The construct id of the stack's provider. Never change it, nor the path below it to the
 * framework's onEvent function: its ARN is the `ServiceToken` of every custom resource the
 * library made, and CloudFormation refuses to change a custom resource's service token
 * ("Modifying service token is not allowed"). See CONTRIBUTING.md.
 */
export const PROVIDER_ID = 'CdkStorageSnapshotsProvider';

const DEFAULT_ON_EVENT_TIMEOUT = Duration.minutes(5);
const DEFAULT_IS_COMPLETE_TIMEOUT = Duration.minutes(2);

/**
 * The one custom-resource Provider of a stack, shared by every deploy-time construct of the
 * library (OpenZFS snapshots, EBS snapshots, snapshots from disk images): one onEvent and one
 * isComplete function route each request on its `ResourceType` to that type's handler module,
 * which is a bundle of its own, so a request loads only its own type's code and SDK clients.
 *
 * What a type needs is added when its first instance registers (`of()`): its statements (through
 * `allow()`, as its instances ask), the claim table, and the size of the shared functions, which
 * take the largest memory and timeouts of the types present, computed at synth. The N-th
 * instance of any type adds only its own custom resource and, where it names a new resource, an
 * ARN in the shared policy.
 */
export class SnapshotProvider extends StackHandlers {
  /** The provider in the stack of `scope`, created on first use, with what the type of `spec` needs added. */
  public static of(scope: IConstruct, spec: HandlerSpec, options: HandlerOptions | undefined): SnapshotProvider {
    const provider = StackHandlers.singleton(scope, PROVIDER_ID, options, (stack, id) => new SnapshotProvider(stack, id, options, scope));
    provider.register(spec);
    return provider;
  }

  public readonly serviceToken: string;
  private readonly onEventFunction: lambda.Function;
  private readonly isCompleteFunction: lambda.Function;
  private readonly specs = new Map<string, HandlerSpec>();
  /**
   * With a type that claims its requests: the stack's claim table, which every custom resource of
   * the provider must depend on (`dependOnClaims`).
   */
  private claims?: dynamodb.Table;

  private constructor(scope: Stack, id: string, options: HandlerOptions | undefined, requester: IConstruct) {
    super(scope, id, {
      description: 'deploy-time snapshot',
      asset: PROVIDER_ASSET,
      sharedBy: 'every deploy-time construct of cdk-storage-snapshots (OpenZfsSnapshot, EbsSnapshotOnDeploy, EbsSnapshotFromImage)',
    }, options, requester);
    const memory = Lazy.number({ produce: () => Math.max(...this.allSpecs().map((s) => s.defaultMemorySize ?? DEFAULT_MEMORY_SIZE)) });
    this.onEventFunction = this.sizedFunction('OnEvent', 'onEvent', memory, (s) => s.onEventTimeout ?? DEFAULT_ON_EVENT_TIMEOUT);
    this.isCompleteFunction = this.sizedFunction('IsComplete', 'isComplete', memory, (s) => s.isCompleteTimeout ?? DEFAULT_IS_COMPLETE_TIMEOUT);

    // Two framework roles: one shared by all framework functions, or the handler role reused,
    // makes a dependency cycle through the waiter state machine (and `ProviderProps.role` is
    // deprecated). Both write to the one log group.
    const frameworkRole = (roleId: string, what: string) => {
      const role = new iam.Role(this, roleId, {
        assumedBy: new iam.ServicePrincipal('lambda.amazonaws.com'),
        description: `cdk-storage-snapshots provider framework: ${what}`,
      });
      this.logGroup.grantWrite(role);
      if (options?.vpc) role.addManagedPolicy(VPC_ACCESS_POLICY);
      return role;
    };
    const provider = new cr.Provider(this, 'Provider', {
      onEventHandler: this.onEventFunction,
      isCompleteHandler: this.isCompleteFunction,
      frameworkOnEventRole: frameworkRole('FrameworkOnEventRole', 'onEvent'),
      frameworkCompleteAndTimeoutRole: frameworkRole('FrameworkCompleteRole', 'isComplete and onTimeout'),
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
    this.grantDeletes();
    // Every handler reads its own stack's status, to tell a rollback from an update.
    this.role.addToPrincipalPolicy(
      new iam.PolicyStatement({ actions: ['cloudformation:DescribeStacks'], resources: [Stack.of(this).stackId] }),
    );
    if (options?.vpc && !options.role) (this.role as iam.Role).addManagedPolicy(VPC_ACCESS_POLICY);
    suppressNag(this, FRAMEWORK_SUPPRESSIONS);
    if (options?.vpc) suppressNag(this, [VPC_ACCESS_SUPPRESSION]);
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
   * What a Delete needs, for every deploy-time type, whether or not the app still has an instance
   * of it or of that volume: CloudFormation updates this policy in the update phase and sends the
   * Delete of a removed resource only later, in the clean-up phase, so a statement that followed
   * the instances would be gone by then (the Delete would fail with AccessDenied and, in clean-up,
   * leave the copy behind without failing the stack). Deletes stay limited to copies carrying the
   * library's and this stack's ownership tags; reads have no resource-level permissions.
   */
  private grantDeletes(): void {
    const stack = Stack.of(this);
    const ours = {
      StringEquals: stackOwnershipCondition('ResourceTag', stack.stackId),
    };
    this.addWildcardReasons(DELETE_REASONS);
    this.allow(['fsx:DeleteSnapshot'], [stack.formatArn({ service: 'fsx', resource: 'snapshot', resourceName: '*' })], ours);
    this.allow(['ec2:DeleteSnapshot'], [ec2SnapshotArn(this, '*')], ours);
    this.allow(['fsx:DescribeSnapshots', 'ec2:DescribeSnapshots'], ['*']);
  }

  /** Adds what the type of `spec` needs, once per type. */
  private register(spec: HandlerSpec): void {
    if (this.specs.has(spec.kind)) return;
    if (!Object.values(DEPLOY_TIME_HANDLERS).includes(spec.handler)) {
      throw new Error(`cdk-storage-snapshots: no deploy-time handler module "${spec.handler}" (${spec.kind}); add it to DEPLOY_TIME_HANDLERS`);
    }
    this.specs.set(spec.kind, spec);
    this.addWildcardReasons(spec.wildcardReasons);
    if (spec.claimTable) this.addClaimTable(spec.claimTable);
  }

  private allSpecs(): HandlerSpec[] {
    return [...this.specs.values()];
  }

  /**
   * A shared function whose memory and timeout are the largest any type present needs, decided at
   * synth (a type may register after the function exists).
   */
  private sizedFunction(id: string, exportName: string, memory: number, timeoutOf: (s: HandlerSpec) => Duration): lambda.Function {
    const fn = this.handlerFunction(id, exportName, DEFAULT_ON_EVENT_TIMEOUT, memory);
    (fn.node.defaultChild as lambda.CfnFunction).timeout = Lazy.number({
      produce: () => Math.max(...this.allSpecs().map((s) => timeoutOf(s).toSeconds())),
    });
    return fn;
  }

  /**
   * The stack's claim table: one item per request token, written conditionally by the handler
   * before it acts. On demand (no capacity to scale), encrypted with the AWS managed key, with
   * point-in-time recovery (Control Tower CT.DYNAMODB.PR.1 and PR.2, cdk-nag AwsSolutions-DDB3).
   * Deleted with the stack, after every custom resource of this provider (`dependOnClaims`): by
   * then it holds only claims of requests that ended.
   */
  private addClaimTable(claims: ClaimTableSpec): void {
    if (this.claims) return;
    const table = new dynamodb.Table(this, 'Claims', {
      partitionKey: { name: claims.partitionKey, type: dynamodb.AttributeType.STRING },
      billingMode: dynamodb.BillingMode.PAY_PER_REQUEST,
      encryption: dynamodb.TableEncryption.AWS_MANAGED,
      pointInTimeRecoverySpecification: { pointInTimeRecoveryEnabled: true },
      timeToLiveAttribute: claims.timeToLiveAttribute,
      removalPolicy: RemovalPolicy.DESTROY,
    });
    this.claims = table;
    // isComplete records a failure it meets (a snapshot in error) in the claim too.
    for (const fn of [this.onEventFunction, this.isCompleteFunction]) fn.addEnvironment(claims.envName, table.tableName);
    // Only the item calls the handler makes, on the table itself (it has no index).
    this.role.addToPrincipalPolicy(new iam.PolicyStatement({
      actions: ['dynamodb:GetItem', 'dynamodb:PutItem', 'dynamodb:UpdateItem'],
      resources: [table.tableArn],
    }));
    // Before it creates, a delivery checks that CloudFormation still waits for its resource.
    this.role.addToPrincipalPolicy(new iam.PolicyStatement({ actions: ['cloudformation:DescribeStackResource'], resources: [Stack.of(this).stackId] }));
  }
}

const DELETE_REASONS: NagSuppression[] = [
  {
    id: 'AwsSolutions-IAM5',
    reason: 'Deleting a copy must not depend on its construct still being in the app (CloudFormation updates the policy before it sends ' +
      'the Delete of a removed resource): snapshot/* of FSx and EC2, only with the library\'s and this stack\'s ownership tags.',
    appliesTo: [{ regex: '/^Resource::arn:<AWS::Partition>:(fsx|ec2):[^:]*:[^:]*:snapshot\\/\\*$/' }],
  },
  {
    id: 'AwsSolutions-IAM5',
    reason: 'fsx:DescribeSnapshots and ec2:DescribeSnapshots have no resource-level permissions.',
    appliesTo: ['Resource::*'],
  },
];

/** What a function in a VPC needs to create and delete its network interfaces (its roles are the library's). */
const VPC_ACCESS_POLICY = iam.ManagedPolicy.fromAwsManagedPolicyName('service-role/AWSLambdaVPCAccessExecutionRole');

const VPC_ACCESS_SUPPRESSION: NagSuppression = {
  id: 'AwsSolutions-IAM4',
  reason: 'Functions in a VPC need to create and delete their network interfaces, whose EC2 actions take no resource-level ' +
    'permissions: AWS\'s AWSLambdaVPCAccessExecutionRole is exactly that (and log writing).',
  appliesTo: ['Policy::arn:<AWS::Partition>:iam::aws:policy/service-role/AWSLambdaVPCAccessExecutionRole'],
};

/** What cdk-nag AwsSolutions reports about the handlers and aws-cdk-lib's Provider framework, and why it stands. */
const FRAMEWORK_SUPPRESSIONS: NagSuppression[] = [
  {
    id: 'AwsSolutions-L1',
    reason: 'The handlers are pinned to nodejs22.x so that synth output does not change when CDK\'s latest runtime moves; ' +
      'the Provider framework functions use the runtime aws-cdk-lib chooses for them.',
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
