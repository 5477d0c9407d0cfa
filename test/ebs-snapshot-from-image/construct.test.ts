import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import { App, Duration, RemovalPolicy, Size, Stack, Tags } from 'aws-cdk-lib';
import { Match, Template } from 'aws-cdk-lib/assertions';
import * as ec2 from 'aws-cdk-lib/aws-ec2';
import * as kms from 'aws-cdk-lib/aws-kms';
import * as s3 from 'aws-cdk-lib/aws-s3';
import { DiskImage, EbsSnapshotFromImage, EbsSnapshotFromImageProps, EbsSnapshotOnDeploy, EbsSnapshotOnDeployProps, EbsSnapshotSource } from '../../src';
import { MAX_IMAGE_BYTES } from '../../src/private/upload-bound';

const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'ebs-image-'));
let files = 0;
/** A raw image of `bytes` bytes: sparse, so that its size is what synth checks and it costs no disk. */
function image(bytes: number): string {
  const file = path.join(dir, `disk${files++}.raw`);
  fs.writeFileSync(file, '');
  fs.truncateSync(file, bytes);
  return file;
}

function newStack(): Stack {
  return new Stack(new App(), 'Stack', { env: { account: '111111111111', region: 'us-east-1' } });
}

function fromS3(stack: Stack, key = 'disk.raw'): DiskImage {
  const bucket = stack.node.tryFindChild('Images') as s3.IBucket ?? s3.Bucket.fromBucketName(stack, 'Images', 'images');
  return DiskImage.fromS3Object(bucket, key);
}

function statements(stack: Stack): any[] {
  return Object.values<any>(Template.fromStack(stack).findResources('AWS::IAM::Policy')).flatMap((p) => p.Properties.PolicyDocument.Statement);
}

const SNAPSHOTS = { 'Fn::Join': ['', ['arn:', { Ref: 'AWS::Partition' }, ':ec2:us-east-1::snapshot/*']] };

