import * as path from 'path';
import { Duration, Stack } from 'aws-cdk-lib';
import * as iam from 'aws-cdk-lib/aws-iam';
import * as lambda from 'aws-cdk-lib/aws-lambda';
import * as logs from 'aws-cdk-lib/aws-logs';
import * as cr from 'aws-cdk-lib/custom-resources';
import { Construct, IConstruct } from 'constructs';
import { HandlerOptions } from '../handler-options';
import { NagSuppression, suppressNag } from './nag';

/** What distinguishes the provider of one construct type from another's. */
export interface ProviderSpec {
  /** The construct type, e.g. `OpenZfsSnapshot`; names the provider in the stack. */
  readonly kind: string;
  /** The handler bundle under `assets/`, e.g. `openzfs-snapshot`. */
  readonly handler: string;
  /** Memory of the handler functions by default, in MiB. */
  readonly defaultMemorySize?: number;
  /** Why the wildcards this construct type's statements need are there (cdk-nag AwsSolutions-IAM5). */
  readonly wildcardReasons: NagSuppression[];
}

/**
 * The Provider framework keeps the whole wait bounded by this; each instance's own `timeout`
 * (at most this) is enforced by `isComplete` from the start time `onEvent` returns.
 */
export const PROVIDER_TOTAL_TIMEOUT = Duration.hours(1);

/** How often the framework calls `isComplete` (chosen with the waiting-cost benchmark). */
export const PROVIDER_QUERY_INTERVAL = Duration.seconds(10);

/**
 * One Provider per stack per construct type, shared by all its instances: the N-th instance adds
 * only its own custom resource and, where it names a new resource, an ARN in the shared policy.
 */
export class SnapshotProvider extends Construct {
  /** The provider of `spec.kind` in the stack of `scope`, created on first use. */
  public static of(scope: IConstruct, spec: ProviderSpec, options: HandlerOptions | undefined): SnapshotProvider {
    const stack = Stack.of(scope);
    const id = `CdkStorageSnapshots${spec.kind}Provider`;
    const existing = stack.node.tryFindChild(id) as SnapshotProvider | undefined;
    if (existing) {
      existing.checkSameOptions(scope, options);
      return existing;
    }
    return new SnapshotProvider(stack, id, spec, options, scope);
  }

  /** The role both handler functions run with; instances add their statements to it. */
  public readonly role: iam.Role;
  public readonly serviceToken: string;

  private readonly options: HandlerOptions | undefined;
  private readonly optionsFrom: string;
  private readonly policyStatements = new Map<string, iam.PolicyStatement>();

  private constructor(scope: Stack, id: string, spec: ProviderSpec, options: HandlerOptions | undefined, requester: IConstruct) {
    super(scope, id);
    this.options = options;
    this.optionsFrom = requester.node.path;

    const logGroup = new logs.LogGroup(this, 'Logs', {
      retention: options?.logRetention ?? logs.RetentionDays.ONE_YEAR,
    });
    this.role = new iam.Role(this, 'Role', {
      assumedBy: new iam.ServicePrincipal('lambda.amazonaws.com'),
      description: `cdk-storage-snapshots ${spec.kind} handlers`,
    });
    logGroup.grantWrite(this.role);

    const code = lambda.Code.fromAsset(path.join(__dirname, '..', '..', 'assets', spec.handler));
    const fn = (name: string, handler: string, timeout: Duration) =>
      new lambda.Function(this, name, {
        code,
        handler,
        // A fixed runtime: synth output must not change when CDK's idea of "latest" moves.
        runtime: lambda.Runtime.NODEJS_22_X,
        architecture: lambda.Architecture.ARM_64,
        memorySize: options?.memorySize ?? spec.defaultMemorySize ?? 256,
        timeout,
        role: this.role,
        logGroup,
        loggingFormat: lambda.LoggingFormat.JSON,
        vpc: options?.vpc,
        vpcSubnets: options?.vpcSubnets,
        securityGroups: options?.securityGroups,
        environment: {
          NODE_OPTIONS: '--enable-source-maps',
          POWERTOOLS_SERVICE_NAME: `cdk-storage-snapshots-${spec.handler}`,
        },
      });
    const onEvent = fn('OnEvent', 'index.onEvent', Duration.minutes(5));
    const isComplete = fn('IsComplete', 'index.isComplete', Duration.minutes(2));

    const provider = new cr.Provider(this, 'Provider', {
      onEventHandler: onEvent,
      isCompleteHandler: isComplete,
      totalTimeout: PROVIDER_TOTAL_TIMEOUT,
      queryInterval: PROVIDER_QUERY_INTERVAL,
      logGroup,
      vpc: options?.vpc,
      vpcSubnets: options?.vpcSubnets,
      securityGroups: options?.securityGroups,
    });
    this.serviceToken = provider.serviceToken;

    // Every handler reads its own stack's status, to tell a rollback from an update.
    this.role.addToPrincipalPolicy(
      new iam.PolicyStatement({ actions: ['cloudformation:DescribeStacks'], resources: [Stack.of(this).stackId] }),
    );

    suppressNag(this.role, spec.wildcardReasons);
    suppressNag(this, FRAMEWORK_SUPPRESSIONS);
  }

  /**
   * Adds `resources` to the one shared statement with these actions and conditions, so that N
   * instances give one statement with N ARNs rather than N statements.
   */
  public allow(actions: string[], resources: string[], conditions?: Record<string, Record<string, unknown>>): void {
    const key = JSON.stringify([actions, conditions ?? {}]);
    let statement = this.policyStatements.get(key);
    if (!statement) {
      statement = new iam.PolicyStatement({ actions, conditions });
      this.policyStatements.set(key, statement);
      this.role.addToPrincipalPolicy(statement);
    }
    const known = new Set(statement.resources);
    const fresh = resources.filter((r) => !known.has(r));
    if (fresh.length > 0) statement.addResources(...fresh);
  }

  private checkSameOptions(scope: IConstruct, options: HandlerOptions | undefined): void {
    if (options === undefined || options === this.options) return;
    const keys = new Set([...Object.keys(options), ...Object.keys(this.options ?? {})]) as Set<keyof HandlerOptions>;
    for (const key of keys) {
      if (!sameOption(options[key], this.options?.[key])) {
        throw new Error(
          `${scope.node.path}: invalid handlerOptions.${key}: the handlers are shared by every instance of this construct type ` +
            `in the stack, and ${this.optionsFrom} already set them differently; give the same handlerOptions to both, or to one only`,
        );
      }
    }
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
    reason: 'The Provider framework\'s waiter only polls isComplete; it logs ERROR events, and the handlers log every poll themselves.',
  },
  {
    id: 'AwsSolutions-SF2',
    reason: 'The Provider framework does not offer X-Ray tracing for its waiter state machine; the handlers log each request with its id.',
  },
];

function sameOption(a: unknown, b: unknown): boolean {
  if (a === b) return true;
  if (Array.isArray(a) && Array.isArray(b)) return a.length === b.length && a.every((x, i) => x === b[i]);
  if (a && b && typeof a === 'object' && typeof b === 'object') return JSON.stringify(a) === JSON.stringify(b);
  return false;
}
