import { App, Aspects, Duration, Stack, Tags } from 'aws-cdk-lib';
import { Annotations, Match, Template } from 'aws-cdk-lib/assertions';
import * as ec2 from 'aws-cdk-lib/aws-ec2';
import * as events from 'aws-cdk-lib/aws-events';
import * as fsx from 'aws-cdk-lib/aws-fsx';
import * as iam from 'aws-cdk-lib/aws-iam';
import * as sns from 'aws-cdk-lib/aws-sns';
import * as sqs from 'aws-cdk-lib/aws-sqs';
import { AwsSolutionsChecks } from 'cdk-nag';
import { BackupTarget, FsxBackupSchedule, FsxBackupScheduleProps } from '../../src';

const FS = 'fs-0123456789abcdef0';
const VOL = 'fsvol-0123456789abcdef0';
const NIGHTLY = events.Schedule.cron({ hour: '2', minute: '0' });

function newStack(): Stack {
  return new Stack(new App(), 'Stack', { env: { account: '111111111111', region: 'us-east-1' } });
}

function schedule(stack: Stack, props: Partial<FsxBackupScheduleProps> = {}, id = 'Nightly') {
  return new FsxBackupSchedule(stack, id, { schedule: NIGHTLY, fileSystemIds: [FS], ...props });
}

/** The rule's input, as EventBridge renders it for a tick at `time`. */
function renderedInput(stack: Stack, logicalId: string, time = '2026-11-22T02:00:00Z'): any {
  const rule = Template.fromStack(stack).toJSON().Resources[logicalId];
  const transformer = rule.Properties.Targets[0].InputTransformer;
  const parts: any[] = transformer.InputTemplate['Fn::Join'][1];
  const text = parts.map((p) => (typeof p === 'string' ? p : p.Ref === 'AWS::StackId' ? 'arn:aws:cloudformation:us-east-1:111111111111:stack/Stack/1' : JSON.stringify(p))).join('');
  expect(transformer.InputPathsMap).toEqual({ time: '$.time', id: '$.id' });
  return JSON.parse(text.replace('<time>', JSON.stringify(time)).replace('<id>', '"event-1"'));
}

function ruleId(stack: Stack): string {
  return Object.keys(Template.fromStack(stack).findResources('AWS::Events::Rule'))[0];
}

