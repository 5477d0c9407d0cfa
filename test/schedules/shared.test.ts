import { App, Duration, Stack, TimeZone } from 'aws-cdk-lib';
import { Template } from 'aws-cdk-lib/assertions';
import * as events from 'aws-cdk-lib/aws-events';
import * as iam from 'aws-cdk-lib/aws-iam';
import * as scheduler from 'aws-cdk-lib/aws-scheduler';
import * as sns from 'aws-cdk-lib/aws-sns';
import * as sqs from 'aws-cdk-lib/aws-sqs';
import { FsxBackupSchedule, HandlerOptions, OpenZfsSnapshotSchedule, OpenZfsSnapshotScheduleProps, ScheduledCopyProps } from '../../src';
import { IAM_LIMITS, policySize, rolePolicies } from '../fixtures/iam-policies';
import { STACK_ARN, logicalIdsOf, resourceCounts, schedulerInput } from '../fixtures/schedule-template';

/*
 * What the stack's schedules share, whichever construct and engine: FsxBackupSchedule and
 * OpenZfsSnapshotSchedule on an EventBridge rule or on EventBridge Scheduler.
 */

type Kind = 'FsxBackupSchedule' | 'OpenZfsSnapshotSchedule';
type Engine = 'rule' | 'Scheduler';
type Scheduled = FsxBackupSchedule | OpenZfsSnapshotSchedule;
/** The props both constructs take alike. */
type CommonProps = ScheduledCopyProps & Pick<OpenZfsSnapshotScheduleProps, 'retention' | 'tags' | 'volumeIds'>;

const KINDS: Kind[] = ['FsxBackupSchedule', 'OpenZfsSnapshotSchedule'];
const ENGINES: Engine[] = ['rule', 'Scheduler'];
/** Every construct on every engine. */
const COMBINATIONS: Array<[Kind, Engine]> = KINDS.flatMap((k) => ENGINES.map((e): [Kind, Engine] => [k, e]));

const HANDLER_ROLE = 'CdkStorageSnapshotsScheduleHandlersRole';
const SCHEDULER_ROLE = 'CdkStorageSnapshotsScheduleHandlersSchedulerRole';
const hex = (i: number) => i.toString(16).padStart(17, '0');

function newStack(app = new App(), id = 'Stack'): Stack {
  return new Stack(app, id, { env: { account: '111111111111', region: 'us-east-1' } });
}

/** The engine's props for `expression` (hourly by default: the most often both constructs allow). */
function when(engine: Engine, expression = 'cron(0 * * * ? *)'): ScheduledCopyProps {
  return engine === 'rule'
    ? { schedule: events.Schedule.expression(expression) }
    : { scheduler: { expression: scheduler.ScheduleExpression.expression(expression, TimeZone.EUROPE_BERLIN) } };
}

/** The i-th schedule of `kind` on `engine`, of a file system or volume of its own. */
function add(stack: Stack, kind: Kind, engine: Engine, i: number, props: CommonProps = {}): Scheduled {
  const id = `${kind}${engine}${i}`;
  return kind === 'FsxBackupSchedule'
    ? new FsxBackupSchedule(stack, id, { ...when(engine), fileSystemIds: [`fs-${hex(i)}`], ...props })
    : new OpenZfsSnapshotSchedule(stack, id, { ...when(engine), volumeIds: [`fsvol-${hex(i)}`], ...props });
}

/** One schedule of each combination (so that every shared part exists). */
function everyCombination(stack: Stack): void {
  COMBINATIONS.forEach(([kind, engine], i) => add(stack, kind, engine, i));
}

/** The resources, by type, that `change` adds to a stack built by `build` (each synthesized in a stack of its own). */
function added(build: (stack: Stack) => void, change: (stack: Stack) => void): Record<string, number> {
  const before = newStack();
  build(before);
  const after = newStack();
  build(after);
  change(after);
  const [was, is] = [resourceCounts(before).byType, resourceCounts(after).byType];
  return Object.fromEntries(Object.entries(is).filter(([t, n]) => n !== (was[t] ?? 0)).map(([t, n]) => [t, n - (was[t] ?? 0)]));
}

