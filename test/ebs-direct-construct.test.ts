import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import { App, Duration, RemovalPolicy, Size, Stack } from 'aws-cdk-lib';
import { Match, Template } from 'aws-cdk-lib/assertions';
import * as kms from 'aws-cdk-lib/aws-kms';
import * as s3 from 'aws-cdk-lib/aws-s3';
import { Construct } from 'constructs';
import { MAX_IMAGE_BYTES, addDataSnapshot } from '../src/private/ebs-data-snapshot';
import { imageFromFile } from '../src/private/ebs-image';

const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'ebs-image-'));
const file = (name: string, bytes: number) => {
  const p = path.join(dir, name);
  fs.writeFileSync(p, Buffer.alloc(bytes, 1));
  return p;
};

function stack() {
  const s = new Stack(new App(), 'S', { env: { account: '111111111111', region: 'us-east-1' } });
  return { s, scope: new Construct(s, 'Golden'), bucket: s3.Bucket.fromBucketName(s, 'B', 'images') };
}

describe('addDataSnapshot (internal construct API)', () => {
  test('a Custom::EbsSnapshotFromData with the image, sizes and options as properties, and a 14-minute isComplete', () => {
    const { s, scope, bucket } = stack();
    const r = addDataSnapshot(scope, { bucket, objectKey: 'disk.raw', sizeBytes: 1024 * 1024 }, {
      volumeSize: Size.gibibytes(8), description: 'golden', tags: { team: 'a' }, removalPolicy: RemovalPolicy.DESTROY, timeout: Duration.minutes(50),
    });
    const t = Template.fromStack(s);
    t.hasResourceProperties('Custom::EbsSnapshotFromData', {
      ImageBucket: 'images',
      ImageKey: 'disk.raw',
      ImageSizeBytes: '1048576',
      VolumeSize: '8',
      Description: 'golden',
      RemovalPolicy: 'destroy',
      TimeoutSeconds: '3000',
      Tags: '{"team":"a"}',
      Encrypted: Match.absent(),
      ParentSnapshotId: Match.absent(),
    });
    t.hasResourceProperties('AWS::Lambda::Function', { Handler: 'index.isComplete', Timeout: 840, MemorySize: 2048 });
    t.hasResourceProperties('AWS::Lambda::Function', { Handler: 'index.onEvent', Timeout: 300 });
    const logicalId = Object.keys(t.findResources('Custom::EbsSnapshotFromData'))[0];
    expect(s.resolve(r.snapshotId)).toEqual({ Ref: logicalId });
    expect(s.resolve(r.blockCount)).toEqual({ 'Fn::GetAtt': [logicalId, 'BlockCount'] });
    expect(s.resolve(r.volumeSize)).toEqual({ 'Fn::GetAtt': [logicalId, 'VolumeSize'] });
  });

  test('least privilege: EBS writes and the cursor tag only on snapshots this stack owns; GetObject on the image only', () => {
    const { s, scope, bucket } = stack();
    addDataSnapshot(scope, { bucket, objectKey: 'disk.raw' }, {});
    const t = Template.fromStack(s);
    const snapshots = { 'Fn::Join': ['', ['arn:', { Ref: 'AWS::Partition' }, ':ec2:us-east-1::snapshot/*']] };
    t.hasResourceProperties('AWS::IAM::Policy', {
      PolicyDocument: {
        Statement: Match.arrayWith([
          Match.objectLike({ Action: 'ebs:StartSnapshot', Resource: snapshots, Condition: { StringEquals: Match.objectLike({ 'aws:RequestTag/cdk-storage-snapshots:managed-by': 'cdk-storage-snapshots' }) } }),
          Match.objectLike({ Action: ['ebs:PutSnapshotBlock', 'ebs:CompleteSnapshot'], Resource: snapshots, Condition: { StringEquals: Match.objectLike({ 'aws:ResourceTag/cdk-storage-snapshots:managed-by': 'cdk-storage-snapshots' }) } }),
          Match.objectLike({ Action: 'ec2:CreateTags', Condition: Match.objectLike({ 'ForAllValues:StringEquals': { 'aws:TagKeys': ['cdk-storage-snapshots:upload-cursor'] } }) }),
          Match.objectLike({ Action: 'ec2:DeleteSnapshot', Condition: { StringEquals: Match.objectLike({ 'aws:ResourceTag/cdk-storage-snapshots:stack-id': { Ref: 'AWS::StackId' } }) } }),
          Match.objectLike({ Action: 's3:GetObject', Resource: { 'Fn::Join': ['', ['arn:', { Ref: 'AWS::Partition' }, ':s3:::images/disk.raw']] } }),
        ]),
      },
    });
    const policies = JSON.stringify(Object.values(t.findResources('AWS::IAM::Policy')).map((p) => p.Properties.PolicyDocument));
    expect(policies).not.toMatch(/s3:List|s3:GetBucket|kms:/);
  });

  test('encryption with a key: Encrypted and KmsKeyArn, and the key grants EBS needs (CreateGrant only for AWS resources)', () => {
    const { s, scope, bucket } = stack();
    const key = new kms.Key(s, 'Key');
    addDataSnapshot(scope, { bucket, objectKey: 'disk.raw' }, { kmsKey: key });
    const t = Template.fromStack(s);
    t.hasResourceProperties('Custom::EbsSnapshotFromData', { Encrypted: 'true', KmsKeyArn: { 'Fn::GetAtt': ['Key961B73FD', 'Arn'] } });
    t.hasResourceProperties('AWS::IAM::Policy', {
      PolicyDocument: { Statement: Match.arrayWith([Match.objectLike({ Action: 'kms:CreateGrant', Condition: { Bool: { 'kms:GrantIsForAWSResource': true } } })]) },
    });
    expect(JSON.stringify(t.findResources('AWS::IAM::Policy'))).toMatch(/kms:GenerateDataKeyWithoutPlaintext/);
  });

  test('a second snapshot in the stack shares the provider and the statements', () => {
    const { s, scope, bucket } = stack();
    addDataSnapshot(scope, { bucket, objectKey: 'a.raw' }, {});
    addDataSnapshot(new Construct(s, 'Other'), { bucket, objectKey: 'b.raw' }, {});
    const t = Template.fromStack(s);
    t.resourceCountIs('Custom::EbsSnapshotFromData', 2);
    t.resourceCountIs('AWS::Lambda::Function', 2 + 3); // onEvent, isComplete + the framework's three
  });

  test.each([
    [{ volumeSize: Size.gibibytes(0) }, /invalid volumeSize: must be between 1 and 65,536 GiB, not 0 GiB/],
    [{ volumeSize: Size.gibibytes(65_537) }, /invalid volumeSize: must be between 1 and 65,536 GiB/],
    [{ volumeSize: Size.mebibytes(1500) }, /invalid volumeSize: must be a whole number of GiB/],
    [{ encrypted: true, parentSnapshotId: 'snap-0123456789abcdef0' }, /invalid encryption: cannot be combined with parentSnapshotId/],
    [{ parentSnapshotId: 'snap-xyz' }, /invalid parentSnapshotId/],
    [{ description: 'x'.repeat(256) }, /invalid description: must be at most 255 characters/],
    [{ timeout: Duration.hours(2) }, /invalid timeout/],
    [{ tags: Object.fromEntries([...Array(45)].map((_, i) => [`k${i}`, 'v'])) }, /at most 44 tags/],
  ])('refuses %p at synth', (options, error) => {
    const { scope, bucket } = stack();
    expect(() => addDataSnapshot(scope, { bucket, objectKey: 'disk.raw', sizeBytes: 512 }, options as any)).toThrow(error);
  });

  test('refuses an image larger than the volume, not whole sectors, or too large for the one-hour bound', () => {
    const { scope, bucket } = stack();
    expect(() => addDataSnapshot(scope, { bucket, objectKey: 'k', sizeBytes: 2 * 1024 ** 3 }, { volumeSize: Size.gibibytes(1) }))
      .toThrow(/invalid volumeSize: the disk image is 2147483648 bytes \(2.00 GiB\), larger than the volume size of 1 GiB/);
    expect(() => addDataSnapshot(stack().scope, { bucket, objectKey: 'k', sizeBytes: 1000 }, {})).toThrow(/whole number of 512-byte sectors, not 1000 bytes/);
    expect(() => addDataSnapshot(stack().scope, { bucket, objectKey: 'k', sizeBytes: MAX_IMAGE_BYTES + 512 }, {})).toThrow(/allows at most 187.5 GiB/);
    expect(() => addDataSnapshot(stack().scope, { bucket, objectKey: 'k', sizeBytes: 100 * 1024 ** 3 }, { timeout: Duration.minutes(30) })).toThrow(/allows at most 75.0 GiB/);
    expect(() => addDataSnapshot(stack().scope, { bucket, objectKey: 'k', sizeBytes: MAX_IMAGE_BYTES }, {})).not.toThrow();
  });
});

