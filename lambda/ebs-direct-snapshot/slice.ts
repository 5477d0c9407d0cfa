import { CompleteSnapshotCommand } from '@aws-sdk/client-ebs';
import { Snapshot } from '@aws-sdk/client-ec2';
import { imageS3, uploadEbs } from './clients';
import { UploadCursor, decodeCursor, initialCursor } from './cursor';
import { ResumableSha256 } from './linear-checksum';
import { discard, saveCursor } from './snapshot';
import { BlockWriteError, uploadBlocks } from './upload';
import type { EbsSnapshotFromImageAttributes, EbsSnapshotFromImageProperties } from '../../src/private/ebs-direct-contract';
import { UPLOAD_CURSOR_TAG_KEY } from '../../src/private/ebs-direct-contract';
import { CALL_BUDGET_MS } from '../shared/budget';
import { clock } from '../shared/clock';
import type { InvocationContext } from '../shared/context';
import { describeEc2Snapshot } from '../shared/ec2-snapshots';
import { HandlerError, describeError, errorCode, errorMessage, step, withRetries } from '../shared/errors';
import type { IsCompleteRequest, IsCompleteResponse } from '../shared/events';
import { logger } from '../shared/logger';
import { tagValue } from '../shared/ownership';
import { ec2SnapshotProgress } from '../shared/waiter';

/*
 * isComplete's work on a snapshot that is not completed yet: one slice of the upload, from the
 * cursor saved on the snapshot, and CompleteSnapshot once every block is written.
 */

type Attributes = EbsSnapshotFromImageAttributes;
type CompleteRequest = IsCompleteRequest<EbsSnapshotFromImageProperties, Attributes>;

/** What an isComplete invocation keeps for draining the blocks in flight and saving the cursor. */
export const RESERVE_MS = 60_000;
/** The upload time of an invocation that has no Lambda context (tests, the simulator). */
export const DEFAULT_SLICE_MS = 60_000;

/**
 * Uploads for most of the invocation, from the cursor saved on the snapshot, then answers
 * IsComplete false; once every block is written, completes the snapshot (and the next polls wait
 * for `completed`).
 */
export async function uploadSlice(
  event: CompleteRequest, snapshot: Snapshot | undefined, context?: InvocationContext,
): Promise<IsCompleteResponse<Attributes>> {
  const id = event.PhysicalResourceId;
  const data = event.Data!; // a request that created (the lifecycle waits for no other)
  const cursor = cursorOf(snapshot);
  if (cursor.phase === 'completing') {
    // Every block is written; the CompleteSnapshot sent may have been lost with a killed invocation.
    await complete(event, snapshot, cursor, true);
    return { IsComplete: false };
  }

  const remaining = context?.getRemainingTimeInMillis() ?? DEFAULT_SLICE_MS + RESERVE_MS;
  const deadline = Number(data.StartedAt) + Number(event.ResourceProperties.TimeoutSeconds) * 1000;
  const stopReadingAt = Math.min(clock.now() + Math.max(5_000, remaining - RESERVE_MS), deadline);
  let result;
  try {
    result = await uploadBlocks({
      ebs: uploadEbs(),
      s3: imageS3(),
      snapshotId: id,
      image: {
        bucket: event.ResourceProperties.ImageBucket,
        key: event.ResourceProperties.ImageKey,
        sizeBytes: Number(data.ImageSizeBytes),
        etag: data.ImageETag,
      },
      from: cursor,
      snapshotStartedAt: Number(data.StartedAt),
      stopReadingAt,
      checkpoint: (c) => saveCursor(id, c),
      onEvent: (message, fields) => logger.warn(message, { snapshotId: id, ...fields }),
    });
  } catch (err) {
    // A duplicate of this request (CloudFormation or the framework retrying) may have finished the
    // upload meanwhile: then EBS refuses writes because the snapshot is completing, which is fine.
    // EC2 reads may be stale (twice in a row): EBS's own refusal of a write to the snapshot, rather
    // than of the block, is the fresh sign that it is no longer writable. Its state decides then.
    const now = await describeEc2Snapshot(id).catch(() => undefined);
    if (
      now?.State === 'completed' ||
      decodeCursor(tagValue(now?.Tags, UPLOAD_CURSOR_TAG_KEY))?.phase === 'completing' ||
      (err instanceof BlockWriteError && err.reason === 'INVALID_SNAPSHOT_ID')
    ) {
      logger.info('the snapshot no longer takes writes: another invocation completed the upload', { snapshotId: id, state: now?.State, error: errorCode(err) });
      return { IsComplete: false };
    }
    throw await uploadFailed(event, snapshot, err);
  }
  logger.info('upload slice done', { snapshotId: id, next: result.cursor.next, done: result.done, ...result.stats });
  if (result.done) {
    const completing: UploadCursor = { ...result.cursor, phase: 'completing' };
    try {
      await saveCursor(id, completing);
    } catch (err) {
      logger.error('could not save the "completing" cursor', { snapshotId: id, error: err as Error });
      await discard(event, snapshot);
      throw new HandlerError(
        `${describeError(`Saving the upload cursor of EBS snapshot ${id}`, err)}. The snapshot was not completed and has been deleted.`,
      );
    }
    // Nothing left to write for this invocation: the cursor it read may be stale (EC2 tags are
    // eventually consistent), and an earlier poll may have sent CompleteSnapshot already.
    await complete(event, snapshot, completing, result.stats.blocksWritten === 0);
  }
  return { IsComplete: false };
}

