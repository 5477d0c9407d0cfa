import { ExpectedResult, IntegTest } from '@aws-cdk/integ-tests-alpha';
import { App, Duration, RemovalPolicy, Stack } from 'aws-cdk-lib';
import * as ec2 from 'aws-cdk-lib/aws-ec2';
import * as fsx from 'aws-cdk-lib/aws-fsx';
import { OpenZfsSnapshot } from '../../src';

/*
 * An OpenZFS file system, and a snapshot of its root volume taken during deploy. The assertion
 * reads the snapshot back and expects it AVAILABLE. Offline (`integ-runner` without deploying) the
 * committed snapshot of this app is compared with a fresh synth.
 */
const app = new App();
const stack = new Stack(app, 'OpenZfsSnapshotInteg');

const vpc = new ec2.Vpc(stack, 'Vpc', { maxAzs: 1, natGateways: 0, subnetConfiguration: [{ name: 'isolated', subnetType: ec2.SubnetType.PRIVATE_ISOLATED }] });
const fileSystem = new fsx.CfnFileSystem(stack, 'FileSystem', {
  fileSystemType: 'OPENZFS',
  storageCapacity: 64,
  subnetIds: [vpc.isolatedSubnets[0].subnetId],
  openZfsConfiguration: { deploymentType: 'SINGLE_AZ_1', throughputCapacity: 64 },
});
fileSystem.applyRemovalPolicy(RemovalPolicy.DESTROY);

const snapshot = new OpenZfsSnapshot(stack, 'Snapshot', {
  volumeId: fileSystem.attrRootVolumeId,
  snapshotName: 'integ',
  tags: { purpose: 'integ-test' },
  trigger: 'v1',
  removalPolicy: RemovalPolicy.DESTROY,
  timeout: Duration.minutes(20),
});

const integ = new IntegTest(app, 'OpenZfsSnapshotTest', { testCases: [stack] });
integ.assertions
  .awsApiCall('FSx', 'describeSnapshots', { SnapshotIds: [snapshot.snapshotId] })
  .expect(ExpectedResult.objectLike({ Snapshots: [{ Lifecycle: 'AVAILABLE', VolumeId: fileSystem.attrRootVolumeId }] }));
