import { ExpectedResult, IntegTest, InvocationType, Match } from '@aws-cdk/integ-tests-alpha';
import { App, Duration, RemovalPolicy, Stack } from 'aws-cdk-lib';
import * as ec2 from 'aws-cdk-lib/aws-ec2';
import * as events from 'aws-cdk-lib/aws-events';
import * as fsx from 'aws-cdk-lib/aws-fsx';
import * as sns from 'aws-cdk-lib/aws-sns';
import { BackupTarget, FsxBackupSchedule } from '../../src';
import type { FsxBackupTickInput } from '../../src/private/fsx-backup-contract';
import type { ScheduleHandlers } from '../../src/private/schedule-handlers';

/*
 * An OpenZFS file system that copies its tags to backups, and an hourly backup schedule of it
 * keeping two backups. The assertions invoke the schedule's function with one tick (as the rule
 * would), expect one backup started, and read the backup back until it is AVAILABLE with the
 * file system's tag copied. Offline (`integ-runner` without deploying) the committed snapshot of
 * this app is compared with a fresh synth.
 */
const app = new App();
const stack = new Stack(app, 'FsxBackupScheduleInteg');

const vpc = new ec2.Vpc(stack, 'Vpc', { maxAzs: 1, natGateways: 0, subnetConfiguration: [{ name: 'isolated', subnetType: ec2.SubnetType.PRIVATE_ISOLATED }] });
const fileSystem = new fsx.CfnFileSystem(stack, 'FileSystem', {
  fileSystemType: 'OPENZFS',
  storageCapacity: 64,
  subnetIds: [vpc.isolatedSubnets[0].subnetId],
  openZfsConfiguration: { deploymentType: 'SINGLE_AZ_1', throughputCapacity: 64, copyTagsToBackups: true },
  tags: [{ key: 'costCenter', value: 'integ' }],
});
fileSystem.applyRemovalPolicy(RemovalPolicy.DESTROY);

const schedule = new FsxBackupSchedule(stack, 'Hourly', {
  schedule: events.Schedule.rate(Duration.hours(1)),
  targets: [BackupTarget.cfnFileSystem(fileSystem)],
  retention: { keepLast: 2 },
  tags: { purpose: 'integ-test' },
  alarmTopic: new sns.Topic(stack, 'Alarms'),
});

const handlers = stack.node.findChild('CdkStorageSnapshotsFsxBackupScheduleHandlers') as ScheduleHandlers;
const tick: FsxBackupTickInput = {
  Time: '2026-01-01T00:00:00Z',
  EventId: 'integ',
  StackId: stack.stackId,
  Schedule: schedule.scheduleName,
  Targets: [{ Kind: 'file-system', Id: fileSystem.ref }],
  Tags: { purpose: 'integ-test' },
  KeepLast: 2,
};

const integ = new IntegTest(app, 'FsxBackupScheduleTest', { testCases: [stack] });
integ.assertions
  .invokeFunction({
    functionName: handlers.function.functionName,
    invocationType: InvocationType.REQUEST_RESPONSE,
    payload: stack.toJsonString(tick),
  })
  .expect(ExpectedResult.objectLike({ StatusCode: 200, Payload: Match.serializedJson({ started: 1, failed: 0 }) }))
  .next(
    integ.assertions
      .awsApiCall('FSx', 'describeBackups', { Filters: [{ Name: 'file-system-id', Values: [fileSystem.ref] }] })
      .expect(ExpectedResult.objectLike({ Backups: [{ Lifecycle: 'AVAILABLE', Tags: Match.arrayWith([{ Key: 'costCenter', Value: 'integ' }]) }] }))
      .waitForAssertions({ interval: Duration.minutes(1), totalTimeout: Duration.minutes(60) }),
  );
