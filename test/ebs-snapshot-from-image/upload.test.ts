import { createHash } from 'crypto';
import { EBSClient, ListSnapshotBlocksCommand, StartSnapshotCommand } from '@aws-sdk/client-ebs';
import { S3Client } from '@aws-sdk/client-s3';
import { UploadCursor, decodeCursor, encodeCursor, initialCursor } from '../../lambda/ebs-direct-snapshot/cursor';
import { ResumableSha256 } from '../../lambda/ebs-direct-snapshot/linear-checksum';
import { AdaptiveLimit } from '../../lambda/ebs-direct-snapshot/pool';
import { BlockWriteError, UploadOptions, uploadBlocks } from '../../lambda/ebs-direct-snapshot/upload';
import { clock } from '../../lambda/shared/clock';
import { EBS_BLOCK_BYTES } from '../../src/private/ebs-direct-contract';
import { EbsDirectServer, EbsDirectServerOptions, syntheticImage } from '../support/ebs-direct-server';

/*
 * The upload engine with the real SDK clients over HTTP, against the loopback EBS direct + S3
 * server: what is written, how throttling slows the pool down, and what the SDK retries itself.
 */

const credentials = { accessKeyId: 'AKIDEXAMPLE', secretAccessKey: 'secret' };

async function world(options: EbsDirectServerOptions = {}, blocks = 40, zeroShare = 0.3, tailBytes = 0) {
  const server = new EbsDirectServer(options);
  const endpoint = await server.listen();
  const image = syntheticImage(blocks, zeroShare, 7, tailBytes);
  server.images.set('disk.raw', image);
  const ebs = new EBSClient({ endpoint, region: 'us-east-1', credentials, retryMode: 'standard', maxAttempts: 3 });
  const s3 = new S3Client({ endpoint, region: 'us-east-1', credentials, forcePathStyle: true, maxAttempts: 3 });
  const started = await ebs.send(new StartSnapshotCommand({ VolumeSize: 1, ClientToken: 'css-0000000000000000000000000000000000000001' }));
  const id = started.SnapshotId!;
  const saved: UploadCursor[] = [];
  const base = (over: Partial<UploadOptions> = {}): UploadOptions => ({
    ebs,
    s3,
    snapshotId: id,
    image: { bucket: 'images', key: 'disk.raw', sizeBytes: image.sizeBytes, etag: image.etag },
    from: initialCursor(),
    snapshotStartedAt: Date.now(),
    stopReadingAt: Date.now() + 60_000,
    checkpoint: async (c) => {
      saved.push(c);
    },
    checkpointEveryMs: 0,
    reader: { chunkBytes: 4 * EBS_BLOCK_BYTES, readAhead: 2 },
    ...over,
  });
  const nonZero = [...Array(blocks).keys()].filter((i) => !image.isZero(i));
  return { server, ebs, s3, id, image, saved, base, nonZero, close: () => server.close() };
}

function linear(checksums: string[]): string {
  const h = createHash('sha256');
  for (const c of checksums) h.update(Buffer.from(c, 'base64'));
  return h.digest('base64');
}

describe('ResumableSha256 and the cursor', () => {
  test('a state saved and restored mid-way gives Node\'s SHA-256', () => {
    const data = Buffer.from(Array.from({ length: 32 * 33 }, (_, i) => (i * 7) % 256));
    for (const cut of [0, 32, 64, 96, 500]) {
      const h = new ResumableSha256().update(data.subarray(0, cut));
      const resumed = ResumableSha256.restore(h.save()).update(data.subarray(cut));
      expect(resumed.digest().toString('hex')).toBe(createHash('sha256').update(data).digest('hex'));
    }
  });

  test('a cursor round-trips through a tag value of at most 256 characters, and garbage is no cursor', () => {
    const h = new ResumableSha256().update(Buffer.alloc(32 * 3, 1));
    const c: UploadCursor = { next: 123456, changed: 100000, aggregate: h.save(), phase: 'completing' };
    const text = encodeCursor(c);
    expect(text.length).toBeLessThanOrEqual(256);
    expect(decodeCursor(text)).toEqual(c);
    expect(decodeCursor('v1.1.2.u.AAAA')).toBeUndefined(); // changed > next
    expect(decodeCursor('v1.5.2.u.AAAA')).toBeUndefined(); // not a state
    expect(decodeCursor(undefined)).toBeUndefined();
    expect(decodeCursor(encodeCursor(initialCursor()))).toEqual(initialCursor());
  });

  test('the pool halves on throttling once per cooldown and grows back one at a time', () => {
    const pool = new AdaptiveLimit(32, 1, 64, 1000);
    pool.throttle(0);
    pool.throttle(10); // same burst
    expect(pool.limit).toBe(16);
    pool.throttle(2000);
    expect(pool.limit).toBe(8);
    for (let i = 0; i < 8; i++) pool.success();
    expect(pool.limit).toBe(9);
    expect(pool.throttled).toBe(3);
    expect(pool.lowest).toBe(8);
  });
});

