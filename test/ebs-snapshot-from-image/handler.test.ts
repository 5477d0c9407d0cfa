import { createHash } from 'crypto';
import { Readable } from 'stream';
import { CloudFormationClient, DescribeStacksCommand } from '@aws-sdk/client-cloudformation';
import { CompleteSnapshotCommand, EBSClient, PutSnapshotBlockCommand, StartSnapshotCommand } from '@aws-sdk/client-ebs';
import { CreateTagsCommand, DeleteSnapshotCommand, DescribeSnapshotsCommand, EC2Client, Snapshot } from '@aws-sdk/client-ec2';
import { GetObjectCommand, HeadObjectCommand, S3Client } from '@aws-sdk/client-s3';
import { AwsStub, mockClient } from 'aws-sdk-client-mock';
import 'aws-sdk-client-mock-jest';
import { UploadCursor, decodeCursor, encodeCursor } from '../../lambda/ebs-direct-snapshot/cursor';
import { identityHash, isComplete, onEvent } from '../../lambda/ebs-direct-snapshot/index';
import { ResumableSha256 } from '../../lambda/ebs-direct-snapshot/linear-checksum';
import { INITIAL_CONCURRENCY } from '../../lambda/ebs-direct-snapshot/upload';
import { clock } from '../../lambda/shared/clock';
import { logger } from '../../lambda/shared/logger';
import { OWNERSHIP_TAG_KEYS } from '../../lambda/shared/ownership';
import { requestToken } from '../../lambda/shared/token';
import { EBS_BLOCK_BYTES, type EbsSnapshotFromImageAttributes, type EbsSnapshotFromImageProperties, UPLOAD_CURSOR_TAG_KEY } from '../../src/private/ebs-direct-contract';
import { LOGICAL_ID, STACK_ID, cfnRequest } from '../fixtures/events';
import { ownershipTagsOf } from '../fixtures/ownership';
import { awsError } from '../support/aws-errors';

/*
 * The `ebs-direct-snapshot` handler, call by call, against aws-sdk-client-mock: every decision of
 * onEvent and isComplete (and the upload engine's retry decisions) with the exact requests it sends.
 * Every mock rejects what it was not set up for, so an unexpected call or input fails the test.
 */

const ebsMock = mockClient(EBSClient);
const ec2Mock = mockClient(EC2Client);
const s3Mock = mockClient(S3Client);
const cfnMock = mockClient(CloudFormationClient);
const realClock = { ...clock };

const T0 = 1_800_000_000_000;
let now = T0;
const BUCKET = 'images';
const KEY = 'golden/disk.raw';
const ETAG = '"etag-1"';
const SNAP = 'snap-0123456789abcdef0';
const GIB = 1024 ** 3;
const KMS = 'arn:aws:kms:us-east-1:111111111111:key/1234abcd-12ab-34cd-56ef-1234567890ab';

type Props = EbsSnapshotFromImageProperties & { ServiceToken: string };

function props(over: Partial<EbsSnapshotFromImageProperties> = {}): Props {
  return {
    ServiceToken: 'arn:aws:lambda:us-east-1:111111111111:function:framework-onEvent',
    ImageBucket: BUCKET,
    ImageKey: KEY,
    RemovalPolicy: 'destroy',
    TimeoutSeconds: '3600',
    ...over,
  };
}

/** Tags as the handler makes them for a request with these properties. */
function ours(p: Props, token: string, owner = LOGICAL_ID, stackId = STACK_ID) {
  return ownershipTagsOf({ stackId, owner, propsHash: identityHash(p), token });
}

function cursorTag(c: UploadCursor) {
  return { Key: UPLOAD_CURSOR_TAG_KEY, Value: encodeCursor(c) };
}

function ec2Snapshot(id: string, state: string, tags: Snapshot['Tags'] = [], extra: Partial<Snapshot> = {}): Snapshot {
  return { SnapshotId: id, State: state as any, Tags: tags, VolumeSize: 1, StartTime: new Date('2026-11-22T10:00:00Z'), ...extra };
}

/** DescribeSnapshots of `id` answers these in turn (the last one from then on). */
function describes(id: string, ...answers: Array<Snapshot | Error>) {
  let n = 0;
  ec2Mock.on(DescribeSnapshotsCommand, { SnapshotIds: [id] }).callsFake(async () => {
    const answer = answers[Math.min(n++, answers.length - 1)];
    if (answer instanceof Error) throw answer;
    return { Snapshots: [answer] };
  });
}

function stackStatus(status: string) {
  cfnMock.on(DescribeStacksCommand, { StackName: STACK_ID }).resolves({ Stacks: [{ StackName: 'app', StackStatus: status as any, CreationTime: new Date() }] });
}

// ---- the image in S3 ---------------------------------------------------------------------------

interface Image {
  readonly data: Buffer;
  readonly size: number;
  /** base64 SHA-256 of each block (zero-padded), or undefined for an all-zero block. */
  readonly checksums: Array<string | undefined>;
  readonly ranges: string[];
}

/** 'x' is a block of data, '0' an all-zero block; `size` cuts the last block short. */
function image(spec: string, size = spec.length * EBS_BLOCK_BYTES): Image {
  const data = Buffer.alloc(spec.length * EBS_BLOCK_BYTES);
  [...spec].forEach((c, i) => {
    if (c !== '0') data.fill((i % 250) + 1, i * EBS_BLOCK_BYTES, (i + 1) * EBS_BLOCK_BYTES);
  });
  data.fill(0, size);
  const checksums = [...spec].map((c, i) => (c === '0' ? undefined : sha256(data.subarray(i * EBS_BLOCK_BYTES, (i + 1) * EBS_BLOCK_BYTES)).toString('base64')));
  return { data, size, checksums, ranges: [] };
}

/** HeadObject and ranged, ETag-conditional GetObject of the image; anything else is refused. */
function serve(img: Image, etag = ETAG) {
  s3Mock.on(HeadObjectCommand, { Bucket: BUCKET, Key: KEY }).resolves({ ContentLength: img.size, ETag: etag });
  s3Mock.on(GetObjectCommand, { Bucket: BUCKET, Key: KEY }).callsFake(async (input) => {
    if (input.IfMatch !== etag) throw awsError('PreconditionFailed', 'At least one of the pre-conditions you specified did not hold', 412);
    img.ranges.push(input.Range);
    const [, a, b] = /^bytes=(\d+)-(\d+)$/.exec(input.Range)!;
    return { Body: Readable.from([img.data.subarray(Number(a), Math.min(img.size, Number(b) + 1))]), ETag: etag };
  });
}

function sha256(data: Uint8Array): Buffer {
  return createHash('sha256').update(data).digest();
}

/** The LINEAR aggregate: SHA-256 over the block checksums in block order. */
function linear(checksums: Array<string | undefined>): string {
  const h = createHash('sha256');
  for (const c of checksums) if (c) h.update(Buffer.from(c, 'base64'));
  return h.digest('base64');
}

function aggregateOf(checksums: Array<string | undefined>): string {
  const h = new ResumableSha256();
  for (const c of checksums) if (c) h.update(Buffer.from(c, 'base64'));
  return h.save();
}

// ---- EBS and EC2 writes -------------------------------------------------------------------------

/**
 * PutSnapshotBlock to SNAP that verifies each block's checksum as EBS does; `fault` may answer an
 * attempt with an error instead. Returns the blocks written and the attempts per block.
 */
function acceptBlocks(fault?: (index: number, attempt: number) => Error | undefined) {
  const written = new Map<number, string>();
  const attempts = new Map<number, number>();
  ebsMock.on(PutSnapshotBlockCommand, { SnapshotId: SNAP }).callsFake(async (input) => {
    const index = input.BlockIndex as number;
    const attempt = (attempts.get(index) ?? 0) + 1;
    attempts.set(index, attempt);
    const err = fault?.(index, attempt);
    if (err) throw err;
    const sum = sha256(input.BlockData as Buffer).toString('base64');
    if (input.DataLength !== EBS_BLOCK_BYTES || input.ChecksumAlgorithm !== 'SHA256' || input.Checksum !== sum) {
      throw awsError('ValidationException', 'The checksum does not match', 400, { Reason: 'INVALID_CHECKSUM' });
    }
    written.set(index, sum);
    return { Checksum: sum, ChecksumAlgorithm: 'SHA256' };
  });
  return { written, attempts };
}

/** CreateTags of the cursor tag on SNAP; returns the cursors saved, in order. */
function saveCursors(): UploadCursor[] {
  const saved: UploadCursor[] = [];
  ec2Mock.on(CreateTagsCommand, { Resources: [SNAP] }).callsFake(async (input) => {
    if (input.Tags.length !== 1 || input.Tags[0].Key !== UPLOAD_CURSOR_TAG_KEY) throw new Error(`unexpected tags ${JSON.stringify(input.Tags)}`);
    const c = decodeCursor(input.Tags[0].Value);
    if (!c) throw new Error(`not a cursor: ${input.Tags[0].Value}`);
    saved.push(c);
    return {};
  });
  return saved;
}

