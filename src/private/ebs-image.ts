import * as fs from 'fs';
import * as path from 'path';
import * as s3 from 'aws-cdk-lib/aws-s3';
import * as s3assets from 'aws-cdk-lib/aws-s3-assets';
import { Construct, IConstruct } from 'constructs';
import { invalid } from './validation';

/** Where a disk image is: an S3 object (a CDK asset, or an object of the user's). */
export interface EbsImageLocation {
  readonly bucket: s3.IBucket;
  readonly objectKey: string;
  /** The image's size in bytes, when known at synth (a local file). */
  readonly sizeBytes?: number;
}

/** A disk image is whole 512-byte sectors. */
export const SECTOR_BYTES = 512;

/**
 * The size of a local disk image, or a clear synth-time error naming the prop and the file: missing,
 * not a regular file, unreadable, empty, or not whole sectors.
 */
export function statImageFile(scope: IConstruct, prop: string, file: string): number {
  const resolved = path.resolve(file);
  let stat: fs.Stats;
  try {
    stat = fs.statSync(resolved);
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    invalid(scope, prop, code === 'ENOENT' ? 'the disk image file does not exist' : `the disk image file cannot be read (${code})`, resolved);
  }
  if (!stat.isFile()) invalid(scope, prop, 'the disk image must be a regular file (a raw image), not a directory or a device', resolved);
  try {
    fs.accessSync(resolved, fs.constants.R_OK);
  } catch (err) {
    invalid(scope, prop, `the disk image file cannot be read (${(err as NodeJS.ErrnoException).code})`, resolved);
  }
  if (stat.size === 0) invalid(scope, prop, 'the disk image file is empty', resolved);
  if (stat.size % SECTOR_BYTES !== 0) {
    invalid(scope, prop, `the disk image must be a whole number of 512-byte sectors; ${resolved} is ${stat.size} bytes (${stat.size % SECTOR_BYTES} too many or ${SECTOR_BYTES - (stat.size % SECTOR_BYTES)} too few)`);
  }
  return stat.size;
}

/**
 * A local raw disk image as a CDK file asset (uploaded by `cdk deploy` before the stack deploys,
 * hashed by content so that a changed image makes a new object key and so a new snapshot), with
 * its size known at synth. The asset is created under `scope` with id `Image`.
 */
export function imageFromFile(scope: Construct, file: string, prop = 'image'): EbsImageLocation {
  const sizeBytes = statImageFile(scope, prop, file);
  const asset = new s3assets.Asset(scope, 'Image', { path: path.resolve(file) });
  return { bucket: asset.bucket, objectKey: asset.s3ObjectKey, sizeBytes };
}
