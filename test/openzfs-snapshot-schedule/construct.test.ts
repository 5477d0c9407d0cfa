import { App, Duration, Stack, Tags, TimeZone } from 'aws-cdk-lib';
import { Match, Template } from 'aws-cdk-lib/assertions';
import * as cloudwatch from 'aws-cdk-lib/aws-cloudwatch';
import * as events from 'aws-cdk-lib/aws-events';
import * as fsx from 'aws-cdk-lib/aws-fsx';
import * as scheduler from 'aws-cdk-lib/aws-scheduler';
import * as sns from 'aws-cdk-lib/aws-sns';
import * as sqs from 'aws-cdk-lib/aws-sqs';
import { OpenZfsSnapshotSchedule, OpenZfsSnapshotScheduleProps, SchedulerSchedule } from '../../src';
import { roleStatements } from '../fixtures/iam-policies';
import { STACK_ARN, logicalIdsOf, ruleInput, schedulerInput } from '../fixtures/schedule-template';

const VOL = 'fsvol-0123456789abcdef0';
const VOL2 = 'fsvol-0123456789abcdef1';
const HOURLY_RULE = events.Schedule.cron({ minute: '0' });
const HOURLY_BERLIN: SchedulerSchedule = { expression: scheduler.ScheduleExpression.cron({ minute: '0', timeZone: TimeZone.EUROPE_BERLIN }) };
const HANDLER_ROLE = 'CdkStorageSnapshotsScheduleHandlersRole';
const SCHEDULER_ROLE = 'CdkStorageSnapshotsScheduleHandlersSchedulerRole';

function newStack(): Stack {
  return new Stack(new App(), 'Stack', { env: { account: '111111111111', region: 'us-east-1' } });
}

/** An hourly schedule of VOL on a rule; `props` override (`onScheduler()` moves it to Scheduler). */
function snapshots(stack: Stack, props: Partial<OpenZfsSnapshotScheduleProps> = {}, id = 'Hourly'): OpenZfsSnapshotSchedule {
  return new OpenZfsSnapshotSchedule(stack, id, { schedule: HOURLY_RULE, volumeIds: [VOL], ...props });
}

/** Props that put the schedule on Scheduler (hourly in Berlin unless `schedule` says otherwise). */
function onScheduler(schedule: Partial<SchedulerSchedule> = {}): Partial<OpenZfsSnapshotScheduleProps> {
  return { schedule: undefined, scheduler: { ...HOURLY_BERLIN, ...schedule } };
}

/** Each engine, as the props that choose it: for the tests that hold on both. */
const ENGINES: Array<[string, Partial<OpenZfsSnapshotScheduleProps>]> = [['a rule', {}], ['Scheduler', onScheduler()]];

/** The tick input of the schedule's rule or Scheduler schedule, with the engine's own fields. */
function inputOf(stack: Stack, s: OpenZfsSnapshotSchedule): any {
  const template = Template.fromStack(stack);
  return s.rule
    ? ruleInput(template, stack.getLogicalId(s.rule.node.defaultChild as events.CfnRule))
    : schedulerInput(template, stack.getLogicalId(s.schedulerSchedule!.node.defaultChild as scheduler.CfnSchedule));
}

const arn = (rest: string) => ({ 'Fn::Join': ['', ['arn:', { Ref: 'AWS::Partition' }, `:fsx:us-east-1:111111111111:${rest}`]] });
const ownership = (on: 'RequestTag' | 'ResourceTag') => ({
  StringEquals: {
    [`aws:${on}/cdk-storage-snapshots:managed-by`]: 'cdk-storage-snapshots',
    [`aws:${on}/cdk-storage-snapshots:stack-id`]: { Ref: 'AWS::StackId' },
  },
});