function completes() {
  ebsMock.on(CompleteSnapshotCommand, { SnapshotId: SNAP }).resolves({ Status: 'pending' });
}

function deletes() {
  ec2Mock.on(DeleteSnapshotCommand, { SnapshotId: SNAP }).resolves({});
}

/** What isComplete receives for a Create whose onEvent started SNAP for `img`. */
function polled(img: Image | undefined, p = props(), data: Partial<EbsSnapshotFromImageAttributes> = {}) {
  const event = cfnRequest('Create', p);
  return {
    ...event,
    PhysicalResourceId: SNAP,
    Data: {
      SnapshotId: SNAP,
      VolumeSize: '1',
      BlockCount: '',
      ImageSizeBytes: String(img?.size ?? EBS_BLOCK_BYTES),
      ImageETag: ETAG,
      StartedAt: String(T0),
      Origin: 'created',
      ...data,
    },
  };
}

beforeEach(() => {
  for (const m of [ebsMock, ec2Mock, s3Mock, cfnMock] as Array<AwsStub<any, any, any>>) {
    m.reset();
    m.onAnyCommand().rejects(new Error('unexpected call'));
  }
  now = T0;
  clock.now = () => now;
  clock.sleep = async (ms) => {
    now += ms;
  };
});
afterEach(() => jest.restoreAllMocks());
afterAll(() => Object.assign(clock, realClock));

describe('Create', () => {
  test('StartSnapshot with the volume size, encryption, description, user + ownership tags, the Timeout and the request token', async () => {
    const img = image('x0x');
    serve(img);
    // A user tag cannot forge ownership: ours win.
    const p = props({
      VolumeSize: '8',
      Encrypted: 'true',
      KmsKeyArn: KMS,
      Description: 'golden data disk',
      ImageSizeBytes: String(img.size),
      Tags: JSON.stringify({ team: 'data', [OWNERSHIP_TAG_KEYS.owner]: 'forged' }),
    });
    const event = cfnRequest('Create', p);
    const token = requestToken(event);
    ebsMock.on(StartSnapshotCommand, { ClientToken: token }).resolves({ SnapshotId: SNAP, VolumeSize: 8, Status: 'pending' });

    const res = await onEvent(event);

    expect(ebsMock).toHaveReceivedCommandTimes(StartSnapshotCommand, 1);
    expect(ebsMock.commandCalls(StartSnapshotCommand)[0].args[0].input).toStrictEqual({
      VolumeSize: 8,
      ParentSnapshotId: undefined,
      Encrypted: true,
      KmsKeyArn: KMS,
      Description: 'golden data disk',
      Tags: [{ Key: 'team', Value: 'data' }, ...ours(p, token)],
      Timeout: 60,
      ClientToken: token,
    });
    expect(token).toMatch(/^css-[0-9a-f]{40}$/);
    expect(res).toEqual({
      PhysicalResourceId: SNAP,
      Data: {
        SnapshotId: SNAP, VolumeSize: '8', BlockCount: '', ImageSizeBytes: String(3 * EBS_BLOCK_BYTES), ImageETag: ETAG, StartedAt: String(T0), Origin: 'created',
      },
    });
    expect(s3Mock).not.toHaveReceivedCommand(GetObjectCommand);
  });

  test('an incremental snapshot: ParentSnapshotId, no encryption, the volume size rounded up from the image size', async () => {
    s3Mock.on(HeadObjectCommand, { Bucket: BUCKET, Key: KEY }).resolves({ ContentLength: GIB + 512, ETag: ETAG });
    const p = props({ ParentSnapshotId: 'snap-0parent000000000' });
    // StartSnapshot does not echo VolumeSize here: the requested one is reported.
    ebsMock.on(StartSnapshotCommand, { VolumeSize: 2, ParentSnapshotId: 'snap-0parent000000000' }).resolves({ SnapshotId: SNAP });
    const res = await onEvent(cfnRequest('Create', p));
    const input = ebsMock.commandCalls(StartSnapshotCommand)[0].args[0].input;
    expect(input).toMatchObject({ VolumeSize: 2, ParentSnapshotId: 'snap-0parent000000000', Timeout: 60 });
    expect(input.Encrypted).toBeUndefined();
    expect(input.KmsKeyArn).toBeUndefined();
    expect(input.Tags).toEqual(ours(p, input.ClientToken!));
    expect(res.Data).toMatchObject({ VolumeSize: '2', ImageSizeBytes: String(GIB + 512) });
  });

  test('a retry of the same request sends the same token; another request or another stack sends another', async () => {
    serve(image('x'));
    ebsMock.on(StartSnapshotCommand).resolves({ SnapshotId: SNAP, VolumeSize: 1 });
    const event = cfnRequest('Create', props());
    await onEvent(event);
    await onEvent({ ...event });
    await onEvent(cfnRequest('Create', props()));
    await onEvent({ ...event, StackId: STACK_ID.replace('/app/', '/app2/') });
    const tokens = ebsMock.commandCalls(StartSnapshotCommand).map((c) => c.args[0].input.ClientToken);
    expect(tokens[0]).toBe(requestToken(event));
    expect(tokens[1]).toBe(tokens[0]);
    expect(new Set(tokens).size).toBe(3);
  });

  test('throttling and 5xx from StartSnapshot are retried with the same token', async () => {
    serve(image('x'));
    ebsMock.on(StartSnapshotCommand)
      .rejectsOnce(awsError('ThrottlingException', 'Rate exceeded', 400, { Reason: 'ACCOUNT_THROTTLED' }))
      .rejectsOnce(awsError('InternalServerException', 'oops', 500))
      .resolves({ SnapshotId: SNAP, VolumeSize: 1 });
    const res = await onEvent(cfnRequest('Create', props()));
    expect(res.PhysicalResourceId).toBe(SNAP);
    expect(ebsMock).toHaveReceivedCommandTimes(StartSnapshotCommand, 3);
    expect(new Set(ebsMock.commandCalls(StartSnapshotCommand).map((c) => c.args[0].input.ClientToken)).size).toBe(1);
  });

  test.each([
    ['ConflictException', {}, /^EBS refused StartSnapshot: ConflictException: a snapshot was already started with client token css-[0-9a-f]{40} and different parameters\. This happens only if the same request was replayed with changed properties/],
    ['ResourceNotFoundException', { ParentSnapshotId: 'snap-0parent000000000' }, /^EBS refused StartSnapshot: the service said no \(parent snapshot snap-0parent000000000\)$/],
    ['ResourceNotFoundException', {}, /^EBS refused StartSnapshot: the service said no \(parent snapshot none\)$/],
    ['ServiceQuotaExceededException', {}, /^EBS refused StartSnapshot: ServiceQuotaExceededException: the service said no\. Wait for uploads in progress to finish, or ask for a higher quota\.$/],
    ['AccessDeniedException', { Encrypted: 'true', KmsKeyArn: KMS }, /^EBS refused StartSnapshot: AccessDeniedException: the service said no \(can the handler use the KMS key arn:aws:kms:.*\?\)$/],
    ['AccessDeniedException', {}, /^EBS refused StartSnapshot: AccessDeniedException: the service said no$/],
    ['ValidationException', {}, /^Starting an EBS snapshot \(StartSnapshot\): ValidationException: the service said no$/],
  ])('%s from StartSnapshot (%j) is reported with a clear reason, not retried', async (code, over, reason) => {
    serve(image('x'));
    ebsMock.on(StartSnapshotCommand).rejects(awsError(code, 'the service said no', code === 'ConflictException' ? 409 : 400));
    await expect(onEvent(cfnRequest('Create', props(over as Partial<EbsSnapshotFromImageProperties>)))).rejects.toThrow(reason);
    expect(ebsMock).toHaveReceivedCommandTimes(StartSnapshotCommand, 1);
  });

  test('a StartSnapshot answer without a snapshot id fails the deploy', async () => {
    serve(image('x'));
    ebsMock.on(StartSnapshotCommand).resolves({});
    await expect(onEvent(cfnRequest('Create', props()))).rejects.toThrow(/^EBS StartSnapshot returned no snapshot id$/);
  });

  describe('deploy-time checks of the S3 object (as synth checks a local file)', () => {
    test.each([
      ['empty', 0, {}, /^The image s3:\/\/images\/golden\/disk\.raw is empty$/],
      ['not whole sectors', 1000, {}, /is 1000 bytes, not a multiple of 512 bytes \(a disk image is whole sectors\)$/],
      ['another size than at synth', 1024, { ImageSizeBytes: '2048' }, /is 1024 bytes, but it was 2048 bytes at synth$/],
      ['volume size 0', 1024, { VolumeSize: '0' }, /^The volume size 0 GiB is not between 1 and 65,536 GiB$/],
      ['volume size above 64 TiB', 1024, { VolumeSize: '65537' }, /^The volume size 65537 GiB is not between 1 and 65,536 GiB$/],
      ['fractional volume size', 1024, { VolumeSize: '1.5' }, /^The volume size 1.5 GiB is not between 1 and 65,536 GiB$/],
      ['larger than the volume', GIB + 512, { VolumeSize: '1' }, /is 1073742336 bytes, larger than the volume size of 1 GiB$/],
    ])('%s: refused before StartSnapshot', async (_, size, over, reason) => {
      s3Mock.on(HeadObjectCommand, { Bucket: BUCKET, Key: KEY }).resolves({ ContentLength: size, ETag: ETAG });
      await expect(onEvent(cfnRequest('Create', props(over)))).rejects.toThrow(reason);
      expect(ebsMock).not.toHaveReceivedCommand(StartSnapshotCommand);
    });

    test('an object without a ContentLength is treated as empty', async () => {
      s3Mock.on(HeadObjectCommand, { Bucket: BUCKET, Key: KEY }).resolves({});
      await expect(onEvent(cfnRequest('Create', props()))).rejects.toThrow(/is empty$/);
      expect(ebsMock).not.toHaveReceivedCommand(StartSnapshotCommand);
    });

    test.each(['NotFound', 'NoSuchKey', 'Forbidden', 'AccessDenied'])('a missing or unreadable object (%s) is a clear reason', async (code) => {
      s3Mock.on(HeadObjectCommand).rejects(awsError(code, 'UnknownError', code === 'NotFound' ? 404 : 403));
      await expect(onEvent(cfnRequest('Create', props()))).rejects.toThrow(
        new RegExp(`^The image s3://images/golden/disk\\.raw cannot be read \\(${code}\\): it does not exist, or the handler may not read it$`),
      );
      expect(s3Mock).toHaveReceivedCommandTimes(HeadObjectCommand, 1);
      expect(ebsMock).not.toHaveReceivedCommand(StartSnapshotCommand);
    });

    test('another S3 error is reported with what was being read; SlowDown is retried first', async () => {
      s3Mock.on(HeadObjectCommand)
        .rejectsOnce(awsError('SlowDown', 'Please reduce your request rate', 503))
        .rejects(awsError('InvalidObjectState', 'The operation is not valid for the object\'s storage class', 403));
      await expect(onEvent(cfnRequest('Create', props()))).rejects.toThrow(
        /^Reading the image s3:\/\/images\/golden\/disk\.raw: InvalidObjectState: The operation is not valid/,
      );
      expect(s3Mock).toHaveReceivedCommandTimes(HeadObjectCommand, 2);
      expect(ebsMock).not.toHaveReceivedCommand(StartSnapshotCommand);
    });
  });
});

