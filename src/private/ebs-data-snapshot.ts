import { CustomResource, Duration, RemovalPolicy, Size, SizeRoundingBehavior, Stack, Token } from 'aws-cdk-lib';
import * as kms from 'aws-cdk-lib/aws-kms';
import * as s3 from 'aws-cdk-lib/aws-s3';
import { Construct, IConstruct } from 'constructs';
import { HandlerOptions } from '../handler-options';
import type { EbsSnapshotFromDataProperties } from './ebs-direct-contract';
import { EBS_DIRECT_EXTRA_TAG_COUNT } from './ebs-direct-contract';
import { ec2SnapshotArn } from './ec2-arns';
import { encodeRemovalPolicy, encodeTags } from './encode';
import { MANAGED_BY, OWNERSHIP_TAG_COUNT, OWNERSHIP_TAG_KEYS } from './ownership-tags';
import { SnapshotProvider } from './provider';
import { HandlerSpec } from './stack-handlers';
import { invalid, validateMaxLength, validatePattern, validateTags, validateTimeout } from './validation';

/** Where a disk image is: an S3 object (a CDK asset, or an object of the user's). */
export interface EbsImageLocation {
  readonly bucket: s3.IBucket;
  readonly objectKey: string;
  /** The image's size in bytes, when known at synth (a local file). */
  readonly sizeBytes?: number;
}

export interface DataSnapshotOptions {
  /** @default - the image size rounded up to whole GiB */
  readonly volumeSize?: Size;
  /** Encrypts the snapshot (StartSnapshot `Encrypted`), with this key if given. @default - not encrypted (unless the account encrypts by default) */
  readonly encrypted?: boolean;
  /** @default - the account's default EBS key, if `encrypted` */
  readonly kmsKey?: kms.IKey;
  /** An incremental snapshot on top of this one. Not with encryption. @default - a full snapshot */
  readonly parentSnapshotId?: string;
  /** @default - none */
  readonly description?: string;
  /** @default - none */
  readonly tags?: { [key: string]: string };
  /** The tags already encoded (by `CopyTags`, which also validated them); wins over `tags`. @default - from `tags` */
  readonly encodedTags?: string;
  /** @default - none */
  readonly trigger?: string;
  /** @default RemovalPolicy.RETAIN */
  readonly removalPolicy?: RemovalPolicy;
  /** The upload and the wait for `completed`, together. @default Duration.hours(1) */
  readonly timeout?: Duration;
  /** @default - the library's defaults */
  readonly handlerOptions?: HandlerOptions;
}

export interface DataSnapshotResult {
  readonly resource: CustomResource;
  /** `snap-…`, the resource's Ref. */
  readonly snapshotId: string;
  /** GiB. */
  readonly volumeSize: string;
  /** The number of non-zero 512 KiB blocks written. */
  readonly blockCount: string;
}

/** EBS direct blocks are 512 KiB. */
export const EBS_BLOCK_BYTES = 524_288;
const GIB = 1024 ** 3;
const MIB = 1024 ** 2;

/**
 * The upload rate the synth-time size bound plans for, MiB/s: well under what the upload engine
 * sustains in the benchmark (bench/ebs-direct-upload.ts) and under the ~500 MB/s AWS gives as the
 * practical ceiling of one snapshot, because a Lambda function's network is the real bound.
 */
export const PLANNED_UPLOAD_MIB_PER_SECOND = 64;
/** Kept out of the timeout for StartSnapshot, the wait for `completed` and the polls between invocations. */
export const UPLOAD_MARGIN = Duration.minutes(10);
/** The largest image the one-hour bound allows at the planned rate: 50 minutes × 64 MiB/s = 187.5 GiB. */
export const MAX_IMAGE_BYTES = maxImageBytes(Duration.hours(1));

/** Data snapshots wait up to the whole hour by default: the upload is the deploy's work. */
export const DEFAULT_DATA_TIMEOUT = Duration.hours(1);

/**
 * Adds a `Custom::EbsSnapshotFromData` resource (id `Resource`) under `scope`: during deploy, the
 * handler starts an EBS snapshot, writes the image's non-zero blocks with the EBS direct APIs
 * (across as many invocations as it takes), completes it and waits for `completed`. Validates what
 * synth can know, and grants the shared handler role exactly what this snapshot needs.
 */
