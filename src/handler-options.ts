import * as ec2 from 'aws-cdk-lib/aws-ec2';
import * as iam from 'aws-cdk-lib/aws-iam';
import * as logs from 'aws-cdk-lib/aws-logs';

/**
 * Settings of the Lambda handlers behind the library's constructs. The deploy-time constructs
 * (OpenZfsSnapshot, EbsSnapshotOnDeploy, EbsSnapshotFromImage) share one provider per stack, and
 * every FsxBackupSchedule and OpenZfsSnapshotSchedule of a stack shares one function, so these
 * settings are shared too: give
 * them on the first such construct created in the stack (or on all of them, the same); different
 * settings on two of them in one stack, or settings on a later one when the first had none, are
 * refused at synth.
 */
export interface HandlerOptions {
  /**
   * The VPC to run the handlers in. They call the FSx, EC2, EBS, S3, CloudFormation and (for
   * EbsSnapshotOnDeploy's claim table) DynamoDB APIs, and the Provider framework calls Lambda and
   * Step Functions and answers CloudFormation through a pre-signed S3 URL, so the subnets need a
   * route to them: a NAT gateway, or interface VPC endpoints for those services and S3 and
   * DynamoDB gateway endpoints (see the README).
   *
   * @default - the handlers do not run in a VPC
   */
  readonly vpc?: ec2.IVpc;

  /**
   * Where in `vpc` to place the handlers.
   *
   * @default - the VPC's private subnets with egress
   */
  readonly vpcSubnets?: ec2.SubnetSelection;

  /**
   * Security groups of the handlers, when `vpc` is given.
   *
   * @default - a security group with egress only, created for the handlers
   */
  readonly securityGroups?: ec2.ISecurityGroup[];

  /**
   * How long the handlers' logs are kept, in the log group the library creates.
   *
   * @default logs.RetentionDays.ONE_YEAR
   */
  readonly logRetention?: logs.RetentionDays;

  /**
   * A log group of yours for the handlers' logs (then `logRetention` does not apply).
   *
   * @default - a log group created for the handlers, kept for `logRetention`
   */
  readonly logGroup?: logs.ILogGroup;

  /**
   * A role of yours for the handlers to run with. The library adds the statements the handlers
   * need to it when it can (a role defined in the app, or one imported as mutable); for an
   * immutable role, grant them yourself: the synthesized policy of the default role shows them.
   * For EbsSnapshotOnDeploy (from a volume or an instance) these include `dynamodb:GetItem`,
   * `dynamodb:PutItem` and `dynamodb:UpdateItem` on the stack's claim table (the `Claims` table
   * under `CdkStorageSnapshotsProvider`). With `vpc`, the role also needs to manage the functions'
   * network interfaces (AWS's `AWSLambdaVPCAccessExecutionRole`), which the library adds only to
   * the roles it creates.
   *
   * @default - a role created for the handlers, with least-privilege statements
   */
  readonly role?: iam.IRole;

  /**
   * A permissions boundary for the roles the library creates (the handlers' and the Provider
   * framework's). `iam.PermissionsBoundary.of(scope).apply(...)` on a stack works too.
   *
   * @default - no permissions boundary
   */
  readonly permissionsBoundary?: iam.IManagedPolicy;

  /**
   * Memory of each handler function, in MiB.
   *
   * @default 256 (2048 when the stack has an EbsSnapshotFromImage: the shared provider takes the largest size any type needs, and uploads need the CPU)
   */
  readonly memorySize?: number;

  /**
   * Concurrent executions reserved for each handler function (the Provider framework's own
   * functions are not limited). The handlers run once per resource per deploy, or once per tick,
   * so they need little; a cap keeps a large deploy from taking the account's unreserved
   * concurrency. Too low a cap makes CloudFormation wait: keep it at least the number of instances
   * that deploy at once. The functions' timeouts are fixed by what each handler does (5 minutes for
   * a request, 2 minutes per status check, 14 minutes per upload slice, 15 minutes per tick).
   *
   * @default - no reserved concurrency (the account's unreserved pool)
   */
  readonly reservedConcurrentExecutions?: number;
}