/** The cursor saved on the snapshot; none (or one that cannot be read) starts the upload over. */
export function cursorOf(snapshot: { readonly Tags?: Array<{ Key?: string; Value?: string }> } | undefined): UploadCursor {
  return decodeCursor(tagValue(snapshot?.Tags, UPLOAD_CURSOR_TAG_KEY)) ?? initialCursor();
}

/**
 * Sends CompleteSnapshot. EBS refuses (ValidationException) one that follows another, so a refusal
 * of a send that may not be the first (`maybeSent`: a resend from the "completing" cursor, a poll
 * that found nothing left to write; or a retry of ours after an answer was lost) is checked
 * against the snapshot's state instead of failing the deploy. Any other refusal fails it, and the
 * pending snapshot of this request is deleted.
 */
async function complete(event: CompleteRequest, snapshot: Snapshot | undefined, cursor: UploadCursor, maybeSent: boolean): Promise<void> {
  const id = event.PhysicalResourceId;
  const checksum = ResumableSha256.restore(cursor.aggregate).digest().toString('base64');
  let attempts = 0;
  try {
    await withRetries(
      () => {
        attempts++;
        return uploadEbs().send(
          new CompleteSnapshotCommand({
            SnapshotId: id,
            ChangedBlocksCount: cursor.changed,
            Checksum: checksum,
            ChecksumAlgorithm: 'SHA256',
            ChecksumAggregationMethod: 'LINEAR',
          }),
        );
      },
      // A retry after a timeout or a 5xx may be a second CompleteSnapshot: counted, see below.
      { budgetMs: CALL_BUDGET_MS, onRetry: (err, attempt) => logger.warn('retrying CompleteSnapshot', { snapshotId: id, attempt, error: errorCode(err) }) },
    );
    logger.info('CompleteSnapshot sent', { snapshotId: id, changedBlocks: cursor.changed, checksum, maybeSent, attempts });
  } catch (err) {
    if ((maybeSent || attempts > 1) && errorCode(err) === 'ValidationException') {
      await confirmCompleting(event, cursor, err);
      return;
    }
    logger.error('CompleteSnapshot was refused', { snapshotId: id, maybeSent, attempts, error: err as Error });
    await discard(event, snapshot);
    throw new HandlerError(`${describeError(`Completing EBS snapshot ${id}`, err)}. The snapshot was not completed and has been deleted.`);
  }
}

/**
 * CompleteSnapshot was refused after one that may have reached EBS: EC2 tells whether EBS has it.
 * `completed` or `pending` is success so far (the next poll waits for `completed`, the deadline
 * bounds the wait); `error` fails the deploy. The "completing" cursor is saved again, so that the
 * next polls resend rather than upload behind a stale tag.
 */
async function confirmCompleting(event: CompleteRequest, cursor: UploadCursor, refusal: unknown): Promise<void> {
  const id = event.PhysicalResourceId;
  const now = await step(`Reading EBS snapshot ${id}`, () => describeEc2Snapshot(id));
  const progress = now ? ec2SnapshotProgress(id, now) : undefined;
  if (progress?.status === 'failed') {
    await discard(event, now);
    throw new HandlerError(progress.reason);
  }
  logger.info('CompleteSnapshot was refused as already received: waiting for the snapshot to complete', {
    snapshotId: id, state: now?.State ?? 'not visible yet', refusal: errorMessage(refusal),
  });
  if (now?.State !== 'completed' && decodeCursor(tagValue(now?.Tags, UPLOAD_CURSOR_TAG_KEY))?.phase !== 'completing') {
    await saveCursor(id, cursor).catch((err) => logger.warn('could not save the upload cursor', { snapshotId: id, error: err as Error }));
  }
}

/** The reason CloudFormation shows when a slice of the upload fails; the snapshot is deleted, never completed. */
async function uploadFailed(event: CompleteRequest, snapshot: Snapshot | undefined, err: unknown): Promise<HandlerError> {
  const id = event.PhysicalResourceId;
  if (err instanceof BlockWriteError) {
    logger.error('a block was refused', { snapshotId: id, blockIndex: err.blockIndex, error: err });
    await discard(event, snapshot);
    return new HandlerError(`${err.message}. The snapshot ${id} was not completed and has been deleted.`);
  }
  if (errorCode(err) === 'PreconditionFailed') {
    await discard(event, snapshot);
    return new HandlerError(
      `The image s3://${event.ResourceProperties.ImageBucket}/${event.ResourceProperties.ImageKey} changed during the upload ` +
        `(its ETag is no longer ${event.Data?.ImageETag}); the snapshot ${id} was not completed and has been deleted. Deploy again.`,
    );
  }
  logger.error('the upload failed', { snapshotId: id, error: err as Error });
  await discard(event, snapshot);
  return new HandlerError(`${describeError(`Uploading the image to EBS snapshot ${id}`, err)}. The snapshot was not completed and has been deleted.`);
}