/** What one schedule on `engine` is made of. */
const PER_SCHEDULE: Record<Engine, Record<string, number>> = {
  rule: { 'AWS::Events::Rule': 1, 'AWS::CloudWatch::Alarm': 1 },
  Scheduler: { 'AWS::Scheduler::Schedule': 1, 'AWS::CloudWatch::Alarm': 1 },
};

describe('one set of scheduled handlers per stack, whichever construct and engine', () => {
  test('one function, one dead-letter queue and its one alarm, one Scheduler role and one schedule group', () => {
    // GIVEN / WHEN
    const stack = newStack();
    const topic = new sns.Topic(stack, 'Topic');
    const all = COMBINATIONS.map(([kind, engine], i) => add(stack, kind, engine, i, { alarmTopic: topic }));
    // THEN
    expect(resourceCounts(stack).byType).toMatchObject({
      'AWS::Lambda::Function': 1,
      'AWS::Lambda::EventInvokeConfig': 1,
      'AWS::SQS::Queue': 1,
      'AWS::Scheduler::ScheduleGroup': 1,
      'AWS::Lambda::Permission': 1,
      'AWS::Events::Rule': 2,
      'AWS::Scheduler::Schedule': 2,
      // The function's role and Scheduler's, each with one inline policy.
      'AWS::IAM::Role': 2,
      'AWS::IAM::Policy': 2,
      // A failure alarm per schedule, one dead-letter alarm.
      'AWS::CloudWatch::Alarm': 5,
    });
    const template = Template.fromStack(stack);
    template.resourcePropertiesCountIs('AWS::CloudWatch::Alarm', { MetricName: 'ApproximateNumberOfMessagesVisible' }, 1);
    for (const s of all) {
      expect(s.deadLetterQueue).toBe(all[0].deadLetterQueue);
      expect(s.deadLetterAlarm).toBe(all[0].deadLetterAlarm);
    }
    // Every rule and Scheduler schedule targets the one function; the schedules run with one role in one group.
    const [fn] = logicalIdsOf(template, 'AWS::Lambda::Function');
    const rules = Object.values<any>(template.findResources('AWS::Events::Rule'));
    const schedules = Object.values<any>(template.findResources('AWS::Scheduler::Schedule'));
    expect(rules.map((r) => r.Properties.Targets[0].Arn)).toEqual([{ 'Fn::GetAtt': [fn, 'Arn'] }, { 'Fn::GetAtt': [fn, 'Arn'] }]);
    expect(schedules.map((s) => s.Properties.Target.Arn)).toEqual([{ 'Fn::GetAtt': [fn, 'Arn'] }, { 'Fn::GetAtt': [fn, 'Arn'] }]);
    expect(new Set(schedules.map((s) => JSON.stringify(s.Properties.Target.RoleArn))).size).toBe(1);
    expect(new Set(schedules.map((s) => s.Properties.GroupName)).size).toBe(1);
  });

  test('the function\'s role grants what both constructs need, and cdk-nag reads the reasons of both', () => {
    const stack = newStack();
    everyCombination(stack);
    const [[, policy]] = rolePolicies(Template.fromStack(stack), HANDLER_ROLE);
    const actions = policy.Properties.PolicyDocument.Statement.flatMap((s: any) => [s.Action].flat());
    expect(actions).toEqual(expect.arrayContaining(['fsx:CreateBackup', 'fsx:DeleteBackup', 'fsx:CreateSnapshot', 'fsx:DeleteSnapshot']));
    const reasons = JSON.stringify(policy.Metadata.cdk_nag.rules_to_suppress);
    expect(reasons).toMatch(/FSx backup ARNs do not name their file system/);
    expect(reasons).toMatch(/snapshot\/<volume id>\/\* is the snapshots of that one volume/);
  });

  test('the rules\' Lambda permission and queue statement exist only with a rule; the group and Scheduler role only with a Scheduler schedule', () => {
    const fromRules = (template: Template) => Object.values<any>(template.findResources('AWS::SQS::QueuePolicy'))
      .flatMap((p) => p.Properties.PolicyDocument.Statement).filter((s: any) => s.Principal?.Service === 'events.amazonaws.com');
    const onScheduler = newStack();
    KINDS.forEach((kind, i) => add(onScheduler, kind, 'Scheduler', i));
    const s = Template.fromStack(onScheduler);
    s.resourceCountIs('AWS::Lambda::Permission', 0);
    expect(fromRules(s)).toEqual([]);
    s.resourceCountIs('AWS::Scheduler::ScheduleGroup', 1);
    expect(logicalIdsOf(s, 'AWS::IAM::Role')).toContainEqual(expect.stringMatching(`^${SCHEDULER_ROLE}`));

    const onRules = newStack();
    KINDS.forEach((kind, i) => add(onRules, kind, 'rule', i));
    const r = Template.fromStack(onRules);
    r.resourceCountIs('AWS::Lambda::Permission', 1);
    expect(fromRules(r)).toHaveLength(1);
    r.resourceCountIs('AWS::Scheduler::ScheduleGroup', 0);
    expect(logicalIdsOf(r, 'AWS::IAM::Role')).toEqual([expect.stringMatching(`^${HANDLER_ROLE}`)]);
  });

  test('each stack of an app has its own group and Scheduler role', () => {
    const app = new App();
    const [a, b] = [newStack(app, 'A'), newStack(app, 'B')];
    add(a, 'OpenZfsSnapshotSchedule', 'Scheduler', 0);
    add(b, 'OpenZfsSnapshotSchedule', 'Scheduler', 0);
    const group = (stack: Stack) => Object.values<any>(Template.fromStack(stack).findResources('AWS::Scheduler::ScheduleGroup'))[0].Properties.Name;
    expect(group(a)).not.toBe(group(b));
  });

  test('handlerOptions.permissionsBoundary applies to the Scheduler role too', () => {
    const stack = newStack();
    const boundary = new iam.ManagedPolicy(stack, 'Boundary', { statements: [new iam.PolicyStatement({ actions: ['*'], resources: ['*'] })] });
    add(stack, 'FsxBackupSchedule', 'Scheduler', 0, { handlerOptions: { permissionsBoundary: boundary } });
    add(stack, 'OpenZfsSnapshotSchedule', 'Scheduler', 1);
    const roles = Object.values<any>(Template.fromStack(stack).findResources('AWS::IAM::Role'));
    const ref = { Ref: stack.getLogicalId(boundary.node.defaultChild as iam.CfnManagedPolicy) };
    // The function's role and Scheduler's.
    expect(roles.map((r) => r.Properties.PermissionsBoundary)).toEqual([ref, ref]);
  });
});