describe('isComplete', () => {
  test.each([
    ['a Delete', (e: any) => ({ ...e, RequestType: 'Delete' })],
    ['an adopted snapshot', (e: any) => ({ ...e, Data: { ...e.Data, Origin: 'adopted' } })],
    ['a kept snapshot', (e: any) => ({ ...e, Data: { ...e.Data, Origin: 'unchanged' } })],
    ['no data', (e: any) => ({ ...e, Data: undefined })],
  ])('%s is complete at once, without a call', async (_, change) => {
    await expect(isComplete(change(polled(undefined)))).resolves.toEqual({ IsComplete: true });
    for (const m of [ebsMock, ec2Mock, s3Mock, cfnMock]) expect(m.calls()).toHaveLength(0);
  });

  describe('upload', () => {
    test('writes exactly the non-zero blocks with their checksums, saves the "completing" cursor, then CompleteSnapshot with the count and the LINEAR checksum', async () => {
      // The last block is 1,536 bytes of data: zero-padded to 512 KiB.
      const img = image('x0xx0x', 5 * EBS_BLOCK_BYTES + 1536);
      serve(img);
      describes(SNAP, ec2Snapshot(SNAP, 'pending', ours(props(), 'x')));
      const { written } = acceptBlocks();
      const saved = saveCursors();
      completes();

      await expect(isComplete(polled(img))).resolves.toEqual({ IsComplete: false });

      const padded = Buffer.concat([img.data.subarray(5 * EBS_BLOCK_BYTES, 5 * EBS_BLOCK_BYTES + 1536), Buffer.alloc(EBS_BLOCK_BYTES - 1536)]);
      expect(img.checksums[5]).toBe(sha256(padded).toString('base64'));
      expect([...written.keys()].sort()).toEqual([0, 2, 3, 5]);
      for (const [i, sum] of written) expect(sum).toBe(img.checksums[i]);
      expect(img.ranges).toEqual([`bytes=0-${img.size - 1}`]);
      expect(saved.at(-1)).toEqual({ next: 6, changed: 4, aggregate: aggregateOf(img.checksums), phase: 'completing' });
      expect(ebsMock).toHaveReceivedCommandWith(CompleteSnapshotCommand, {
        SnapshotId: SNAP, ChangedBlocksCount: 4, Checksum: linear(img.checksums), ChecksumAlgorithm: 'SHA256', ChecksumAggregationMethod: 'LINEAR',
      });
      // The durable "completing" mark is saved before CompleteSnapshot is sent.
      expect(ebsMock).toHaveReceivedCommandTimes(CompleteSnapshotCommand, 1);
      expect(ec2Mock.commandCalls(CreateTagsCommand).at(-1)!.calledBefore(ebsMock.commandCalls(CompleteSnapshotCommand)[0])).toBe(true);
      expect(s3Mock).toHaveReceivedCommandWith(GetObjectCommand, { IfMatch: ETAG });
    });

    test('a snapshot EC2 does not show yet (eventual consistency) is uploaded from the start', async () => {
      const img = image('xx');
      serve(img);
      describes(SNAP, awsError('InvalidSnapshot.NotFound', `The snapshot '${SNAP}' does not exist.`, 400));
      const { written } = acceptBlocks();
      saveCursors();
      completes();
      await expect(isComplete(polled(img))).resolves.toEqual({ IsComplete: false });
      expect([...written.keys()]).toEqual([0, 1]);
      expect(ebsMock).toHaveReceivedCommandWith(CompleteSnapshotCommand, { ChangedBlocksCount: 2, Checksum: linear(img.checksums) });
    });

    test('resumes from the cursor tag: blocks below it are neither read nor written, and the checksum covers them all', async () => {
      const img = image('x0xx');
      serve(img);
      const from: UploadCursor = { next: 2, changed: 1, aggregate: aggregateOf(img.checksums.slice(0, 2)), phase: 'uploading' };
      describes(SNAP, ec2Snapshot(SNAP, 'pending', [...ours(props(), 'x'), cursorTag(from)]));
      const { written } = acceptBlocks();
      const saved = saveCursors();
      completes();
      await expect(isComplete(polled(img))).resolves.toEqual({ IsComplete: false });
      expect(img.ranges).toEqual([`bytes=${2 * EBS_BLOCK_BYTES}-${4 * EBS_BLOCK_BYTES - 1}`]);
      expect([...written.keys()].sort()).toEqual([2, 3]);
      expect(saved.at(-1)).toMatchObject({ next: 4, changed: 3, phase: 'completing' });
      expect(ebsMock).toHaveReceivedCommandWith(CompleteSnapshotCommand, { ChangedBlocksCount: 3, Checksum: linear(img.checksums) });
    });

    test.each([
      ['not the format', 'v1.1.1.u.garbage!'],
      ['more written than looked at', `v1.1.2.u.${aggregateOf([])}`],
      ['a checksum state too short', `v1.1.1.u.${Buffer.alloc(20).toString('base64')}`],
      ['a checksum state whose tail is not its length', `v1.1.1.u.${Buffer.alloc(41).toString('base64')}`],
    ])('a cursor tag that is %s starts the upload over', async (_, value) => {
      const img = image('xx');
      serve(img);
      describes(SNAP, ec2Snapshot(SNAP, 'pending', [{ Key: UPLOAD_CURSOR_TAG_KEY, Value: value }]));
      const { written } = acceptBlocks();
      saveCursors();
      completes();
      await isComplete(polled(img));
      expect([...written.keys()]).toEqual([0, 1]);
      expect(img.ranges[0]).toMatch(/^bytes=0-/);
    });

    test('an invocation uploads until its remaining time less the reserve, saves the cursor, and leaves the rest to the next poll', async () => {
      const img = image('xxxx');
      serve(img);
      describes(SNAP, ec2Snapshot(SNAP, 'pending'));
      // Each block write takes 6 s; 30 s left in the invocation leave 5 s of reading (the minimum).
      const { written } = acceptBlocks(() => {
        now += 6_000;
        return undefined;
      });
      const saved = saveCursors();
      const res = await isComplete(polled(img), { getRemainingTimeInMillis: () => 30_000 });
      expect(res).toEqual({ IsComplete: false });
      expect([...written.keys()]).toEqual([0]);
      expect(saved.at(-1)).toEqual({ next: 1, changed: 1, aggregate: aggregateOf(img.checksums.slice(0, 1)), phase: 'uploading' });
      expect(ebsMock).not.toHaveReceivedCommand(CompleteSnapshotCommand);
    });

    test('a completed snapshot is complete, with the block count from its cursor', async () => {
      describes(SNAP, ec2Snapshot(SNAP, 'completed', [cursorTag({ next: 6, changed: 4, aggregate: aggregateOf([]), phase: 'completing' })]));
      await expect(isComplete(polled(image('x')))).resolves.toEqual({ IsComplete: true, Data: { BlockCount: '4' } });
      expect(ebsMock.calls()).toHaveLength(0);
      expect(s3Mock.calls()).toHaveLength(0);
    });

    test('a snapshot EC2 cannot read fails with the reason', async () => {
      describes(SNAP, awsError('UnauthorizedOperation', 'You are not authorized to perform this operation.', 403));
      await expect(isComplete(polled(image('x')))).rejects.toThrow(
        /^Reading EBS snapshot snap-0123456789abcdef0: UnauthorizedOperation: You are not authorized to perform this operation\.$/,
      );
      expect(ebsMock.calls()).toHaveLength(0);
    });
  });

  describe('failures: the deploy fails with the reason, and the snapshot this request made is deleted', () => {
    test.each([
      ['with the service\'s message', 'Insufficient capacity', /^EBS snapshot snap-0123456789abcdef0 is in state error: Insufficient capacity$/],
      ['without one', undefined, /^EBS snapshot snap-0123456789abcdef0 is in state error: no reason given$/],
    ])('state error %s', async (_, message, reason) => {
      const event = polled(image('x'));
      describes(SNAP, ec2Snapshot(SNAP, 'error', ours(props(), requestToken(event)), { StateMessage: message }));
      deletes();
      await expect(isComplete(event)).rejects.toThrow(reason);
      expect(ec2Mock).toHaveReceivedCommandWith(DeleteSnapshotCommand, { SnapshotId: SNAP });
    });

    test.each([
      ['another request of this resource', (token: string) => ours(props(), `${token}-other`)],
      ['another resource', (token: string) => ours(props(), token, 'SomeoneElse')],
      ['another stack', (token: string) => ours(props(), token, LOGICAL_ID, STACK_ID.replace('/app/', '/other/'))],
      ['nobody (no tags)', () => []],
    ])('state error of a snapshot made by %s: not deleted', async (_, tags) => {
      const event = polled(image('x'));
      describes(SNAP, ec2Snapshot(SNAP, 'error', tags(requestToken(event)), { StateMessage: 'broken' }));
      await expect(isComplete(event)).rejects.toThrow(/is in state error: broken$/);
      expect(ec2Mock).not.toHaveReceivedCommand(DeleteSnapshotCommand);
    });

    test('past the timeout: deleted, and the reason says how far the upload got', async () => {
      const img = image('x0x0x');
      const event = polled(img, props({ TimeoutSeconds: '600' }));
      describes(SNAP, ec2Snapshot(SNAP, 'pending', [...ours(props({ TimeoutSeconds: '600' }), requestToken(event)),
        cursorTag({ next: 2, changed: 1, aggregate: aggregateOf(img.checksums.slice(0, 2)), phase: 'uploading' })]));
      deletes();
      now = T0 + 601_000;
      await expect(isComplete(event)).rejects.toThrow(
        /^EBS snapshot snap-0123456789abcdef0 was not completed within the timeout of 600 seconds \(2 of 5 blocks written or skipped\); it has been deleted/,
      );
      expect(ec2Mock).toHaveReceivedCommandWith(DeleteSnapshotCommand, { SnapshotId: SNAP });
      expect(ebsMock.calls()).toHaveLength(0);
      expect(s3Mock.calls()).toHaveLength(0);
    });

    test('just within the timeout the upload goes on', async () => {
      const img = image('x');
      serve(img);
      describes(SNAP, ec2Snapshot(SNAP, 'pending'));
      acceptBlocks();
      saveCursors();
      completes();
      now = T0 + 599_000;
      await expect(isComplete(polled(img, props({ TimeoutSeconds: '600' })))).resolves.toEqual({ IsComplete: false });
      expect(ebsMock).toHaveReceivedCommandTimes(CompleteSnapshotCommand, 1);
      expect(ec2Mock).not.toHaveReceivedCommand(DeleteSnapshotCommand);
    });

    test('a checksum mismatch fails with the block index and its bytes; the snapshot is deleted, never completed', async () => {
      const img = image('xxxx');
      serve(img);
      const event = polled(img);
      describes(SNAP, ec2Snapshot(SNAP, 'pending', ours(props(), requestToken(event))));
      // Block 2 arrives corrupted: EBS's hash of it is not the checksum sent.
      acceptBlocks((i) => (i === 2 ? awsError('ValidationException', 'The checksum does not match the data', 400, { Reason: 'INVALID_CHECKSUM' }) : undefined));
      const saved = saveCursors();
      deletes();
      await expect(isComplete(event)).rejects.toThrow(
        /^EBS refused block 2 \(bytes 1048576-1572863 of the image\): ValidationException \(INVALID_CHECKSUM\): The checksum does not match the data\. The snapshot snap-0123456789abcdef0 was not completed and has been deleted\.$/,
      );
      expect(ec2Mock).toHaveReceivedCommandWith(DeleteSnapshotCommand, { SnapshotId: SNAP });
      expect(ebsMock).not.toHaveReceivedCommand(CompleteSnapshotCommand);
      expect(saved.every((c) => c.next <= 2 && c.phase === 'uploading')).toBe(true);
    });

    test('a ValidationException without a reason is refused for good too', async () => {
      const img = image('x');
      serve(img);
      describes(SNAP, ec2Snapshot(SNAP, 'pending'));
      acceptBlocks(() => awsError('ValidationException', 'Block data is invalid', 400));
      saveCursors();
      deletes();
      await expect(isComplete(polled(img))).rejects.toThrow(/^EBS refused block 0 \(bytes 0-524287 of the image\): ValidationException: Block data is invalid\./);
      expect(ebsMock).toHaveReceivedCommandTimes(PutSnapshotBlockCommand, 1);
    });

    test('a block refused while every slot is busy stops the reading at once', async () => {
      const blocks = INITIAL_CONCURRENCY + 8;
      const img = image('x'.repeat(blocks));
      serve(img);
      describes(SNAP, ec2Snapshot(SNAP, 'pending'));
      saveCursors();
      deletes();
      const pending: Array<{ index: number; resolve: (v: unknown) => void; reject: (e: unknown) => void }> = [];
      ebsMock.on(PutSnapshotBlockCommand, { SnapshotId: SNAP }).callsFake((input) => new Promise((resolve, reject) => {
        pending.push({ index: input.BlockIndex, resolve, reject });
        if (pending.length === INITIAL_CONCURRENCY) {
          // The pool is full (the next block waits for a slot): block 0 is refused, the others succeed.
          setImmediate(() => {
            pending[0].reject(awsError('ValidationException', 'The checksum does not match the data', 400, { Reason: 'INVALID_CHECKSUM' }));
            setImmediate(() => pending.slice(1).forEach((p) => p.resolve({})));
          });
        }
      }));
      await expect(isComplete(polled(img))).rejects.toThrow(/^EBS refused block 0 /);
      expect(ebsMock).toHaveReceivedCommandTimes(PutSnapshotBlockCommand, INITIAL_CONCURRENCY);
      expect(ebsMock).not.toHaveReceivedCommand(CompleteSnapshotCommand);
    });

    test('the image changed in S3 during the upload (another ETag): deleted, and the reason says to deploy again', async () => {
      const img = image('xx');
      serve(img, '"etag-2"');
      const event = polled(img);
      describes(SNAP, ec2Snapshot(SNAP, 'pending', ours(props(), requestToken(event))));
      acceptBlocks();
      deletes();
      await expect(isComplete(event)).rejects.toThrow(
        'The image s3://images/golden/disk.raw changed during the upload (its ETag is no longer "etag-1"); ' +
          'the snapshot snap-0123456789abcdef0 was not completed and has been deleted. Deploy again.',
      );
      expect(ec2Mock).toHaveReceivedCommandWith(DeleteSnapshotCommand, { SnapshotId: SNAP });
      expect(ebsMock).not.toHaveReceivedCommand(PutSnapshotBlockCommand);
      expect(ebsMock).not.toHaveReceivedCommand(CompleteSnapshotCommand);
    });

    test('S3 returning fewer bytes than asked fails the upload with the reason; deleted', async () => {
      const img = image('xx');
      s3Mock.on(GetObjectCommand).resolves({ Body: Readable.from([Buffer.alloc(100, 1)]) as any });
      const event = polled(img);
      describes(SNAP, ec2Snapshot(SNAP, 'pending', ours(props(), requestToken(event))));
      acceptBlocks();
      deletes();
      await expect(isComplete(event)).rejects.toThrow(
        /^Uploading the image to EBS snapshot snap-0123456789abcdef0: ShortRead: S3 returned 100 bytes for bytes 0-1048575 of s3:\/\/images\/golden\/disk\.raw\. The snapshot was not completed and has been deleted\.$/,
      );
      expect(ec2Mock).toHaveReceivedCommandWith(DeleteSnapshotCommand, { SnapshotId: SNAP });
    });

    test('"snapshot does not exist" long after StartSnapshot is not retried: deleted (already gone is fine)', async () => {
      const img = image('x');
      serve(img);
      const event = polled(img);
      describes(SNAP, ec2Snapshot(SNAP, 'pending', ours(props(), requestToken(event))));
      acceptBlocks(() => awsError('ResourceNotFoundException', `The snapshot ${SNAP} does not exist`, 404, { Reason: 'SNAPSHOT_NOT_FOUND' }));
      ec2Mock.on(DeleteSnapshotCommand, { SnapshotId: SNAP }).rejects(awsError('InvalidSnapshot.NotFound', 'gone', 400));
      now = T0 + 130_000;
      await expect(isComplete(event)).rejects.toThrow(
        `Uploading the image to EBS snapshot ${SNAP}: ResourceNotFoundException: The snapshot ${SNAP} does not exist. The snapshot was not completed and has been deleted.`,
      );
      expect(ebsMock).toHaveReceivedCommandTimes(PutSnapshotBlockCommand, 1);
      expect(ec2Mock).toHaveReceivedCommandTimes(DeleteSnapshotCommand, 1);
    });

    test('a snapshot of another request is not deleted after a failed upload; a delete that fails does not hide the reason', async () => {
      const img = image('x');
      serve(img);
      const event = polled(img);
      describes(SNAP, ec2Snapshot(SNAP, 'pending', ours(props(), 'css-another-request')));
      acceptBlocks(() => awsError('AccessDeniedException', 'not allowed', 403));
      await expect(isComplete(event)).rejects.toThrow(/^Uploading the image to EBS snapshot snap-0123456789abcdef0: AccessDeniedException: not allowed\./);
      expect(ec2Mock).not.toHaveReceivedCommand(DeleteSnapshotCommand);

      ec2Mock.resetHistory();
      describes(SNAP, awsError('InvalidSnapshot.NotFound', 'not visible yet', 400));
      ec2Mock.on(DeleteSnapshotCommand, { SnapshotId: SNAP }).rejects(awsError('UnauthorizedOperation', 'no', 403));
      await expect(isComplete(event)).rejects.toThrow(/AccessDeniedException: not allowed\. The snapshot was not completed and has been deleted\.$/);
      expect(ec2Mock).toHaveReceivedCommandTimes(DeleteSnapshotCommand, 1);
    });

    test.each([
      ['completed', ec2Snapshot(SNAP, 'completed')],
      ['completing', ec2Snapshot(SNAP, 'pending', [cursorTag({ next: 1, changed: 1, aggregate: aggregateOf([]), phase: 'completing' })])],
    ])('a write refused because a duplicate invocation already %s the upload is no failure', async (_, after) => {
      const img = image('x');
      serve(img);
      describes(SNAP, ec2Snapshot(SNAP, 'pending', ours(props(), 'x')), after);
      acceptBlocks(() => awsError('ValidationException', 'The snapshot is not in the pending state', 400, { Reason: 'INVALID_SNAPSHOT_ID' }));
      saveCursors();
      await expect(isComplete(polled(img))).resolves.toEqual({ IsComplete: false });
      expect(ec2Mock).not.toHaveReceivedCommand(DeleteSnapshotCommand);
      expect(ebsMock).not.toHaveReceivedCommand(CompleteSnapshotCommand);
    });

    test('saving the "completing" cursor fails: the deploy fails, CompleteSnapshot is not sent, and the pending snapshot of this request is deleted', async () => {
      const img = image('x');
      serve(img);
      const event = polled(img);
      describes(SNAP, ec2Snapshot(SNAP, 'pending', ours(props(), requestToken(event))));
      acceptBlocks();
      deletes();
      ec2Mock.on(CreateTagsCommand).rejects(awsError('UnauthorizedOperation', 'You are not authorized to perform this operation.', 403));
      await expect(isComplete(event)).rejects.toThrow(
        /^Saving the upload cursor of EBS snapshot snap-0123456789abcdef0: UnauthorizedOperation: .*\. The snapshot was not completed and has been deleted\.$/,
      );
      expect(ebsMock).toHaveReceivedCommandTimes(PutSnapshotBlockCommand, 1);
      expect(ebsMock).not.toHaveReceivedCommand(CompleteSnapshotCommand);
      expect(ec2Mock).toHaveReceivedCommandWith(DeleteSnapshotCommand, { SnapshotId: SNAP });
    });
  });

  describe('retries inside the upload', () => {
    test.each([
      ['ThrottlingException', 'ACCOUNT_THROTTLED'],
      ['ThrottlingException', 'DEPENDENCY_REQUEST_THROTTLED'],
      ['ThrottlingException', 'RESOURCE_LEVEL_THROTTLE'],
      ['ConcurrentLimitExceededException', undefined],
    ])('%s %s halves the pool and is retried; nothing is lost', async (code, reason) => {
      const img = image('x0xx');
      serve(img);
      describes(SNAP, ec2Snapshot(SNAP, 'pending'));
      const { written, attempts } = acceptBlocks((_, attempt) => (attempt <= 2 ? awsError(code, 'Slow down', 400, reason ? { Reason: reason } : {}) : undefined));
      saveCursors();
      completes();
      const warn = jest.spyOn(logger, 'warn');
      await expect(isComplete(polled(img))).resolves.toEqual({ IsComplete: false });
      expect([...written.keys()].sort()).toEqual([0, 2, 3]);
      expect([...attempts.values()]).toEqual([3, 3, 3]);
      expect(ebsMock).toHaveReceivedCommandWith(CompleteSnapshotCommand, { ChangedBlocksCount: 3, Checksum: linear(img.checksums) });
      // The first throttled answer halved the pool from its initial size.
      expect(warn).toHaveBeenCalledWith('retrying a block', expect.objectContaining({ snapshotId: SNAP, error: code, concurrency: INITIAL_CONCURRENCY / 2 }));
    });

    test('"snapshot does not exist" right after StartSnapshot is retried until it exists', async () => {
      const img = image('xx');
      serve(img);
      describes(SNAP, awsError('InvalidSnapshot.NotFound', 'not visible yet', 400));
      const { written, attempts } = acceptBlocks(() =>
        (now - T0 < 20_000 ? awsError('ResourceNotFoundException', `The snapshot ${SNAP} does not exist`, 404, { Reason: 'SNAPSHOT_NOT_FOUND' }) : undefined));
      saveCursors();
      completes();
      await expect(isComplete(polled(img))).resolves.toEqual({ IsComplete: false });
      expect([...written.keys()].sort()).toEqual([0, 1]);
      expect(Math.max(...attempts.values())).toBeGreaterThan(2);
      expect(ebsMock).toHaveReceivedCommandTimes(CompleteSnapshotCommand, 1);
      expect(ec2Mock).not.toHaveReceivedCommand(DeleteSnapshotCommand);
    });

    test.each([
      ['ValidationException', { Reason: 'CONFLICTING_BLOCK_UPDATE' }, 400],
      ['ValidationException', { Reason: 'WRITE_REQUEST_TIMEOUT' }, 400],
      ['InternalServerException', {}, 500],
      ['SomethingNew', {}, 503],
    ])('%s %j is retried', async (code, extra, status) => {
      const img = image('x');
      serve(img);
      describes(SNAP, ec2Snapshot(SNAP, 'pending'));
      const { attempts } = acceptBlocks((_, attempt) => (attempt === 1 ? awsError(code, 'try again', status, extra) : undefined));
      saveCursors();
      completes();
      await expect(isComplete(polled(img))).resolves.toEqual({ IsComplete: false });
      expect(attempts.get(0)).toBe(2);
      expect(ebsMock).toHaveReceivedCommandWith(CompleteSnapshotCommand, { ChangedBlocksCount: 1 });
    });

    test('a block that keeps failing transiently stops this invocation below it; the next poll resumes from the cursor', async () => {
      const img = image('xxx');
      serve(img);
      describes(SNAP, ec2Snapshot(SNAP, 'pending'));
      const { attempts, written } = acceptBlocks((i) => (i === 1 ? awsError('InternalServerException', 'oops', 500) : undefined));
      const saved = saveCursors();
      await expect(isComplete(polled(img))).resolves.toEqual({ IsComplete: false });
      expect(attempts.get(1)).toBe(8);
      expect(written.has(0)).toBe(true);
      expect(saved.at(-1)).toMatchObject({ next: 1, changed: 1, phase: 'uploading' });
      expect(ebsMock).not.toHaveReceivedCommand(CompleteSnapshotCommand);
      expect(ec2Mock).not.toHaveReceivedCommand(DeleteSnapshotCommand);
    });

    test('a block still throttled when the invocation must end is abandoned to the next poll, not failed', async () => {
      const img = image('xx');
      serve(img);
      describes(SNAP, ec2Snapshot(SNAP, 'pending'));
      // Block 1 is throttled, and by then the invocation's time is up (reading stops at +60 s, draining at +90 s).
      const { attempts } = acceptBlocks((i) => {
        if (i !== 1) return undefined;
        now = T0 + 95_000;
        return awsError('ThrottlingException', 'Rate exceeded', 400, { Reason: 'RESOURCE_LEVEL_THROTTLE' });
      });
      const saved = saveCursors();
      await expect(isComplete(polled(img))).resolves.toEqual({ IsComplete: false });
      expect(attempts.get(1)).toBe(1);
      expect(saved.at(-1)).toMatchObject({ next: 1, changed: 1, phase: 'uploading' });
      expect(ebsMock).not.toHaveReceivedCommand(CompleteSnapshotCommand);
    });
  });

  describe('completing phase', () => {
    const img = image('x0x');
    const cursor: UploadCursor = { next: 3, changed: 2, aggregate: aggregateOf(img.checksums), phase: 'completing' };

    test('resends CompleteSnapshot from the cursor (a killed invocation may have lost it) and reads no block', async () => {
      describes(SNAP, ec2Snapshot(SNAP, 'pending', [cursorTag(cursor)]));
      completes();
      await expect(isComplete(polled(img))).resolves.toEqual({ IsComplete: false });
      expect(ebsMock).toHaveReceivedCommandWith(CompleteSnapshotCommand, {
        SnapshotId: SNAP, ChangedBlocksCount: 2, Checksum: linear(img.checksums), ChecksumAlgorithm: 'SHA256', ChecksumAggregationMethod: 'LINEAR',
      });
      expect(ebsMock).not.toHaveReceivedCommand(PutSnapshotBlockCommand);
      expect(s3Mock.calls()).toHaveLength(0);
    });

    test('a resend EBS refuses because it already has one is fine', async () => {
      describes(SNAP, ec2Snapshot(SNAP, 'pending', [cursorTag(cursor)]));
      ebsMock.on(CompleteSnapshotCommand, { SnapshotId: SNAP }).rejects(awsError('ValidationException', 'The snapshot is already completing', 400));
      await expect(isComplete(polled(img))).resolves.toEqual({ IsComplete: false });
      expect(ebsMock).toHaveReceivedCommandTimes(CompleteSnapshotCommand, 1);
    });

    test('a resend refused for another reason fails with it; the pending snapshot of this request is deleted', async () => {
      const event = polled(img);
      describes(SNAP, ec2Snapshot(SNAP, 'pending', [...ours(props(), requestToken(event)), cursorTag(cursor)]));
      ebsMock.on(CompleteSnapshotCommand, { SnapshotId: SNAP }).rejects(awsError('AccessDeniedException', 'not allowed', 403));
      deletes();
      await expect(isComplete(event)).rejects.toThrow(
        /^Completing EBS snapshot snap-0123456789abcdef0: AccessDeniedException: not allowed\. The snapshot was not completed and has been deleted\.$/,
      );
      expect(ec2Mock).toHaveReceivedCommandWith(DeleteSnapshotCommand, { SnapshotId: SNAP });
    });

    test('a first CompleteSnapshot refused fails with the reason, and the pending snapshot of this request is deleted', async () => {
      const one = image('x');
      serve(one);
      const event = polled(one);
      describes(SNAP, ec2Snapshot(SNAP, 'pending', ours(props(), requestToken(event))));
      acceptBlocks();
      saveCursors();
      deletes();
      ebsMock.on(CompleteSnapshotCommand, { SnapshotId: SNAP }).rejects(awsError('ValidationException', 'The checksum is wrong', 400, { Reason: 'INVALID_CHECKSUM' }));
      await expect(isComplete(event)).rejects.toThrow(
        /^Completing EBS snapshot snap-0123456789abcdef0: ValidationException: The checksum is wrong\. The snapshot was not completed and has been deleted\.$/,
      );
      expect(ebsMock).toHaveReceivedCommandTimes(CompleteSnapshotCommand, 1);
      expect(ec2Mock).toHaveReceivedCommandWith(DeleteSnapshotCommand, { SnapshotId: SNAP });
    });

    test('a first CompleteSnapshot refused is not deleted when the snapshot of this request reads completed just before the delete', async () => {
      const one = image('x');
      serve(one);
      const event = polled(one);
      // Read at the start of the poll, then again just before the delete.
      describes(SNAP, ec2Snapshot(SNAP, 'pending', ours(props(), requestToken(event))), ec2Snapshot(SNAP, 'completed', ours(props(), requestToken(event))));
      acceptBlocks();
      saveCursors();
      ebsMock.on(CompleteSnapshotCommand, { SnapshotId: SNAP }).rejects(awsError('AccessDeniedException', 'not allowed', 403));
      await expect(isComplete(event)).rejects.toThrow(/^Completing EBS snapshot snap-0123456789abcdef0: AccessDeniedException: not allowed\./);
      expect(ec2Mock).not.toHaveReceivedCommand(DeleteSnapshotCommand);
    });

    // CompleteSnapshot's answer lost (a timeout) is retried inside the same call; EBS refuses the
    // retry because it has the first. The snapshot's state, not the refusal, decides.
    test.each([
      ['pending', ec2Snapshot(SNAP, 'pending')],
      ['completed', ec2Snapshot(SNAP, 'completed')],
    ])('a CompleteSnapshot whose answer was lost, retried in the same invocation and refused, does not fail the deploy (then %s)', async (_, after) => {
      const one = image('x');
      serve(one);
      describes(SNAP, ec2Snapshot(SNAP, 'pending'), after);
      acceptBlocks();
      const saved = saveCursors();
      ebsMock.on(CompleteSnapshotCommand, { SnapshotId: SNAP })
        .rejectsOnce(awsError('TimeoutError', 'Connection timed out after 30000 ms', 500))
        .rejects(awsError('ValidationException', 'The snapshot is already completing', 400));
      await expect(isComplete(polled(one))).resolves.toEqual({ IsComplete: false });
      expect(ebsMock).toHaveReceivedCommandTimes(CompleteSnapshotCommand, 2);
      expect(ec2Mock).toHaveReceivedCommandTimes(DescribeSnapshotsCommand, 2);
      expect(ec2Mock).not.toHaveReceivedCommand(DeleteSnapshotCommand);
      expect(saved.at(-1)).toMatchObject({ next: 1, changed: 1, phase: 'completing' });
    });

    test('a CompleteSnapshot retried and refused when the snapshot is in error fails with the service\'s reason; deleted', async () => {
      const one = image('x');
      serve(one);
      const event = polled(one);
      describes(SNAP, ec2Snapshot(SNAP, 'pending', ours(props(), requestToken(event))),
        ec2Snapshot(SNAP, 'error', ours(props(), requestToken(event)), { StateMessage: 'The checksum does not match' }));
      acceptBlocks();
      saveCursors();
      deletes();
      ebsMock.on(CompleteSnapshotCommand, { SnapshotId: SNAP })
        .rejectsOnce(awsError('InternalServerException', 'oops', 500))
        .rejects(awsError('ValidationException', 'The snapshot is already completing', 400));
      await expect(isComplete(event)).rejects.toThrow(/^EBS snapshot snap-0123456789abcdef0 is in state error: The checksum does not match$/);
      expect(ec2Mock).toHaveReceivedCommandWith(DeleteSnapshotCommand, { SnapshotId: SNAP });
    });

    // The cursor is read back from an EC2 tag, which may be stale: a poll that reads the final
    // "uploading" cursor (saved just before the "completing" one) finds nothing to upload and sends
    // CompleteSnapshot again; EBS's refusal is checked against the state, and the "completing"
    // cursor is saved again.
    test('a stale "uploading" cursor at the end of the image, read after CompleteSnapshot was sent, does not fail the deploy', async () => {
      describes(SNAP, ec2Snapshot(SNAP, 'pending', [cursorTag({ ...cursor, phase: 'uploading' })]));
      serve(img);
      const saved = saveCursors();
      ebsMock.on(CompleteSnapshotCommand, { SnapshotId: SNAP }).rejects(awsError('ValidationException', 'The snapshot is already completing', 400));
      await expect(isComplete(polled(img))).resolves.toEqual({ IsComplete: false });
      expect(ebsMock).not.toHaveReceivedCommand(PutSnapshotBlockCommand);
      expect(ec2Mock).not.toHaveReceivedCommand(DeleteSnapshotCommand);
      expect(saved).toEqual([cursor, cursor]);
    });

    test('two stale reads in a row (an old cursor, then again after EBS refused the writes) never delete a snapshot that is completing', async () => {
      const event = polled(img);
      const stale = ec2Snapshot(SNAP, 'pending', [...ours(props(), requestToken(event)), cursorTag({ next: 0, changed: 0, aggregate: aggregateOf([]), phase: 'uploading' })]);
      describes(SNAP, stale, stale, stale);
      serve(img);
      saveCursors();
      deletes();
      acceptBlocks(() => awsError('ValidationException', `The snapshot ${SNAP} is pending and cannot be written`, 400, { Reason: 'INVALID_SNAPSHOT_ID' }));
      await expect(isComplete(event)).resolves.toEqual({ IsComplete: false });
      expect(ec2Mock).not.toHaveReceivedCommand(DeleteSnapshotCommand);
      expect(ebsMock).not.toHaveReceivedCommand(CompleteSnapshotCommand);
    });
  });
});

