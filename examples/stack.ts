import { ArnFormat, Duration, RemovalPolicy, Size, Stack, StackProps } from 'aws-cdk-lib';
import * as ec2 from 'aws-cdk-lib/aws-ec2';
import * as events from 'aws-cdk-lib/aws-events';
import * as fsx from 'aws-cdk-lib/aws-fsx';
import * as s3 from 'aws-cdk-lib/aws-s3';
import * as sns from 'aws-cdk-lib/aws-sns';
import { Construct } from 'constructs';
import { DiskImage, EbsSnapshotFromImage, EbsSnapshotOnDeploy, EbsSnapshotSource, FsxBackupSchedule, OpenZfsSnapshot } from '../src';

/** A stack that uses every construct of the library (the tests check it with cdk-nag too). */
export class ExampleStack extends Stack {
  constructor(scope: Construct, id: string, props?: StackProps) {
    super(scope, id, props);

    // An OpenZFS volume changed by this stack: the snapshot is taken before any change to it.
    const volume = new fsx.CfnVolume(this, 'DataVolume', {
      name: 'data',
      volumeType: 'OPENZFS',
      openZfsConfiguration: {
        parentVolumeId: 'fsvol-0123456789abcdef0',
        storageCapacityQuotaGiB: 100,
      },
    });

    new OpenZfsSnapshot(this, 'BeforeRelease', {
      volumeId: 'fsvol-0123456789abcdef0',
      snapshotName: 'before-release',
      tags: { team: 'data' },
      snapshotBefore: [volume],
      trigger: '2026-11-release',
      removalPolicy: RemovalPolicy.RETAIN,
    });

    // Nightly FSx backups of a file system and an ONTAP volume, 14 kept for at most 30 days, with
    // an alarm to an existing topic when one fails.
    new FsxBackupSchedule(this, 'NightlyBackups', {
      schedule: events.Schedule.cron({ hour: '2', minute: '0' }),
      fileSystemIds: ['fs-0123456789abcdef0'],
      volumeIds: ['fsvol-0fedcba9876543210'],
      retention: { keepLast: 14, maxAge: Duration.days(30) },
      tags: { team: 'data' },
      alarmTopic: sns.Topic.fromTopicArn(this, 'BackupAlarms',
        this.formatArn({ service: 'sns', resource: 'backup-alarms', arnFormat: ArnFormat.NO_RESOURCE_NAME })),
    });

    // An instance changed by this stack: a crash-consistent snapshot of its volumes before each
    // change to it (found at deploy time by its CloudFormation tags; none on the first deploy).
    const vpc = ec2.Vpc.fromVpcAttributes(this, 'Vpc', {
      vpcId: 'vpc-12345678', availabilityZones: ['us-east-1a'], privateSubnetIds: ['subnet-12345678'], privateSubnetRouteTableIds: ['rtb-12345678'],
    });
    const appServer = new ec2.Instance(this, 'AppServer', {
      vpc,
      instanceType: ec2.InstanceType.of(ec2.InstanceClass.T4G, ec2.InstanceSize.MICRO),
      machineImage: ec2.MachineImage.latestAmazonLinux2023({ cpuType: ec2.AmazonLinuxCpuType.ARM_64 }),
      requireImdsv2: true,
      detailedMonitoring: true,
      disableApiTermination: true,
      blockDevices: [{ deviceName: '/dev/xvda', volume: ec2.BlockDeviceVolume.ebs(8, { encrypted: true }) }],
    });
    new EbsSnapshotOnDeploy(this, 'BeforeAppServerChange', {
      source: EbsSnapshotSource.fromInstance(appServer),
      snapshotBefore: [appServer],
      description: 'before a change to the app server',
    });

    // A data volume, snapshotted on each release and waited for.
    const appData = new ec2.Volume(this, 'AppData', {
      availabilityZone: 'us-east-1a', size: Size.gibibytes(20), encrypted: true, removalPolicy: RemovalPolicy.RETAIN,
    });
    new EbsSnapshotOnDeploy(this, 'AppDataSnapshot', {
      source: EbsSnapshotSource.fromVolume(appData),
      trigger: '2026-11-release',
      waitForCompletion: true,
    });

    // A golden data disk from a raw image in S3, written with the EBS direct APIs, and a volume
    // restored from it.
    const images = s3.Bucket.fromBucketName(this, 'Images', 'example-disk-images');
    const golden = new EbsSnapshotFromImage(this, 'GoldenDisk', {
      image: DiskImage.fromS3Object(images, 'golden/data-v3.raw'),
      volumeSize: Size.gibibytes(8),
      description: 'golden data disk v3',
    });
    new ec2.Volume(this, 'GoldenData', {
      availabilityZone: 'us-east-1a', snapshotId: golden.snapshotId, encrypted: true, removalPolicy: RemovalPolicy.RETAIN,
    });
  }
}
