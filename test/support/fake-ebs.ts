import { createHash } from 'crypto';
import { Readable } from 'stream';
import {
  CompleteSnapshotCommand,
  ListSnapshotBlocksCommand,
  PutSnapshotBlockCommand,
  StartSnapshotCommand,
} from '@aws-sdk/client-ebs';
import type { AwsStub } from 'aws-sdk-client-mock';
import { awsError } from './aws-errors';
import { FakeEc2 } from './fake-ec2';
import { CommandTable, SimCore, canonical, page, routeCommands } from './sim-core';

/** EBS direct blocks are exactly this size. */
export const EBS_BLOCK_SIZE = 524_288;

export interface FakeEbsOptions {
  /** Right after StartSnapshot the snapshot "does not exist" for this long (ms). */
  readonly notFoundAfterStartMs?: number;
  /** How long a completed upload stays pending before it is `completed` (ms). */
  readonly completeMs?: number;
  /** Simulated time each PutSnapshotBlock takes (ms), so that an upload spans invocations. */
  readonly putLatencyMs?: number;
  /** Throttles this share of PutSnapshotBlock calls (ThrottlingException or ConcurrentLimitExceededException), before they act. */
  readonly putThrottleRate?: number;
}

/** The base64 SHA-256 of one block, as PutSnapshotBlock wants it. */
export function blockChecksum(data: Uint8Array): string {
  return createHash('sha256').update(data).digest('base64');
}

/** The LINEAR aggregate checksum: SHA-256 of the block checksums (bytes) in block-index order. */
export function linearChecksum(blockChecksums: string[]): string {
  const h = createHash('sha256');
  for (const c of blockChecksums) h.update(Buffer.from(c, 'base64'));
  return h.digest('base64');
}

/**
 * The EBS direct APIs. A snapshot started here is an EC2 snapshot (in FakeEc2) in `pending` until it
 * is completed, or cancelled by its Timeout.
 */
export class FakeEbs {
  private readonly tokens = new Map<string, { params: string; id: string }>();
  /** PutSnapshotBlock calls that reached the fake, and how many of them it throttled. */
  public putCalls = 0;
  public putThrottled = 0;
  /** Every block write that was accepted, by snapshot: how many times each block index was written. */
  public readonly writes = new Map<string, Map<number, number>>();
  private readonly options: Required<FakeEbsOptions>;

  constructor(
    private readonly core: SimCore,
    private readonly ec2: FakeEc2,
    options: FakeEbsOptions = {},
  ) {
    this.options = { notFoundAfterStartMs: 0, completeMs: 60_000, putLatencyMs: 0, putThrottleRate: 0, ...options };
  }

  public install(mock: AwsStub<any, any, any>): void {
    const table: CommandTable = [];
    const on = (cmd: any, fn: (input: any) => Promise<unknown>) => table.push([cmd, fn]);
    on(StartSnapshotCommand, (input) =>
      this.core.handle('ebs', 'StartSnapshotCommand', input, { mutating: true, creates: true }, (r) => this.start(input, r)));
    on(PutSnapshotBlockCommand, async (input) => {
      const data = await readBody(input.BlockData);
      if (this.options.putLatencyMs > 0) await this.core.clock.sleep(this.options.putLatencyMs);
      this.putCalls++;
      if (this.options.putThrottleRate > 0 && this.core.faults.next() < this.options.putThrottleRate) {
        this.putThrottled++;
        throw this.core.faults.next() < 0.5
          ? awsError('ThrottlingException', 'Rate exceeded', 400, { Reason: 'RESOURCE_LEVEL_THROTTLE' })
          : awsError('ConcurrentLimitExceededException', 'You have reached the limit for concurrent API requests', 400);
      }
      return this.core.handle('ebs', 'PutSnapshotBlockCommand', { ...input, BlockData: `<${data.length} bytes>` }, { mutating: true }, () =>
        this.put(input, data));
    });
    on(CompleteSnapshotCommand, (input) =>
      this.core.handle('ebs', 'CompleteSnapshotCommand', input, { mutating: true }, () => this.complete(input)));
    on(ListSnapshotBlocksCommand, (input) =>
      this.core.handle('ebs', 'ListSnapshotBlocksCommand', input, { mutating: false }, () => this.list(input)));
    routeCommands(mock, 'ebs', table);
  }

