import { GetObjectCommand, S3Client } from '@aws-sdk/client-s3';
import { EBS_BLOCK_BYTES } from '../../src/private/ebs-direct-contract';

/** One 512 KiB block of the image (the last one zero-padded). */
export interface ImageBlock {
  readonly index: number;
  readonly data: Buffer;
}

/** Where the image is, and which version of it: every read requires the ETag the upload started with. */
export interface ImageObject {
  readonly bucket: string;
  readonly key: string;
  readonly sizeBytes: number;
  readonly etag: string;
}

export interface ReaderOptions {
  /** Bytes per ranged GET (a multiple of the block size). */
  readonly chunkBytes: number;
  /** Ranged GETs in flight ahead of the consumer. */
  readonly readAhead: number;
}

/**
 * The blocks of an S3 object from `fromBlock` on, in order, read with ranged GETs of `chunkBytes`,
 * `readAhead` of them in flight. Each response is streamed and cut into blocks; nothing holds more
 * than the chunks in flight, so the image is never in memory as a whole. A GET whose object no
 * longer has the ETag fails (S3 answers 412 PreconditionFailed).
 */
export async function* readImageBlocks(s3: S3Client, image: ImageObject, fromBlock: number, options: ReaderOptions): AsyncGenerator<ImageBlock> {
  const totalBlocks = Math.ceil(image.sizeBytes / EBS_BLOCK_BYTES);
  const blocksPerChunk = Math.max(1, Math.floor(options.chunkBytes / EBS_BLOCK_BYTES));
  const chunks: Array<Promise<Buffer[]>> = [];
  let nextChunkStart = fromBlock;
  const fill = () => {
    while (chunks.length < options.readAhead && nextChunkStart < totalBlocks) {
      const first = nextChunkStart;
      const count = Math.min(blocksPerChunk, totalBlocks - first);
      nextChunkStart += count;
      const p = readChunk(s3, image, first, count);
      p.catch(() => undefined); // awaited in order below; never an unhandled rejection
      chunks.push(p);
    }
  };
  let index = fromBlock;
  try {
    fill();
    while (chunks.length > 0) {
      const blocks = await chunks.shift()!;
      fill();
      for (const data of blocks) yield { index: index++, data };
    }
  } finally {
    chunks.length = 0;
  }
}

async function readChunk(s3: S3Client, image: ImageObject, firstBlock: number, count: number): Promise<Buffer[]> {
  const start = firstBlock * EBS_BLOCK_BYTES;
  const end = Math.min(image.sizeBytes, (firstBlock + count) * EBS_BLOCK_BYTES) - 1;
  const out = await s3.send(new GetObjectCommand({ Bucket: image.bucket, Key: image.key, Range: `bytes=${start}-${end}`, IfMatch: image.etag }));
  const blocks: Buffer[] = [];
  let current = Buffer.alloc(EBS_BLOCK_BYTES);
  let filled = 0;
  let received = 0;
  for await (const piece of out.Body as AsyncIterable<Uint8Array>) {
    let offset = 0;
    received += piece.length;
    while (offset < piece.length) {
      const n = Math.min(EBS_BLOCK_BYTES - filled, piece.length - offset);
      current.set(piece.subarray(offset, offset + n), filled);
      filled += n;
      offset += n;
      if (filled === EBS_BLOCK_BYTES) {
        blocks.push(current);
        current = Buffer.alloc(EBS_BLOCK_BYTES);
        filled = 0;
      }
    }
  }
  if (received !== end - start + 1) {
    throw Object.assign(new Error(`S3 returned ${received} bytes for bytes ${start}-${end} of s3://${image.bucket}/${image.key}`), { name: 'ShortRead' });
  }
  // The last block of an image whose size is not a multiple of 512 KiB: the rest of it is zeros,
  // as the rest of the volume is.
  if (filled > 0) blocks.push(current);
  return blocks;
}