describe('resources per schedule', () => {
  /** What every stack with schedules has, whichever engine. */
  const SHARED = {
    'AWS::Lambda::Function': 1,
    'AWS::Lambda::EventInvokeConfig': 1,
    'AWS::IAM::Role': 1,
    'AWS::IAM::Policy': 1,
    'AWS::Logs::LogGroup': 1,
    'AWS::SQS::Queue': 1,
    'AWS::SQS::QueuePolicy': 1,
  };
  /** What the first schedule on an engine adds besides its own resources: the rules' grant, or Scheduler's group and role. */
  const FIRST_ON: Record<Engine, Record<string, number>> = {
    rule: { 'AWS::Lambda::Permission': 1 },
    Scheduler: { 'AWS::Scheduler::ScheduleGroup': 1, 'AWS::IAM::Role': 1, 'AWS::IAM::Policy': 1 },
  };

  test.each(COMBINATIONS)('the first %s on a %s pays the fixed resources once', (kind, engine) => {
    const stack = newStack();
    add(stack, kind, engine, 0);
    const { total, byType } = resourceCounts(stack);
    // The shared parts and the dead-letter alarm (9 on a rule, 11 on Scheduler), and the schedule's 2.
    const expected: Record<string, number> = { ...SHARED, ...PER_SCHEDULE[engine], 'AWS::CloudWatch::Alarm': 2 };
    for (const [type, n] of Object.entries(FIRST_ON[engine])) expected[type] = (expected[type] ?? 0) + n;
    expect(byType).toEqual(expected);
    expect(total).toBe((engine === 'rule' ? 9 : 11) + 2);
  });

  test.each(COMBINATIONS)('the N-th %s on a %s adds its schedule and its alarm, nothing else', (kind, engine) => {
    // In a stack of its own construct and engine: from 1 to 2, and from 3 to 4 schedules.
    for (const n of [1, 3]) {
      const some = (stack: Stack) => Array.from({ length: n }, (_, i) => add(stack, kind, engine, i));
      expect(added(some, (stack) => add(stack, kind, engine, n))).toEqual(PER_SCHEDULE[engine]);
    }
    // In a stack that has every construct on every engine already.
    expect(added(everyCombination, (stack) => add(stack, kind, engine, 100))).toEqual(PER_SCHEDULE[engine]);
  });

  test.each([['rule', 'Scheduler'], ['Scheduler', 'rule']] as Array<[Engine, Engine]>)(
    'after schedules on a %s, the first on %s adds that engine\'s shared parts once, the next ones only theirs', (first, second) => {
      const existing = (stack: Stack) => KINDS.forEach((kind, i) => add(stack, kind, first, i));
      const one = (stack: Stack) => add(stack, 'OpenZfsSnapshotSchedule', second, 2);
      const expected: Record<string, number> = { ...PER_SCHEDULE[second] };
      for (const [type, n] of Object.entries(FIRST_ON[second])) expected[type] = (expected[type] ?? 0) + n;
      expect(added(existing, one)).toEqual(expected);
      expect(added((stack) => { existing(stack); one(stack); }, (stack) => add(stack, 'FsxBackupSchedule', second, 3))).toEqual(PER_SCHEDULE[second]);
    });

  test('200 schedules of both constructs on both engines fit one stack, with room in every IAM policy', () => {
    const stack = newStack();
    for (let i = 0; i < 200; i++) {
      const [kind, engine] = COMBINATIONS[i % COMBINATIONS.length];
      add(stack, kind, engine, i, { retention: { keepLast: 3 } });
    }
    const { total, byType } = resourceCounts(stack);
    // 12 fixed (9 shared, the rules' permission, Scheduler's group and role with its policy) and 2 per schedule.
    expect(total).toBe(12 + 2 * 200);
    expect(total).toBeLessThan(500);
    expect(byType['AWS::IAM::ManagedPolicy']).toBeUndefined();

    const template = Template.fromStack(stack);
    const handlerPolicies = rolePolicies(template, HANDLER_ROLE);
    expect(handlerPolicies).toHaveLength(1);
    // Past 10 ARNs a statement grants resource-type patterns: about 2.4 KB, whatever N.
    expect(policySize(handlerPolicies[0][1].Properties.PolicyDocument)).toBeLessThan(IAM_LIMITS.inlinePerRole / 2);
    const schedulerPolicies = rolePolicies(template, SCHEDULER_ROLE);
    expect(schedulerPolicies).toHaveLength(1);
    expect(policySize(schedulerPolicies[0][1].Properties.PolicyDocument)).toBeLessThan(1_000);
    for (const role of Object.values<any>(template.findResources('AWS::IAM::Role'))) {
      expect(policySize(role.Properties.AssumeRolePolicyDocument)).toBeLessThan(IAM_LIMITS.trustPolicy / 4);
    }
    // The dead-letter queue's policy: the TLS statement and the one for every rule.
    const [queuePolicy] = Object.values<any>(template.findResources('AWS::SQS::QueuePolicy'));
    expect(queuePolicy.Properties.PolicyDocument.Statement).toHaveLength(2);
  });

  test('below the pattern threshold too, the function\'s role keeps one inline policy under IAM\'s limit', () => {
    // Exact ARNs grow the statements until one passes 10 ARNs (measured peak: about 5.5 KB at 5
    // schedules of two targets each, both constructs on both engines).
    for (let n = 1; n <= 12; n++) {
      const stack = newStack();
      for (let i = 0; i < n; i++) {
        const [kind, engine] = COMBINATIONS[i % COMBINATIONS.length];
        if (kind === 'FsxBackupSchedule') add(stack, kind, engine, i, { volumeIds: [`fsvol-${hex(i + 500)}`] });
        else add(stack, kind, engine, i, { volumeIds: [`fsvol-${hex(i)}`, `fsvol-${hex(i + 500)}`] });
      }
      const policies = rolePolicies(Template.fromStack(stack), HANDLER_ROLE);
      expect(policies.map(([id]) => id)).toEqual([expect.stringMatching(/DefaultPolicy/)]);
      expect(policySize(policies[0][1].Properties.PolicyDocument)).toBeLessThan(IAM_LIMITS.inlinePerRole);
    }
  });
});