  private start(input: any, record: any) {
    this.ec2.refresh();
    const params = canonical({ ...input, ClientToken: undefined });
    if (input.ClientToken) {
      const use = this.tokens.get(input.ClientToken);
      if (use && use.params !== params) {
        throw awsError('ConflictException', 'The request uses the same client token as a previous, but non-identical request.', 409);
      }
      if (use) {
        const s = this.ec2.snapshots.get(use.id)!;
        if (record) record.resourceId = s.id;
        return this.startResponse(s.id);
      }
    }
    const size = input.VolumeSize;
    if (!Number.isInteger(size) || size < 1 || size > 65_536) {
      throw awsError('ValidationException', `VolumeSize ${size} is not between 1 and 65536 GiB`, 400, { Reason: 'INVALID_VOLUME_SIZE' });
    }
    const timeout = input.Timeout ?? 60;
    if (timeout < 10 || timeout > 4320) {
      throw awsError('ValidationException', `Timeout ${timeout} is not between 10 and 4320 minutes`, 400, { Reason: 'INVALID_PARAMETER_VALUE' });
    }
    if (input.Encrypted && input.ParentSnapshotId) {
      throw awsError('ValidationException', 'Encrypted cannot be set together with ParentSnapshotId', 400, { Reason: 'INVALID_PARAMETER_VALUE' });
    }
    if (input.ParentSnapshotId) {
      const parent = this.ec2.snapshots.get(input.ParentSnapshotId);
      if (!parent || parent.gone || parent.state !== 'completed') {
        throw awsError('ResourceNotFoundException', `Parent snapshot ${input.ParentSnapshotId} not found`, 404, { Reason: 'SNAPSHOT_NOT_FOUND' });
      }
    }
    const s = this.ec2.newSnapshot('vol-ffffffff', size, {
      description: input.Description,
      tags: input.Tags,
      encrypted: !!input.Encrypted,
      parent: input.ParentSnapshotId,
      command: 'StartSnapshotCommand',
      direct: { timeoutMinutes: timeout, lastActivity: this.core.clock.now(), blocks: new Map(), completeRequested: false },
    });
    if (input.ClientToken) this.tokens.set(input.ClientToken, { params, id: s.id });
    if (record) record.resourceId = s.id;
    return this.startResponse(s.id);
  }

  private startResponse(id: string) {
    const s = this.ec2.snapshots.get(id)!;
    return {
      SnapshotId: s.id,
      OwnerId: s.ownerId,
      Status: s.state === 'recoverable' || s.state === 'recovering' ? 'pending' : s.state,
      StartTime: new Date(s.started),
      VolumeSize: s.volumeSize,
      BlockSize: EBS_BLOCK_SIZE,
      Description: s.description,
      ParentSnapshotId: s.parentSnapshotId,
      Tags: s.tags,
    };
  }

  /** The upload of a snapshot, if it can be written now. */
  private writable(id: string) {
    this.ec2.refresh();
    const s = this.ec2.snapshots.get(id);
    if (!s || s.gone || !s.direct || this.core.clock.now() - s.started < this.options.notFoundAfterStartMs) {
      throw awsError('ResourceNotFoundException', `The snapshot ${id} does not exist`, 404, { Reason: 'SNAPSHOT_NOT_FOUND' });
    }
    if (s.state !== 'pending' || s.direct.completeRequested) {
      // Assumption (the API reference does not say which code): a cancelled or completed upload refuses writes.
      throw awsError('ValidationException', `The snapshot ${id} is ${s.state} and cannot be written`, 400, { Reason: 'INVALID_SNAPSHOT_ID' });
    }
    return { s, upload: s.direct };
  }

