import { CustomResource, Duration, ITaggable, RemovalPolicy, Size, SizeRoundingBehavior, TagManager, Token } from 'aws-cdk-lib';
import * as kms from 'aws-cdk-lib/aws-kms';
import { Construct, IConstruct } from 'constructs';
import { DiskImage } from './disk-image';
import { HandlerOptions } from './handler-options';
import { CopyTags } from './private/copy-tags';
import { EBS_DIRECT_EXTRA_TAG_COUNT, type EbsSnapshotFromImageProperties } from './private/ebs-direct-contract';
import { EBS_IMAGE_HANDLER, grantImageSnapshot } from './private/ebs-image-handler';
import { ec2SnapshotArn } from './private/ec2-arns';
import { encodeRemovalPolicy } from './private/encode';
import { OWNERSHIP_TAG_COUNT } from './private/ownership-tags';
import { SnapshotProvider } from './private/provider';
import { DEFAULT_IMAGE_TIMEOUT, PLANNED_UPLOAD_MIB_PER_SECOND, UPLOAD_MARGIN, maxImageBytes } from './private/upload-bound';
import { invalid, validateMaxLength, validatePattern, validateTimeout } from './private/validation';

/** Properties of an `EbsSnapshotFromImage`. */
export interface EbsSnapshotFromImageProps {
  /** The raw disk image to write into the snapshot: `DiskImage.fromFile(path)` or `DiskImage.fromS3Object(bucket, key)`. */
  readonly image: DiskImage;

  /**
   * The snapshot's volume size: a whole number of GiB, 1 to 65,536, at least the image's size.
   *
   * @default - the image's size rounded up to a whole GiB
   * @see https://docs.aws.amazon.com/ebs/latest/APIReference/API_StartSnapshot.html
   */
  readonly volumeSize?: Size;

  /**
   * Encrypts the snapshot (EBS `StartSnapshot` `Encrypted`, with `kmsKey` if given). Not with
   * `parentSnapshotId`: an incremental snapshot has its parent's encryption.
   *
   * @default - not encrypted, unless the account encrypts new EBS snapshots by default
   */
  readonly encryption?: EbsSnapshotEncryption;

  /**
   * Makes the snapshot incremental, on top of this snapshot (`snap-…`): only the image's non-zero
   * blocks are written over the parent's.
   *
   * @default - a full snapshot
   */
  readonly parentSnapshotId?: string;

  /**
   * The snapshot's description, at most 255 characters. A change applies to the next snapshot; it
   * does not take one.
   *
   * @default - no description
   */
  readonly description?: string;

  /**
   * Tags for the snapshot, besides the library's own (6 of the 50 tags AWS allows). Tags added
   * with `Tags.of()` to the construct or a scope above it are added too. Tags apply to snapshots
   * taken from then on: changing them alone does not take a new snapshot.
   *
   * @default - only the library's ownership tags
   */
  readonly tags?: { [key: string]: string };

  /**
   * Any value: whenever it changes, a new snapshot is written from the image (a release name, a
   * version, a date). A new local image file, or a new S3 object key, does so too.
   *
   * @default - no trigger
   */
  readonly trigger?: string;

  /**
   * What happens to the snapshot when CloudFormation deletes the resource: when the stack is
   * deleted, and when a new snapshot replaces it. `RETAIN` keeps every snapshot; `DESTROY` deletes
   * it (only a snapshot that carries this resource's ownership tags is ever deleted).
   *
   * @default RemovalPolicy.RETAIN
   */
  readonly removalPolicy?: RemovalPolicy;

  /**
   * How long the deploy waits for the upload and for the snapshot to be `completed` before it
   * fails (and deletes the snapshot it could not finish): 1 minute to 1 hour, CloudFormation's
   * limit for a custom resource. It also bounds the image's size: 64 MiB/s for the timeout less
   * 10 minutes (187.5 GiB for an hour).
   *
   * @default Duration.hours(1)
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

/** How a snapshot made from a disk image is encrypted. */
export interface EbsSnapshotEncryption {
  /**
   * The KMS key. The handler's role is granted what EBS needs of it.
   *
   * @default - the account's default key for EBS encryption
   */
  readonly kmsKey?: kms.IKey;
}

/** An EBS snapshot made from a disk image. */
export interface IEbsSnapshotFromImage extends IConstruct {
  /**
   * The snapshot's id (`snap-…`).
   * @attribute
   */
  readonly snapshotId: string;

  /**
   * The snapshot's ARN (`arn:<partition>:ec2:<region>::snapshot/<id>`: EC2 snapshot ARNs have no account).
   * @attribute
   */
  readonly snapshotArn: string;
}

/** EC2 descriptions are at most 255 characters. */
const MAX_DESCRIPTION_LENGTH = 255;
const GIB = 1024 ** 3;

/**
 * An EBS snapshot written from a raw disk image during `cdk deploy` with the EBS direct APIs: the
 * handler starts a snapshot, writes the image's non-zero 512 KiB blocks (across as many
 * invocations as it takes, resuming where it stopped), completes it and waits until it is
 * `completed`. A new snapshot is written when the image or `trigger` changes; earlier ones are
 * kept (or deleted, with `RemovalPolicy.DESTROY`). `StartSnapshot` is called with the request's
 * client token, so a retried request does not start a second snapshot.
 *
 * @example
 *
 * const golden = new EbsSnapshotFromImage(this, 'GoldenDisk', {
 *   image: DiskImage.fromFile('images/data.raw'),
 *   volumeSize: Size.gibibytes(8),
 *   description: 'golden data disk',
 * });
 * new ec2.Volume(this, 'Data', { availabilityZone: 'us-east-1a', snapshotId: golden.snapshotId });
 */
export class EbsSnapshotFromImage extends Construct implements IEbsSnapshotFromImage, ITaggable {
  public readonly snapshotId: string;
  public readonly snapshotArn: string;
  /**
   * The snapshot's volume size in GiB: `volumeSize`, or the image's size rounded up.
   * @attribute
   */
  public readonly volumeSize: string;
  /**
   * How many 512 KiB blocks were written into the snapshot: the image's non-zero blocks.
   * @attribute
   */
  public readonly blockCount: string;
  /**
   * The tags of the snapshot: the `tags` prop and what `Tags.of()` adds to this construct or a
   * scope above it. They apply to snapshots written from then on.
   */
  public readonly tags: TagManager;

