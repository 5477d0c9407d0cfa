/*
 * The contract between the constructs (src/) and the Lambda handlers (lambda/): the custom
 * resource properties each construct writes and its handler reads, and the ownership tag keys that
 * both the handler (when it tags) and the construct (in IAM conditions) name. The handlers import
 * this file for its types only, so the two sides cannot drift: a key changed on one side and not
 * on the other fails to compile.
 *
 * CloudFormation passes every custom resource property value as a string, so numbers and booleans
 * are strings here.
 */

/** The tag keys every copy the library makes carries. */
export interface OwnershipTagKeys {
  /** Value: the library name. Marks a copy as made by this library. */
  readonly managedBy: 'cdk-storage-snapshots:managed-by';
  /** Value: the CloudFormation stack id (ARN) that made the copy. */
  readonly stackId: 'cdk-storage-snapshots:stack-id';
  /** Value: the logical id of the custom resource (or schedule) that made the copy. */
  readonly owner: 'cdk-storage-snapshots:owner';
  /** Value: a hash of the properties that forced the copy; finds the copy a rollback returns to. */
  readonly propsHash: 'cdk-storage-snapshots:props-hash';
  /** Value: the client token of the request or tick that made the copy. */
  readonly token: 'cdk-storage-snapshots:token';
}

/** The value of the `managedBy` tag. */
export type ManagedByValue = 'cdk-storage-snapshots';

/** What the constructs can ask the handlers to do with a copy when CloudFormation deletes it. */
export type CopyRemovalPolicy = 'retain' | 'destroy';

/** How a request came by the copy it reports. */
export type CopyOrigin = 'created' | 'adopted' | 'unchanged';

/** Properties of the `Custom::OpenZfsSnapshot` resource. */
export interface OpenZfsSnapshotProperties {
  /** The OpenZFS volume (`fsvol-…`). Forces a new snapshot when it changes. */
  readonly VolumeId: string;
  /** Prefix of the snapshot name; a short hash of the request is appended. Applies to the next snapshot. */
  readonly SnapshotName: string;
  /** Any value the user chose; a change forces a new snapshot. */
  readonly Trigger?: string;
  /** Hash of the resolved properties of the guarded resources; a change forces a new snapshot. */
  readonly SnapshotBeforeHash?: string;
  /** User tags, as a JSON object string (keys sorted at synth, so synth output is stable). */
  readonly Tags?: string;
  /** What a Delete does with the snapshot. */
  readonly RemovalPolicy: CopyRemovalPolicy;
  /** Seconds `isComplete` may wait for AVAILABLE before failing the deploy. */
  readonly TimeoutSeconds: string;
}

/** Attributes (`Data`) of the `Custom::OpenZfsSnapshot` resource. */
export interface OpenZfsSnapshotAttributes {
  readonly SnapshotId: string;
  readonly SnapshotArn: string;
  readonly SnapshotName: string;
  readonly CreationTime: string;
  /** Epoch milliseconds when the request started; `isComplete` enforces the timeout from it. */
  readonly StartedAt: string;
  /**
   * `created`: this request made the snapshot (`isComplete` waits for it); `adopted`: a rollback
   * returned to the snapshot the old properties made; `unchanged`: nothing that forces a new
   * snapshot changed.
   */
  readonly Origin: CopyOrigin;
}