  private put(input: any, data: Buffer) {
    const { s, upload } = this.writable(input.SnapshotId);
    if (input.DataLength !== EBS_BLOCK_SIZE || data.length !== EBS_BLOCK_SIZE) {
      throw awsError('ValidationException', `A block must be ${EBS_BLOCK_SIZE} bytes (DataLength ${input.DataLength}, got ${data.length})`, 400, {
        Reason: 'INVALID_BLOCK',
      });
    }
    const blocks = Math.ceil((s.volumeSize * 1024 * 1024 * 1024) / EBS_BLOCK_SIZE);
    if (!Number.isInteger(input.BlockIndex) || input.BlockIndex < 0 || input.BlockIndex >= blocks) {
      throw awsError('ValidationException', `BlockIndex ${input.BlockIndex} is outside the volume`, 400, { Reason: 'INVALID_BLOCK' });
    }
    if (input.ChecksumAlgorithm !== 'SHA256') {
      throw awsError('ValidationException', 'ChecksumAlgorithm must be SHA256', 400, { Reason: 'INVALID_PARAMETER_VALUE' });
    }
    const checksum = blockChecksum(data);
    if (input.Checksum !== checksum) {
      throw awsError('ValidationException', 'The checksum of the block does not match its data', 400, { Reason: 'INVALID_BLOCK' });
    }
    upload.blocks.set(input.BlockIndex, checksum);
    const counts = this.writes.get(s.id) ?? new Map<number, number>();
    counts.set(input.BlockIndex, (counts.get(input.BlockIndex) ?? 0) + 1);
    this.writes.set(s.id, counts);
    upload.lastActivity = this.core.clock.now();
    return { Checksum: checksum, ChecksumAlgorithm: 'SHA256' };
  }

  private complete(input: any) {
    const { s, upload } = this.writable(input.SnapshotId);
    const written = [...upload.blocks.entries()].sort(([a], [b]) => a - b);
    let ok = input.ChangedBlocksCount === written.length;
    if (input.Checksum !== undefined) {
      if (input.ChecksumAlgorithm !== 'SHA256' || input.ChecksumAggregationMethod !== 'LINEAR') {
        throw awsError('ValidationException', 'Checksum needs ChecksumAlgorithm SHA256 and ChecksumAggregationMethod LINEAR', 400, {
          Reason: 'INVALID_PARAMETER_VALUE',
        });
      }
      ok = ok && input.Checksum === linearChecksum(written.map(([, c]) => c));
    }
    upload.completeRequested = true;
    s.next = { at: this.core.clock.now() + this.options.completeMs, to: ok ? 'completed' : 'error' };
    if (!ok) s.serviceFailed = true;
    return { Status: 'pending' };
  }

  private list(input: any) {
    this.ec2.refresh();
    const s = this.ec2.snapshots.get(input.SnapshotId);
    if (!s || s.gone) throw awsError('ResourceNotFoundException', `The snapshot ${input.SnapshotId} does not exist`, 404, { Reason: 'SNAPSHOT_NOT_FOUND' });
    if (s.state !== 'completed') {
      // The EBS direct APIs cannot read a snapshot that is not completed.
      throw awsError('ValidationException', `The snapshot ${s.id} is ${s.state}`, 400, { Reason: 'INVALID_SNAPSHOT_ID' });
    }
    const indexes = [...(s.direct?.blocks.keys() ?? [])].sort((a, b) => a - b).filter((i) => i >= (input.StartingBlockIndex ?? 0));
    const { items, nextToken } = page(indexes, input.MaxResults, input.NextToken, 10_000);
    return {
      Blocks: items.map((i) => ({ BlockIndex: i, BlockToken: `token-${s.id}-${i}` })),
      VolumeSize: s.volumeSize,
      BlockSize: EBS_BLOCK_SIZE,
      ExpiryTime: new Date(this.core.clock.now() + 3_600_000),
      NextToken: nextToken,
    };
  }
}

async function readBody(body: unknown): Promise<Buffer> {
  if (body === undefined || body === null) return Buffer.alloc(0);
  if (typeof body === 'string') return Buffer.from(body);
  if (body instanceof Uint8Array) return Buffer.from(body);
  if (body instanceof Readable) {
    const chunks: Buffer[] = [];
    for await (const chunk of body) chunks.push(Buffer.from(chunk));
    return Buffer.concat(chunks);
  }
  throw new Error(`the simulator cannot read a block body of type ${typeof body}`);
}