describe('shared settings must agree between the constructs', () => {
  test.each([
    ['FsxBackupSchedule', 'OpenZfsSnapshotSchedule'],
    ['OpenZfsSnapshotSchedule', 'FsxBackupSchedule'],
  ] as Array<[Kind, Kind]>)('a queue on the first schedule (%s), another on a later %s: refused', (first, second) => {
    const stack = newStack();
    const queue = new sqs.Queue(stack, 'Mine');
    add(stack, first, 'rule', 0, { deadLetterQueue: queue });
    // The same queue, or none, is fine.
    expect(add(stack, second, 'Scheduler', 1, { deadLetterQueue: queue }).deadLetterQueue).toBe(queue);
    expect(add(stack, second, 'rule', 2).deadLetterQueue).toBe(queue);
    expect(() => add(stack, second, 'Scheduler', 3, { deadLetterQueue: new sqs.Queue(stack, 'Other') })).toThrow(new RegExp(
      `Stack/${second}Scheduler3: invalid deadLetterQueue: the stack's schedules share one function and so one dead-letter queue, ` +
      `and Stack/${first}rule0 already gave another queue; give the same queue to every schedule of the stack, or to the first one only`));
  });

  test('a queue given after the stack\'s queue was created is refused', () => {
    const stack = newStack();
    add(stack, 'OpenZfsSnapshotSchedule', 'Scheduler', 0);
    expect(() => add(stack, 'FsxBackupSchedule', 'rule', 1, { deadLetterQueue: new sqs.Queue(stack, 'Late') }))
      .toThrow(/Stack\/FsxBackupSchedulerule1: invalid deadLetterQueue: .*Stack\/OpenZfsSnapshotScheduleScheduler0 already created one/);
  });

  test.each([
    ['FsxBackupSchedule', 'OpenZfsSnapshotSchedule'],
    ['OpenZfsSnapshotSchedule', 'FsxBackupSchedule'],
  ] as Array<[Kind, Kind]>)('handlerOptions on the first schedule (%s), others on a later %s: refused with who shares them', (first, second) => {
    const stack = newStack();
    const options: HandlerOptions = { memorySize: 512 };
    add(stack, first, 'Scheduler', 0, { handlerOptions: options });
    expect(() => add(stack, second, 'rule', 1, { handlerOptions: { memorySize: 512 } })).not.toThrow();
    expect(() => add(stack, second, 'Scheduler', 2)).not.toThrow();
    expect(() => add(stack, second, 'rule', 3, { handlerOptions: { memorySize: 1024 } })).toThrow(new RegExp(
      `Stack/${second}rule3: invalid handlerOptions.memorySize: the handlers are shared by every FsxBackupSchedule and ` +
      `OpenZfsSnapshotSchedule in the stack, and Stack/${first}Scheduler0 already set them differently`));
    Template.fromStack(stack).hasResourceProperties('AWS::Lambda::Function', { MemorySize: 512 });
  });
});

