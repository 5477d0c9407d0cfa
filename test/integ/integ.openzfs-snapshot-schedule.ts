import { ExpectedResult, IntegTest, InvocationType, Match } from '@aws-cdk/integ-tests-alpha';
import { App, Duration, RemovalPolicy, Stack, TimeZone } from 'aws-cdk-lib';
import * as ec2 from 'aws-cdk-lib/aws-ec2';
import * as events from 'aws-cdk-lib/aws-events';
import * as fsx from 'aws-cdk-lib/aws-fsx';
import * as scheduler from 'aws-cdk-lib/aws-scheduler';
import * as sns from 'aws-cdk-lib/aws-sns';
import { OpenZfsSnapshotSchedule } from '../../src';
import type { OpenZfsSnapshotTickInput } from '../../src/private/openzfs-snapshot-schedule-contract';
import type { ScheduleHandlers } from '../../src/private/schedule-handlers';

/*
 * An OpenZFS file system with a child volume that copies its tags to snapshots, snapshotted
 * hourly in Berlin time on EventBridge Scheduler (two kept, none older than a day), and its root
 * volume daily on an EventBridge rule. The assertions invoke the stack's scheduled function with
 * one Scheduler tick twice (a duplicate delivery: one snapshot, found again by its client token),
 * and read the tick's snapshot back until it is AVAILABLE, named after the tick, with the volume's
 * tag copied and the schedule's own. Offline (`integ-runner` without deploying) the committed
 * snapshot of this app is compared with a fresh synth.
 */
const app = new App();
const stack = new Stack(app, 'OpenZfsSnapshotScheduleInteg');

const vpc = new ec2.Vpc(stack, 'Vpc', { maxAzs: 1, natGateways: 0, subnetConfiguration: [{ name: 'isolated', subnetType: ec2.SubnetType.PRIVATE_ISOLATED }] });
// The schedules keep their newest snapshots: deleting the file system and the volume deletes them too.
const deleteSnapshots = ['DELETE_CHILD_VOLUMES_AND_SNAPSHOTS'];
const fileSystem = new fsx.CfnFileSystem(stack, 'FileSystem', {
  fileSystemType: 'OPENZFS',
  storageCapacity: 64,
  subnetIds: [vpc.isolatedSubnets[0].subnetId],
  openZfsConfiguration: { deploymentType: 'SINGLE_AZ_1', throughputCapacity: 64, options: deleteSnapshots },
});
fileSystem.applyRemovalPolicy(RemovalPolicy.DESTROY);
const volume = new fsx.CfnVolume(stack, 'Volume', {
  name: 'data',
  volumeType: 'OPENZFS',
  openZfsConfiguration: { parentVolumeId: fileSystem.attrRootVolumeId, copyTagsToSnapshots: true, options: deleteSnapshots },
  tags: [{ key: 'costCenter', value: 'integ' }],
});
volume.applyRemovalPolicy(RemovalPolicy.DESTROY);

const hourly = new OpenZfsSnapshotSchedule(stack, 'Hourly', {
  scheduler: {
    expression: scheduler.ScheduleExpression.cron({ minute: '0', timeZone: TimeZone.EUROPE_BERLIN }),
    flexibleTimeWindow: Duration.minutes(5),
  },
  // Deployed disabled (both): the assertions deliver the ticks themselves, so that no real tick
  // adds a snapshot the checks below do not expect.
  enabled: false,
  volumes: [volume],
  namePrefix: 'hourly',
  retention: { keepLast: 2, maxAge: Duration.days(1) },
  tags: { purpose: 'integ-test' },
  alarmTopic: new sns.Topic(stack, 'Alarms'),
});

new OpenZfsSnapshotSchedule(stack, 'Daily', {
  schedule: events.Schedule.cron({ hour: '3', minute: '0' }),
  volumeIds: [fileSystem.attrRootVolumeId],
  enabled: false,
  namePrefix: 'daily',
  retention: { keepLast: 7 },
});

const integ = new IntegTest(app, 'OpenZfsSnapshotScheduleTest', { testCases: [stack] });
const handlers = stack.node.findChild('CdkStorageSnapshotsScheduleHandlers') as ScheduleHandlers;
/** A tick of the hourly schedule as Scheduler sends it: Time is the scheduled time. */
const tick = (eventId: string): OpenZfsSnapshotTickInput => ({
  Operation: 'OpenZfsSnapshot',
  Time: '2026-01-01T00:00:00Z',
  EventId: eventId,
  StackId: stack.stackId,
  Schedule: hourly.scheduleName,
  VolumeIds: [volume.attrVolumeId],
  NamePrefix: 'hourly',
  Tags: { purpose: 'integ-test' },
  KeepLast: 2,
  MaxAgeSeconds: Duration.days(1).toSeconds(),
});
const deliver = (eventId: string) => integ.assertions
  .invokeFunction({
    functionName: handlers.function.functionName,
    invocationType: InvocationType.REQUEST_RESPONSE,
    payload: stack.toJsonString(tick(eventId)),
  })
  .expect(ExpectedResult.objectLike({ StatusCode: 200, Payload: Match.serializedJson(Match.objectLike({ created: 1, failed: 0 })) }));

deliver('integ-1')
  .next(deliver('integ-2'))
  .next(
    integ.assertions
      .awsApiCall('FSx', 'describeSnapshots', { Filters: [{ Name: 'volume-id', Values: [volume.attrVolumeId] }] })
      // Exactly one snapshot: the tick delivered twice made one.
      .expect(ExpectedResult.objectLike({
        Snapshots: [Match.objectLike({
          Name: Match.stringLikeRegexp('^hourly-20260101T0000Z-[0-9a-f]{8}$'),
          Lifecycle: 'AVAILABLE',
          Tags: Match.arrayWith([{ Key: 'costCenter', Value: 'integ' }, { Key: 'purpose', Value: 'integ-test' }]),
        })],
      }))
      .waitForAssertions({ interval: Duration.seconds(30), totalTimeout: Duration.minutes(15) }),
  );
