import * as path from 'path';
import { Duration, Stack } from 'aws-cdk-lib';
import * as iam from 'aws-cdk-lib/aws-iam';
import * as lambda from 'aws-cdk-lib/aws-lambda';
import * as logs from 'aws-cdk-lib/aws-logs';
import { Construct, IConstruct } from 'constructs';
import { HandlerOptions } from '../handler-options';
import { NagSuppression, suppressNag } from './nag';

/** What distinguishes the handlers of one construct type from another's. */
export interface HandlerSpec {
  /** The construct type, e.g. `OpenZfsSnapshot`; names the singleton in the stack. */
  readonly kind: string;
  /** The handler bundle under `assets/`, e.g. `openzfs-snapshot`. */
  readonly handler: string;
  /** Memory of the handler functions by default, in MiB. */
  readonly defaultMemorySize?: number;
  /** Why the wildcards this construct type's statements need are there (cdk-nag AwsSolutions-IAM5). */
  readonly wildcardReasons: NagSuppression[];
}

/**
 * The Lambda handlers of one construct type in one stack, shared by all its instances, and the one
 * place where stack-level handler settings (VPC, logs, memory) are applied: a role, a log group,
 * and the functions made from the bundled asset. Subclasses add what they need around the
 * functions (the Provider framework, or an EventBridge target).
 */
export abstract class StackHandlers extends Construct {
  /**
   * The singleton of `spec.kind` in the stack of `scope`: the existing one (after checking that
   * `options` agree with it) or a new one made by `create`.
   */
  protected static singleton<T extends StackHandlers>(
    scope: IConstruct,
    spec: HandlerSpec,
    options: HandlerOptions | undefined,
    create: (stack: Stack, id: string) => T,
  ): T {
    const stack = Stack.of(scope);
    const id = `CdkStorageSnapshots${spec.kind}Handlers`;
    const existing = stack.node.tryFindChild(id) as T | undefined;
    if (existing) {
      existing.checkSameOptions(scope, options);
      return existing;
    }
    return create(stack, id);
  }

  /** The role every handler function of this singleton runs with; instances add statements to it. */
  public readonly role: iam.IRole;
  public readonly logGroup: logs.ILogGroup;

  protected readonly spec: HandlerSpec;
  protected readonly options: HandlerOptions | undefined;
  private readonly optionsFrom: string;
  private readonly code: lambda.Code;
  private readonly policyStatements = new Map<string, iam.PolicyStatement>();

  protected constructor(scope: Stack, id: string, spec: HandlerSpec, options: HandlerOptions | undefined, requester: IConstruct) {
    super(scope, id);
    this.spec = spec;
    this.options = options;
    this.optionsFrom = requester.node.path;

    if (options?.logGroup && options.logRetention !== undefined) {
      throw new Error(`${requester.node.path}: invalid handlerOptions: give logGroup or logRetention, not both (a log group of yours keeps its own retention)`);
    }
    this.logGroup = options?.logGroup ?? new logs.LogGroup(this, 'Logs', {
      retention: options?.logRetention ?? logs.RetentionDays.ONE_YEAR,
    });
    this.role = options?.role ?? new iam.Role(this, 'Role', {
      assumedBy: new iam.ServicePrincipal('lambda.amazonaws.com'),
      description: `cdk-storage-snapshots ${spec.kind} handlers`,
    });
    this.logGroup.grantWrite(this.role);
    if (options?.permissionsBoundary) iam.PermissionsBoundary.of(this).apply(options.permissionsBoundary);
    this.code = lambda.Code.fromAsset(path.join(__dirname, '..', '..', 'assets', spec.handler));
  }

  /** A handler function running `index.<exportName>` of the bundle, with the stack-level settings. */
  protected handlerFunction(id: string, exportName: string, timeout: Duration, environment: Record<string, string> = {}): lambda.Function {
    return new lambda.Function(this, id, {
      code: this.code,
      handler: `index.${exportName}`,
      // A fixed runtime: synth output must not change when CDK's idea of "latest" moves.
      runtime: lambda.Runtime.NODEJS_22_X,
      architecture: lambda.Architecture.ARM_64,
      memorySize: this.options?.memorySize ?? this.spec.defaultMemorySize ?? 256,
      timeout,
      role: this.role,
      logGroup: this.logGroup,
      loggingFormat: lambda.LoggingFormat.JSON,
      vpc: this.options?.vpc,
      vpcSubnets: this.options?.vpcSubnets,
      securityGroups: this.options?.securityGroups,
      environment: {
        NODE_OPTIONS: '--enable-source-maps',
        POWERTOOLS_SERVICE_NAME: `cdk-storage-snapshots-${this.spec.handler}`,
        ...environment,
      },
    });
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
      // The role's default policy exists now: say why its wildcards are there.
      suppressNag(this.role, this.spec.wildcardReasons);
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

function sameOption(a: unknown, b: unknown): boolean {
  if (a === b) return true;
  if (Array.isArray(a) && Array.isArray(b)) return a.length === b.length && a.every((x, i) => x === b[i]);
  if (a && b && typeof a === 'object' && typeof b === 'object') return JSON.stringify(a) === JSON.stringify(b);
  return false;
}