describe('FsxBackupSchedule resources', () => {
  test('a rule on the schedule whose input names the targets, tags and retention for the shared function', () => {
    // GIVEN
    const stack = newStack();
    // WHEN
    const s = schedule(stack, {
      volumeIds: [VOL],
      retention: { keepLast: 14, maxAge: Duration.days(30) },
      tags: { team: 'data', costCenter: '42' },
    });
    // THEN
    const template = Template.fromStack(stack);
    template.hasResourceProperties('AWS::Events::Rule', {
      ScheduleExpression: 'cron(0 2 * * ? *)',
      State: 'ENABLED',
      Targets: [Match.objectLike({
        Arn: { 'Fn::GetAtt': [Match.stringLikeRegexp('CdkStorageSnapshotsScheduleHandlersFunction'), 'Arn'] },
        RetryPolicy: { MaximumEventAgeInSeconds: 3600, MaximumRetryAttempts: 2 },
        DeadLetterConfig: { Arn: { 'Fn::GetAtt': [Match.stringLikeRegexp('DeadLetters'), 'Arn'] } },
      })],
    });
    expect(renderedInput(stack, ruleId(stack))).toEqual({
      Operation: 'FsxBackup',
      Time: '2026-11-22T02:00:00Z',
      EventId: 'event-1',
      StackId: 'arn:aws:cloudformation:us-east-1:111111111111:stack/Stack/1',
      Schedule: s.scheduleName,
      Targets: [{ Kind: 'file-system', Id: FS }, { Kind: 'volume', Id: VOL }],
      Tags: { costCenter: '42', team: 'data' },
      KeepLast: 14,
      MaxAgeSeconds: 30 * 86_400,
    });
    expect(s.scheduleName).toMatch(/^StackNightly[0-9A-F]{8}$/);
    expect(s.rule).toBeInstanceOf(events.Rule);
  });

  test('the schedule identity comes from the construct path: stable across unrelated edits', () => {
    const a = newStack();
    const b = newStack();
    new sns.Topic(b, 'SomethingElse');
    expect(schedule(a).scheduleName).toBe(schedule(b, { tags: { x: 'y' }, retention: { keepLast: 3 } }).scheduleName);
    expect(schedule(newStack(), {}, 'Hourly').scheduleName).not.toBe(schedule(newStack()).scheduleName);
  });

  test('rules are named with a stack-specific prefix, within EventBridge\'s 64 characters; the description does not change with the targets', () => {
    const stack = newStack();
    const a = schedule(stack, {}, 'A');
    const long = schedule(stack, { fileSystemIds: ['fs-0123456789abcdef1', 'fs-0123456789abcdef2'] }, 'AVeryLongScheduleNameThatGoesOnAndOnAndOnPastAnyLimitThatEventBridgeHas');
    const names = [a, long].map((s) => stack.resolve((s.rule!.node.defaultChild as events.CfnRule).name) as string);
    const prefix = names[0].slice(0, 15);
    expect(prefix).toMatch(/^css-[0-9a-f]{10}-$/);
    for (const name of names) {
      expect(name).toMatch(/^[.\-_A-Za-z0-9]{1,64}$/);
      expect(name.startsWith(prefix)).toBe(true);
    }
    expect(names[0]).not.toBe(names[1]);
    // Another stack of the same app: another prefix.
    const other = new Stack(stack.node.scope as App, 'Other', { env: { account: '111111111111', region: 'us-east-1' } });
    expect(other.resolve((schedule(other, {}, 'A').rule!.node.defaultChild as events.CfnRule).name)).not.toMatch(new RegExp(`^${prefix}`));
    const descriptions = Object.values(Template.fromStack(stack).findResources('AWS::Events::Rule')).map((r: any) => r.Properties.Description);
    expect(descriptions).toEqual(['cdk-storage-snapshots: scheduled FSx backups (Stack/A)', expect.stringMatching(/^cdk-storage-snapshots: scheduled FSx backups \(Stack\/AVery/)]);
  });

  test('one Lambda permission and one queue-policy statement for the stack, scoped to its rule-name prefix in this account', () => {
    const stack = newStack();
    const a = schedule(stack, {}, 'A');
    schedule(stack, { fileSystemIds: ['fs-0123456789abcdef1'] }, 'B');
    const template = Template.fromStack(stack);
    const prefix = (stack.resolve((a.rule!.node.defaultChild as events.CfnRule).name) as string).slice(0, 15);
    const rules = { 'Fn::Join': ['', ['arn:', { Ref: 'AWS::Partition' }, `:events:us-east-1:111111111111:rule/${prefix}*`]] };
    template.resourceCountIs('AWS::Lambda::Permission', 1);
    template.hasResourceProperties('AWS::Lambda::Permission', {
      Action: 'lambda:InvokeFunction',
      Principal: 'events.amazonaws.com',
      SourceAccount: '111111111111',
      SourceArn: rules,
      FunctionName: { 'Fn::GetAtt': [Match.stringLikeRegexp('CdkStorageSnapshotsScheduleHandlersFunction'), 'Arn'] },
    });
    const queuePolicies = Object.values(template.findResources('AWS::SQS::QueuePolicy')) as any[];
    const fromRules = queuePolicies.flatMap((p) => p.Properties.PolicyDocument.Statement).filter((st: any) => st.Principal?.Service === 'events.amazonaws.com');
    expect(fromRules).toEqual([expect.objectContaining({
      Action: 'sqs:SendMessage',
      Condition: { ArnLike: { 'aws:SourceArn': rules }, StringEquals: { 'aws:SourceAccount': '111111111111' } },
    })]);
    // Each rule depends on the permission: its first tick can invoke the function.
    for (const rule of Object.values(template.findResources('AWS::Events::Rule')) as any[]) {
      expect(rule.DependsOn).toEqual(expect.arrayContaining([expect.stringMatching(/InvokeFromScheduleRules/)]));
    }
  });

  test('each schedule after the first adds exactly 2 resources (its rule and its alarm)', () => {
    const counts = [1, 2, 3].map((n) => {
      const stack = newStack();
      for (let i = 0; i < n; i++) schedule(stack, { fileSystemIds: [`fs-${i.toString(16).padStart(17, '0')}`] }, `S${i}`);
      return Object.keys(Template.fromStack(stack).toJSON().Resources).length;
    });
    expect(counts[1] - counts[0]).toBe(2);
    expect(counts[2] - counts[1]).toBe(2);
  });

  test('200 schedules stay under CloudFormation\'s 500 resources and IAM\'s policy sizes, with no extra managed policy', () => {
    const stack = newStack();
    for (let i = 0; i < 200; i++) {
      schedule(stack, { fileSystemIds: [`fs-${i.toString(16).padStart(17, '0')}`], volumeIds: [`fsvol-${i.toString(16).padStart(17, '0')}`], retention: { keepLast: 3 } }, `S${i}`);
    }
    const template = Template.fromStack(stack).toJSON();
    const resources = Object.values(template.Resources) as any[];
    expect(resources.length).toBeLessThan(500);
    expect(resources.filter((r) => r.Type === 'AWS::IAM::ManagedPolicy')).toHaveLength(0);
    const policies = resources.filter((r) => r.Type === 'AWS::IAM::Policy');
    expect(policies).toHaveLength(1);
    // IAM counts the policy without whitespace; 10,240 is the limit for a role's inline policies.
    expect(JSON.stringify(policies[0].Properties.PolicyDocument).length).toBeLessThan(10_240 / 2);
    const queuePolicy = resources.find((r) => r.Type === 'AWS::SQS::QueuePolicy');
    expect(queuePolicy.Properties.PolicyDocument.Statement.length).toBeLessThanOrEqual(2);
  });

  test('enabled: false disables the rule', () => {
    const stack = newStack();
    schedule(stack, { enabled: false });
    Template.fromStack(stack).hasResourceProperties('AWS::Events::Rule', { State: 'DISABLED' });
  });

  test('one function, one async config and one queue per stack, however many schedules', () => {
    const stack = newStack();
    schedule(stack, {}, 'A');
    schedule(stack, { fileSystemIds: ['fs-0123456789abcdef1'] }, 'B');
    const template = Template.fromStack(stack);
    template.resourceCountIs('AWS::Lambda::Function', 1);
    template.resourceCountIs('AWS::Lambda::EventInvokeConfig', 1);
    template.resourceCountIs('AWS::SQS::Queue', 1);
    template.resourceCountIs('AWS::Events::Rule', 2);
    // One failure alarm per schedule, one dead-letter alarm per stack.
    template.resourceCountIs('AWS::CloudWatch::Alarm', 3);
    template.resourceCountIs('AWS::Lambda::Permission', 1);
    template.hasResourceProperties('AWS::Lambda::Function', { Handler: 'index.handler', Runtime: 'nodejs22.x', Timeout: 900 });
    template.hasResourceProperties('AWS::Lambda::EventInvokeConfig', {
      MaximumRetryAttempts: 2,
      MaximumEventAgeInSeconds: 3600,
      DestinationConfig: { OnFailure: { Destination: { 'Fn::GetAtt': [Match.stringLikeRegexp('DeadLetters'), 'Arn'] } } },
    });
  });

  test('the dead-letter queue is encrypted and refuses plain HTTP', () => {
    const stack = newStack();
    schedule(stack);
    const template = Template.fromStack(stack);
    template.hasResourceProperties('AWS::SQS::Queue', { SqsManagedSseEnabled: true, MessageRetentionPeriod: 1_209_600 });
    template.hasResourceProperties('AWS::SQS::QueuePolicy', {
      PolicyDocument: { Statement: Match.arrayWith([Match.objectLike({ Effect: 'Deny', Condition: { Bool: { 'aws:SecureTransport': 'false' } } })]) },
    });
  });

  test('a queue of the user\'s is used instead; another queue on a second schedule is refused', () => {
    const stack = newStack();
    const queue = new sqs.Queue(stack, 'Mine');
    const s = schedule(stack, { deadLetterQueue: queue }, 'A');
    schedule(stack, { deadLetterQueue: queue }, 'B');
    schedule(stack, {}, 'C');
    expect(s.deadLetterQueue).toBe(queue);
    Template.fromStack(stack).resourceCountIs('AWS::SQS::Queue', 1);
    expect(() => schedule(stack, { deadLetterQueue: new sqs.Queue(stack, 'Other') }, 'D'))
      .toThrow(/Stack\/D: invalid deadLetterQueue: .*Stack\/A already gave another queue/);
    const created = newStack();
    schedule(created, {}, 'A');
    expect(() => schedule(created, { deadLetterQueue: new sqs.Queue(created, 'Late') }, 'B')).toThrow(/Stack\/A already created one/);
  });

  test('an alarm on failed backups and prunes, with the SNS action when alarmTopic is given', () => {
    const stack = newStack();
    const topic = new sns.Topic(stack, 'Topic');
    const s = schedule(stack, { alarmTopic: topic });
    Template.fromStack(stack).hasResourceProperties('AWS::CloudWatch::Alarm', {
      MetricName: Match.absent(),
      AlarmActions: [{ Ref: Match.stringLikeRegexp('Topic') }],
      Threshold: 1,
      ComparisonOperator: 'GreaterThanOrEqualToThreshold',
      TreatMissingData: 'notBreaching',
      Metrics: Match.arrayWith([
        Match.objectLike({ Expression: 'FILL(failed, 0) + FILL(pruneFailed, 0)' }),
        Match.objectLike({
          Id: 'failed',
          MetricStat: Match.objectLike({
            Metric: { Namespace: 'CdkStorageSnapshots', MetricName: 'BackupsFailed', Dimensions: [{ Name: 'Schedule', Value: s.scheduleName }] },
            Stat: 'Sum',
          }),
        }),
      ]),
    });
    const none = newStack();
    schedule(none);
    Template.fromStack(none).resourcePropertiesCountIs('AWS::CloudWatch::Alarm', { AlarmActions: Match.anyValue() }, 0);
  });

  test('one dead-letter alarm per stack: any message in the queue (a tick that failed after Lambda\'s retries), to every schedule\'s topic once', () => {
    const stack = newStack();
    const topic = new sns.Topic(stack, 'Topic');
    const other = new sns.Topic(stack, 'Other');
    const a = schedule(stack, { alarmTopic: topic }, 'A');
    const b = schedule(stack, { alarmTopic: topic, fileSystemIds: ['fs-0123456789abcdef1'] }, 'B');
    schedule(stack, { alarmTopic: other, fileSystemIds: ['fs-0123456789abcdef2'] }, 'C');
    schedule(stack, { fileSystemIds: ['fs-0123456789abcdef3'] }, 'D');
    expect(a.deadLetterAlarm).toBe(b.deadLetterAlarm);
    const template = Template.fromStack(stack);
    template.resourcePropertiesCountIs('AWS::CloudWatch::Alarm', { MetricName: 'ApproximateNumberOfMessagesVisible' }, 1);
    template.hasResourceProperties('AWS::CloudWatch::Alarm', {
      Namespace: 'AWS/SQS',
      MetricName: 'ApproximateNumberOfMessagesVisible',
      Dimensions: [{ Name: 'QueueName', Value: { 'Fn::GetAtt': [Match.stringLikeRegexp('DeadLetters'), 'QueueName'] } }],
      Statistic: 'Maximum',
      Threshold: 1,
      ComparisonOperator: 'GreaterThanOrEqualToThreshold',
      TreatMissingData: 'notBreaching',
      AlarmActions: [{ Ref: Match.stringLikeRegexp('^Topic') }, { Ref: Match.stringLikeRegexp('^Other') }],
    });
  });

  test('metric methods name the handler\'s metrics', () => {
    const s = schedule(newStack());
    expect(s.metricBackupsStarted().metricName).toBe('BackupsStarted');
    expect(s.metricBackupsFailed().metricName).toBe('BackupsFailed');
    expect(s.metricBackupsPruned({ period: Duration.hours(1) })).toMatchObject({ metricName: 'BackupsPruned', period: Duration.hours(1) });
    expect(s.metricPruneFailures().metricName).toBe('PruneFailures');
    expect(s.metricCopiedTagsDropped().dimensions).toEqual({ Schedule: s.scheduleName });
  });
});

describe('FsxBackupSchedule IAM', () => {
  function statements(stack: Stack): any[] {
    const policies = Template.fromStack(stack).findResources('AWS::IAM::Policy');
    return Object.values(policies).flatMap((p: any) => p.Properties.PolicyDocument.Statement);
  }
  const arn = (rest: string) => ({ 'Fn::Join': ['', ['arn:', { Ref: 'AWS::Partition' }, `:fsx:us-east-1:111111111111:${rest}`]] });

  test('CreateBackup on the targets and backups; tagging with the library\'s request tag; reads of the targets\' tags', () => {
    const stack = newStack();
    schedule(stack, { volumeIds: [VOL] });
    const all = statements(stack);
    expect(all).toContainEqual({ Action: 'fsx:CreateBackup', Effect: 'Allow', Resource: [arn(`file-system/${FS}`), arn(`volume/*/${VOL}`), arn('backup/*')] });
    expect(all).toContainEqual({
      Action: 'fsx:TagResource',
      Effect: 'Allow',
      Resource: arn('backup/*'),
      Condition: {
        StringEquals: {
          'aws:RequestTag/cdk-storage-snapshots:managed-by': 'cdk-storage-snapshots',
          'aws:RequestTag/cdk-storage-snapshots:stack-id': { Ref: 'AWS::StackId' },
        },
      },
    });
    expect(all).toContainEqual({ Action: 'fsx:ListTagsForResource', Effect: 'Allow', Resource: [arn(`file-system/${FS}`), arn(`volume/*/${VOL}`)] });
    expect(all).toContainEqual({ Action: ['fsx:DescribeBackups', 'fsx:DescribeFileSystems', 'fsx:DescribeVolumes'], Effect: 'Allow', Resource: '*' });
  });

  test('DeleteBackup only of backups tagged as this stack\'s: one statement however many schedules', () => {
    const stack = newStack();
    schedule(stack, {}, 'A');
    schedule(stack, {}, 'B');
    schedule(stack, { fileSystemIds: ['fs-0123456789abcdef1'] }, 'C');
    const deletes = statements(stack).filter((s) => s.Action === 'fsx:DeleteBackup');
    expect(deletes).toEqual([{
      Action: 'fsx:DeleteBackup',
      Effect: 'Allow',
      Resource: arn('backup/*'),
      Condition: {
        StringEquals: {
          'aws:ResourceTag/cdk-storage-snapshots:managed-by': 'cdk-storage-snapshots',
          'aws:ResourceTag/cdk-storage-snapshots:stack-id': { Ref: 'AWS::StackId' },
        },
      },
    }]);
    // No statement allows anything fsx on * but the describe calls.
    const wide = statements(stack).filter((s) => s.Resource === '*');
    expect(wide.flatMap((s) => [].concat(s.Action))).toEqual(['fsx:DescribeBackups', 'fsx:DescribeFileSystems', 'fsx:DescribeVolumes']);
  });

  test('the role may send to the dead-letter queue', () => {
    const stack = newStack();
    schedule(stack);
    expect(statements(stack)).toContainEqual(expect.objectContaining({ Action: expect.arrayContaining(['sqs:SendMessage']) }));
  });

  test('handler options apply, and must agree across schedules', () => {
    const stack = newStack();
    const role = new iam.Role(stack, 'Mine', { assumedBy: new iam.ServicePrincipal('lambda.amazonaws.com') });
    schedule(stack, { handlerOptions: { role, memorySize: 512 } }, 'A');
    Template.fromStack(stack).hasResourceProperties('AWS::Lambda::Function', { MemorySize: 512 });
    expect(() => schedule(stack, { handlerOptions: { memorySize: 1024 } }, 'B')).toThrow(/invalid handlerOptions.memorySize/);
  });
});

describe('FsxBackupSchedule targets from constructs', () => {
  function network(stack: Stack) {
    const vpc = new ec2.Vpc(stack, 'Vpc', { maxAzs: 1, natGateways: 0, subnetConfiguration: [{ name: 'i', subnetType: ec2.SubnetType.PRIVATE_ISOLATED }] });
    return { vpc, subnetIds: [vpc.isolatedSubnets[0].subnetId] };
  }

  test('L1 file system, L2 Lustre file system and L1 ONTAP volume: their ids in the input, their ARNs in IAM', () => {
    const stack = newStack();
    const { vpc, subnetIds } = network(stack);
    const zfs = new fsx.CfnFileSystem(stack, 'Zfs', { fileSystemType: 'OPENZFS', subnetIds, storageCapacity: 64 });
    const lustre = new fsx.LustreFileSystem(stack, 'Lustre', {
      vpc,
      vpcSubnet: vpc.isolatedSubnets[0],
      storageCapacityGiB: 1200,
      lustreConfiguration: { deploymentType: fsx.LustreDeploymentType.PERSISTENT_2, perUnitStorageThroughput: 125 },
    });
    const volume = new fsx.CfnVolume(stack, 'Volume', { name: 'vol1', volumeType: 'ONTAP', ontapConfiguration: { storageVirtualMachineId: 'svm-0123456789abcdef0' } });
    const targets = [BackupTarget.cfnFileSystem(zfs), BackupTarget.fileSystem(lustre), BackupTarget.ontapVolume(volume)];
    schedule(stack, { fileSystemIds: undefined, targets });
    const template = Template.fromStack(stack);
    const text = JSON.stringify(template.findResources('AWS::Events::Rule'));
    const zfsRef = { Ref: stack.getLogicalId(zfs) };
    const lustreRef = { Ref: stack.getLogicalId(lustre.node.defaultChild as fsx.CfnFileSystem) };
    const volumeId = { 'Fn::GetAtt': [stack.getLogicalId(volume), 'VolumeId'] };
    expect(text).toContain(JSON.stringify(zfsRef).slice(1, -1));
    expect(text).toContain(JSON.stringify(lustreRef).slice(1, -1));
    expect(text).toContain(JSON.stringify(volumeId).slice(1, -1));
    // The same ids in IAM: the file systems' and the volume's ARNs, for CreateBackup and ListTagsForResource.
    const ref = (prefix: string, id: object | string) => ({
      'Fn::Join': ['', ['arn:', { Ref: 'AWS::Partition' }, `:fsx:us-east-1:111111111111:${prefix}`, ...(id ? [id] : [])]],
    });
    const targetArns = [ref('file-system/', zfsRef), ref('file-system/', lustreRef), ref('volume/*/', volumeId)];
    const all = Object.values(template.findResources('AWS::IAM::Policy')).flatMap((p: any) => p.Properties.PolicyDocument.Statement);
    expect(all).toContainEqual({ Action: 'fsx:CreateBackup', Effect: 'Allow', Resource: [...targetArns, ref('backup/*', '')] });
    expect(all).toContainEqual({ Action: 'fsx:ListTagsForResource', Effect: 'Allow', Resource: targetArns });
  });

  test.each([
    ['an ONTAP file system', () => BackupTarget.cfnFileSystem(new fsx.CfnFileSystem(new Stack(), 'F', { fileSystemType: 'ONTAP', subnetIds: ['s'] })),
      /is an ONTAP file system: FSx backs up ONTAP volumes/],
    ['an OpenZFS volume', () => BackupTarget.ontapVolume(new fsx.CfnVolume(new Stack(), 'V', { name: 'v', volumeType: 'OPENZFS' })),
      /is an OPENZFS volume: FSx backs up OpenZFS file systems, not their volumes/],
    ['a scratch Lustre file system', () => BackupTarget.cfnFileSystem(new fsx.CfnFileSystem(new Stack(), 'F', {
      fileSystemType: 'LUSTRE', subnetIds: ['s'], lustreConfiguration: { deploymentType: 'SCRATCH_2' },
    })), /SCRATCH_2 Lustre file system: FSx backs up persistent Lustre file systems only/],
    ['a Lustre file system without a deployment type (SCRATCH_1)', () => BackupTarget.cfnFileSystem(new fsx.CfnFileSystem(new Stack(), 'F', {
      fileSystemType: 'LUSTRE', subnetIds: ['s'], lustreConfiguration: { perUnitStorageThroughput: 125 },
    })), /without lustreConfiguration.deploymentType, which defaults to SCRATCH_1/],
    ['a Lustre file system without lustreConfiguration', () => BackupTarget.cfnFileSystem(new fsx.CfnFileSystem(new Stack(), 'F', {
      fileSystemType: 'LUSTRE', subnetIds: ['s'],
    })), /defaults to SCRATCH_1: FSx backs up persistent Lustre file systems only/],
    ['a Lustre file system linked to S3', () => BackupTarget.cfnFileSystem(new fsx.CfnFileSystem(new Stack(), 'F', {
      fileSystemType: 'LUSTRE', subnetIds: ['s'], lustreConfiguration: { deploymentType: 'PERSISTENT_1', importPath: 's3://bucket' },
    })), /linked to a data repository/],
  ])('%s is refused at synth', (_name, target, message) => {
    expect(() => schedule(newStack(), { fileSystemIds: undefined, targets: [target()] })).toThrow(message);
  });
});

describe('FsxBackupSchedule validation', () => {
  test.each([
    [{ fileSystemIds: [] }, /invalid fileSystemIds: give at least one file system or volume/],
    [{ fileSystemIds: ['fs-123'] }, /invalid fileSystemIds: fileSystemId must be "fs-" followed by 8 to 18 lowercase hex digits \(received "fs-123"\)/],
    [{ fileSystemIds: ['fs-0123456789abcdef0123'] }, /invalid fileSystemIds/],
    [{ fileSystemIds: ['fs-0123456789ABCDEF0'] }, /invalid fileSystemIds/],
    [{ fileSystemIds: undefined, volumeIds: ['fsvol-123'] }, /invalid volumeIds: volumeId must be "fsvol-" followed by 17/],
    [{ fileSystemIds: [FS, FS] }, /invalid fileSystemIds: fs-0123456789abcdef0 is given twice/],
    [{ targets: [BackupTarget.fileSystemId(FS)] }, /invalid targets: fs-0123456789abcdef0 is given twice/],
    [{ retention: { keepLast: 0 } }, /invalid retention.keepLast: must be a whole number of at least 1 .*\(received 0\)/],
    [{ retention: { keepLast: 2.5 } }, /invalid retention.keepLast/],
    [{ retention: { maxAge: Duration.hours(12) } }, /invalid retention.maxAge: must be at least 1 day, not 12 hours/],
    [{ retention: {} }, /invalid retention: give keepLast, maxAge or both/],
    [{ tags: Object.fromEntries(Array.from({ length: 46 }, (_, i) => [`k${i}`, 'v'])) }, /invalid tags: at most 44 tags are allowed/],
    [{ tags: { 'aws:x': 'y' } }, /invalid tags: tag keys must not start with the reserved prefix/],
    [{ tags: { 'cost#center': '42' } }, /invalid tags: tag keys may contain only letters, numbers, spaces and _ . : \/ = \+ - @ \(received "cost#center"\)/],
    [{ tags: { team: 'a,b' } }, /invalid tags: tag values may contain only letters.*\(tag "team"\) \(received "a,b"\)/],
  ] as Array<[Partial<FsxBackupScheduleProps>, RegExp]>)('%j is refused', (props, message) => {
    expect(() => schedule(newStack(), props)).toThrow(message);
  });

  test.each([
    events.Schedule.rate(Duration.minutes(30)),
    events.Schedule.rate(Duration.minutes(59)),
    events.Schedule.cron({ hour: '2' }),
    events.Schedule.cron({ minute: '0,30' }),
    events.Schedule.cron({ minute: '0/15' }),
    events.Schedule.cron({ minute: '0-5', hour: '1' }),
    events.Schedule.expression('cron(* * * * ? *)'),
  ])('a schedule more frequent than hourly is refused: %j', (s) => {
    expect(() => schedule(newStack(), { schedule: s })).toThrow(/Stack\/Nightly: invalid schedule: must fire at most once an hour/);
  });

  test.each([
    events.Schedule.rate(Duration.hours(1)),
    events.Schedule.rate(Duration.minutes(90)),
    events.Schedule.rate(Duration.days(1)),
    events.Schedule.cron({ minute: '15', hour: '*' }),
    events.Schedule.cron({ minute: '0', hour: '6-18', weekDay: 'MON-FRI' }),
  ])('hourly or rarer is accepted: %j', (s) => {
    expect(() => schedule(newStack(), { schedule: s })).not.toThrow();
  });

  test('at(...) is refused: EventBridge rules take only rate and cron', () => {
    expect(() => schedule(newStack(), { schedule: events.Schedule.expression('at(2026-12-01T02:00:00)') }))
      .toThrow(/invalid schedule: EventBridge rules take only rate\(\.\.\.\) and cron\(\.\.\.\) expressions; for at\(\.\.\.\) give `scheduler` \(EventBridge Scheduler\) \(received "at\(2026-12-01T02:00:00\)"\)/);
  });

  test('an expression EventBridge would not understand is refused', () => {
    expect(() => schedule(newStack(), { schedule: events.Schedule.expression('every day') })).toThrow(/invalid schedule: is not a rate/);
  });

  test('an input larger than EventBridge allows is refused at synth with the way out', () => {
    const stack = newStack();
    const ids = Array.from({ length: 250 }, (_, i) => `fs-${i.toString(16).padStart(17, '0')}`);
    schedule(stack, { fileSystemIds: ids });
    expect(() => Template.fromStack(stack)).toThrow(/invalid targets: .*more than the 8192 EventBridge allows.*split the targets/);
  });

  test('the input size counts the tags Tags.of() adds', () => {
    const stack = newStack();
    // About 5 KB of targets: fits alone.
    const ids = Array.from({ length: 120 }, (_, i) => `fs-${i.toString(16).padStart(17, '0')}`);
    schedule(stack, { fileSystemIds: ids });
    expect(() => Template.fromStack(stack)).not.toThrow();
    const tagged = newStack();
    schedule(tagged, { fileSystemIds: ids });
    for (let i = 0; i < 20; i++) Tags.of(tagged).add(`k${i}`, 'v'.repeat(250));
    expect(() => Template.fromStack(tagged)).toThrow(/invalid targets: the schedule's input \(its targets and tags\) takes about \d+ characters/);
  });

  test('tokens are accepted unchecked', () => {
    const stack = newStack();
    const volume = new fsx.CfnVolume(stack, 'V', { name: 'v', volumeType: 'ONTAP' });
    expect(() => schedule(stack, { fileSystemIds: undefined, volumeIds: [volume.attrVolumeId] })).not.toThrow();
  });
});

describe('FsxBackupSchedule cdk-nag', () => {
  test('no unsuppressed AwsSolutions finding, with a created queue and with an alarm topic', () => {
    const stack = newStack();
    const topic = new sns.Topic(stack, 'Topic', { enforceSSL: true });
    schedule(stack, { volumeIds: [VOL], retention: { keepLast: 3 }, alarmTopic: topic }, 'A');
    schedule(stack, {}, 'B');
    Aspects.of(stack).add(new AwsSolutionsChecks());
    const annotations = Annotations.fromStack(stack);
    const found = [...annotations.findError('*', Match.anyValue()), ...annotations.findWarning('*', Match.anyValue())]
      .map((a) => `${a.id}: ${String(a.entry.data).split(':')[0]}`)
      // The topic is the test's (unencrypted): only the library's resources are judged.
      .filter((f) => !f.startsWith('/Stack/Topic'));
    expect(found).toEqual([]);
  });
});

describe('FsxBackupSchedule tags', () => {
  test('Tags.of() on the schedule or a scope above reaches the backups (through the rule input)', () => {
    const stack = newStack();
    const s = schedule(stack, { tags: { team: 'data' } });
    Tags.of(stack).add('env', 'prod');
    Tags.of(s).add('app', 'orders');
    const input = renderedInput(stack, ruleId(stack));
    expect(input.Tags).toEqual({ app: 'orders', env: 'prod', team: 'data' });
  });

  test('no tags at all: no Tags in the input', () => {
    const stack = newStack();
    schedule(stack);
    expect(renderedInput(stack, ruleId(stack)).Tags).toBeUndefined();
  });

  test('tags from Tags.of() with characters FSx refuses are refused at synth', () => {
    const stack = newStack();
    schedule(stack);
    Tags.of(stack).add('owner', 'ops&dev');
    expect(() => Template.fromStack(stack)).toThrow(/invalid tags \(with those added by Tags.of\): tag values may contain only letters/);
    const fine = newStack();
    schedule(fine);
    Tags.of(fine).add('owner', 'Zoë @ ops/dev: a=b+c_d.e-f');
    expect(() => Template.fromStack(fine)).not.toThrow();
  });

  test('too many tags with those of Tags.of() are refused at synth', () => {
    const stack = newStack();
    const s = schedule(stack, { tags: Object.fromEntries(Array.from({ length: 44 }, (_, i) => [`k${i}`, 'v'])) });
    Tags.of(s).add('one', 'more');
    expect(() => Template.fromStack(stack)).toThrow(/invalid tags \(with those added by Tags.of\): at most 44 tags/);
  });
});
