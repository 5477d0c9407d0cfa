import { Token } from 'aws-cdk-lib';
import * as s3 from 'aws-cdk-lib/aws-s3';
import { Construct, IConstruct } from 'constructs';
import { EbsImageLocation, imageFromFile, statImageFile } from './private/ebs-image';
import { invalid } from './private/validation';

/**
 * A raw disk image (a whole number of 512-byte sectors) for `EbsSnapshotFromImage`
 * to write into a new EBS snapshot, in the style of `lambda.Code`: a local file, uploaded as an
 * asset, or an object already in S3.
 *
 * @example
 *
 * DiskImage.fromFile('images/data.raw');
 *
 * declare const images: s3.IBucket;
 * DiskImage.fromS3Object(images, 'disks/golden.raw');
 */
export abstract class DiskImage {
  /**
   * A raw disk image in a local file, uploaded by `cdk deploy` as a file asset. The file must
   * exist at synth and be a whole number of 512-byte sectors; a changed image (a new asset hash)
   * makes a new snapshot.
   *
   * @param path the image file, absolute or relative to the directory `cdk` runs in
   */
  public static fromFile(path: string): DiskImage {
    return new FileImage(path);
  }

  /**
   * A raw disk image in an S3 object. The handler may read only this object (and decrypt with the
   * bucket's key, if it has one). Its size is read at deploy time; a new snapshot is taken when the
   * key (or `trigger`) changes, not when the object is overwritten.
   *
   * @param bucket the bucket that holds the image
   * @param objectKey the image's key in the bucket
   */
  public static fromS3Object(bucket: s3.IBucket, objectKey: string): DiskImage {
    return new S3Image(bucket, objectKey);
  }

  /**
   * The image's size in bytes when synth knows it (a local file), checked before anything is
   * uploaded or hashed; errors name `scope`, the snapshot construct.
   * @internal
   */
  public abstract _sizeBytes(scope: IConstruct): number | undefined;

  /**
   * Where the image is, checked against (and, for a file, added as an asset under) `scope`, the
   * snapshot construct.
   * @internal
   */
  public abstract _bind(scope: Construct): EbsImageLocation;
}

class FileImage extends DiskImage {
  constructor(private readonly path: string) {
    super();
  }

  public _sizeBytes(scope: IConstruct): number {
    return statImageFile(scope, 'image', this.path);
  }

  public _bind(scope: Construct): EbsImageLocation {
    return imageFromFile(scope, this.path, 'image');
  }
}

/** S3 object keys are 1 to 1,024 bytes of UTF-8. */
const MAX_OBJECT_KEY_BYTES = 1024;

class S3Image extends DiskImage {
  constructor(private readonly bucket: s3.IBucket, private readonly objectKey: string) {
    super();
  }

  public _sizeBytes(): undefined {
    return undefined;
  }

  public _bind(scope: Construct): EbsImageLocation {
    if (!Token.isUnresolved(this.objectKey)) {
      if (this.objectKey.length === 0) invalid(scope, 'image', 'the S3 object key is empty');
      const bytes = Buffer.byteLength(this.objectKey, 'utf8');
      if (bytes > MAX_OBJECT_KEY_BYTES) invalid(scope, 'image', `S3 object keys are at most ${MAX_OBJECT_KEY_BYTES} bytes, not ${bytes}`);
      if (this.objectKey.endsWith('/')) invalid(scope, 'image', 'the S3 object key names a folder, not an image', this.objectKey);
    }
    return { bucket: this.bucket, objectKey: this.objectKey };
  }
}
