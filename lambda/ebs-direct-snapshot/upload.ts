import { EBSClient, PutSnapshotBlockCommand } from '@aws-sdk/client-ebs';
import { S3Client } from '@aws-sdk/client-s3';
import { blockChecksum, isZeroBlock } from './blocks';
import { UploadCursor } from './cursor';
import { ImageObject, ReaderOptions, readImageBlocks } from './image-reader';
import { ResumableSha256 } from './linear-checksum';
import { AdaptiveLimit, Slots } from './pool';
import { EBS_BLOCK_BYTES } from '../../src/private/ebs-direct-contract';
import { backoff } from '../shared/backoff';
import { clock } from '../shared/clock';
import { errorCode, errorMessage, isThrottling, isTransient } from '../shared/errors';

/** coldsnap's figure: 64 block writes in flight; the pool starts lower and grows to it. */
export const MAX_CONCURRENCY = 64;
export const INITIAL_CONCURRENCY = 32;
/** Ranged GETs of 8 MiB (16 blocks), eight ahead: 64 MiB of image in flight at most. */
export const READ_AHEAD_CHUNKS = 8;
export const CHUNK_BYTES = 16 * EBS_BLOCK_BYTES;
/** AWS advises retrying "snapshot does not exist" for about 2 minutes after StartSnapshot. */
export const NOT_FOUND_GRACE_MS = 120_000;
/** After reading stops, blocks in flight may take this long (retries included) before they are abandoned. */
export const DRAIN_MS = 30_000;

export interface UploadOptions {
  readonly ebs: EBSClient;
  readonly s3: S3Client;
  readonly snapshotId: string;
  readonly image: ImageObject;
  readonly from: UploadCursor;
  /** When StartSnapshot returned (epoch ms): "does not exist" is retried until NOT_FOUND_GRACE_MS after it. */
  readonly snapshotStartedAt: number;
  /** No block is read after this (epoch ms); the ones in flight get DRAIN_MS more. */
  readonly stopReadingAt: number;
  /** Saves the cursor durably; called every `checkpointEveryMs` while it advances, and at the end. */
  readonly checkpoint: (cursor: UploadCursor) => Promise<void>;
  readonly checkpointEveryMs?: number;
  readonly concurrency?: { readonly initial?: number; readonly min?: number; readonly max?: number };
  readonly reader?: ReaderOptions;
  /** Called for what is worth a log line (retries, slow-downs). */
  readonly onEvent?: (message: string, fields: Record<string, unknown>) => void;
}

export interface UploadStats {
  /** Blocks looked at in this run (written or skipped). */
  blocksRead: number;
  blocksWritten: number;
  zeroBlocksSkipped: number;
  /** PutSnapshotBlock calls made by this run (each may include the SDK's own retries). */
  putRequests: number;
  throttled: number;
  retries: number;
  /** The pool's concurrency limit at the end, and the lowest it went. */
  finalConcurrency: number;
  lowestConcurrency: number;
}

export interface UploadResult {
  readonly cursor: UploadCursor;
  /** Every block of the image is written: the cursor is at the end. */
  readonly done: boolean;
  readonly stats: UploadStats;
}

/** A block the service refused for good (a checksum that does not match, say): the snapshot must not be completed. */
export class BlockWriteError extends Error {
  constructor(
    public readonly blockIndex: number,
    public readonly code: string,
    detail: string,
    /** The ValidationException's `Reason`, if it gave one. */
    public readonly reason?: string,
  ) {
    super(`EBS refused block ${blockIndex} (bytes ${blockIndex * EBS_BLOCK_BYTES}-${(blockIndex + 1) * EBS_BLOCK_BYTES - 1} of the image): ${code}: ${detail}`);
    this.name = 'BlockWriteError';
  }
}

/** Validation reasons that mean "try again", not "this block is wrong". */
const RETRYABLE_REASONS = new Set(['CONFLICTING_BLOCK_UPDATE', 'WRITE_REQUEST_TIMEOUT']);
const TRANSIENT_ATTEMPTS = 8;

/**
 * Writes the image's blocks from `options.from` on until the image ends or `stopReadingAt`: reads
 * them in order, skips the all-zero ones, writes the others with a bounded adaptive pool, and
 * advances the cursor over the prefix of blocks known to be written, folding their checksums into
 * the LINEAR aggregate in block order. Throws BlockWriteError (after a last checkpoint) if a block
 * is refused for good.
 */