describe('EbsSnapshotFromImage resources', () => {
  test('DiskImage.fromFile: an asset and a Custom::EbsSnapshotFromImage with the image, its size and the tags (Tags.of included)', () => {
    // GIVEN
    const stack = newStack();
    // WHEN
    const golden = new EbsSnapshotFromImage(stack, 'Golden', {
      image: DiskImage.fromFile(image(1024 * 1024)),
      volumeSize: Size.gibibytes(8),
      description: 'golden data disk',
      tags: { team: 'data' },
    });
    Tags.of(stack).add('costCenter', '42');
    // THEN
    const template = Template.fromStack(stack);
    template.resourceCountIs('Custom::EbsSnapshotOnDeploy', 0);
    template.hasResourceProperties('Custom::EbsSnapshotFromImage', {
      ImageBucket: Match.anyValue(),
      ImageKey: Match.stringLikeRegexp('^[0-9a-f]{64}\\.raw$'),
      ImageSizeBytes: String(1024 * 1024),
      VolumeSize: '8',
      Description: 'golden data disk',
      Tags: '{"costCenter":"42","team":"data"}',
      RemovalPolicy: 'retain',
      TimeoutSeconds: '3600',
      Encrypted: Match.absent(),
      ParentSnapshotId: Match.absent(),
    });
    const logicalId = Object.keys(template.findResources('Custom::EbsSnapshotFromImage'))[0];
    expect(logicalId).toMatch(/^Golden[0-9A-F]{8}$/);
    expect(stack.resolve(golden.snapshotId)).toEqual({ Ref: logicalId });
    expect(stack.resolve(golden.snapshotArn)).toEqual({ 'Fn::Join': ['', ['arn:', { Ref: 'AWS::Partition' }, ':ec2:us-east-1::snapshot/', { Ref: logicalId }]] });
    expect(stack.resolve(golden.volumeSize)).toEqual({ 'Fn::GetAtt': [logicalId, 'VolumeSize'] });
    expect(stack.resolve(golden.blockCount)).toEqual({ 'Fn::GetAtt': [logicalId, 'BlockCount'] });
  });

  test('removal policy, timeout, trigger and parentSnapshotId are passed to the handler; isComplete gets 14 minutes and 2,048 MB', () => {
    const stack = newStack();
    new EbsSnapshotFromImage(stack, 'Golden', {
      image: fromS3(stack),
      parentSnapshotId: 'snap-0123456789abcdef0',
      trigger: 'v3',
      removalPolicy: RemovalPolicy.DESTROY,
      timeout: Duration.minutes(50),
    });
    const t = Template.fromStack(stack);
    t.hasResourceProperties('Custom::EbsSnapshotFromImage', {
      ParentSnapshotId: 'snap-0123456789abcdef0', Trigger: 'v3', RemovalPolicy: 'destroy', TimeoutSeconds: '3000',
    });
    t.hasResourceProperties('AWS::Lambda::Function', { Handler: 'index.isComplete', Timeout: 840, MemorySize: 2048 });
    // StartSnapshot authorizes the parent too.
    expect(statements(stack)).toContainEqual(expect.objectContaining({
      Action: 'ebs:StartSnapshot',
      Resource: [SNAPSHOTS, { 'Fn::Join': ['', ['arn:', { Ref: 'AWS::Partition' }, ':ec2:us-east-1::snapshot/snap-0123456789abcdef0']] }],
    }));
  });

  test('DiskImage.fromS3Object: the handler may read only that object; encryption with a key of the user\'s', () => {
    const stack = newStack();
    const bucket = new s3.Bucket(stack, 'Images');
    const kmsKey = new kms.Key(stack, 'Key');
    new EbsSnapshotFromImage(stack, 'FromS3', { image: DiskImage.fromS3Object(bucket, 'disks/golden.raw'), encryption: { kmsKey } });
    const template = Template.fromStack(stack);
    template.hasResourceProperties('Custom::EbsSnapshotFromImage', {
      ImageKey: 'disks/golden.raw',
      ImageSizeBytes: Match.absent(),
      Encrypted: 'true',
      KmsKeyArn: { 'Fn::GetAtt': [Match.stringLikeRegexp('^Key'), 'Arn'] },
    });
    const read = statements(stack).find((st) => st.Action === 's3:GetObject');
    expect(read.Resource).toEqual({ 'Fn::Join': ['', [{ 'Fn::GetAtt': [expect.stringMatching(/^Images/), 'Arn'] }, '/disks/golden.raw']] });
  });

  test('encryption without a key: Encrypted only, and no KMS statement', () => {
    const stack = newStack();
    new EbsSnapshotFromImage(stack, 'Golden', { image: fromS3(stack), encryption: {} });
    Template.fromStack(stack).hasResourceProperties('Custom::EbsSnapshotFromImage', { Encrypted: 'true', KmsKeyArn: Match.absent() });
    expect(JSON.stringify(statements(stack))).not.toMatch(/kms:/);
  });

  test('the N-th snapshot adds its custom resource only: the provider and the statements are shared', () => {
    const one = newStack();
    new EbsSnapshotFromImage(one, 'A', { image: fromS3(one, 'a.raw') });
    const two = newStack();
    new EbsSnapshotFromImage(two, 'A', { image: fromS3(two, 'a.raw') });
    new EbsSnapshotFromImage(two, 'B', { image: fromS3(two, 'b.raw') });
    const count = (s: Stack) => Object.keys(Template.fromStack(s).toJSON().Resources).length;
    expect(count(two) - count(one)).toBe(1);
    Template.fromStack(two).resourceCountIs('Custom::EbsSnapshotFromImage', 2);
  });

  test('no claim table and no queue (StartSnapshot takes a client token)', () => {
    const stack = newStack();
    new EbsSnapshotFromImage(stack, 'Golden', { image: fromS3(stack) });
    Template.fromStack(stack).resourceCountIs('AWS::DynamoDB::Table', 0);
    Template.fromStack(stack).resourceCountIs('AWS::SQS::Queue', 0);
  });

  test('restore: the snapshot id wires into an ec2.Volume', () => {
    const stack = newStack();
    const golden = new EbsSnapshotFromImage(stack, 'Golden', { image: DiskImage.fromFile(image(512)) });
    new ec2.Volume(stack, 'FromGolden', { availabilityZone: 'us-east-1a', snapshotId: golden.snapshotId });
    Template.fromStack(stack).hasResourceProperties('AWS::EC2::Volume', { SnapshotId: { Ref: Match.stringLikeRegexp('^Golden[0-9A-F]{8}$') } });
  });
});