export function addDataSnapshot(scope: Construct, image: EbsImageLocation, options: DataSnapshotOptions = {}): DataSnapshotResult {
  validateDataSnapshot(scope, image, options);
  const provider = SnapshotProvider.of(scope, DATA_HANDLERS, options.handlerOptions);
  grantDataSnapshot(provider, image, options);

  const encrypted = options.encrypted || options.kmsKey !== undefined;
  const properties: EbsSnapshotFromDataProperties = {
    ImageBucket: image.bucket.bucketName,
    ImageKey: image.objectKey,
    ImageSizeBytes: image.sizeBytes !== undefined ? String(image.sizeBytes) : undefined,
    VolumeSize: options.volumeSize ? String(options.volumeSize.toGibibytes()) : undefined,
    Encrypted: encrypted ? 'true' : undefined,
    KmsKeyArn: options.kmsKey?.keyArn,
    ParentSnapshotId: options.parentSnapshotId,
    Description: options.description,
    Trigger: options.trigger,
    Tags: options.encodedTags ?? encodeTags(scope, options.tags),
    RemovalPolicy: encodeRemovalPolicy(options.removalPolicy),
    TimeoutSeconds: String((options.timeout ?? DEFAULT_DATA_TIMEOUT).toSeconds()),
  };
  const resource = new CustomResource(scope, 'Resource', {
    serviceToken: provider.serviceToken,
    resourceType: 'Custom::EbsSnapshotFromData',
    properties: { ...properties },
  });
  return {
    resource,
    snapshotId: resource.ref,
    volumeSize: resource.getAttString('VolumeSize'),
    blockCount: resource.getAttString('BlockCount'),
  };
}

/** The largest image an upload of at most `timeout` allows at the planned rate. */
export function maxImageBytes(timeout: Duration): number {
  const seconds = Math.max(0, timeout.toSeconds() - UPLOAD_MARGIN.toSeconds());
  return Math.floor((seconds * PLANNED_UPLOAD_MIB_PER_SECOND * MIB) / EBS_BLOCK_BYTES) * EBS_BLOCK_BYTES;
}

function validateDataSnapshot(scope: IConstruct, image: EbsImageLocation, options: DataSnapshotOptions): void {
  validateTimeout(scope, options.timeout);
  validateTags(scope, options.tags, OWNERSHIP_TAG_COUNT + EBS_DIRECT_EXTRA_TAG_COUNT);
  validateMaxLength(scope, 'description', options.description, 255);
  validatePattern(scope, 'parentSnapshotId', options.parentSnapshotId, /^snap-([0-9a-f]{8}|[0-9a-f]{17})$/,
    'must be "snap-" followed by 8 or 17 lowercase hex digits');
  if (options.parentSnapshotId !== undefined && (options.encrypted || options.kmsKey)) {
    invalid(scope, 'encryption', 'cannot be combined with parentSnapshotId: EBS StartSnapshot refuses Encrypted or KmsKeyArn together with ' +
      'ParentSnapshotId (an incremental snapshot takes its encryption from its parent)', options.parentSnapshotId);
  }
  if (options.encrypted === false && options.kmsKey) {
    invalid(scope, 'encryption', 'a KMS key was given with encrypted: false; give encrypted: true (or leave it out) to use the key');
  }

  let volumeGib: number | undefined;
  if (options.volumeSize && !Token.isUnresolved(options.volumeSize.toMebibytes({ rounding: SizeRoundingBehavior.NONE }))) {
    const mib = options.volumeSize.toMebibytes({ rounding: SizeRoundingBehavior.NONE });
    if (mib % 1024 !== 0) invalid(scope, 'volumeSize', `must be a whole number of GiB (EBS volume sizes are), not ${mib} MiB`);
    volumeGib = mib / 1024;
    if (volumeGib < 1 || volumeGib > 65_536) invalid(scope, 'volumeSize', `must be between 1 and 65,536 GiB, not ${volumeGib} GiB`);
  }
  const size = image.sizeBytes;
  if (size === undefined || Token.isUnresolved(size)) return;
  if (size <= 0 || size % 512 !== 0) invalid(scope, 'source', `the disk image must be a positive whole number of 512-byte sectors, not ${size} bytes`);
  if (volumeGib !== undefined && size > volumeGib * GIB) {
    invalid(scope, 'volumeSize', `the disk image is ${size} bytes (${(size / GIB).toFixed(2)} GiB), larger than the volume size of ${volumeGib} GiB`);
  }
  const timeout = options.timeout ?? DEFAULT_DATA_TIMEOUT;
  const max = maxImageBytes(timeout);
  if (size > max) {
    invalid(scope, 'source', `the disk image is ${(size / GIB).toFixed(1)} GiB; an upload within the timeout of ${timeout.toHumanString()} ` +
      `allows at most ${(max / GIB).toFixed(1)} GiB (${PLANNED_UPLOAD_MIB_PER_SECOND} MiB/s for the timeout less ${UPLOAD_MARGIN.toMinutes()} minutes). ` +
      'Upload larger images with a separate tool (such as coldsnap) and import the snapshot id');
  }
}

