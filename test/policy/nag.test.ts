import { App, Aspects, Duration, Stack, TimeZone } from 'aws-cdk-lib';
import { Annotations, Match } from 'aws-cdk-lib/assertions';
import * as events from 'aws-cdk-lib/aws-events';
import * as fsx from 'aws-cdk-lib/aws-fsx';
import * as iam from 'aws-cdk-lib/aws-iam';
import * as scheduler from 'aws-cdk-lib/aws-scheduler';
import * as sns from 'aws-cdk-lib/aws-sns';
import { AwsSolutionsChecks } from 'cdk-nag';
import { ExampleStack } from '../../examples/stack';
import { FsxBackupSchedule, OpenZfsSnapshotSchedule } from '../../src';
import { EXACT_ARNS_PER_STATEMENT } from '../../src/private/stack-handlers';

function findings(stack: Stack): string[] {
  Aspects.of(stack).add(new AwsSolutionsChecks());
  const annotations = Annotations.fromStack(stack);
  return [...annotations.findError('*', Match.anyValue()), ...annotations.findWarning('*', Match.anyValue())]
    .map((a) => `${a.id}: ${String(a.entry.data).split(':')[0]}`);
}

const env = { account: '111111111111', region: 'us-east-1' };

test('the example app (every construct) has no unsuppressed cdk-nag AwsSolutions finding', () => {
  const stack = new ExampleStack(new App(), 'Example', { env });
  expect(findings(stack)).toEqual([]);
});

test('the scheduled constructs on both engines, past the IAM pattern threshold, have no unsuppressed finding', () => {
  // Both constructs on a rule and on Scheduler (the function, its queue and alarm, the rules'
  // permission, Scheduler's group and role), on more volumes than a statement lists exactly.
  const stack = new Stack(new App(), 'Schedules', { env });
  const alarmTopic = sns.Topic.fromTopicArn(stack, 'Alarms', 'arn:aws:sns:us-east-1:111111111111:alarms');
  const volume = new fsx.CfnVolume(stack, 'Volume', { name: 'data', volumeType: 'OPENZFS', openZfsConfiguration: { parentVolumeId: 'fsvol-0123456789abcdef0' } });
  const rule = { schedule: events.Schedule.cron({ minute: '0' }) };
  const onScheduler = { scheduler: { expression: scheduler.ScheduleExpression.cron({ minute: '0', timeZone: TimeZone.EUROPE_BERLIN }) } };
  const id = (i: number) => i.toString(16).padStart(17, '0');
  for (let i = 0; i <= EXACT_ARNS_PER_STATEMENT; i++) {
    const when = i % 2 === 0 ? rule : onScheduler;
    new OpenZfsSnapshotSchedule(stack, `Snapshots${i}`, { ...when, volumeIds: [`fsvol-${id(i)}`], retention: { keepLast: 24 }, alarmTopic });
    new FsxBackupSchedule(stack, `Backups${i}`, { ...when, fileSystemIds: [`fs-${id(i)}`], volumeIds: [`fsvol-${id(i + 100)}`], alarmTopic });
  }
  new OpenZfsSnapshotSchedule(stack, 'OfVolume', { ...onScheduler, volumes: [volume], retention: { maxAge: Duration.days(2) } });
  expect(findings(stack)).toEqual([]);
});

test('the check can fail: a stack with an unjustified wildcard is reported', () => {
  const stack = new Stack(new App(), 'Bad', { env });
  const role = new iam.Role(stack, 'Role', { assumedBy: new iam.ServicePrincipal('lambda.amazonaws.com') });
  role.addToPrincipalPolicy(new iam.PolicyStatement({ actions: ['fsx:DeleteSnapshot'], resources: ['*'] }));
  expect(findings(stack)).toContainEqual(expect.stringMatching(/Bad\/Role\/DefaultPolicy\/Resource: AwsSolutions-IAM5/));
});
