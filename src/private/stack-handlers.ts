import * as path from 'path';
import { Duration, Lazy, Stack, Token } from 'aws-cdk-lib';
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
  /** Timeout of the Provider's `onEvent` function. @default 5 minutes */
  readonly onEventTimeout?: Duration;
  /** Timeout of the Provider's `isComplete` function (at most the framework's 15 minutes). @default 2 minutes */
  readonly isCompleteTimeout?: Duration;
  /**
   * For a handler that claims each request in a DynamoDB table before acting on it
   * (EbsSnapshotOnDeploy: EC2 `CreateSnapshot` takes no client token, so one conditional write per
   * request decides which delivery creates). The stack gets one table for the construct type,
   * deleted with the stack; `onEvent` gets its name and the role `GetItem`, `PutItem` and
   * `UpdateItem` on it.
   * @default - no claim table
   */
  readonly claimTable?: ClaimTableSpec;
  /** Why the wildcards this construct type's statements need are there (cdk-nag AwsSolutions-IAM5). */
  readonly wildcardReasons: NagSuppression[];
}

/** The claim table a handler expects (see `HandlerSpec.claimTable`); the names come from its contract. */
export interface ClaimTableSpec {
  /** The environment variable that gives `onEvent` the table's name. */
  readonly envName: string;
  /** The partition key (a string attribute); the table has no sort key. */
  readonly partitionKey: string;
  /** The attribute (a number, epoch seconds) after which DynamoDB may remove an item. */
  readonly timeToLiveAttribute: string;
}

/** Memory of a handler function unless its spec or `handlerOptions.memorySize` says otherwise, in MiB. */
export const DEFAULT_MEMORY_SIZE = 256;

/** How the handlers of a singleton are named and where their code is. */
export interface HandlerSettings {
  /** Says what the handlers serve, in the role's description and in errors (e.g. `FsxBackupSchedule`). */
  readonly description: string;
  /** The bundle directory under `assets/`, e.g. `fsx-backup-schedule`. */
  readonly asset: string;
  /** Who shares the handlers, for the error on conflicting options (e.g. `every FsxBackupSchedule`). */
  readonly sharedBy: string;
}

/** The number of distinct ARNs in one statement past which it makes it switch to resource-type patterns (see `allow()`). */
export const EXACT_ARNS_PER_STATEMENT = 10;

/**
 * The Lambda handlers of one construct type in one stack, shared by all its instances, and the one
 * place where stack-level handler settings (VPC, logs, memory) are applied: a role, a log group,
 * and the functions made from the bundled asset. Subclasses add what they need around the
 * functions (the Provider framework, or an EventBridge target).
 */
