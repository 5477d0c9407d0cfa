import { CompleteSnapshotCommand, StartSnapshotCommand } from '@aws-sdk/client-ebs';
import { CreateTagsCommand, DeleteSnapshotCommand, DescribeSnapshotsCommand, Snapshot } from '@aws-sdk/client-ec2';
import { HeadObjectCommand } from '@aws-sdk/client-s3';
import { BLOCK_SIZE } from './blocks';
import { imageS3, uploadEbs } from './clients';
import { CURSOR_TAG_KEY, UploadCursor, decodeCursor, encodeCursor, initialCursor } from './cursor';
import { ResumableSha256 } from './linear-checksum';
import { BlockWriteError, uploadBlocks } from './upload';
import type { CopyOrigin } from '../../src/private/contract';
import type { EbsSnapshotFromDataAttributes, EbsSnapshotFromDataProperties } from '../../src/private/ebs-direct-contract';
import { ec2 } from '../shared/clients/ec2';
import { clock } from '../shared/clock';
import { HandlerError, describeError, errorCode, errorMessage, step, withRetries } from '../shared/errors';
import { IsCompleteRequest, IsCompleteResponse, OnEventRequest, OnEventResponse, isRollingBack } from '../shared/events';
import { logger } from '../shared/logger';
import { OWNERSHIP_TAG_KEYS, isOwnedBy, ownershipTags, parseUserTags, requestOwner, tagValue, withOwnershipTags } from '../shared/ownership';
import { requestToken, stableHash } from '../shared/token';
import { deadlineExceeded, ec2SnapshotProgress } from '../shared/waiter';

type Props = EbsSnapshotFromDataProperties;
type Attributes = EbsSnapshotFromDataAttributes;
type Request = OnEventRequest<Props>;
type Response = OnEventResponse<Attributes>;
type CompleteRequest = IsCompleteRequest<Props, Attributes>;

/** The part of the Lambda context the handler reads. */
export interface InvocationContext {
  getRemainingTimeInMillis(): number;
}

/** How long one onEvent call keeps retrying throttling and 5xx before it gives up. */
const CALL_BUDGET_MS = 60_000;
/** What an isComplete invocation keeps for draining the blocks in flight and saving the cursor. */
export const RESERVE_MS = 60_000;
/** The upload time of an invocation that has no Lambda context (tests, the simulator). */
export const DEFAULT_SLICE_MS = 60_000;
/** StartSnapshot `Timeout`: EBS cancels the snapshot when nothing is written (or it is not completed) for this long. */
const SNAPSHOT_TIMEOUT_MINUTES = 60;
const GIB = 1024 ** 3;

export async function onEvent(event: Request): Promise<Response> {
  logger.appendKeys({ requestType: event.RequestType, logicalResourceId: event.LogicalResourceId, requestId: event.RequestId });
  logger.info('onEvent', { physicalResourceId: event.PhysicalResourceId, properties: event.ResourceProperties });
  switch (event.RequestType) {
    case 'Create':
      return create(event);
    case 'Update':
      return update(event);
    case 'Delete':
      return remove(event);
  }
}

/**
 * Uploads for most of the invocation, from the cursor saved on the snapshot, then answers
 * IsComplete false; once every block is written, completes the snapshot and waits for `completed`.
 */
