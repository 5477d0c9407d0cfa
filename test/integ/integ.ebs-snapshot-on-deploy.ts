import { ExpectedResult, IntegTest } from '@aws-cdk/integ-tests-alpha';
import { App, Duration, RemovalPolicy, Size, Stack } from 'aws-cdk-lib';
import * as ec2 from 'aws-cdk-lib/aws-ec2';
import { EbsSnapshotOnDeploy, EbsSnapshotSource } from '../../src';

/*
 * An instance with a data volume. Two snapshots are taken during deploy: of the data volume
 * (waited for until `completed`), and of every volume of the instance, guarded by the snapshot (on
 * this first deploy the instance does not exist yet, so that one takes no snapshot and says so).
 * The assertion reads the volume's snapshot back and expects it completed. Offline (`integ-runner`
 * without deploying) the committed snapshot of this app is compared with a fresh synth.
 */
const app = new App();
const stack = new Stack(app, 'EbsSnapshotOnDeployInteg');

const vpc = new ec2.Vpc(stack, 'Vpc', { maxAzs: 1, natGateways: 0, subnetConfiguration: [{ name: 'isolated', subnetType: ec2.SubnetType.PRIVATE_ISOLATED }] });
const instance = new ec2.Instance(stack, 'Instance', {
  vpc,
  vpcSubnets: { subnetType: ec2.SubnetType.PRIVATE_ISOLATED },
  instanceType: ec2.InstanceType.of(ec2.InstanceClass.T4G, ec2.InstanceSize.NANO),
  machineImage: ec2.MachineImage.latestAmazonLinux2023({ cpuType: ec2.AmazonLinuxCpuType.ARM_64 }),
  requireImdsv2: true,
});
const data = new ec2.Volume(stack, 'Data', {
  availabilityZone: instance.instanceAvailabilityZone,
  size: Size.gibibytes(1),
  encrypted: true,
  removalPolicy: RemovalPolicy.DESTROY,
});

const volumeSnapshot = new EbsSnapshotOnDeploy(stack, 'DataSnapshot', {
  source: EbsSnapshotSource.fromVolume(data),
  description: 'integ: data volume',
  tags: { purpose: 'integ-test' },
  trigger: 'v1',
  waitForCompletion: true,
  removalPolicy: RemovalPolicy.DESTROY,
  timeout: Duration.minutes(20),
});

new EbsSnapshotOnDeploy(stack, 'BeforeInstanceChange', {
  source: EbsSnapshotSource.fromInstance(instance),
  snapshotBefore: [instance],
  removalPolicy: RemovalPolicy.DESTROY,
});

const integ = new IntegTest(app, 'EbsSnapshotOnDeployTest', { testCases: [stack] });
integ.assertions
  .awsApiCall('EC2', 'describeSnapshots', { SnapshotIds: [volumeSnapshot.snapshotId] })
  .expect(ExpectedResult.objectLike({ Snapshots: [{ State: 'completed', VolumeId: data.volumeId, Encrypted: true }] }));