describe('Update', () => {
  const current = 'snap-0000000000000000b';

  test('nothing that forces a snapshot changed (tags, description, removal policy, timeout): the snapshot is kept, with its attributes', async () => {
    const old = props({ VolumeSize: '8' });
    const changed = props({ VolumeSize: '8', Tags: '{"a":"b"}', Description: 'new', RemovalPolicy: 'retain', TimeoutSeconds: '600' });
    ec2Mock.on(DescribeSnapshotsCommand, { SnapshotIds: [current] }).resolves({
      Snapshots: [ec2Snapshot(current, 'completed', [cursorTag({ next: 9, changed: 7, aggregate: aggregateOf([]), phase: 'completing' })], { VolumeSize: 8 })],
    });
    const res = await onEvent(cfnRequest('Update', changed, { PhysicalResourceId: current, OldResourceProperties: old }));
    expect(res).toEqual({
      PhysicalResourceId: current,
      Data: { SnapshotId: current, VolumeSize: '8', BlockCount: '7', ImageSizeBytes: '', ImageETag: '', StartedAt: String(T0), Origin: 'unchanged' },
    });
    expect(ebsMock.calls()).toHaveLength(0);
    expect(cfnMock.calls()).toHaveLength(0);
  });

  test('a kept snapshot that cannot be read is still kept, with the volume size of the properties', async () => {
    ec2Mock.on(DescribeSnapshotsCommand).rejects(awsError('UnauthorizedOperation', 'no', 403));
    const res = await onEvent(cfnRequest('Update', props({ VolumeSize: '4', Tags: '{"a":"b"}' }), { PhysicalResourceId: current, OldResourceProperties: props({ VolumeSize: '4' }) }));
    expect(res).toEqual({ PhysicalResourceId: current, Data: expect.objectContaining({ SnapshotId: current, VolumeSize: '4', BlockCount: '', Origin: 'unchanged' }) });
    expect(ebsMock.calls()).toHaveLength(0);
  });

  // The volume size derived from the image (no VolumeSize property) and the block count are only on
  // the snapshot: blank attributes would update a volume using `volumeSize` to ''. As OpenZfsSnapshot
  // does, an update fails with the reason, a rollback keeps the snapshot with what the request tells.
  test.each([
    ['cannot be read', awsError('UnauthorizedOperation', 'You are not authorized to perform this operation.', 403),
      /^Reading EBS snapshot snap-0000000000000000b: UnauthorizedOperation: You are not authorized to perform this operation\.; its volume size and block count are not known/],
    ['does not exist', awsError('InvalidSnapshot.NotFound', 'gone', 400), /^EBS snapshot snap-0000000000000000b does not exist; its volume size and block count are not known/],
  ])('a no-op update whose snapshot %s fails with the reason rather than blank the VolumeSize attribute', async (_, err, reason) => {
    stackStatus('UPDATE_IN_PROGRESS');
    ec2Mock.on(DescribeSnapshotsCommand).rejects(err);
    await expect(onEvent(cfnRequest('Update', props({ Tags: '{"a":"b"}' }), { PhysicalResourceId: current, OldResourceProperties: props() }))).rejects.toThrow(reason);
    expect(ebsMock.calls()).toHaveLength(0);
  });

  test('a kept snapshot not visible at first is read again', async () => {
    describes(current, awsError('InvalidSnapshot.NotFound', 'not yet', 400),
      ec2Snapshot(current, 'completed', [cursorTag({ next: 9, changed: 7, aggregate: aggregateOf([]), phase: 'completing' })], { VolumeSize: 3 }));
    const res = await onEvent(cfnRequest('Update', props({ Tags: '{"a":"b"}' }), { PhysicalResourceId: current, OldResourceProperties: props() }));
    expect(res.Data).toMatchObject({ VolumeSize: '3', BlockCount: '7', Origin: 'unchanged' });
    expect(ec2Mock).toHaveReceivedCommandTimes(DescribeSnapshotsCommand, 2);
  });

  test('a rollback keeps a snapshot it cannot read, with the volume size the image size in the properties gives', async () => {
    stackStatus('UPDATE_ROLLBACK_IN_PROGRESS');
    ec2Mock.on(DescribeSnapshotsCommand).rejects(awsError('UnauthorizedOperation', 'no', 403));
    const p = props({ Tags: '{"a":"b"}', ImageSizeBytes: String(GIB + 512) });
    const res = await onEvent(cfnRequest('Update', p, { PhysicalResourceId: current, OldResourceProperties: props({ ImageSizeBytes: String(GIB + 512) }) }));
    expect(res).toEqual({ PhysicalResourceId: current, Data: expect.objectContaining({ SnapshotId: current, VolumeSize: '2', ImageSizeBytes: String(GIB + 512), Origin: 'unchanged' }) });
  });

  test.each([
    ['the image', { ImageKey: 'golden/disk-v2.raw' }],
    ['the volume size', { VolumeSize: '16' }],
    ['the encryption', { Encrypted: 'true' as const, KmsKeyArn: KMS }],
    ['the parent', { ParentSnapshotId: 'snap-0parent000000000' }],
    ['the trigger', { Trigger: 'r2' }],
  ])('a change of %s starts a new snapshot with this request\'s token, without looking for one to adopt', async (_, over) => {
    stackStatus('UPDATE_IN_PROGRESS');
    const p = props(over);
    s3Mock.on(HeadObjectCommand, { Bucket: BUCKET, Key: p.ImageKey }).resolves({ ContentLength: EBS_BLOCK_BYTES, ETag: ETAG });
    const event = cfnRequest('Update', p, { PhysicalResourceId: current, OldResourceProperties: props({ Trigger: 'r1' }) });
    ebsMock.on(StartSnapshotCommand, { ClientToken: requestToken(event) }).resolves({ SnapshotId: SNAP });
    const res = await onEvent(event);
    expect(res.PhysicalResourceId).toBe(SNAP);
    expect(res.Data?.Origin).toBe('created');
    expect(ebsMock.commandCalls(StartSnapshotCommand)[0].args[0].input.Tags).toEqual(ours(p, requestToken(event)));
    expect(ec2Mock).not.toHaveReceivedCommand(DescribeSnapshotsCommand);
  });

  describe('rollback', () => {
    const rollbackTo = props({ Trigger: 'r1' });
    const event = (over: Record<string, unknown> = {}) =>
      cfnRequest('Update', rollbackTo, { PhysicalResourceId: current, OldResourceProperties: props({ Trigger: 'r2' }), ...over });
    const filters = [
      { Name: `tag:${OWNERSHIP_TAG_KEYS.owner}`, Values: [LOGICAL_ID] },
      { Name: `tag:${OWNERSHIP_TAG_KEYS.propsHash}`, Values: [identityHash(rollbackTo)] },
      { Name: 'status', Values: ['completed'] },
    ];

    test('re-adopts the newest completed snapshot of ours made for the properties it returns to (across pages), and starts none', async () => {
      stackStatus('UPDATE_ROLLBACK_IN_PROGRESS');
      const mine = (id: string, day: number, owner = LOGICAL_ID, stack = STACK_ID) =>
        ec2Snapshot(id, 'completed', [...ours(rollbackTo, 'css-old', owner, stack), cursorTag({ next: 40, changed: day, aggregate: aggregateOf([]), phase: 'completing' })], {
          StartTime: new Date(`2026-11-${day}T00:00:00Z`), VolumeSize: 3,
        });
      ec2Mock.on(DescribeSnapshotsCommand, { OwnerIds: ['self'], Filters: filters, NextToken: undefined })
        .resolves({
          Snapshots: [mine('snap-000000000000000a1', 10), mine('snap-000000000000000f1', 25, 'SomeoneElse'), { ...mine('snap-000000000000000a0', 1), StartTime: undefined }],
          NextToken: 'page-2',
        });
      ec2Mock.on(DescribeSnapshotsCommand, { OwnerIds: ['self'], Filters: filters, NextToken: 'page-2' })
        .resolves({ Snapshots: [mine('snap-000000000000000a2', 20), mine('snap-000000000000000f2', 26, LOGICAL_ID, STACK_ID.replace('/app/', '/other/'))] });
      const res = await onEvent(event());
      expect(res).toEqual({
        PhysicalResourceId: 'snap-000000000000000a2',
        Data: { SnapshotId: 'snap-000000000000000a2', VolumeSize: '3', BlockCount: '20', ImageSizeBytes: '', ImageETag: '', StartedAt: String(T0), Origin: 'adopted' },
      });
      expect(ec2Mock).toHaveReceivedCommandTimes(DescribeSnapshotsCommand, 2);
      expect(ebsMock.calls()).toHaveLength(0);
      expect(s3Mock.calls()).toHaveLength(0);
    });

    test('keeps the current snapshot when none matches, and does not fail', async () => {
      stackStatus('UPDATE_ROLLBACK_IN_PROGRESS');
      ec2Mock.on(DescribeSnapshotsCommand, { OwnerIds: ['self'], Filters: filters }).resolves({ Snapshots: [] });
      ec2Mock.on(DescribeSnapshotsCommand, { SnapshotIds: [current] }).resolves({ Snapshots: [ec2Snapshot(current, 'completed')] });
      const res = await onEvent(event());
      expect(res).toEqual({ PhysicalResourceId: current, Data: expect.objectContaining({ SnapshotId: current, Origin: 'unchanged', VolumeSize: '1' }) });
      expect(ebsMock.calls()).toHaveLength(0);
    });

    test('does not fail when the look-up itself fails', async () => {
      stackStatus('UPDATE_ROLLBACK_IN_PROGRESS');
      ec2Mock.on(DescribeSnapshotsCommand).rejects(awsError('UnauthorizedOperation', 'no', 403));
      const res = await onEvent(event());
      expect(res).toEqual({ PhysicalResourceId: current, Data: expect.objectContaining({ Origin: 'unchanged' }) });
      expect(ebsMock.calls()).toHaveLength(0);
      expect(s3Mock.calls()).toHaveLength(0);
    });

    test('when the stack status cannot be read, adopts a match if there is one', async () => {
      cfnMock.on(DescribeStacksCommand).rejects(awsError('AccessDenied', 'nope', 403));
      ec2Mock.on(DescribeSnapshotsCommand, { OwnerIds: ['self'], Filters: filters })
        .resolves({ Snapshots: [ec2Snapshot('snap-000000000000000a1', 'completed', ours(rollbackTo, 'css-old'))] });
      const res = await onEvent(event());
      expect(res.PhysicalResourceId).toBe('snap-000000000000000a1');
      expect(res.Data?.Origin).toBe('adopted');
      expect(ebsMock.calls()).toHaveLength(0);
    });

    test('when the stack status cannot be read and nothing matches, the update starts its snapshot', async () => {
      cfnMock.on(DescribeStacksCommand).rejects(awsError('AccessDenied', 'nope', 403));
      ec2Mock.on(DescribeSnapshotsCommand, { OwnerIds: ['self'], Filters: filters }).resolves({});
      serve(image('x'));
      ebsMock.on(StartSnapshotCommand).resolves({ SnapshotId: SNAP, VolumeSize: 1 });
      const res = await onEvent(event());
      expect(res).toEqual({ PhysicalResourceId: SNAP, Data: expect.objectContaining({ Origin: 'created' }) });
      expect(ebsMock).toHaveReceivedCommandTimes(StartSnapshotCommand, 1);
    });

    test('without old properties the update is not taken for a no-op', async () => {
      stackStatus('UPDATE_ROLLBACK_IN_PROGRESS');
      ec2Mock.on(DescribeSnapshotsCommand, { OwnerIds: ['self'], Filters: filters })
        .resolves({ Snapshots: [ec2Snapshot('snap-000000000000000a1', 'completed', ours(rollbackTo, 'css-old'))] });
      const res = await onEvent(event({ OldResourceProperties: undefined }));
      expect(res.PhysicalResourceId).toBe('snap-000000000000000a1');
      expect(cfnMock).toHaveReceivedCommandTimes(DescribeStacksCommand, 1);
    });
  });
});