export async function isComplete(event: CompleteRequest, context?: InvocationContext): Promise<IsCompleteResponse<Attributes>> {
  logger.appendKeys({ requestType: event.RequestType, logicalResourceId: event.LogicalResourceId, requestId: event.RequestId });
  if (event.RequestType === 'Delete' || event.Data?.Origin !== 'created') return { IsComplete: true };
  const id = event.PhysicalResourceId;
  const data = event.Data;
  const snapshot = await step(`Reading EBS snapshot ${id}`, () => describeSnapshot(id));
  const cursor = decodeCursor(tagValue(snapshot?.Tags, CURSOR_TAG_KEY)) ?? initialCursor();
  logger.info('isComplete', { snapshotId: id, state: snapshot?.State ?? 'not visible yet', next: cursor.next, changed: cursor.changed, phase: cursor.phase });

  // Not visible yet is not a failure here: EC2 reads lag behind StartSnapshot.
  const progress = snapshot ? ec2SnapshotProgress(id, snapshot) : undefined;
  if (progress?.status === 'done') {
    return { IsComplete: true, Data: { BlockCount: String(cursor.changed) } };
  }
  if (progress?.status === 'failed') {
    await discard(event, snapshot);
    throw new HandlerError(progress.reason);
  }
  if (deadlineExceeded(data.StartedAt, event.ResourceProperties.TimeoutSeconds, clock.now())) {
    await discard(event, snapshot);
    throw new HandlerError(
      `EBS snapshot ${id} was not completed within the timeout of ${event.ResourceProperties.TimeoutSeconds} seconds ` +
        `(${cursor.next} of ${Math.ceil(Number(data.ImageSizeBytes) / BLOCK_SIZE)} blocks written or skipped` +
        `${cursor.phase === 'completing' ? ', CompleteSnapshot sent' : ''}); it has been deleted so that no half-written snapshot is left behind`,
    );
  }
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
    const now = await describeSnapshot(id).catch(() => undefined);
    if (
      now?.State === 'completed' ||
      decodeCursor(tagValue(now?.Tags, CURSOR_TAG_KEY))?.phase === 'completing' ||
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

async function create(event: Request): Promise<Response> {
  const props = event.ResourceProperties;
  const image = await step(`Reading the image s3://${props.ImageBucket}/${props.ImageKey}`, () => headImage(props));
  const volumeSize = props.VolumeSize ? Number(props.VolumeSize) : Math.max(1, Math.ceil(image.size / GIB));
  checkImage(props, image.size, volumeSize);
  const token = requestToken(event);
  const tags = withOwnershipTags(parseUserTags(props.Tags), ownershipTags(requestOwner(event), identityHash(props), token));
  const out = await step('Starting an EBS snapshot (StartSnapshot)', async () => {
    try {
      return await withRetries(
        () =>
          uploadEbs().send(
            new StartSnapshotCommand({
              VolumeSize: volumeSize,
              ParentSnapshotId: props.ParentSnapshotId,
              Encrypted: props.Encrypted === 'true' ? true : undefined,
              KmsKeyArn: props.KmsKeyArn,
              Description: props.Description,
              Tags: tags,
              Timeout: SNAPSHOT_TIMEOUT_MINUTES,
              ClientToken: token,
            }),
          ),
        { budgetMs: CALL_BUDGET_MS, onRetry: (err, attempt) => logger.warn('retrying StartSnapshot', { attempt, error: errorCode(err) }) },
      );
    } catch (err) {
      throw explainStartError(err, props, token);
    }
  });
  if (!out.SnapshotId) throw new HandlerError('EBS StartSnapshot returned no snapshot id');
  logger.info('snapshot started', { snapshotId: out.SnapshotId, volumeSize, imageBytes: image.size, token });
  return {
    PhysicalResourceId: out.SnapshotId,
    Data: {
      SnapshotId: out.SnapshotId,
      VolumeSize: String(out.VolumeSize ?? volumeSize),
      BlockCount: '',
      ImageSizeBytes: String(image.size),
      ImageETag: image.etag,
      StartedAt: String(clock.now()),
      Origin: 'created',
    },
  };
}

async function update(event: Request): Promise<Response> {
  const currentId = event.PhysicalResourceId!;
  const wanted = identityHash(event.ResourceProperties);
  const old = event.OldResourceProperties;
  if (old && identityHash(old) === wanted) {
    // Tags, description, removal policy or timeout changed: they apply to the next snapshot.
    logger.info('keeping the current snapshot', { snapshotId: currentId });
    return kept(event, currentId);
  }
  const rollingBack = await isRollingBack(event.StackId);
  if (rollingBack !== false) {
    const adopted = await findAdoptable(event, wanted).catch((err) => {
      logger.error('could not look for a snapshot to adopt', { error: err as Error });
      return undefined;
    });
    if (adopted) {
      logger.info('adopting the snapshot these properties made', { snapshotId: adopted.SnapshotId, rollingBack });
      return respond(adopted, 'adopted', event);
    }
    if (rollingBack) {
      logger.warn('rolling back, and no snapshot of ours matches the old properties: keeping the current one', { snapshotId: currentId });
      return kept(event, currentId, true);
    }
    logger.warn('could not tell a rollback from an update, and nothing to adopt: making a new snapshot');
  }
  return create(event);
}

async function remove(event: Request): Promise<Response> {
  const id = event.PhysicalResourceId!;
  const response = { PhysicalResourceId: id };
  if (event.ResourceProperties.RemovalPolicy !== 'destroy') {
    logger.info('removal policy is retain: keeping the snapshot', { snapshotId: id });
    return response;
  }
  if (!id.startsWith('snap-')) return response; // never made one
  const snapshot = await step(`Reading EBS snapshot ${id}`, () => describeSnapshot(id));
  if (!snapshot) {
    logger.info('snapshot already gone', { snapshotId: id });
    return response;
  }
  if (!isOwnedBy(snapshot.Tags, requestOwner(event))) {
    logger.warn('not deleting a snapshot this resource did not make', { snapshotId: id, tags: snapshot.Tags });
    return response;
  }
  await step(`Deleting EBS snapshot ${id}`, () => deleteSnapshot(id));
  return response;
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
  const now = await step(`Reading EBS snapshot ${id}`, () => describeSnapshot(id));
  const progress = now ? ec2SnapshotProgress(id, now) : undefined;
  if (progress?.status === 'failed') {
    await discard(event, now);
    throw new HandlerError(progress.reason);
  }
  logger.info('CompleteSnapshot was refused as already received: waiting for the snapshot to complete', {
    snapshotId: id, state: now?.State ?? 'not visible yet', refusal: errorMessage(refusal),
  });
  if (now?.State !== 'completed' && decodeCursor(tagValue(now?.Tags, CURSOR_TAG_KEY))?.phase !== 'completing') {
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

/**
 * After a failure, delete the snapshot this very request made, so that nothing is orphaned; never
 * one that is completed: a duplicate of this request may have reported it to CloudFormation. The
 * state is read again just before the delete (a snapshot in `error` never completes).
 */
async function discard(event: CompleteRequest, snapshot: Snapshot | undefined): Promise<void> {
  const id = event.PhysicalResourceId;
  if (snapshot && (!isOwnedBy(snapshot.Tags, requestOwner(event)) ||
    tagValue(snapshot.Tags, OWNERSHIP_TAG_KEYS.token) !== requestToken(event))) return;
  if (snapshot?.State !== 'error') {
    const now = await describeSnapshot(id).catch(() => undefined);
    if (now?.State === 'completed' || snapshot?.State === 'completed') {
      logger.warn('not deleting a completed snapshot after a failure', { snapshotId: id });
      return;
    }
  }
  try {
    await deleteSnapshot(id);
    logger.info('deleted the snapshot of the failed request', { snapshotId: id });
  } catch (err) {
    // Never completed, EBS cancels it after StartSnapshot's Timeout; it stays tagged as ours meanwhile.
    logger.error('could not delete the snapshot of the failed request', { snapshotId: id, error: err as Error });
  }
}

async function saveCursor(id: string, cursor: UploadCursor): Promise<void> {
  await withRetries(() => ec2().send(new CreateTagsCommand({ Resources: [id], Tags: [{ Key: CURSOR_TAG_KEY, Value: encodeCursor(cursor) }] })), {
    budgetMs: 20_000,
  });
}

async function headImage(props: Props): Promise<{ size: number; etag: string }> {
  try {
    const out = await withRetries(() => imageS3().send(new HeadObjectCommand({ Bucket: props.ImageBucket, Key: props.ImageKey })), {
      budgetMs: CALL_BUDGET_MS,
    });
    return { size: out.ContentLength ?? 0, etag: out.ETag ?? '' };
  } catch (err) {
    const code = errorCode(err);
    if (code === 'NotFound' || code === 'NoSuchKey' || code === 'Forbidden' || code === 'AccessDenied') {
      throw new HandlerError(
        `The image s3://${props.ImageBucket}/${props.ImageKey} cannot be read (${code}): it does not exist, or the handler may not read it`,
      );
    }
    throw err;
  }
}

/** What only deploy time knows (an S3 object's size) checked as synth checks a local file. */
function checkImage(props: Props, size: number, volumeSize: number): void {
  const where = `s3://${props.ImageBucket}/${props.ImageKey}`;
  if (size === 0) throw new HandlerError(`The image ${where} is empty`);
  if (size % 512 !== 0) throw new HandlerError(`The image ${where} is ${size} bytes, not a multiple of 512 bytes (a disk image is whole sectors)`);
  if (props.ImageSizeBytes && Number(props.ImageSizeBytes) !== size) {
    throw new HandlerError(`The image ${where} is ${size} bytes, but it was ${props.ImageSizeBytes} bytes at synth`);
  }
  if (!Number.isInteger(volumeSize) || volumeSize < 1 || volumeSize > 65_536) {
    throw new HandlerError(`The volume size ${volumeSize} GiB is not between 1 and 65,536 GiB`);
  }
  if (size > volumeSize * GIB) {
    throw new HandlerError(`The image ${where} is ${size} bytes, larger than the volume size of ${volumeSize} GiB`);
  }
}

function explainStartError(err: unknown, props: Props, token: string): unknown {
  switch (errorCode(err)) {
    case 'ConflictException':
      return new HandlerError(
        `EBS refused StartSnapshot: ConflictException: a snapshot was already started with client token ${token} and different ` +
          'parameters. This happens only if the same request was replayed with changed properties; deploy again to make a new request.',
      );
    case 'ResourceNotFoundException':
      return new HandlerError(`EBS refused StartSnapshot: ${errorMessage(err)} (parent snapshot ${props.ParentSnapshotId ?? 'none'})`);
    case 'ServiceQuotaExceededException':
      return new HandlerError(`EBS refused StartSnapshot: ServiceQuotaExceededException: ${errorMessage(err)}. Wait for uploads in progress to finish, or ask for a higher quota.`);
    case 'AccessDeniedException':
      return new HandlerError(`EBS refused StartSnapshot: AccessDeniedException: ${errorMessage(err)}${props.KmsKeyArn ? ` (can the handler use the KMS key ${props.KmsKeyArn}?)` : ''}`);
    default:
      return err;
  }
}

async function describeSnapshot(id: string): Promise<Snapshot | undefined> {
  try {
    const out = await withRetries(() => ec2().send(new DescribeSnapshotsCommand({ SnapshotIds: [id] })), { budgetMs: CALL_BUDGET_MS });
    return out.Snapshots?.find((s) => s.SnapshotId === id);
  } catch (err) {
    // Also right after StartSnapshot: EC2 reads are eventually consistent.
    if (errorCode(err) === 'InvalidSnapshot.NotFound') return undefined;
    throw err;
  }
}

async function deleteSnapshot(id: string): Promise<void> {
  try {
    await withRetries(() => ec2().send(new DeleteSnapshotCommand({ SnapshotId: id })), { budgetMs: CALL_BUDGET_MS });
  } catch (err) {
    if (errorCode(err) !== 'InvalidSnapshot.NotFound') throw err;
  }
}

async function findAdoptable(event: Request, hash: string): Promise<Snapshot | undefined> {
  const candidates: Snapshot[] = [];
  let NextToken: string | undefined;
  do {
    const page = await withRetries(
      () =>
        ec2().send(
          new DescribeSnapshotsCommand({
            OwnerIds: ['self'],
            Filters: [
              { Name: `tag:${OWNERSHIP_TAG_KEYS.owner}`, Values: [event.LogicalResourceId] },
              { Name: `tag:${OWNERSHIP_TAG_KEYS.propsHash}`, Values: [hash] },
              { Name: 'status', Values: ['completed'] },
            ],
            NextToken,
          }),
        ),
      { budgetMs: CALL_BUDGET_MS },
    );
    candidates.push(...(page.Snapshots ?? []).filter((s) => isOwnedBy(s.Tags, requestOwner(event))));
    NextToken = page.NextToken;
  } while (NextToken);
  candidates.sort((a, b) => (b.StartTime?.getTime() ?? 0) - (a.StartTime?.getTime() ?? 0));
  return candidates[0];
}

/**
 * Answers with the snapshot the resource already has, its attributes read from it: the volume size
 * and the block count are known only there when the size comes from the image. If it cannot be read
 * (after another try), an update fails with the reason rather than blank attributes that a volume
 * may use; a rollback (or a request whose status cannot be read, as OpenZfsSnapshot does) keeps it
 * with what the request tells, because failing a rollback leaves the stack in UPDATE_ROLLBACK_FAILED.
 */
async function kept(event: Request, id: string, rollingBack?: boolean): Promise<Response> {
  let error: unknown;
  try {
    const snapshot = await withRetries(
      async () => (await describeSnapshot(id)) ?? Promise.reject(new HandlerError(`EBS snapshot ${id} does not exist`)),
      // Not found may be EC2's eventual consistency: read once more before giving up.
      { budgetMs: 10_000, baseDelayMs: 2_000, retryable: (err) => err instanceof HandlerError },
    );
    return respond(snapshot, 'unchanged', event);
  } catch (err) {
    logger.warn('could not read the current snapshot', { snapshotId: id, error: err as Error });
    error = err;
  }
  if ((rollingBack ?? (await isRollingBack(event.StackId))) === false) {
    throw new HandlerError(`${describeError(`Reading EBS snapshot ${id}`, error)}; its volume size and block count are not known, so the update cannot keep it`);
  }
  return respond({ SnapshotId: id }, 'unchanged', event);
}

function respond(snapshot: Snapshot, origin: CopyOrigin, event: Request): Response {
  const id = snapshot.SnapshotId!;
  const cursor = decodeCursor(tagValue(snapshot.Tags, CURSOR_TAG_KEY));
  const props = event.ResourceProperties;
  // What the properties tell when the snapshot could not be read: the size create would have chosen.
  const fromProps = props.VolumeSize ?? (props.ImageSizeBytes ? String(Math.max(1, Math.ceil(Number(props.ImageSizeBytes) / GIB))) : '');
  return {
    PhysicalResourceId: id,
    Data: {
      SnapshotId: id,
      VolumeSize: String(snapshot.VolumeSize ?? fromProps),
      BlockCount: cursor ? String(cursor.changed) : '',
      ImageSizeBytes: event.ResourceProperties.ImageSizeBytes ?? '',
      ImageETag: '',
      StartedAt: String(clock.now()),
      Origin: origin,
    },
  };
}

/**
 * The properties that force a new snapshot: the image, the volume size, the encryption, the
 * parent and the trigger. Tags, description, removal policy and timeout do not.
 */
export function identityHash(props: Props): string {
  return stableHash({
    ImageBucket: props.ImageBucket,
    ImageKey: props.ImageKey,
    VolumeSize: props.VolumeSize,
    Encrypted: props.Encrypted,
    KmsKeyArn: props.KmsKeyArn,
    ParentSnapshotId: props.ParentSnapshotId,
    Trigger: props.Trigger,
  });
}