describe('uploadBlocks over HTTP', () => {
  test('writes exactly the non-zero blocks once, skips the zero ones, and the cursor ends at the image end with the LINEAR checksum', async () => {
    const w = await world();
    try {
      const result = await uploadBlocks(w.base());
      expect(result.done).toBe(true);
      expect(result.cursor.next).toBe(40);
      const served = w.server.snapshots.get(w.id)!;
      expect([...served.blocks.keys()].sort((a, b) => a - b)).toEqual(w.nonZero);
      expect([...served.writes.values()].every((n) => n === 1)).toBe(true);
      expect(result.stats.zeroBlocksSkipped).toBe(40 - w.nonZero.length);
      expect(result.stats.zeroBlocksSkipped).toBeGreaterThan(0);
      expect(result.cursor.changed).toBe(w.nonZero.length);
      const expected = linear(w.nonZero.map((i) => createHash('sha256').update(w.image.block(i)).digest('base64')));
      expect(ResumableSha256.restore(result.cursor.aggregate).digest().toString('base64')).toBe(expected);
      // The SigV4 payload hash is the block's own SHA-256: the SDK does not hash the body again.
      expect(w.server.headers[0]['x-amz-content-sha256']).toMatch(/^[0-9a-f]{64}$/);
    } finally {
      await w.close();
    }
  });

  test('an image that is not whole blocks: the last block is zero-padded to 512 KiB', async () => {
    const w = await world({}, 3, 0, 4096);
    try {
      const result = await uploadBlocks(w.base());
      expect(result.done).toBe(true);
      const served = w.server.snapshots.get(w.id)!;
      expect(served.blocks.get(2)).toBe(createHash('sha256').update(w.image.block(2)).digest('base64'));
    } finally {
      await w.close();
    }
  });

  test('resumes from a cursor: blocks below it are not read or written again, and the checksum covers all', async () => {
    const w = await world();
    try {
      const first = await uploadBlocks(w.base({
        stopReadingAt: Date.now() + 60_000,
        concurrency: { initial: 1, max: 1 },
        reader: { chunkBytes: EBS_BLOCK_BYTES, readAhead: 1 },
        checkpoint: async (c) => { w.saved.push(c); },
      }));
      expect(first.done).toBe(true);
      // Start over from a cursor in the middle, as the next invocation would.
      const mid = w.saved.find((c) => c.next >= 20)!;
      const before = w.server.requests.PutSnapshotBlock;
      const resumed = await uploadBlocks(w.base({ from: mid }));
      const rewritten = w.server.requests.PutSnapshotBlock - before;
      expect(rewritten).toBe(w.nonZero.filter((i) => i >= mid.next).length);
      expect(resumed.cursor).toEqual(first.cursor);
    } finally {
      await w.close();
    }
  });

  test('a throttling storm (ThrottlingException and ConcurrentLimitExceededException) halves the pool, is retried by the SDK and the engine, and loses nothing', async () => {
    const w = await world({
      inject: (op, n) => {
        if (op !== 'PutSnapshotBlock' || n > 60) return undefined;
        return n % 3 === 0
          ? { status: 400, code: 'ConcurrentLimitExceededException', message: 'You have reached the limit for concurrent API requests' }
          : { status: 400, code: 'ThrottlingException', message: 'Rate exceeded', reason: n % 2 ? 'ACCOUNT_THROTTLED' : 'RESOURCE_LEVEL_THROTTLE' };
      },
    });
    try {
      const result = await uploadBlocks(w.base());
      expect(result.done).toBe(true);
      expect([...w.server.snapshots.get(w.id)!.blocks.keys()].sort((a, b) => a - b)).toEqual(w.nonZero);
      expect(result.stats.throttled).toBeGreaterThan(0);
      expect(result.stats.lowestConcurrency).toBeLessThan(32);
      // The server saw more requests than the engine sent: the SDK retried some itself.
      expect(w.server.requests.PutSnapshotBlock).toBeGreaterThan(result.stats.putRequests);
      expect(w.server.requests.PutSnapshotBlock).toBe(60 + w.nonZero.length);
    } finally {
      await w.close();
    }
  });

  test('"snapshot does not exist" right after StartSnapshot is retried until it exists', async () => {
    // The first writes are refused by count, not for 400 ms of wall time (which a loaded CI machine
    // could spend before the first write: the test failed that way).
    const w = await world({ notFoundForWrites: 3 });
    try {
      const result = await uploadBlocks(w.base());
      expect(result.done).toBe(true);
      expect(w.server.errors['PutSnapshotBlock:ResourceNotFoundException']).toBeGreaterThan(0);
      expect(result.stats.retries).toBeGreaterThan(0);
    } finally {
      await w.close();
    }
  });

  test('"does not exist" long after StartSnapshot is not retried', async () => {
    const w = await world({ notFoundForMs: 60_000 });
    try {
      await expect(uploadBlocks(w.base({ snapshotStartedAt: Date.now() - 300_000 }))).rejects.toMatchObject({ name: 'ResourceNotFoundException' });
    } finally {
      await w.close();
    }
  });

  test('a block whose checksum EBS refuses fails the upload naming the block, and the cursor stops below it', async () => {
    const w = await world({
      inject: (op, _n, d) => (op === 'PutSnapshotBlock' && d.blockIndex === w2.nonZero[5]
        ? { status: 400, code: 'ValidationException', message: 'The checksum of the block does not match its data', reason: 'INVALID_BLOCK' } : undefined),
    });
    const w2 = w;
    try {
      const err = await uploadBlocks(w.base()).catch((e) => e);
      expect(err).toBeInstanceOf(BlockWriteError);
      expect(err.blockIndex).toBe(w.nonZero[5]);
      expect(err.message).toMatch(new RegExp(`block ${w.nonZero[5]} .*INVALID_BLOCK.*does not match`));
      const last = w.saved[w.saved.length - 1];
      expect(last.next).toBeLessThanOrEqual(w.nonZero[5]);
      expect(w.server.snapshots.get(w.id)!.status).toBe('pending');
    } finally {
      await w.close();
    }
  });

  test('an image that changed in S3 (another ETag) fails with PreconditionFailed', async () => {
    const w = await world();
    try {
      const base = w.base();
      await expect(uploadBlocks({ ...base, image: { ...base.image, etag: '"other"' } })).rejects.toMatchObject({ name: 'PreconditionFailed' });
      expect(w.server.requests.PutSnapshotBlock ?? 0).toBe(0);
    } finally {
      await w.close();
    }
  });

  test('reading stops at stopReadingAt: the cursor is a prefix and the rest is left to the next invocation', async () => {
    const w = await world({ latencyMs: 20 });
    // The time is up once 3 blocks have reached the server (not after a fixed 60 ms of wall time,
    // which a loaded CI machine could spend before the first block: the test failed that way).
    const realNow = clock.now;
    const started = Date.now();
    clock.now = () => realNow() + ((w.server.requests.PutSnapshotBlock ?? 0) >= 3 ? 40_000 : 0);
    try {
      const slow = { concurrency: { initial: 2, max: 2 }, reader: { chunkBytes: EBS_BLOCK_BYTES, readAhead: 1 } };
      const result = await uploadBlocks(w.base({ stopReadingAt: started + 30_000, ...slow }));
      expect(result.done).toBe(false);
      expect(result.cursor.next).toBeGreaterThan(0);
      expect(result.cursor.next).toBeLessThan(40);
      const written = [...w.server.snapshots.get(w.id)!.blocks.keys()];
      for (const i of w.nonZero.filter((b) => b < result.cursor.next)) expect(written).toContain(i);
      // The cursor's count and checksum describe exactly the prefix.
      expect(result.cursor.changed).toBe(w.nonZero.filter((b) => b < result.cursor.next).length);
      const listed = await w.ebs.send(new ListSnapshotBlocksCommand({ SnapshotId: w.id })).catch((e) => e);
      expect(listed.name).toBe('ValidationException'); // a pending snapshot cannot be listed
    } finally {
      clock.now = realNow;
      await w.close();
    }
  });
});
