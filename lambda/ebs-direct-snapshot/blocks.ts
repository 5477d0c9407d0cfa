import { createHash } from 'crypto';

/** EBS direct blocks are exactly 512 KiB. */
export const BLOCK_SIZE = 524_288;

/** The SHA-256 of a block (PutSnapshotBlock wants it in base64, SigV4 in hex). */
export function blockChecksum(data: Uint8Array): Buffer {
  return createHash('sha256').update(data).digest();
}

const ZEROS = Buffer.alloc(BLOCK_SIZE);

/** An all-zero block is not written: a volume made from the snapshot reads zeros there anyway. */
export function isZeroBlock(data: Buffer): boolean {
  return data.length === BLOCK_SIZE ? data.equals(ZEROS) : data.every((b) => b === 0);
}
