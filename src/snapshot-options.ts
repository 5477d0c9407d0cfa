import { Duration, RemovalPolicy } from 'aws-cdk-lib';
import { IConstruct } from 'constructs';
import { HandlerOptions } from './handler-options';

/**
 * Options shared by the constructs that take a snapshot during `cdk deploy`
 * (`OpenZfsSnapshot`, `EbsSnapshotOnDeploy`): the same names mean the same thing in both.
 */
export interface SnapshotOnDeployOptions {
  /**
   * Tags for the snapshot, besides the library's own tags (5 of the 50 tags AWS allows for an
   * OpenZFS snapshot, 7 for an EBS snapshot). Tags added with `Tags.of()` to the construct or a
   * scope above it are added too.
   * Tags apply to snapshots taken from then on: changing them alone does not take a new snapshot.
   *
   * @default - only the library's ownership tags
   */
  readonly tags?: { [key: string]: string };

  /**
   * Constructs that must not change before the snapshot is taken. Every CloudFormation resource in
   * them depends on the snapshot, and a hash of their resolved properties is part of the
   * snapshot's properties: whenever any of them would change, a new snapshot is taken first.
   *
   * Values that the template only names are resolved by CloudFormation in the snapshot's
   * properties too, so a new value at deploy time also takes a new snapshot first: the stack's
   * parameters that the guarded resources use (such as the SSM-backed AMI parameter of
   * `MachineImage.latestAmazonLinux2023()`) and `{{resolve:ssm:…}}` references written in their
   * properties. Not copied, because they are secrets: `NoEcho` parameters, `ssm-secure` and
   * Secrets Manager references; nor imported values. Use `trigger` for changes to those.
   *
   * @default - the snapshot guards nothing; it is taken when it is created and when `trigger` changes
   */
  readonly snapshotBefore?: IConstruct[];

  /**
   * Any value: whenever it changes, a new snapshot is taken (a release name, a version, a date).
   *
   * @default - no trigger
   */
  readonly trigger?: string;

  /**
   * What happens to a snapshot when CloudFormation deletes the resource: when the stack is deleted,
   * and when a new snapshot replaces it. `RETAIN` keeps every snapshot; `DESTROY` deletes it (only
   * a snapshot that carries this resource's ownership tags is ever deleted).
   *
   * @default RemovalPolicy.RETAIN
   */
  readonly removalPolicy?: RemovalPolicy;

  /**
   * How long the deploy waits for the snapshot to be ready before it fails (and deletes the
   * snapshot it could not finish). At most 1 hour, CloudFormation's limit for a custom resource.
   *
   * @default Duration.minutes(30)
   */
  readonly timeout?: Duration;

  /**
   * Settings of the Lambda handlers (VPC, log retention, memory), shared by every deploy-time
   * construct of the library in the stack (OpenZfsSnapshot, EbsSnapshotOnDeploy,
   * EbsSnapshotFromImage): give them on the first one created, or the same on each.
   *
   * @default - see `HandlerOptions`
   */
  readonly handlerOptions?: HandlerOptions;
}