describe('OpenZfsSnapshotSchedule on an EventBridge rule', () => {
  test('a rule named with the stack\'s prefix whose input names the volumes, prefix, tags and retention; Time and EventId from the event', () => {
    // GIVEN
    const stack = newStack();
    // WHEN
    const s = snapshots(stack, {
      volumeIds: [VOL, VOL2],
      namePrefix: 'hourly',
      retention: { keepLast: 24, maxAge: Duration.days(2) },
      tags: { team: 'data' },
    });
    Tags.of(stack).add('env', 'prod');
    // THEN
    const template = Template.fromStack(stack);
    const rule = template.toJSON().Resources[stack.getLogicalId(s.rule!.node.defaultChild as events.CfnRule)].Properties;
    expect(rule.Name).toMatch(/^css-[0-9a-f]{10}-StackHourly[0-9A-F]{8}$/);
    expect(rule).toMatchObject({
      ScheduleExpression: 'cron(0 * * * ? *)',
      State: 'ENABLED',
      Description: 'cdk-storage-snapshots: scheduled OpenZFS snapshots (Stack/Hourly)',
    });
    // The shared function, with the rules' retry policy and the stack's dead-letter queue.
    const [target] = rule.Targets;
    expect([target.Arn, target.DeadLetterConfig.Arn].map((a: any) => a['Fn::GetAtt'][0]))
      .toEqual([expect.stringMatching(/^CdkStorageSnapshotsScheduleHandlersFunction/), expect.stringMatching(/^CdkStorageSnapshotsScheduleHandlersDeadLetters/)]);
    expect(target.RetryPolicy).toEqual({ MaximumEventAgeInSeconds: 3600, MaximumRetryAttempts: 2 });
    expect(inputOf(stack, s)).toEqual({
      Operation: 'OpenZfsSnapshot',
      Time: '2026-11-22T02:00:00Z',
      EventId: 'event-1',
      StackId: STACK_ARN,
      Schedule: s.scheduleName,
      VolumeIds: [VOL, VOL2],
      NamePrefix: 'hourly',
      Tags: { env: 'prod', team: 'data' },
      KeepLast: 24,
      MaxAgeSeconds: 2 * 86_400,
    });
    expect(s.scheduleName).toMatch(/^StackHourly[0-9A-F]{8}$/);
    expect(s.rule).toBeInstanceOf(events.Rule);
    expect(s.schedulerSchedule).toBeUndefined();
    template.resourceCountIs('AWS::Scheduler::Schedule', 0);
  });

  test('without tags or retention the input has neither', () => {
    const stack = newStack();
    const input = inputOf(stack, snapshots(stack));
    expect(input).not.toHaveProperty('Tags');
    expect(input).not.toHaveProperty('KeepLast');
    expect(input).not.toHaveProperty('MaxAgeSeconds');
  });

  test('enabled: false disables the rule', () => {
    const stack = newStack();
    snapshots(stack, { enabled: false });
    Template.fromStack(stack).hasResourceProperties('AWS::Events::Rule', { State: 'DISABLED' });
  });
});

