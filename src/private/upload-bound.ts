import { Duration } from 'aws-cdk-lib';
import { EBS_BLOCK_BYTES } from './ebs-direct-contract';

const MIB = 1024 ** 2;

/**
 * The upload rate the synth-time size bound plans for, MiB/s: well under what the upload engine
 * sustains in the benchmark (bench/ebs-direct-upload.ts) and under the ~500 MB/s AWS gives as the
 * practical ceiling of one snapshot, because a Lambda function's network is the real bound.
 */
export const PLANNED_UPLOAD_MIB_PER_SECOND = 64;
/** Kept out of the timeout for StartSnapshot, the wait for `completed` and the polls between invocations. */
export const UPLOAD_MARGIN = Duration.minutes(10);

/** Snapshots from disk images wait up to the whole hour by default: the upload is the deploy's work. */
export const DEFAULT_IMAGE_TIMEOUT = Duration.hours(1);

/** The largest image an upload of at most `timeout` allows at the planned rate. */
export function maxImageBytes(timeout: Duration): number {
  const seconds = Math.max(0, timeout.toSeconds() - UPLOAD_MARGIN.toSeconds());
  return Math.floor((seconds * PLANNED_UPLOAD_MIB_PER_SECOND * MIB) / EBS_BLOCK_BYTES) * EBS_BLOCK_BYTES;
}

/** The largest image the default one-hour bound allows at the planned rate: 50 minutes × 64 MiB/s = 187.5 GiB. */
export const MAX_IMAGE_BYTES = maxImageBytes(DEFAULT_IMAGE_TIMEOUT);