describe('Delete', () => {
  const del = (p = props(), id = SNAP) => cfnRequest('Delete', p, { PhysicalResourceId: id });

  test('retain keeps the snapshot and calls nothing', async () => {
    await expect(onEvent(del(props({ RemovalPolicy: 'retain' })))).resolves.toEqual({ PhysicalResourceId: SNAP });
    for (const m of [ebsMock, ec2Mock, s3Mock, cfnMock]) expect(m.calls()).toHaveLength(0);
  });

  test('destroy deletes a snapshot this resource made (whichever request made it)', async () => {
    describes(SNAP, ec2Snapshot(SNAP, 'completed', ours(props(), 'css-an-earlier-request')));
    deletes();
    await expect(onEvent(del())).resolves.toEqual({ PhysicalResourceId: SNAP });
    expect(ec2Mock).toHaveReceivedCommandWith(DeleteSnapshotCommand, { SnapshotId: SNAP });
  });

  test.each([
    ['another resource', ours(props(), 'css-1', 'SomeoneElse')],
    ['another stack', ours(props(), 'css-1', LOGICAL_ID, STACK_ID.replace('/app/', '/other/'))],
    ['nobody (no tags)', []],
  ])('destroy never deletes a snapshot made by %s', async (_, tags) => {
    describes(SNAP, ec2Snapshot(SNAP, 'completed', tags));
    await expect(onEvent(del())).resolves.toEqual({ PhysicalResourceId: SNAP });
    expect(ec2Mock).not.toHaveReceivedCommand(DeleteSnapshotCommand);
  });

  test.each([
    ['EC2 says it does not exist', () => describes(SNAP, awsError('InvalidSnapshot.NotFound', 'gone', 400))],
    ['EC2 lists no such snapshot', () => ec2Mock.on(DescribeSnapshotsCommand, { SnapshotIds: [SNAP] }).resolves({ Snapshots: [] })],
  ])('a missing snapshot is success: %s', async (_, setup) => {
    setup();
    await expect(onEvent(del())).resolves.toEqual({ PhysicalResourceId: SNAP });
    expect(ec2Mock).toHaveReceivedCommandTimes(DescribeSnapshotsCommand, 1);
    expect(ec2Mock).not.toHaveReceivedCommand(DeleteSnapshotCommand);
  });

  test('a snapshot that goes away between the look-up and the delete is success', async () => {
    describes(SNAP, ec2Snapshot(SNAP, 'completed', ours(props(), 'css-1')));
    ec2Mock.on(DeleteSnapshotCommand, { SnapshotId: SNAP }).rejects(awsError('InvalidSnapshot.NotFound', 'gone', 400));
    await expect(onEvent(del())).resolves.toEqual({ PhysicalResourceId: SNAP });
    expect(ec2Mock).toHaveReceivedCommandTimes(DeleteSnapshotCommand, 1);
  });

  test('a physical id that is not a snapshot (nothing was made) is success without a call', async () => {
    await expect(onEvent(del(props(), 'request-7'))).resolves.toEqual({ PhysicalResourceId: 'request-7' });
    expect(ec2Mock.calls()).toHaveLength(0);
  });

  test('a delete that fails is reported with the service\'s reason', async () => {
    describes(SNAP, ec2Snapshot(SNAP, 'completed', ours(props(), 'css-1')));
    ec2Mock.on(DeleteSnapshotCommand, { SnapshotId: SNAP }).rejects(awsError('InvalidSnapshot.InUse', `The snapshot ${SNAP} is currently in use by ami-0123`, 400));
    await expect(onEvent(del())).rejects.toThrow(/^Deleting EBS snapshot snap-0123456789abcdef0: InvalidSnapshot\.InUse: The snapshot .* is currently in use by ami-0123$/);
  });
});
