import { ArnFormat, Duration, RemovalPolicy, Stack, StackProps } from 'aws-cdk-lib';
import * as events from 'aws-cdk-lib/aws-events';
import * as fsx from 'aws-cdk-lib/aws-fsx';
import * as sns from 'aws-cdk-lib/aws-sns';
import { Construct } from 'constructs';
import { FsxBackupSchedule, OpenZfsSnapshot } from '../src';

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
  }
}