function grantDataSnapshot(provider: SnapshotProvider, image: EbsImageLocation, options: DataSnapshotOptions): void {
  const stack = Stack.of(provider);
  const snapshots = ec2SnapshotArn(provider, '*');
  const ours = {
    [`aws:ResourceTag/${OWNERSHIP_TAG_KEYS.managedBy}`]: MANAGED_BY,
    [`aws:ResourceTag/${OWNERSHIP_TAG_KEYS.stackId}`]: stack.stackId,
  };
  // StartSnapshot authorizes the new snapshot (and the parent); the tags on creation must be ours.
  const startResources = [snapshots];
  if (options.parentSnapshotId) {
    startResources.push(ec2SnapshotArn(provider, options.parentSnapshotId));
  }
  provider.allow(['ebs:StartSnapshot'], startResources, {
    StringEquals: {
      [`aws:RequestTag/${OWNERSHIP_TAG_KEYS.managedBy}`]: MANAGED_BY,
      [`aws:RequestTag/${OWNERSHIP_TAG_KEYS.stackId}`]: stack.stackId,
    },
  });
  // Writes only to snapshots this stack started.
  provider.allow(['ebs:PutSnapshotBlock', 'ebs:CompleteSnapshot'], [snapshots], { StringEquals: ours });
  // StartSnapshot with Tags is also authorized as ec2:CreateTags on the new snapshot (the service
  // authorization reference maps StartSnapshot to ebs:StartSnapshot and ec2:CreateTags): only with
  // the library's and this stack's tags in the request.
  provider.allow(['ec2:CreateTags'], [snapshots], {
    StringEquals: {
      [`aws:RequestTag/${OWNERSHIP_TAG_KEYS.managedBy}`]: MANAGED_BY,
      [`aws:RequestTag/${OWNERSHIP_TAG_KEYS.stackId}`]: stack.stackId,
    },
  });
  // The resume cursor: one tag key, on snapshots this stack owns.
  provider.allow(['ec2:CreateTags'], [snapshots], {
    'StringEquals': ours,
    'ForAllValues:StringEquals': { 'aws:TagKeys': ['cdk-storage-snapshots:upload-cursor'] },
  });
  provider.allow(['ec2:DeleteSnapshot'], [snapshots], { StringEquals: ours });
  // DescribeSnapshots has no resource-level permissions.
  provider.allow(['ec2:DescribeSnapshots'], ['*']);
  // The image object only (GetObject also authorizes HeadObject), and its bucket's key if it has one.
  provider.allow(['s3:GetObject'], [image.bucket.arnForObjects(image.objectKey)]);
  image.bucket.encryptionKey?.grantDecrypt(provider.role);
  if (options.kmsKey) {
    // What the EBS direct APIs need of the caller to write a snapshot encrypted with a customer
    // managed key (EBS user guide, "Control access to EBS direct APIs using IAM", KMS keys).
    options.kmsKey.grant(provider.role, 'kms:Encrypt', 'kms:Decrypt', 'kms:GenerateDataKey', 'kms:GenerateDataKeyWithoutPlaintext',
      'kms:ReEncrypt*', 'kms:DescribeKey');
    provider.allow(['kms:CreateGrant'], [options.kmsKey.keyArn], { Bool: { 'kms:GrantIsForAWSResource': true } });
  }
}

const DATA_HANDLERS: HandlerSpec = {
  kind: 'EbsSnapshotFromData',
  handler: 'ebs-direct-snapshot',
  // More memory is more CPU: SHA-256 of every block, and 64 writes in flight.
  defaultMemorySize: 2048,
  onEventTimeout: Duration.minutes(5),
  // Each isComplete uploads for all but the last minute of its 14, under the framework's 15.
  isCompleteTimeout: Duration.minutes(14),
  wildcardReasons: [
    {
      id: 'AwsSolutions-IAM5',
      reason: 'The id of a snapshot is not known before StartSnapshot makes it: snapshot/* with the library\'s request tags for ' +
        'StartSnapshot, and this stack\'s ownership tags for writing, completing, tagging (the resume cursor only) and deleting.',
      appliesTo: [{ regex: '/^Resource::arn:<AWS::Partition>:ec2:[^:]*::snapshot\\/\\*$/' }],
    },
    {
      id: 'AwsSolutions-IAM5',
      reason: 'ec2:DescribeSnapshots has no resource-level permissions (the service authorization reference lists no resource type).',
      appliesTo: ['Resource::*'],
    },
    {
      id: 'AwsSolutions-IAM5',
      reason: 'kms:ReEncrypt* is ReEncryptFrom and ReEncryptTo on the one key the snapshot is encrypted with, as EBS needs.',
      appliesTo: ['Action::kms:ReEncrypt*'],
    },
  ],
};
