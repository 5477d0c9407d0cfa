/*
 * The contract between `EbsSnapshotOnDeploy` (src/) and its handler (lambda/ebs-snapshot/): the
 * custom resource properties the construct writes and the handler reads, and the attributes the
 * handler answers with, and the values both sides name (it imports nothing but types, so the
 * handler's bundle copies them). Every property value is a string, as CloudFormation passes them.
 */
import type { CopyOrigin, CopyRemovalPolicy } from './contract';

/** What `Source` the resource snapshots: one volume, or every volume of one instance. */
export type EbsSnapshotSourceKind = 'volume' | 'instance';

/** Properties of the `Custom::EbsSnapshotOnDeploy` resource. */
export interface EbsSnapshotOnDeployProperties {
  /** `volume` (EC2 CreateSnapshot) or `instance` (EC2 CreateSnapshots, crash-consistent across its volumes). */
  readonly Source: EbsSnapshotSourceKind;
  /** The volume (`vol-…`), for `Source: volume`, when it is known (a literal or a `Ref`). */
  readonly VolumeId?: string;
  /** The instance (`i-…`), for `Source: instance`, when it is known (a literal or a `Ref`). */
  readonly InstanceId?: string;
  /**
   * The logical id of the source in this very stack, when it cannot be referenced (it is guarded by
   * the snapshot, so a `Ref` would be a cycle): found at deploy time by the tags CloudFormation puts
   * on it (`aws:cloudformation:stack-id`, `aws:cloudformation:logical-id`). Absent on the first
   * deploy, before the source exists: the resource succeeds without a snapshot.
   */
  readonly SourceLogicalId?: string;
  /** The snapshot's description (at most 255 characters). Applies to the next snapshot. */
  readonly Description?: string;
  /** The Outpost to keep a local snapshot on (EC2 `OutpostArn`). Forces a new snapshot when it changes. */
  readonly OutpostArn?: string;
  /** Any value the user chose; a change forces a new snapshot. */
  readonly Trigger?: string;
  /** Hash of the resolved properties of the guarded resources; a change forces a new snapshot. */
  readonly SnapshotBeforeHash?: string;
  /** User tags, as a JSON object string (keys sorted at synth). */
  readonly Tags?: string;
  /** What a Delete does with the snapshots. */
  readonly RemovalPolicy: CopyRemovalPolicy;
  /** Seconds `isComplete` may wait for `completed` before failing the deploy. */
  readonly TimeoutSeconds: string;
  /** `true`: `isComplete` waits for `completed`; `false`: the deploy goes on once the snapshot exists. */
  readonly WaitForCompletion: 'true' | 'false';
  /**
   * The device names `snapshotIdOfDevice()` was asked for, comma-separated and sorted (instance
   * sources): the handler answers a `Device:<name>` attribute for each of them on every request,
   * empty when no snapshot was taken, so that a `Fn::GetAtt` never names a missing attribute.
   */
  readonly Devices?: string;
}

/**
 * Tags the handler adds to each snapshot beyond the ownership tags: the delivery (one invocation
 * of onEvent) that made it, so that a delivery deletes only what it made itself; and the physical
 * id (or, if longer than a tag value, nothing) of the snapshots the request replaced, so that a
 * rollback returns to exactly that set.
 */
export type EbsSnapshotExtraTagKey = 'cdk-storage-snapshots:delivery' | 'cdk-storage-snapshots:replaces';
/** The delivery that made a snapshot. */
export const DELIVERY_TAG_KEY: EbsSnapshotExtraTagKey = 'cdk-storage-snapshots:delivery';
/** The physical id of the set a snapshot replaced. */
export const REPLACES_TAG_KEY: EbsSnapshotExtraTagKey = 'cdk-storage-snapshots:replaces';
/** How many tags `EbsSnapshotExtraTagKey` takes of the 50 a snapshot may have. */
export const EBS_SNAPSHOT_EXTRA_TAG_COUNT = 2;

/**
 * Attributes (`Data`) of the `Custom::EbsSnapshotOnDeploy` resource. Besides these, one
 * `Device:<device name>` attribute per snapshot of an instance source names the snapshot of the
 * volume attached at that device (for example `Device:/dev/xvda`).
 */
export interface EbsSnapshotOnDeployAttributes {
  /** The (first) snapshot's id; empty when no snapshot was taken (the source did not exist yet). */
  readonly SnapshotId: string;
  /** Every snapshot's id, comma-separated, in the order of `VolumeIds`. */
  readonly SnapshotIds: string;
  /** The volumes snapshotted, comma-separated. */
  readonly VolumeIds: string;
  /** When EC2 took the (first) snapshot, ISO 8601: the point in time it holds. */
  readonly StartTime: string;
  /** `true`, or `false` when the source was looked up and did not exist yet (no snapshot taken). */
  readonly SourceFound: 'true' | 'false';
  /** Epoch milliseconds when the request started; `isComplete` enforces the timeout from it. */
  readonly StartedAt: string;
  /** How this request came by its snapshots (see `OpenZfsSnapshotAttributes.Origin`). */
  readonly Origin: CopyOrigin;
}

/**
 * The environment variable that names the stack's claim table (DynamoDB) to the EbsSnapshotOnDeploy
 * handler. EC2 `CreateSnapshot`/`CreateSnapshots` take no client token, so one conditional write
 * per request decides which delivery of that request creates (see lambda/ebs-snapshot/claim.ts).
 */
export const CLAIM_TABLE_ENV = 'CLAIM_TABLE_NAME';
/** The claim table's partition key (string): the request token (`css-…`). */
export const CLAIM_TABLE_KEY = 'Token';
/** The claim table's TTL attribute (number, epoch seconds). DynamoDB removes expired items lazily: the handler compares it itself. */
export const CLAIM_TABLE_TTL_ATTRIBUTE = 'ExpiresAt';
