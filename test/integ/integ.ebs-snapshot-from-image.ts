/*
 * Integration app: an EBS snapshot built from a local raw disk image during deploy, and a volume
 * made from it. The assertions read the snapshot back (completed, 1 GiB) and list its blocks (only
 * the non-zero ones were written). Offline, the committed snapshot is compared with a fresh synth.
 */
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import { ExpectedResult, IntegTest } from '@aws-cdk/integ-tests-alpha';
import { App, RemovalPolicy, Size, Stack } from 'aws-cdk-lib';
import * as ec2 from 'aws-cdk-lib/aws-ec2';
import { DiskImage, EbsSnapshotFromImage } from '../../src';

/**
 * A 2 MiB image (4 blocks of 512 KiB): a non-zero first block, two zero blocks, a non-zero last
 * block; rebuilt identically on each synth, and small, because the snapshot of this app holds it.
 */
function diskImage(): string {
  const file = path.join(os.tmpdir(), 'cdk-storage-snapshots-integ-disk.raw');
  const image = Buffer.alloc(4 * 524_288);
  for (let i = 0; i < 524_288; i++) image[i] = (i * 31) % 251;
  image.fill(7, image.length - 524_288);
  if (!fs.existsSync(file) || !fs.readFileSync(file).equals(image)) fs.writeFileSync(file, image);
  return file;
}

const app = new App();
const stack = new Stack(app, 'EbsSnapshotFromImageInteg');
const golden = new EbsSnapshotFromImage(stack, 'Golden', {
  image: DiskImage.fromFile(diskImage()),
  volumeSize: Size.gibibytes(1),
  description: 'integ: golden data disk',
  tags: { purpose: 'integ' },
  removalPolicy: RemovalPolicy.DESTROY,
});
new ec2.Volume(stack, 'FromGolden', {
  availabilityZone: `${stack.region}a`,
  snapshotId: golden.snapshotId,
  size: Size.gibibytes(1),
  removalPolicy: RemovalPolicy.DESTROY,
});

const integ = new IntegTest(app, 'EbsSnapshotFromImage', { testCases: [stack] });
integ.assertions
  .awsApiCall('EC2', 'describeSnapshots', { SnapshotIds: [golden.snapshotId] })
  .expect(ExpectedResult.objectLike({ Snapshots: [{ State: 'completed', VolumeSize: 1 }] }));
integ.assertions
  .awsApiCall('EBS', 'listSnapshotBlocks', { SnapshotId: golden.snapshotId })
  // The first and the last block: the two zero blocks were not written.
  .expect(ExpectedResult.objectLike({ Blocks: [{ BlockIndex: 0 }, { BlockIndex: 3 }] }));