export abstract class StackHandlers extends Construct {
  /**
   * The singleton with construct id `id` in the stack of `scope`: the existing one (after checking
   * that `options` agree with it) or a new one made by `create`.
   */
  protected static singleton<T extends StackHandlers>(
    scope: IConstruct,
    id: string,
    options: HandlerOptions | undefined,
    create: (stack: Stack, id: string) => T,
  ): T {
    const stack = Stack.of(scope);
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

  protected readonly settings: HandlerSettings;
  protected readonly options: HandlerOptions | undefined;
  private readonly optionsFrom: string;
  private readonly code: lambda.Code;
  private readonly policyStatements = new Map<string, SharedStatement>();
  /** Why the wildcards of the statements are there (cdk-nag AwsSolutions-IAM5), for every type served. */
  private readonly wildcardReasons: NagSuppression[] = [];

  protected constructor(scope: Stack, id: string, settings: HandlerSettings, options: HandlerOptions | undefined, requester: IConstruct) {
    super(scope, id);
    this.settings = settings;
    this.options = options;
    this.optionsFrom = requester.node.path;

    const memory = options?.memorySize;
    if (memory !== undefined && !Token.isUnresolved(memory) && (!Number.isInteger(memory) || memory < 128 || memory > 10_240)) {
      throw new Error(`${requester.node.path}: invalid handlerOptions.memorySize: must be a whole number of MiB from 128 to 10,240 (received ${memory})`);
    }
    const reserved = options?.reservedConcurrentExecutions;
    if (reserved !== undefined && !Token.isUnresolved(reserved) && (!Number.isInteger(reserved) || reserved < 1)) {
      throw new Error(`${requester.node.path}: invalid handlerOptions.reservedConcurrentExecutions: must be a whole number of at least 1 ` +
        `(0 would stop the handlers and every deploy would hang until CloudFormation's timeout) (received ${reserved})`);
    }
    if (options?.logGroup && options.logRetention !== undefined) {
      throw new Error(`${requester.node.path}: invalid handlerOptions: give logGroup or logRetention, not both (a log group of yours keeps its own retention)`);
    }
    this.logGroup = options?.logGroup ?? new logs.LogGroup(this, 'Logs', {
      retention: options?.logRetention ?? logs.RetentionDays.ONE_YEAR,
    });
    this.role = options?.role ?? new iam.Role(this, 'Role', {
      assumedBy: new iam.ServicePrincipal('lambda.amazonaws.com'),
      description: `cdk-storage-snapshots ${settings.description} handlers`,
    });
    this.logGroup.grantWrite(this.role);
    if (options?.permissionsBoundary) iam.PermissionsBoundary.of(this).apply(options.permissionsBoundary);
    this.code = lambda.Code.fromAsset(path.join(__dirname, '..', '..', 'assets', settings.asset));
  }

  /**
   * A handler function running `index.<exportName>` of the bundle, with the stack-level settings;
   * `memorySize` (MiB) applies unless `handlerOptions.memorySize` was given.
   */
  protected handlerFunction(
    id: string, exportName: string, timeout: Duration, memorySize: number, environment: Record<string, string> = {},
  ): lambda.Function {
    return new lambda.Function(this, id, {
      code: this.code,
      handler: `index.${exportName}`,
      // A fixed runtime: synth output must not change when CDK's idea of "latest" moves.
      runtime: lambda.Runtime.NODEJS_22_X,
      architecture: lambda.Architecture.ARM_64,
      memorySize: this.options?.memorySize ?? memorySize,
      reservedConcurrentExecutions: this.options?.reservedConcurrentExecutions,
      timeout,
      role: this.role,
      logGroup: this.logGroup,
      loggingFormat: lambda.LoggingFormat.JSON,
      vpc: this.options?.vpc,
      vpcSubnets: this.options?.vpcSubnets,
      securityGroups: this.options?.securityGroups,
      environment: {
        NODE_OPTIONS: '--enable-source-maps',
        POWERTOOLS_SERVICE_NAME: `cdk-storage-snapshots-${this.settings.asset}`,
        ...environment,
      },
    });
  }

  /**
   * Adds `resources` to the one shared statement with these actions and conditions, so that N
   * instances give one statement with N ARNs rather than N statements.
   *
   * Past `EXACT_ARNS_PER_STATEMENT` distinct ARNs in the statement, each ARN becomes the pattern
   * of its resource type in its own account and region (`arn:<partition>:fsx:<region>:<account>:
   * snapshot/*` for `.../snapshot/fsvol-1/*`), and the statement keeps its conditions. Why: every
   * exact ARN costs about 70 characters of policy (100 unresolved), and with per-ARN grants
   * OpenZfsSnapshots on distinct volumes made CDK split the role's default policy into
   * `OverflowPolicy` managed policies from 15 instances on, and from 43 one of those (a single
   * statement, which CDK cannot split) passed IAM's 6,144-character limit for a managed policy:
   * the deploy would fail. Below the threshold a stack keeps exact ARNs, which is most stacks.
   * Past it the pattern still names the service, the resource type, this account and this
   * region, and the statements that tag or delete keep their `aws:RequestTag`/`aws:ResourceTag`
   * ownership conditions, so deletes remain limited to what this stack made; what widens is only
   * the condition-free create calls (for OpenZFS: a snapshot of any OpenZFS volume of the account
   * and region), which destroy nothing. At 10 the largest inline policy of one construct type
   * stays near 2.5 KB (then 1.2 KB past it, at any N), a quarter of IAM's 10,240 per role, leaving
   * room for a role of the user's own. CDK's own size estimate sees one resource per statement
   * (the rendered list is a token), which the threshold makes harmless. Measured by
   * `bench/run.ts` (bench/RESULTS.md, "IAM growth").
   */
  public allow(actions: string[], resources: string[], conditions?: Record<string, Record<string, unknown>>): void {
    const key = JSON.stringify([actions, conditions ?? {}]);
    let shared = this.policyStatements.get(key);
    if (!shared) {
      const arns: string[] = [];
      const state: SharedStatement = { arns, patterned: false };
      // The resources are rendered at synth time, when the statement's last ARN is known: a
      // statement that crosses the threshold then shows only the patterns, not both.
      const rendered = Token.asString(Lazy.any({ produce: () => renderResources(state.arns, EXACT_ARNS_PER_STATEMENT) }));
      this.role.addToPrincipalPolicy(new iam.PolicyStatement({ actions, conditions, resources: [rendered] }));
      shared = state;
      this.policyStatements.set(key, shared);
      // The role's default policy exists now: say why its wildcards are there.
      suppressNag(this.role, this.wildcardReasons);
    }
    for (const r of resources) if (!shared.arns.includes(r)) shared.arns.push(r);
    if (!shared.patterned && shared.arns.length > EXACT_ARNS_PER_STATEMENT) {
      shared.patterned = true;
      suppressNag(this.role, [PATTERN_REASON]);
    }
  }

  /**
   * Adds why the wildcards of a construct type's statements are there (cdk-nag AwsSolutions-IAM5)
   * to the role's policies, now and when `allow()` makes them.
   */
  protected addWildcardReasons(reasons: NagSuppression[]): void {
    for (const r of reasons) if (!this.wildcardReasons.includes(r)) this.wildcardReasons.push(r);
    if (this.policyStatements.size > 0) suppressNag(this.role, this.wildcardReasons);
  }

  private checkSameOptions(scope: IConstruct, options: HandlerOptions | undefined): void {
    if (options === undefined || options === this.options) return;
    const keys = new Set([...Object.keys(options), ...Object.keys(this.options ?? {})]) as Set<keyof HandlerOptions>;
    for (const key of keys) {
      if (!sameOption(options[key], this.options?.[key])) {
        throw new Error(
          `${scope.node.path}: invalid handlerOptions.${key}: the handlers are shared by ${this.settings.sharedBy} ` +
            `in the stack, and ${this.optionsFrom} already set them differently; give the same handlerOptions to both, ` +
            `or give them to ${this.optionsFrom} only (the first one decides)`,
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

interface SharedStatement {
  /** Every distinct ARN asked for, in the order first asked. */
  readonly arns: string[];
  /** Whether the statement has crossed the threshold (and its nag reason been added). */
  patterned: boolean;
}

/** The statement's `Resource`: the ARNs themselves, or past `limit` their resource-type patterns. */
function renderResources(arns: string[], limit: number): string | string[] {
  const out = arns.length > limit ? [...new Set(arns.map((a) => resourceTypePattern(a) ?? a))] : arns;
  return out.length === 1 ? out[0] : out;
}

/**
 * `arn:<partition>:<service>:<region>:<account>:<type>/*` for an ARN of a `<type>/…` or `<type>:…`
 * resource (tokens such as the partition or a volume id are kept as they are: they contain no `:`);
 * undefined for `*` and for what is not such an ARN (a token that is the whole ARN, say).
 */
export function resourceTypePattern(arn: string): string | undefined {
  const parts = arn.split(':');
  if (parts.length < 6 || parts[0] !== 'arn') return undefined;
  const type = /^([a-z][a-z0-9-]*)([/:])/.exec(parts.slice(5).join(':'));
  if (!type) return undefined;
  return [...parts.slice(0, 5), `${type[1]}${type[2]}*`].join(':');
}

const PATTERN_REASON: NagSuppression = {
  id: 'AwsSolutions-IAM5',
  reason: `Past ${EXACT_ARNS_PER_STATEMENT} distinct ARNs in one statement the library grants their resource type in this account and region ` +
    '(<type>/*) instead of each ARN, so that the role\'s inline policy stays under IAM\'s size limit; statements that tag or delete keep ' +
    'the library\'s request/resource-tag conditions, so deletes stay limited to what this stack made.',
  appliesTo: [{ regex: '/^Resource::arn:<AWS::Partition>:[a-z0-9-]+:[^:]*:[^:]*:[a-z][a-z0-9-]*[\\/:]\\*$/' }],
};