describe('EbsSnapshotFromImage IAM', () => {
  test('least privilege: EBS writes and the cursor tag only on snapshots this stack owns; GetObject on the image only', () => {
    const stack = newStack();
    new EbsSnapshotFromImage(stack, 'Golden', { image: fromS3(stack) });
    expect(statements(stack)).toEqual(expect.arrayContaining([
      expect.objectContaining({ Action: 'ebs:StartSnapshot', Resource: SNAPSHOTS, Condition: { StringEquals: expect.objectContaining({ 'aws:RequestTag/cdk-storage-snapshots:managed-by': 'cdk-storage-snapshots' }) } }),
      expect.objectContaining({ Action: ['ebs:PutSnapshotBlock', 'ebs:CompleteSnapshot'], Resource: SNAPSHOTS, Condition: { StringEquals: expect.objectContaining({ 'aws:ResourceTag/cdk-storage-snapshots:managed-by': 'cdk-storage-snapshots' }) } }),
      expect.objectContaining({
        Action: 'ec2:CreateTags',
        Condition: { StringEquals: { 'aws:RequestTag/cdk-storage-snapshots:managed-by': 'cdk-storage-snapshots', 'aws:RequestTag/cdk-storage-snapshots:stack-id': { Ref: 'AWS::StackId' } } },
      }),
      expect.objectContaining({ Action: 'ec2:CreateTags', Condition: expect.objectContaining({ 'ForAllValues:StringEquals': { 'aws:TagKeys': ['cdk-storage-snapshots:upload-cursor'] } }) }),
      expect.objectContaining({ Action: 'ec2:DeleteSnapshot', Condition: { StringEquals: expect.objectContaining({ 'aws:ResourceTag/cdk-storage-snapshots:stack-id': { Ref: 'AWS::StackId' } }) } }),
      expect.objectContaining({ Action: 's3:GetObject', Resource: { 'Fn::Join': ['', ['arn:', { Ref: 'AWS::Partition' }, ':s3:::images/disk.raw']] } }),
    ]));
    expect(JSON.stringify(statements(stack))).not.toMatch(/s3:List|s3:GetBucket|kms:/);
  });

  test('a key of the user\'s: the KMS actions the EBS direct APIs list, CreateGrant only for AWS resources', () => {
    const stack = newStack();
    const kmsKey = new kms.Key(stack, 'Key');
    new EbsSnapshotFromImage(stack, 'Golden', { image: DiskImage.fromFile(image(512)), encryption: { kmsKey } });
    const all = statements(stack);
    expect(all).toContainEqual(expect.objectContaining({ Action: 'kms:CreateGrant', Condition: { Bool: { 'kms:GrantIsForAWSResource': true } } }));
    const kmsActions = all.filter((st) => JSON.stringify(st.Resource).includes('Key')).flatMap((st) => st.Action);
    expect(kmsActions).toEqual(expect.arrayContaining(['kms:Encrypt', 'kms:Decrypt', 'kms:GenerateDataKey', 'kms:GenerateDataKeyWithoutPlaintext', 'kms:ReEncrypt*', 'kms:DescribeKey']));
  });
});

describe('EbsSnapshotFromImage validation', () => {
  test.each<[string, Partial<EbsSnapshotFromImageProps>, RegExp]>([
    ['a volume size of 0 GiB', { volumeSize: Size.gibibytes(0) }, /Stack\/Golden: invalid volumeSize: must be between 1 and 65,536 GiB, not 0 GiB/],
    ['a volume size over 65,536 GiB', { volumeSize: Size.gibibytes(65_537) }, /invalid volumeSize: must be between 1 and 65,536 GiB, not 65537 GiB/],
    ['a volume size that is not whole GiB', { volumeSize: Size.mebibytes(1500) }, /invalid volumeSize: must be a whole number of GiB \(EBS volume sizes are\), not 1500 MiB/],
    ['encryption with parentSnapshotId', { encryption: {}, parentSnapshotId: 'snap-0123456789abcdef0' }, /invalid encryption: cannot be combined with parentSnapshotId/],
    ['a malformed parentSnapshotId', { parentSnapshotId: 'snap-xyz' }, /invalid parentSnapshotId: must be "snap-" followed by 8 or 17 lowercase hex digits \(received "snap-xyz"\)/],
    ['a description over 255 characters', { description: 'x'.repeat(256) }, /invalid description: must be at most 255 characters long, not 256/],
    ['a timeout over 1 hour', { timeout: Duration.hours(2) }, /invalid timeout: must be between 1 minute and 1 hour/],
    ['a timeout under 1 minute', { timeout: Duration.seconds(30) }, /invalid timeout: must be between 1 minute and 1 hour/],
    ['more than 44 tags', { tags: Object.fromEntries([...Array(45)].map((_, i) => [`k${i}`, 'v'])) }, /invalid tags: at most 44 tags are allowed/],
  ])('refuses %s at synth', (_name, props, error) => {
    const stack = newStack();
    expect(() => new EbsSnapshotFromImage(stack, 'Golden', { image: fromS3(stack), ...props })).toThrow(error);
  });

  test('a missing, empty or odd-sized image file, or a directory, is refused naming the file', () => {
    const golden = (file: string) => () => new EbsSnapshotFromImage(newStack(), 'Golden', { image: DiskImage.fromFile(file) });
    expect(golden(path.join(dir, 'nope.raw'))).toThrow(/Stack\/Golden: invalid image: the disk image file does not exist .*nope\.raw/);
    expect(golden(image(0))).toThrow(/invalid image: the disk image file is empty/);
    expect(golden(dir)).toThrow(/invalid image: the disk image must be a regular file/);
    expect(golden(image(1000))).toThrow(/invalid image: the disk image must be a whole number of 512-byte sectors; .*\.raw is 1000 bytes/);
  });

  test('an unreadable image file is refused', () => {
    if (process.getuid?.() === 0) return; // root reads anything
    const file = image(512);
    fs.chmodSync(file, 0o000);
    expect(() => new EbsSnapshotFromImage(newStack(), 'Golden', { image: DiskImage.fromFile(file) })).toThrow(/invalid image: the disk image file cannot be read \(EACCES\)/);
  });

  test('an image larger than the volume size, or than an upload within the timeout allows, is refused before it is hashed', () => {
    const golden = (bytes: number, props: Partial<EbsSnapshotFromImageProps> = {}) =>
      () => new EbsSnapshotFromImage(newStack(), 'Golden', { image: DiskImage.fromFile(image(bytes)), ...props });
    expect(golden(2 * 1024 ** 3, { volumeSize: Size.gibibytes(1) }))
      .toThrow(/invalid volumeSize: the disk image is 2147483648 bytes \(2.00 GiB\), larger than the volume size of 1 GiB/);
    expect(golden(MAX_IMAGE_BYTES + 512)).toThrow(/invalid image: the disk image is 187.5 GiB; an upload within the timeout of 1 hour allows at most 187.5 GiB/);
    expect(golden(100 * 1024 ** 3, { timeout: Duration.minutes(30) })).toThrow(/allows at most 75.0 GiB/);
  });

  test.each([
    ['an empty key', '', /invalid image: the S3 object key is empty/],
    ['a folder', 'images/', /invalid image: the S3 object key names a folder, not an image \(received "images\/"\)/],
    ['a key over 1,024 bytes', 'k'.repeat(1025), /invalid image: S3 object keys are at most 1024 bytes, not 1025/],
  ])('DiskImage.fromS3Object refuses %s', (_name, key, error) => {
    const stack = newStack();
    expect(() => new EbsSnapshotFromImage(stack, 'Golden', { image: fromS3(stack, key) })).toThrow(error);
  });
});