export async function uploadBlocks(options: UploadOptions): Promise<UploadResult> {
  const totalBlocks = Math.ceil(options.image.sizeBytes / EBS_BLOCK_BYTES);
  const pool = new AdaptiveLimit(
    options.concurrency?.initial ?? INITIAL_CONCURRENCY,
    options.concurrency?.min ?? 1,
    options.concurrency?.max ?? MAX_CONCURRENCY,
    1_000,
  );
  const slots = new Slots(() => pool.limit);
  const stats: UploadStats = {
    blocksRead: 0, blocksWritten: 0, zeroBlocksSkipped: 0, putRequests: 0, throttled: 0, retries: 0, finalConcurrency: 0, lowestConcurrency: 0,
  };
  const aggregate = ResumableSha256.restore(options.from.aggregate);
  let cursor: UploadCursor = options.from;
  /** Blocks at or above the cursor that are done: their checksum, or null for a skipped zero block. */
  const done = new Map<number, Buffer | null>();
  const inFlight = new Set<Promise<void>>();
  let failure: unknown;
  /** Set when a block gave up on transient errors: the next invocation takes over from the cursor. */
  let stopReading = false;
  const hardStop = options.stopReadingAt + DRAIN_MS;

  let lastCheckpoint = clock.now();
  let saving: Promise<void> | undefined;
  const save = (c: UploadCursor) =>
    options.checkpoint(c).catch((err) => options.onEvent?.('could not save the upload cursor (blocks after it will be written again)', { error: errorMessage(err) }));
  const advance = () => {
    let { next, changed } = cursor;
    while (done.has(next)) {
      const checksum = done.get(next)!;
      done.delete(next);
      if (checksum) {
        aggregate.update(checksum);
        changed++;
      }
      next++;
    }
    if (next === cursor.next) return;
    cursor = { next, changed, aggregate: aggregate.save(), phase: 'uploading' };
    if (!saving && clock.now() - lastCheckpoint >= (options.checkpointEveryMs ?? 15_000)) {
      lastCheckpoint = clock.now();
      saving = save(cursor).finally(() => (saving = undefined));
    }
  };

  const write = async (index: number, data: Buffer, checksum: Buffer): Promise<void> => {
    let transientFailures = 0;
    for (let attempt = 1; ; attempt++) {
      if (failure !== undefined) return;
      try {
        stats.putRequests++;
        await options.ebs.send(putCommand(options.snapshotId, index, data, checksum));
        pool.success();
        stats.blocksWritten++;
        done.set(index, checksum);
        advance();
        return;
      } catch (err) {
        const code = errorCode(err);
        const reason = (err as { Reason?: string }).Reason;
        let delay: number;
        if (isThrottling(err) || code === 'ConcurrentLimitExceededException' || code === 'RequestThrottledException') {
          pool.throttle(clock.now());
          delay = backoff(Math.min(attempt, 6), 200, 5_000);
        } else if (code === 'ResourceNotFoundException' && clock.now() - options.snapshotStartedAt < NOT_FOUND_GRACE_MS) {
          delay = backoff(Math.min(attempt, 4), 1_000, 5_000);
        } else if ((code === 'ValidationException' && reason && RETRYABLE_REASONS.has(reason)) || isTransient(err)) {
          if (++transientFailures >= TRANSIENT_ATTEMPTS) {
            options.onEvent?.('a block keeps failing: stopping here, the next invocation resumes from the cursor', { blockIndex: index, error: code });
            stopReading = true;
            return;
          }
          delay = backoff(transientFailures, 200, 5_000);
        } else if (code === 'ValidationException') {
          throw new BlockWriteError(index, reason ? `${code} (${reason})` : code, errorMessage(err), reason);
        } else {
          throw err;
        }
        if (clock.now() + delay > hardStop) {
          options.onEvent?.('abandoning a block until the next invocation', { blockIndex: index, error: code });
          return;
        }
        stats.retries++;
        if (attempt === 1 || attempt % 10 === 0) options.onEvent?.('retrying a block', { blockIndex: index, attempt, error: code, reason, concurrency: pool.limit });
        await clock.sleep(delay);
      }
    }
  };

  const reader = readImageBlocks(options.s3, options.image, cursor.next, options.reader ?? { chunkBytes: CHUNK_BYTES, readAhead: READ_AHEAD_CHUNKS });
  try {
    for await (const block of reader) {
      if (failure !== undefined || stopReading || clock.now() >= options.stopReadingAt) break;
      stats.blocksRead++;
      if (isZeroBlock(block.data)) {
        stats.zeroBlocksSkipped++;
        done.set(block.index, null);
        advance();
        continue;
      }
      const checksum = blockChecksum(block.data);
      await slots.acquire();
      if (failure !== undefined) {
        slots.release();
        break;
      }
      const task: Promise<void> = write(block.index, block.data, checksum)
        .catch((err) => {
          failure ??= err;
        })
        .finally(() => {
          slots.release();
          inFlight.delete(task);
        });
      inFlight.add(task);
    }
  } catch (err) {
    failure ??= err;
  } finally {
    await reader.return(undefined);
    await Promise.all([...inFlight]);
  }
  await saving;
  stats.throttled = pool.throttled;
  stats.finalConcurrency = pool.limit;
  stats.lowestConcurrency = pool.lowest;
  if (cursor.next !== options.from.next) await save(cursor);
  if (failure !== undefined) throw failure;
  return { cursor, done: cursor.next >= totalBlocks, stats };
}

/**
 * A PutSnapshotBlock whose SigV4 payload hash is the block's SHA-256, which we already have: without
 * it the SDK hashes each 512 KiB body a second time to sign it.
 */
function putCommand(snapshotId: string, index: number, data: Buffer, checksum: Buffer): PutSnapshotBlockCommand {
  const command = new PutSnapshotBlockCommand({
    SnapshotId: snapshotId,
    BlockIndex: index,
    BlockData: data,
    DataLength: EBS_BLOCK_BYTES,
    Checksum: checksum.toString('base64'),
    ChecksumAlgorithm: 'SHA256',
  });
  const payloadHash = checksum.toString('hex');
  command.middlewareStack.add(
    (next) => async (args) => {
      const request = args.request as { headers?: Record<string, string> };
      if (request.headers) request.headers['x-amz-content-sha256'] = payloadHash;
      return next(args);
    },
    { step: 'build', name: 'ebsDirectPayloadHash' },
  );
  return command;
}