describe('OpenZfsSnapshotSchedule on EventBridge Scheduler', () => {
  test('a schedule in the stack\'s group, in the time zone, with the shared role, the dead-letter queue and the default retry policy', () => {
    const stack = newStack();
    const s = snapshots(stack, { ...onScheduler(), namePrefix: 'hourly', retention: { keepLast: 24 }, tags: { team: 'data' } });
    Tags.of(s).add('app', 'orders');
    const template = Template.fromStack(stack);
    const [groupId] = logicalIdsOf(template, 'AWS::Scheduler::ScheduleGroup');
    const groupName = template.toJSON().Resources[groupId].Properties.Name;
    expect(groupName).toMatch(/^Stack-CdkStorageSnapshotsScheduleHandlers-ScheduleGroup-/);
    template.hasResourceProperties('AWS::Scheduler::Schedule', {
      GroupName: groupName,
      ScheduleExpression: 'cron(0 * * * ? *)',
      ScheduleExpressionTimezone: 'Europe/Berlin',
      FlexibleTimeWindow: { Mode: 'OFF' },
      State: 'ENABLED',
      StartDate: Match.absent(),
      EndDate: Match.absent(),
      Description: 'cdk-storage-snapshots: scheduled OpenZFS snapshots (Stack/Hourly)',
      Target: Match.objectLike({
        Arn: { 'Fn::GetAtt': [Match.stringLikeRegexp('^CdkStorageSnapshotsScheduleHandlersFunction'), 'Arn'] },
        RoleArn: { 'Fn::GetAtt': [Match.stringLikeRegexp(`^${SCHEDULER_ROLE}`), 'Arn'] },
        DeadLetterConfig: { Arn: { 'Fn::GetAtt': [Match.stringLikeRegexp('DeadLetters'), 'Arn'] } },
        RetryPolicy: { MaximumEventAgeInSeconds: 3600, MaximumRetryAttempts: 185 },
      }),
    });
    expect(inputOf(stack, s)).toEqual({
      Operation: 'OpenZfsSnapshot',
      Time: '<aws.scheduler.scheduled-time>',
      EventId: '<aws.scheduler.execution-id>',
      StackId: STACK_ARN,
      Schedule: s.scheduleName,
      VolumeIds: [VOL],
      NamePrefix: 'hourly',
      Tags: { app: 'orders', team: 'data' },
      KeepLast: 24,
    });
    expect(s.schedulerSchedule).toBeInstanceOf(scheduler.Schedule);
    expect(s.rule).toBeUndefined();
    template.resourceCountIs('AWS::Events::Rule', 0);
  });

  test('the schedule depends on the role and its policy (which trusts the group): its first tick can invoke the function', () => {
    const stack = newStack();
    const s = snapshots(stack, onScheduler());
    const template = Template.fromStack(stack).toJSON();
    const schedule = template.Resources[stack.getLogicalId(s.schedulerSchedule!.node.defaultChild as scheduler.CfnSchedule)];
    expect(schedule.DependsOn).toEqual(expect.arrayContaining([
      expect.stringMatching(new RegExp(`^${SCHEDULER_ROLE}[0-9A-F]{8}$`)),
      expect.stringMatching(new RegExp(`^${SCHEDULER_ROLE}DefaultPolicy`)),
    ]));
  });

  test('flexible window, start and end dates, and the retry policy are passed on', () => {
    const stack = newStack();
    snapshots(stack, onScheduler({
      flexibleTimeWindow: Duration.minutes(10),
      start: new Date('2027-01-01T00:00:00Z'),
      end: new Date('2027-12-31T00:00:00Z'),
      maxEventAge: Duration.hours(2),
      retryAttempts: 10,
    }));
    Template.fromStack(stack).hasResourceProperties('AWS::Scheduler::Schedule', {
      FlexibleTimeWindow: { Mode: 'FLEXIBLE', MaximumWindowInMinutes: 10 },
      StartDate: '2027-01-01T00:00:00.000Z',
      EndDate: '2027-12-31T00:00:00.000Z',
      Target: Match.objectLike({ RetryPolicy: { MaximumEventAgeInSeconds: 7200, MaximumRetryAttempts: 10 } }),
    });
  });

  test('retryAttempts: 0 means no retries (not the default)', () => {
    const stack = newStack();
    snapshots(stack, onScheduler({ retryAttempts: 0 }));
    Template.fromStack(stack).hasResourceProperties('AWS::Scheduler::Schedule', {
      Target: Match.objectLike({ RetryPolicy: { MaximumEventAgeInSeconds: 3600, MaximumRetryAttempts: 0 } }),
    });
  });

  test('rate(...) and at(...) expressions', () => {
    const stack = newStack();
    snapshots(stack, onScheduler({ expression: scheduler.ScheduleExpression.rate(Duration.minutes(15)) }), 'Quarterly');
    snapshots(stack, onScheduler({
      expression: scheduler.ScheduleExpression.at(new Date('2027-03-28T01:30:00Z'), TimeZone.EUROPE_BERLIN),
    }), 'Once');
    const template = Template.fromStack(stack);
    template.hasResourceProperties('AWS::Scheduler::Schedule', { ScheduleExpression: 'rate(15 minutes)' });
    template.hasResourceProperties('AWS::Scheduler::Schedule', {
      // CDK writes the Date's UTC fields as the local time in the zone (what the prop's doc says).
      ScheduleExpression: 'at(2027-03-28T01:30:00)',
      ScheduleExpressionTimezone: 'Europe/Berlin',
    });
  });

  test('enabled: false disables the schedule', () => {
    const stack = newStack();
    snapshots(stack, { ...onScheduler(), enabled: false });
    Template.fromStack(stack).hasResourceProperties('AWS::Scheduler::Schedule', { State: 'DISABLED' });
  });

  test('the execution role: only Scheduler, for this group in this account, may assume it', () => {
    const stack = newStack();
    snapshots(stack, onScheduler());
    const template = Template.fromStack(stack);
    const [groupId] = logicalIdsOf(template, 'AWS::Scheduler::ScheduleGroup');
    template.hasResourceProperties('AWS::IAM::Role', {
      AssumeRolePolicyDocument: {
        Statement: [{
          Action: 'sts:AssumeRole',
          Effect: 'Allow',
          Principal: { Service: 'scheduler.amazonaws.com' },
          Condition: { StringEquals: { 'aws:SourceAccount': '111111111111', 'aws:SourceArn': { 'Fn::GetAtt': [groupId, 'Arn'] } } },
        }],
      },
    });
  });

  test('the execution role may invoke the function and send to the dead-letter queue, nothing else', () => {
    const stack = newStack();
    snapshots(stack, onScheduler());
    const template = Template.fromStack(stack);
    const statements = roleStatements(template, SCHEDULER_ROLE);
    expect(statements.map((st) => st.Action)).toEqual(['lambda:InvokeFunction', 'sqs:SendMessage']);
    const [invoke, send] = statements;
    expect(invoke.Resource['Fn::GetAtt'][0]).toMatch(/^CdkStorageSnapshotsScheduleHandlersFunction/);
    expect(send.Resource['Fn::GetAtt'][0]).toMatch(/^CdkStorageSnapshotsScheduleHandlersDeadLetters/);
    expect(Object.keys(invoke).sort()).toEqual(['Action', 'Effect', 'Resource']);
    expect(Object.keys(send).sort()).toEqual(['Action', 'Effect', 'Resource']);
  });

  test('with a queue of the user\'s encrypted with a KMS key, the execution role may use the key too', () => {
    const stack = newStack();
    const queue = new sqs.Queue(stack, 'Failures', { encryption: sqs.QueueEncryption.KMS, enforceSSL: true });
    snapshots(stack, { ...onScheduler(), deadLetterQueue: queue });
    const keyId = stack.getLogicalId(queue.encryptionMasterKey!.node.defaultChild as any);
    const statements = roleStatements(Template.fromStack(stack), SCHEDULER_ROLE);
    expect(statements.map((s) => s.Action)).toEqual(['lambda:InvokeFunction', 'sqs:SendMessage', ['kms:GenerateDataKey', 'kms:Decrypt']]);
    expect(statements[1].Resource).toEqual({ 'Fn::GetAtt': [stack.getLogicalId(queue.node.defaultChild as sqs.CfnQueue), 'Arn'] });
    expect(statements[2].Resource).toEqual({ 'Fn::GetAtt': [keyId, 'Arn'] });
  });
});