describe('FsxBackupSchedule on Scheduler', () => {
  test('renders Operation FsxBackup and Scheduler\'s context attributes, in the stack\'s group with the shared role', () => {
    const stack = newStack();
    const s = new FsxBackupSchedule(stack, 'Nightly', {
      scheduler: { expression: scheduler.ScheduleExpression.cron({ hour: '2', minute: '30', timeZone: TimeZone.EUROPE_BERLIN }) },
      fileSystemIds: ['fs-0123456789abcdef0'],
      volumeIds: ['fsvol-0123456789abcdef0'],
      retention: { keepLast: 14, maxAge: Duration.days(30) },
      tags: { team: 'data' },
    });
    add(stack, 'OpenZfsSnapshotSchedule', 'Scheduler', 1);
    const template = Template.fromStack(stack);
    const logicalId = stack.getLogicalId(s.schedulerSchedule!.node.defaultChild as scheduler.CfnSchedule);
    expect(schedulerInput(template, logicalId)).toEqual({
      Operation: 'FsxBackup',
      Time: '<aws.scheduler.scheduled-time>',
      EventId: '<aws.scheduler.execution-id>',
      StackId: STACK_ARN,
      Schedule: s.scheduleName,
      Targets: [{ Kind: 'file-system', Id: 'fs-0123456789abcdef0' }, { Kind: 'volume', Id: 'fsvol-0123456789abcdef0' }],
      Tags: { team: 'data' },
      KeepLast: 14,
      MaxAgeSeconds: 30 * 86_400,
    });
    const schedules = Object.values<any>(template.findResources('AWS::Scheduler::Schedule'));
    expect(schedules[0].Properties).toMatchObject({
      ScheduleExpression: 'cron(30 2 * * ? *)',
      ScheduleExpressionTimezone: 'Europe/Berlin',
      Description: 'cdk-storage-snapshots: scheduled FSx backups (Stack/Nightly)',
      Target: { RetryPolicy: { MaximumEventAgeInSeconds: 3600, MaximumRetryAttempts: 185 } },
    });
    expect(schedules[0].Properties.Target.RoleArn).toEqual(schedules[1].Properties.Target.RoleArn);
    expect(schedules[0].Properties.GroupName).toEqual(schedules[1].Properties.GroupName);
    expect(s.rule).toBeUndefined();
  });
});

