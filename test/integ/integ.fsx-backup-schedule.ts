import { ExpectedResult, IntegTest, InvocationType, Match } from '@aws-cdk/integ-tests-alpha';
import { App, Duration, RemovalPolicy, Stack, TimeZone } from 'aws-cdk-lib';
import * as ec2 from 'aws-cdk-lib/aws-ec2';
import * as events from 'aws-cdk-lib/aws-events';
import * as fsx from 'aws-cdk-lib/aws-fsx';
import * as scheduler from 'aws-cdk-lib/aws-scheduler';
import * as sns from 'aws-cdk-lib/aws-sns';
import { BackupTarget, FsxBackupSchedule } from '../../src';
import type { FsxBackupTickInput } from '../../src/private/fsx-backup-contract';
import type { ScheduleHandlers } from '../../src/private/schedule-handlers';

/*
 * An OpenZFS file system that copies its tags to backups, an hourly backup schedule of it on an
 * EventBridge rule keeping two backups, and a nightly one at 02:30 in Berlin on EventBridge
 * Scheduler. The assertions invoke the schedules' function with one tick of the rule (as the rule
 * would), expect one backup started, and read the backup back until it is AVAILABLE with the file
 * system's tag copied; then with one tick of the Scheduler schedule (as Scheduler would: the
 * scheduled time), and read that backup back, tagged as the nightly schedule's. Offline
 * (`integ-runner` without deploying) the committed snapshot of this app is compared with a fresh
 * synth.
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

// Both deployed disabled: the assertions deliver the ticks themselves, so that no real tick adds a
// backup the checks below do not expect.
const schedule = new FsxBackupSchedule(stack, 'Hourly', {
  schedule: events.Schedule.rate(Duration.hours(1)),
  enabled: false,
  targets: [BackupTarget.cfnFileSystem(fileSystem)],
  retention: { keepLast: 2 },
  tags: { purpose: 'integ-test' },
  alarmTopic: new sns.Topic(stack, 'Alarms'),
});

const nightly = new FsxBackupSchedule(stack, 'Nightly', {
  scheduler: {
    expression: scheduler.ScheduleExpression.cron({ hour: '2', minute: '30', timeZone: TimeZone.EUROPE_BERLIN }),
    flexibleTimeWindow: Duration.minutes(15),
  },
  enabled: false,
  targets: [BackupTarget.cfnFileSystem(fileSystem)],
  retention: { keepLast: 2 },
  tags: { purpose: 'integ-test' },
});

const handlers = stack.node.findChild('CdkStorageSnapshotsScheduleHandlers') as ScheduleHandlers;
/** A tick of `of` as its engine sends it: Time is the scheduled time. */
const tickOf = (of: FsxBackupSchedule, time: string, eventId: string): FsxBackupTickInput => ({
  Operation: 'FsxBackup',
  Time: time,
  EventId: eventId,
  StackId: stack.stackId,
  Schedule: of.scheduleName,
  Targets: [{ Kind: 'file-system', Id: fileSystem.ref }],
  Tags: { purpose: 'integ-test' },
  KeepLast: 2,
});
const tick = tickOf(schedule, '2026-01-01T00:00:00Z', 'integ');
// 02:30 in Berlin on 1 January is 01:30 UTC.
const nightlyTick = tickOf(nightly, '2026-01-01T01:30:00Z', 'integ-scheduler');

const integ = new IntegTest(app, 'FsxBackupScheduleTest', { testCases: [stack] });
// The summary holds more than the counts (the schedule, the tick, each target's result): a plain
// object inside serializedJson would have to match it exactly.
integ.assertions
  .invokeFunction({
    functionName: handlers.function.functionName,
    invocationType: InvocationType.REQUEST_RESPONSE,
    payload: stack.toJsonString(tick),
  })
  .expect(ExpectedResult.objectLike({ StatusCode: 200, Payload: Match.serializedJson(Match.objectLike({ started: 1, failed: 0 })) }))
  .next(
    integ.assertions
      .awsApiCall('FSx', 'describeBackups', { Filters: [{ Name: 'file-system-id', Values: [fileSystem.ref] }] })
      .expect(ExpectedResult.objectLike({ Backups: [{ Lifecycle: 'AVAILABLE', Tags: Match.arrayWith([{ Key: 'costCenter', Value: 'integ' }]) }] }))
      .waitForAssertions({ interval: Duration.minutes(1), totalTimeout: Duration.minutes(60) }),
  )
  .next(
    integ.assertions
      .invokeFunction({
        functionName: handlers.function.functionName,
        invocationType: InvocationType.REQUEST_RESPONSE,
        payload: stack.toJsonString(nightlyTick),
      })
      .expect(ExpectedResult.objectLike({ StatusCode: 200, Payload: Match.serializedJson(Match.objectLike({ started: 1, failed: 0 })) })),
  )
  .next(
    integ.assertions
      .awsApiCall('FSx', 'describeBackups', { Filters: [{ Name: 'file-system-id', Values: [fileSystem.ref] }] })
      .expect(ExpectedResult.objectLike({
        Backups: Match.arrayWith([Match.objectLike({
          Lifecycle: 'AVAILABLE',
          Tags: Match.arrayWith([{ Key: 'cdk-storage-snapshots:owner', Value: nightly.scheduleName }, { Key: 'costCenter', Value: 'integ' }]),
        })]),
      }))
      .waitForAssertions({ interval: Duration.minutes(1), totalTimeout: Duration.minutes(60) }),
  );