describe('imageFromFile (synth-time image handling)', () => {
  test('a file asset with its size', () => {
    const { s, scope } = stack();
    const image = imageFromFile(scope, file('ok.raw', 4096));
    expect(image.sizeBytes).toBe(4096);
    expect(s.resolve(image.objectKey)).toMatch(/\.raw$/);
  });

  test('missing, empty, a directory, not whole sectors: clear errors naming the file', () => {
    expect(() => imageFromFile(stack().scope, path.join(dir, 'nope.raw'))).toThrow(/Golden: invalid source: the disk image file does not exist .*nope\.raw/);
    expect(() => imageFromFile(stack().scope, file('empty.raw', 0))).toThrow(/the disk image file is empty/);
    expect(() => imageFromFile(stack().scope, dir)).toThrow(/must be a regular file/);
    expect(() => imageFromFile(stack().scope, file('odd.raw', 1000))).toThrow(/whole number of 512-byte sectors; .*odd\.raw is 1000 bytes/);
  });

  test('an unreadable file', () => {
    if (process.getuid?.() === 0) return; // root reads anything
    const p = file('secret.raw', 512);
    fs.chmodSync(p, 0o000);
    expect(() => imageFromFile(stack().scope, p)).toThrow(/cannot be read \(EACCES\)/);
  });
});