describe('cadence and expressions per construct and engine', () => {
  test.each(ENGINES)('FsxBackupSchedule on a %s is refused more often than hourly; OpenZfsSnapshotSchedule takes every 15 minutes', (engine) => {
    const prop = engine === 'rule' ? 'schedule' : 'scheduler\\.expression';
    expect(() => add(newStack(), 'FsxBackupSchedule', engine, 0, when(engine, 'rate(30 minutes)'))).toThrow(new RegExp(
      `invalid ${prop}: must fire at most once an hour \\(FSx backups take a while and each one is kept\\).*\\(received "rate\\(30 minutes\\)"\\)`));
    expect(() => add(newStack(), 'FsxBackupSchedule', engine, 0, when(engine, 'rate(1 hour)'))).not.toThrow();
    expect(() => add(newStack(), 'OpenZfsSnapshotSchedule', engine, 0, when(engine, 'rate(15 minutes)'))).not.toThrow();
    expect(() => add(newStack(), 'OpenZfsSnapshotSchedule', engine, 0, when(engine, 'rate(10 minutes)')))
      .toThrow(new RegExp(`invalid ${prop}: must fire at most once every 15 minutes`));
  });

  test.each(KINDS)('at(...) is accepted on Scheduler and refused on a rule (%s)', (kind) => {
    const at = 'at(2027-01-01T02:00:00)';
    const stack = newStack();
    add(stack, kind, 'Scheduler', 0, when('Scheduler', at));
    Template.fromStack(stack).hasResourceProperties('AWS::Scheduler::Schedule', { ScheduleExpression: at });
    expect(() => add(newStack(), kind, 'rule', 0, when('rule', at)))
      .toThrow(/invalid schedule: EventBridge rules take only rate\(\.\.\.\) and cron\(\.\.\.\) expressions; for at\(\.\.\.\) give `scheduler`/);
  });
});