  constructor(scope: Construct, id: string, props: EbsSnapshotFromImageProps) {
    super(scope, id);
    const timeout = props.timeout ?? DEFAULT_IMAGE_TIMEOUT;
    validateTimeout(this, props.timeout);
    validateMaxLength(this, 'description', props.description, MAX_DESCRIPTION_LENGTH);
    validatePattern(this, 'parentSnapshotId', props.parentSnapshotId, /^snap-([0-9a-f]{8}|[0-9a-f]{17})$/,
      'must be "snap-" followed by 8 or 17 lowercase hex digits');
    this.validateEncryption(props);
    const volumeGib = this.validateVolumeSize(props.volumeSize);
    const tags = new CopyTags(this, 'Custom::EbsSnapshotFromImage', props.tags, OWNERSHIP_TAG_COUNT + EBS_DIRECT_EXTRA_TAG_COUNT);
    this.tags = tags.tags;

    // Before the image is bound: a local file is hashed as an asset then, however large it is.
    this.validateImageSize(props.image._sizeBytes(this), volumeGib, timeout);
    const image = props.image._bind(this);

    const provider = SnapshotProvider.of(this, EBS_IMAGE_HANDLER, props.handlerOptions);
    grantImageSnapshot(provider, { image, parentSnapshotId: props.parentSnapshotId, kmsKey: props.encryption?.kmsKey });
    const properties: EbsSnapshotFromImageProperties = {
      ImageBucket: image.bucket.bucketName,
      ImageKey: image.objectKey,
      ImageSizeBytes: image.sizeBytes !== undefined ? String(image.sizeBytes) : undefined,
      VolumeSize: props.volumeSize ? String(props.volumeSize.toGibibytes()) : undefined,
      Encrypted: props.encryption ? 'true' : undefined,
      KmsKeyArn: props.encryption?.kmsKey?.keyArn,
      ParentSnapshotId: props.parentSnapshotId,
      Description: props.description,
      Trigger: props.trigger,
      Tags: tags.encoded,
      RemovalPolicy: encodeRemovalPolicy(props.removalPolicy),
      TimeoutSeconds: String(timeout.toSeconds()),
    };
    const resource = new CustomResource(this, 'Resource', {
      serviceToken: provider.serviceToken,
      resourceType: 'Custom::EbsSnapshotFromImage',
      properties: { ...properties },
    });
    this.snapshotId = resource.ref;
    this.snapshotArn = ec2SnapshotArn(this, this.snapshotId);
    this.volumeSize = resource.getAttString('VolumeSize');
    this.blockCount = resource.getAttString('BlockCount');
  }

  private validateEncryption(props: EbsSnapshotFromImageProps): void {
    if (props.encryption === undefined || props.parentSnapshotId === undefined) return;
    invalid(this, 'encryption', 'cannot be combined with parentSnapshotId: EBS StartSnapshot refuses Encrypted or KmsKeyArn together with ' +
      'ParentSnapshotId (an incremental snapshot takes its encryption from its parent)', props.parentSnapshotId);
  }

  /** The volume size in GiB, when known at synth. */
  private validateVolumeSize(volumeSize: Size | undefined): number | undefined {
    if (volumeSize === undefined) return undefined;
    const mib = volumeSize.toMebibytes({ rounding: SizeRoundingBehavior.NONE });
    if (Token.isUnresolved(mib)) return undefined;
    if (mib % 1024 !== 0) invalid(this, 'volumeSize', `must be a whole number of GiB (EBS volume sizes are), not ${mib} MiB`);
    const gib = mib / 1024;
    if (gib < 1 || gib > 65_536) invalid(this, 'volumeSize', `must be between 1 and 65,536 GiB, not ${gib} GiB`);
    return gib;
  }

  /** Whole sectors, within the volume size, and small enough to upload within the timeout. */
  private validateImageSize(size: number | undefined, volumeGib: number | undefined, timeout: Duration): void {
    if (size === undefined || Token.isUnresolved(size)) return;
    if (size <= 0 || size % 512 !== 0) invalid(this, 'image', `the disk image must be a positive whole number of 512-byte sectors, not ${size} bytes`);
    if (volumeGib !== undefined && size > volumeGib * GIB) {
      invalid(this, 'volumeSize', `the disk image is ${size} bytes (${(size / GIB).toFixed(2)} GiB), larger than the volume size of ${volumeGib} GiB`);
    }
    if (Token.isUnresolved(timeout.toSeconds())) return;
    const max = maxImageBytes(timeout);
    if (size > max) {
      invalid(this, 'image', `the disk image is ${(size / GIB).toFixed(1)} GiB; an upload within the timeout of ${timeout.toHumanString()} ` +
        `allows at most ${(max / GIB).toFixed(1)} GiB (${PLANNED_UPLOAD_MIB_PER_SECOND} MiB/s for the timeout less ${UPLOAD_MARGIN.toMinutes()} minutes). ` +
        'Upload larger images with a separate tool (such as coldsnap) and import the snapshot id');
    }
  }
}