describe('OpenZfsSnapshotSchedule IAM', () => {
  test('CreateSnapshot on the volumes and their snapshots; tagging and deleting only with the ownership tags; describes on *', () => {
    const stack = newStack();
    snapshots(stack, { volumeIds: [VOL, VOL2] });
    const all = roleStatements(Template.fromStack(stack), HANDLER_ROLE);
    const snaps = [arn(`snapshot/${VOL}/*`), arn(`snapshot/${VOL2}/*`)];
    const volumes = [arn(`volume/*/${VOL}`), arn(`volume/*/${VOL2}`)];
    expect(all).toContainEqual({ Action: 'fsx:CreateSnapshot', Effect: 'Allow', Resource: [...volumes, ...snaps] });
    expect(all).toContainEqual({ Action: 'fsx:TagResource', Effect: 'Allow', Resource: snaps, Condition: ownership('RequestTag') });
    expect(all).toContainEqual({ Action: 'fsx:DeleteSnapshot', Effect: 'Allow', Resource: snaps, Condition: ownership('ResourceTag') });
    expect(all).toContainEqual({ Action: 'fsx:ListTagsForResource', Effect: 'Allow', Resource: volumes });
    expect(all).toContainEqual({ Action: ['fsx:DescribeSnapshots', 'fsx:DescribeVolumes'], Effect: 'Allow', Resource: '*' });
    // Nothing else of FSx's, and nothing on * but the describes.
    expect(all.filter((s) => [s.Action].flat().some((a: string) => a.startsWith('fsx:')))).toHaveLength(5);
    expect(all.filter((s) => s.Resource === '*')).toHaveLength(1);
  });

  test('a CfnVolume: its ResourceARN for the volume, its VolumeId for the snapshots and the input', () => {
    const stack = newStack();
    const volume = new fsx.CfnVolume(stack, 'Volume', { name: 'data', volumeType: 'OPENZFS', openZfsConfiguration: { parentVolumeId: VOL } });
    const s = snapshots(stack, { volumeIds: undefined, volumes: [volume] });
    const all = roleStatements(Template.fromStack(stack), HANDLER_ROLE);
    const volumeArn = { 'Fn::GetAtt': ['Volume', 'ResourceARN'] };
    const volumeId = { 'Fn::GetAtt': ['Volume', 'VolumeId'] };
    const snaps = { 'Fn::Join': ['', ['arn:', { Ref: 'AWS::Partition' }, ':fsx:us-east-1:111111111111:snapshot/', volumeId, '/*']] };
    expect(all).toContainEqual({ Action: 'fsx:CreateSnapshot', Effect: 'Allow', Resource: [volumeArn, snaps] });
    expect(all).toContainEqual({ Action: 'fsx:DeleteSnapshot', Effect: 'Allow', Resource: snaps, Condition: ownership('ResourceTag') });
    expect(all).toContainEqual({ Action: 'fsx:ListTagsForResource', Effect: 'Allow', Resource: volumeArn });
    expect(inputOf(stack, s).VolumeIds).toEqual([JSON.stringify(volumeId)]);
    expect(s.volumeIds).toEqual([volume.attrVolumeId]);
  });

  test('the handler role may send to the dead-letter queue (Lambda\'s on-failure destination)', () => {
    const stack = newStack();
    snapshots(stack);
    expect(roleStatements(Template.fromStack(stack), HANDLER_ROLE))
      .toContainEqual(expect.objectContaining({ Action: expect.arrayContaining(['sqs:SendMessage']) }));
  });
});

