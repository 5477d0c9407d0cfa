import { ArnFormat, Duration, RemovalPolicy, Size, Stack, StackProps, TimeZone } from 'aws-cdk-lib';
import * as ec2 from 'aws-cdk-lib/aws-ec2';
import * as events from 'aws-cdk-lib/aws-events';
import * as fsx from 'aws-cdk-lib/aws-fsx';
import * as s3 from 'aws-cdk-lib/aws-s3';
import * as scheduler from 'aws-cdk-lib/aws-scheduler';
import * as sns from 'aws-cdk-lib/aws-sns';
import { Construct } from 'constructs';
import { DiskImage, EbsSnapshotFromImage, EbsSnapshotOnDeploy, EbsSnapshotSource, FsxBackupSchedule, OpenZfsSnapshot, OpenZfsSnapshotSchedule } from '../src';

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

    // Nightly FSx backups of a file system and an ONTAP volume at 02:30 in Berlin (summer and
    // winter), 14 kept for at most 30 days, with an alarm to an existing topic when one fails.
    const alarms = sns.Topic.fromTopicArn(this, 'BackupAlarms',
      this.formatArn({ service: 'sns', resource: 'backup-alarms', arnFormat: ArnFormat.NO_RESOURCE_NAME }));
    new FsxBackupSchedule(this, 'NightlyBackups', {
      scheduler: {
        expression: scheduler.ScheduleExpression.cron({ hour: '2', minute: '30', timeZone: TimeZone.EUROPE_BERLIN }),
        flexibleTimeWindow: Duration.minutes(15),
      },
      fileSystemIds: ['fs-0123456789abcdef0'],
      volumeIds: ['fsvol-0fedcba9876543210'],
      retention: { keepLast: 14, maxAge: Duration.days(30) },
      tags: { team: 'data' },
      alarmTopic: alarms,
    });

    // Weekly backups of the same file system on an EventBridge rule (UTC), kept a year.
    new FsxBackupSchedule(this, 'WeeklyBackups', {
      schedule: events.Schedule.cron({ weekDay: 'SUN', hour: '3', minute: '0' }),
      fileSystemIds: ['fs-0123456789abcdef0'],
      retention: { maxAge: Duration.days(365) },
      alarmTopic: alarms,
    });

    // Hourly OpenZFS snapshots of the data volume, the last 24 kept, at most 2 days old.
    new OpenZfsSnapshotSchedule(this, 'HourlySnapshots', {
      scheduler: { expression: scheduler.ScheduleExpression.cron({ minute: '0', timeZone: TimeZone.EUROPE_BERLIN }) },
      volumes: [volume],
      namePrefix: 'hourly',
      retention: { keepLast: 24, maxAge: Duration.days(2) },
      alarmTopic: alarms,
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
