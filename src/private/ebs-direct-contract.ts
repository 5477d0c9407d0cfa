/*
 * The contract between the construct side of snapshots made from data (`ebs-snapshot-from-image.ts`) and
 * the `ebs-direct-snapshot` handler: the custom resource properties, its attributes, and the one
 * tag key the handler adds beside the ownership tags. It imports nothing but types, so that the
 * handler's bundle can copy its values. CloudFormation passes every property value as a string.
 */
import type { CopyOrigin, CopyRemovalPolicy } from './contract';

/** Properties of the `Custom::EbsSnapshotFromImage` resource. */
export interface EbsSnapshotFromImageProperties {
  /** The bucket that holds the disk image. */
  readonly ImageBucket: string;
  /** The object key of the disk image. Forces a new snapshot when it changes. */
  readonly ImageKey: string;
  /**
   * The size of the image in bytes when it is known at synth (a local file); the handler refuses
   * an object of another size. Absent for an S3 object given by name.
   */
  readonly ImageSizeBytes?: string;
  /** GiB, 1–65,536. Absent: the image size rounded up to GiB, read at deploy time. */
  readonly VolumeSize?: string;
  /** `true` to encrypt the snapshot (StartSnapshot `Encrypted`). */
  readonly Encrypted?: 'true';
  /** StartSnapshot `KmsKeyArn`. Only with `Encrypted`. */
  readonly KmsKeyArn?: string;
  /** StartSnapshot `ParentSnapshotId` (an incremental snapshot). Never with `Encrypted`. */
  readonly ParentSnapshotId?: string;
  /** StartSnapshot `Description`, at most 255 characters. */
  readonly Description?: string;
  /** Any value the user chose; a change forces a new snapshot. */
  readonly Trigger?: string;
  /** User tags, as a JSON object string (keys sorted at synth). */
  readonly Tags?: string;
  /** What a Delete does with the snapshot. */
  readonly RemovalPolicy: CopyRemovalPolicy;
  /** Seconds the upload and the wait for `completed` may take before the deploy fails. */
  readonly TimeoutSeconds: string;
}

/** Attributes (`Data`) of the `Custom::EbsSnapshotFromImage` resource. */
export interface EbsSnapshotFromImageAttributes {
  readonly SnapshotId: string;
  /** GiB, as a string. */
  readonly VolumeSize: string;
  /** How many blocks were written (the non-zero 512 KiB blocks of the image); set when `completed`. */
  readonly BlockCount: string;
  /** The image's size in bytes, as read at deploy time. */
  readonly ImageSizeBytes: string;
  /** The image object's ETag when the upload started; every ranged read requires the same. */
  readonly ImageETag: string;
  /** Epoch milliseconds when the request started; the timeout is enforced from it. */
  readonly StartedAt: string;
  readonly Origin: CopyOrigin;
}

/**
 * The tag the handler keeps its resume cursor in, on the pending snapshot it writes (the EBS
 * direct APIs cannot list the blocks of a pending snapshot, and `isComplete` receives the same event
 * on every poll). IAM limits the handler's `ec2:CreateTags` to this key on snapshots this stack owns.
 */
export type UploadCursorTagKey = 'cdk-storage-snapshots:upload-cursor';
export const UPLOAD_CURSOR_TAG_KEY: UploadCursorTagKey = 'cdk-storage-snapshots:upload-cursor';

/** EBS direct blocks are exactly 512 KiB: what the handler writes, and what the construct's size bound counts in. */
export const EBS_BLOCK_BYTES = 524_288;

/** Tags the library adds to a snapshot made from data beyond the ownership tags. */
export const EBS_DIRECT_EXTRA_TAG_COUNT = 1;