describe.each(ENGINES)('OpenZfsSnapshotSchedule alarms and metrics on %s', (_engine, engine) => {
  test('an alarm on failed snapshots and prunes, and the dead-letter alarm, both to the alarm topic', () => {
    const stack = newStack();
    const topic = new sns.Topic(stack, 'Topic');
    const s = snapshots(stack, { ...engine, alarmTopic: topic });
    const template = Template.fromStack(stack);
    const alarm = template.toJSON().Resources[stack.getLogicalId(s.alarm.node.defaultChild as cloudwatch.CfnAlarm)].Properties;
    expect(alarm).toMatchObject({ Threshold: 1, ComparisonOperator: 'GreaterThanOrEqualToThreshold', TreatMissingData: 'notBreaching', EvaluationPeriods: 1 });
    expect(alarm.AlarmActions).toEqual([{ Ref: expect.stringMatching(/^Topic/) }]);
    const [sum, ...metrics] = alarm.Metrics;
    expect(sum.Expression).toBe('FILL(failed, 0) + FILL(pruneFailed, 0)');
    // Each of the schedule's metrics: its own Schedule dimension, summed over 5 minutes.
    expect(metrics.map((m: any) => [m.Id, m.MetricStat.Metric.MetricName])).toEqual([['failed', 'SnapshotsFailed'], ['pruneFailed', 'PruneFailures']]);
    for (const m of metrics) {
      expect(m.MetricStat).toMatchObject({ Stat: 'Sum', Period: 300, Metric: { Namespace: 'CdkStorageSnapshots', Dimensions: [{ Name: 'Schedule', Value: s.scheduleName }] } });
    }
    template.hasResourceProperties('AWS::CloudWatch::Alarm', {
      MetricName: 'ApproximateNumberOfMessagesVisible',
      AlarmActions: [{ Ref: Match.stringLikeRegexp('^Topic') }],
    });
    expect(s.alarm.alarmArn).toBeDefined();
    expect(s.deadLetterAlarm).toBe(snapshots(stack, { ...engine, volumeIds: [VOL2] }, 'Other').deadLetterAlarm);
  });

  test('without alarmTopic no alarm has an action', () => {
    const stack = newStack();
    snapshots(stack, engine);
    Template.fromStack(stack).resourcePropertiesCountIs('AWS::CloudWatch::Alarm', { AlarmActions: Match.anyValue() }, 0);
  });
});

describe('OpenZfsSnapshotSchedule metric methods', () => {
  test('name the handler\'s metrics, with the Schedule dimension, sum over 5 minutes unless told', () => {
    const s = snapshots(newStack());
    expect(s.metricSnapshotsCreated().metricName).toBe('SnapshotsCreated');
    expect(s.metricSnapshotsFailed().metricName).toBe('SnapshotsFailed');
    expect(s.metricSnapshotsPruned().metricName).toBe('SnapshotsPruned');
    expect(s.metricPruneFailures().metricName).toBe('PruneFailures');
    expect(s.metricSnapshotsKeptInUse().metricName).toBe('SnapshotsKeptInUse');
    expect(s.metricCopiedTagsDropped().metricName).toBe('CopiedTagsDropped');
    expect(s.metricSnapshotsCreated()).toMatchObject({
      namespace: 'CdkStorageSnapshots', dimensions: { Schedule: s.scheduleName }, statistic: 'Sum', period: Duration.minutes(5),
    });
    expect(s.metricSnapshotsPruned({ period: Duration.hours(1) })).toMatchObject({ metricName: 'SnapshotsPruned', period: Duration.hours(1) });
  });
});

describe('OpenZfsSnapshotSchedule name prefix', () => {
  test('defaults to the construct id, with characters FSx refuses replaced', () => {
    const stack = newStack();
    expect(snapshots(stack, {}, 'Hourly').namePrefix).toBe('Hourly');
    expect(snapshots(stack, { volumeIds: [VOL2] }, 'Every hour (data)').namePrefix).toBe('Every-hour--data-');
    expect(snapshots(stack, { volumeIds: ['fsvol-0123456789abcdef2'] }, 'x'.repeat(200)).namePrefix).toBe('x'.repeat(179));
    expect(() => Template.fromStack(stack)).not.toThrow();
  });

  test.each(['hourly', 'a', 'Hourly_snap:v1.2-x', 'x'.repeat(179)])('%s is accepted', (namePrefix) => {
    expect(snapshots(newStack(), { namePrefix }).namePrefix).toBe(namePrefix);
  });

  test.each([
    ['hourly snap', /invalid namePrefix: may contain only letters, digits and _ : \. - .*\(received "hourly snap"\)/],
    ['a/b', /invalid namePrefix: may contain only/],
    ['', /invalid namePrefix: .*and not be empty \(received ""\)/],
    ['x'.repeat(180), /invalid namePrefix: must be at most 179 characters .* not 180/],
  ])('%j is refused', (namePrefix, message) => {
    expect(() => snapshots(newStack(), { namePrefix })).toThrow(message);
  });
});

