import { createHash } from 'crypto';
import { EBS_BLOCK_BYTES } from '../../src/private/ebs-direct-contract';

/** The SHA-256 of a block (PutSnapshotBlock wants it in base64, SigV4 in hex). */
export function blockChecksum(data: Uint8Array): Buffer {
  return createHash('sha256').update(data).digest();
}

const ZEROS = Buffer.alloc(EBS_BLOCK_BYTES);

/** An all-zero block is not written: a volume made from the snapshot reads zeros there anyway. */
export function isZeroBlock(data: Buffer): boolean {
  return data.length === EBS_BLOCK_BYTES ? data.equals(ZEROS) : data.every((b) => b === 0);
}

/** The contract's block size under the name bench/ imports (not a copy). */
export const BLOCK_SIZE = EBS_BLOCK_BYTES;