describe('EbsSnapshotOnDeploy after the split', () => {
  test('has none of the image-only props, attributes or sources', () => {
    // Compile-time: none of these is part of the API any more.
    const props: Record<string, unknown> = { source: EbsSnapshotSource.fromVolumeId('vol-0123456789abcdef0') };
    // @ts-expect-error volumeSize is EbsSnapshotFromImage's
    const volumeSize: EbsSnapshotOnDeployProps['volumeSize'] = undefined;
    // @ts-expect-error encryption is EbsSnapshotFromImage's
    const encryption: EbsSnapshotOnDeployProps['encryption'] = undefined;
    // @ts-expect-error parentSnapshotId is EbsSnapshotFromImage's
    const parent: EbsSnapshotOnDeployProps['parentSnapshotId'] = undefined;
    expect([volumeSize, encryption, parent]).toEqual([undefined, undefined, undefined]);
    expect((EbsSnapshotSource as any).fromImageFile).toBeUndefined();
    expect((EbsSnapshotSource as any).fromS3Object).toBeUndefined();

    // Run time (what a JavaScript or jsii caller sees): the props are not read, nothing image-like is made.
    const stack = newStack();
    const snap = new EbsSnapshotOnDeploy(stack, 'Snap', { ...props, volumeSize: Size.gibibytes(8), encryption: {}, parentSnapshotId: 'snap-0123456789abcdef0' } as any);
    const template = Template.fromStack(stack);
    template.resourceCountIs('Custom::EbsSnapshotFromImage', 0);
    template.hasResourceProperties('Custom::EbsSnapshotOnDeploy', { VolumeSize: Match.absent(), Encrypted: Match.absent(), ParentSnapshotId: Match.absent() });
    expect((snap as any).volumeSize).toBeUndefined();
    expect((snap as any).blockCount).toBeUndefined();
  });

  test('and EbsSnapshotFromImage has none of the volume-only ones', () => {
    // @ts-expect-error snapshotBefore is for volumes and instances (a disk image is not something the deploy changes)
    const guarded: EbsSnapshotFromImageProps['snapshotBefore'] = undefined;
    // @ts-expect-error outpostArn is for volumes (the EBS direct APIs write snapshots in the Region)
    const outpost: EbsSnapshotFromImageProps['outpostArn'] = undefined;
    // @ts-expect-error waitForCompletion is for volumes (a snapshot from an image is always completed first)
    const wait: EbsSnapshotFromImageProps['waitForCompletion'] = undefined;
    expect([guarded, outpost, wait]).toEqual([undefined, undefined, undefined]);
  });
});