describe('OpenZfsSnapshotSchedule validation', () => {
  test('neither schedule nor scheduler is refused', () => {
    expect(() => snapshots(newStack(), { schedule: undefined }))
      .toThrow(/Stack\/Hourly: invalid schedule: give schedule \(an EventBridge rule, in UTC\) or scheduler \(EventBridge Scheduler, in a time zone of yours\)/);
  });

  test('both schedule and scheduler are refused', () => {
    expect(() => snapshots(newStack(), { scheduler: HOURLY_BERLIN }))
      .toThrow(/Stack\/Hourly: invalid schedule: give schedule \(an EventBridge rule\) or scheduler \(EventBridge Scheduler\), not both/);
  });

  describe.each([
    ['a rule', (e: string) => ({ schedule: events.Schedule.expression(e) }), 'schedule'],
    ['Scheduler', (e: string) => onScheduler({ expression: scheduler.ScheduleExpression.expression(e) }), 'scheduler\\.expression'],
  ])('cadence on %s', (_engine, props, prop) => {
    test.each(['rate(10 minutes)', 'rate(1 minute)', 'cron(*/10 * * * ? *)', 'cron(0,5 * * * ? *)', 'cron(0/14 * * * ? *)'])('%s is refused: more often than every 15 minutes', (e) => {
      expect(() => snapshots(newStack(), props(e))).toThrow(new RegExp(
        `Stack/Hourly: invalid ${prop}: must fire at most once every 15 minutes \\(each tick lists and prunes every volume's snapshots\\): ` +
        'use a rate of at least 15 minutes, or a cron expression whose minute values are at least 15 apart, such as cron\\(0/15 \\* \\* \\* \\? \\*\\)'));
    });

    test.each(['rate(15 minutes)', 'rate(1 hour)', 'cron(0/15 * * * ? *)', 'cron(0,15,30,45 * * * ? *)', 'cron(0 2 * * ? *)', 'cron(50 * * * ? *)'])('%s is accepted', (e) => {
      expect(() => snapshots(newStack(), props(e))).not.toThrow();
    });
  });

  test('at(...) is accepted on Scheduler and refused on a rule', () => {
    const at = scheduler.ScheduleExpression.at(new Date('2027-01-01T02:00:00Z'));
    expect(() => snapshots(newStack(), onScheduler({ expression: at }))).not.toThrow();
    expect(() => snapshots(newStack(), { schedule: events.Schedule.expression('at(2027-01-01T02:00:00)') }))
      .toThrow(/invalid schedule: EventBridge rules take only rate\(\.\.\.\) and cron\(\.\.\.\) expressions; for at\(\.\.\.\) give `scheduler`/);
  });

  test('an unknown time zone is refused; IANA zones are accepted', () => {
    const cron = (zone: TimeZone) => onScheduler({ expression: scheduler.ScheduleExpression.cron({ minute: '0', timeZone: zone }) });
    expect(() => snapshots(newStack(), cron(TimeZone.of('Europe/Berlln'))))
      .toThrow(/invalid scheduler.expression: has an unknown time zone: give an IANA time zone such as Europe\/Berlin .*\(received "Europe\/Berlln"\)/);
    for (const zone of [TimeZone.EUROPE_BERLIN, TimeZone.AMERICA_LOS_ANGELES, TimeZone.ASIA_KOLKATA, TimeZone.ETC_UTC, TimeZone.of('UTC'), TimeZone.of('US/Eastern')]) {
      expect(() => snapshots(newStack(), cron(zone))).not.toThrow();
    }
  });

  test('a known time zone in the wrong case is refused with its name (ICU accepts it, IANA names are case-sensitive)', () => {
    const cron = (zone: TimeZone) => onScheduler({ expression: scheduler.ScheduleExpression.cron({ minute: '0', timeZone: zone }) });
    expect(() => snapshots(newStack(), cron(TimeZone.of('europe/berlin'))))
      .toThrow(/invalid scheduler.expression: has a time zone in the wrong case: IANA names are case-sensitive, give Europe\/Berlin \(received "europe\/berlin"\)/);
  });

  test.each([Duration.seconds(30), Duration.seconds(90), Duration.minutes(24 * 60 + 1), Duration.hours(25)])('flexibleTimeWindow %s is refused', (window) => {
    expect(() => snapshots(newStack(), onScheduler({ flexibleTimeWindow: window })))
      .toThrow(new RegExp(`invalid scheduler.flexibleTimeWindow: must be whole minutes from 1 minute to 24 hours, not ${window.toHumanString()}`));
  });

  test.each([Duration.minutes(1), Duration.minutes(59)])('flexibleTimeWindow %s is accepted on an hourly schedule', (window) => {
    expect(() => snapshots(newStack(), onScheduler({ flexibleTimeWindow: window }))).not.toThrow();
  });

  test('a flexible window of 24 hours is accepted on a schedule with one tick (at) and on a weekly one', () => {
    const day = Duration.hours(24);
    expect(() => snapshots(newStack(), onScheduler({
      expression: scheduler.ScheduleExpression.at(new Date('2027-03-28T02:30:00Z'), TimeZone.EUROPE_BERLIN), flexibleTimeWindow: day,
    }))).not.toThrow();
    expect(() => snapshots(newStack(), onScheduler({
      expression: scheduler.ScheduleExpression.expression('cron(0 2 ? * SUN *)', TimeZone.EUROPE_BERLIN), flexibleTimeWindow: Duration.hours(23),
    }))).not.toThrow();
  });

  test.each([
    ['rate(15 minutes)', Duration.minutes(15)],
    ['cron(0/20 * * * ? *)', Duration.minutes(20)],
    ['cron(0 * * * ? *)', Duration.hours(1)],
    ['cron(0 */6 * * ? *)', Duration.hours(6)],
    ['cron(0 2 * * ? *)', Duration.hours(24)],
  ])('a flexible window as long as the interval of %s is refused (ticks would arrive out of order)', (expression, window) => {
    const expr = scheduler.ScheduleExpression.expression(expression, TimeZone.EUROPE_BERLIN);
    expect(() => snapshots(newStack(), onScheduler({ expression: expr, flexibleTimeWindow: window })))
      .toThrow(/invalid scheduler.flexibleTimeWindow: must be shorter than the schedule's shortest interval \(\d+ minutes\), so that ticks arrive in order/);
  });

  test.each(['rate(1 hours)', 'rate(2 hour)', 'rate(0 minutes)', 'cron(0/60 * * * ? *)', 'cron(1/90 * * * ? *)', 'at(2026-13-45T25:61:00)'])(
    '%s is refused (AWS would refuse it at deploy)', (expression) => {
      expect(() => snapshots(newStack(), onScheduler({ expression: scheduler.ScheduleExpression.expression(expression, TimeZone.EUROPE_BERLIN) })))
        .toThrow(/invalid scheduler.expression/);
    });

  test('an invalid start date is refused with the prop', () => {
    expect(() => snapshots(newStack(), onScheduler({ start: new Date('not a date') }))).toThrow(/invalid scheduler.start: is not a valid date/);
  });

  test('a FIFO dead-letter queue is refused', () => {
    const stack = newStack();
    const fifo = new sqs.Queue(stack, 'Fifo', { fifo: true });
    expect(() => snapshots(stack, { deadLetterQueue: fifo })).toThrow(/invalid deadLetterQueue: must be a standard queue/);
  });

  test.each([Duration.seconds(59), Duration.hours(25)])('maxEventAge %s is refused', (age) => {
    expect(() => snapshots(newStack(), onScheduler({ maxEventAge: age })))
      .toThrow(new RegExp(`invalid scheduler.maxEventAge: must be from 1 minute to 24 hours \\(Scheduler's limits\\), not ${age.toHumanString()}`));
  });

  test.each([Duration.seconds(60), Duration.hours(24)])('maxEventAge %s is accepted', (age) => {
    expect(() => snapshots(newStack(), onScheduler({ maxEventAge: age }))).not.toThrow();
  });

  test.each([-1, 186, 1.5])('retryAttempts %s is refused', (retryAttempts) => {
    expect(() => snapshots(newStack(), onScheduler({ retryAttempts })))
      .toThrow(new RegExp(`invalid scheduler.retryAttempts: must be a whole number from 0 to 185 \\(Scheduler's limits\\) \\(received ${retryAttempts}\\)`));
  });

  test.each([0, 185])('retryAttempts %s is accepted', (retryAttempts) => {
    expect(() => snapshots(newStack(), onScheduler({ retryAttempts }))).not.toThrow();
  });

  test.each([
    ['after', '2027-01-02T00:00:00Z'],
    ['equal to', '2027-01-01T00:00:00Z'],
  ])('a start %s the end is refused', (_how, start) => {
    expect(() => snapshots(newStack(), onScheduler({ start: new Date(start), end: new Date('2027-01-01T00:00:00Z') })))
      .toThrow(/invalid scheduler.end: must be after start \(.*\) \(received "2027-01-01T00:00:00.000Z"\)/);
  });

  test.each([
    [{ retention: { keepLast: 0 } }, /invalid retention.keepLast: must be a whole number of at least 1 \(the newest snapshot is always kept\) \(received 0\)/],
    [{ retention: { keepLast: 2.5 } }, /invalid retention.keepLast: .*\(received 2.5\)/],
    [{ retention: { maxAge: Duration.minutes(59) } }, /invalid retention.maxAge: must be at least 1 hour, not 59 minutes/],
    [{ retention: {} }, /invalid retention: give keepLast, maxAge or both \(leave retention out to keep every snapshot\)/],
    [{ volumeIds: [] }, /invalid volumeIds: give at least one OpenZFS volume to snapshot \(volumeIds or volumes\)/],
    [{ volumeIds: undefined }, /invalid volumeIds: give at least one OpenZFS volume/],
    [{ volumeIds: ['fsvol-123'] }, /invalid volumeIds: must be "fsvol-" followed by 17 lowercase hex digits \(received "fsvol-123"\)/],
    [{ volumeIds: ['fsvol-0123456789ABCDEF0'] }, /invalid volumeIds: must be "fsvol-"/],
    [{ volumeIds: ['fs-0123456789abcdef0'] }, /invalid volumeIds: must be "fsvol-"/],
    [{ volumeIds: [VOL, VOL2, VOL] }, /invalid volumeIds: fsvol-0123456789abcdef0 is given twice: each volume is snapshotted once per tick/],
    [{ tags: Object.fromEntries(Array.from({ length: 45 }, (_, i) => [`k${i}`, 'v'])) },
      /invalid tags: at most 44 tags are allowed \(AWS allows 50 per resource and the library adds 6\), not 45/],
    [{ tags: { 'aws:x': 'y' } }, /invalid tags: tag keys must not start with the reserved prefix/],
    [{ tags: { 'cost#center': '42' } }, /invalid tags: tag keys may contain only letters, numbers, spaces and _ \. : \/ = \+ - @ \(received "cost#center"\)/],
    [{ tags: { team: 'a,b' } }, /invalid tags: tag values may contain only letters.*\(tag "team"\) \(received "a,b"\)/],
  ] as Array<[Partial<OpenZfsSnapshotScheduleProps>, RegExp]>)('%j is refused', (props, message) => {
    expect(() => snapshots(newStack(), props)).toThrow(message);
  });

  test('44 tags of the user\'s are accepted', () => {
    const stack = newStack();
    snapshots(stack, { tags: Object.fromEntries(Array.from({ length: 44 }, (_, i) => [`k${i}`, 'v'])) });
    expect(() => Template.fromStack(stack)).not.toThrow();
  });

  test('an ONTAP CfnVolume is refused; the same CfnVolume twice is refused', () => {
    const stack = newStack();
    const ontap = new fsx.CfnVolume(stack, 'Ontap', { name: 'v', volumeType: 'ONTAP', ontapConfiguration: { storageVirtualMachineId: 'svm-0123456789abcdef0' } });
    expect(() => snapshots(stack, { volumeIds: undefined, volumes: [ontap] }))
      .toThrow(/invalid volumes: Stack\/Ontap is an ONTAP volume: FSx snapshots are of OpenZFS volumes \(back up ONTAP volumes with FsxBackupSchedule\) \(received "ONTAP"\)/);
    const zfs = new fsx.CfnVolume(stack, 'Zfs', { name: 'v', volumeType: 'OPENZFS', openZfsConfiguration: { parentVolumeId: VOL } });
    expect(() => snapshots(stack, { volumes: [zfs, zfs] }, 'Twice')).toThrow(/invalid volumes: Stack\/Zfs is given twice/);
  });

  test('tokens are accepted unchecked', () => {
    const stack = newStack();
    const volume = new fsx.CfnVolume(stack, 'V', { name: 'v', volumeType: 'OPENZFS' });
    expect(() => snapshots(stack, { volumeIds: [volume.attrVolumeId, VOL] })).not.toThrow();
  });

  test('tags from Tags.of() with characters FSx refuses are refused at synth', () => {
    const stack = newStack();
    snapshots(stack);
    Tags.of(stack).add('owner', 'ops&dev');
    expect(() => Template.fromStack(stack)).toThrow(/invalid tags \(with those added by Tags.of\): tag values may contain only letters/);
  });

  test('too many tags with those of Tags.of() are refused at synth', () => {
    const stack = newStack();
    const s = snapshots(stack, { tags: Object.fromEntries(Array.from({ length: 44 }, (_, i) => [`k${i}`, 'v'])) });
    Tags.of(s).add('one', 'more');
    expect(() => Template.fromStack(stack)).toThrow(/invalid tags \(with those added by Tags.of\): at most 44 tags/);
  });

  test.each(ENGINES)('an input larger than a target takes is refused at synth with the way out (%s)', (_engine, engine) => {
    const volumeIds = (n: number) => Array.from({ length: n }, (_, i) => `fsvol-${i.toString(16).padStart(17, '0')}`);
    const fits = newStack();
    snapshots(fits, { ...engine, volumeIds: volumeIds(250) });
    expect(() => Template.fromStack(fits)).not.toThrow();
    const large = newStack();
    snapshots(large, { ...engine, volumeIds: volumeIds(400) });
    expect(() => Template.fromStack(large)).toThrow(/invalid volumeIds: the schedule's input \(its targets and tags\) takes about \d+ characters, more than the 8192 .*split the volumeIds across two schedules/);
  });
});
