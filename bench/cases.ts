/*
 * What the template-scale benchmark builds: for each kind of copy, this library's construct and
 * what users would write instead. Adding a construct is adding one `ScaleCase` to `SCALE_CASES`.
 */
import { createHash } from 'crypto';
import { Duration, RemovalPolicy, Stack, TimeZone } from 'aws-cdk-lib';
import * as events from 'aws-cdk-lib/aws-events';
import * as targets from 'aws-cdk-lib/aws-events-targets';
import * as fsx from 'aws-cdk-lib/aws-fsx';
import * as iam from 'aws-cdk-lib/aws-iam';
import * as lambda from 'aws-cdk-lib/aws-lambda';
import * as scheduler from 'aws-cdk-lib/aws-scheduler';
import * as cr from 'aws-cdk-lib/custom-resources';
import { EbsSnapshotOnDeploy, EbsSnapshotSource, FsxBackupSchedule, OpenZfsSnapshot, OpenZfsSnapshotSchedule } from '../src';
import { ScaleCase } from './scale';
import { suppressNag } from '../src/private/nag';
import { StackHandlers } from '../src/private/stack-handlers';

/** A distinct id per instance: `<prefix>` and `i` in 17 hex digits (e.g. `fsvol-00000000000000003`). */
export function idOf(prefix: string, i: number): string {
  return `${prefix}${i.toString(16).padStart(17, '0')}`;
}

/** The "new copy per change" form: the logical id carries a hash of what should force a new copy. */
function changeHash(i: number): string {
  return createHash('sha256').update(`release-1/${i}`).digest('hex').slice(0, 8).toUpperCase();
}

/** AwsCustomResource as its README shows it: one SDK call on create, `fromSdkCalls` with any resource. */
function awsCustomResource(stack: Stack, id: string, service: string, action: string, parameters: Record<string, unknown>, idPath: string) {
  new cr.AwsCustomResource(stack, id, {
    onCreate: { service, action, parameters, physicalResourceId: cr.PhysicalResourceId.fromResponse(idPath) },
    policy: cr.AwsCustomResourcePolicy.fromSdkCalls({ resources: cr.AwsCustomResourcePolicy.ANY_RESOURCE }),
    installLatestAwsSdk: false,
  });
}

export const FAMILY = {
  openZfs: 'FSx for OpenZFS snapshot',
  ebs: 'EBS snapshot',
  fsxBackup: 'FSx backup',
  openZfsScheduled: 'Scheduled FSx for OpenZFS snapshots',
} as const;

/** 02:30 in Berlin, on EventBridge Scheduler. */
const BERLIN_NIGHTLY = scheduler.ScheduleExpression.cron({ hour: '2', minute: '30', timeZone: TimeZone.EUROPE_BERLIN });

const openZfs: ScaleCase = {
  name: 'OpenZfsSnapshot',
  family: FAMILY.openZfs,
  kind: 'library',
  add: (stack, i) => new OpenZfsSnapshot(stack, `Snap${i}`, { volumeId: idOf('fsvol-', i) }),
};

/**
 * `StackHandlers.allow()` as it was before this benchmark (commit 3e752e4): every ARN added to the
 * shared statement, however many. Kept here only to measure where that overflowed.
 */
function perArnAllow(this: any, actions: string[], resources: string[], conditions?: Record<string, Record<string, unknown>>): void {
  let statements: Map<string, iam.PolicyStatement> | undefined = perArnStatements.get(this);
  if (!statements) perArnStatements.set(this, (statements = new Map()));
  const key = JSON.stringify([actions, conditions ?? {}]);
  let statement = statements.get(key);
  if (!statement) {
    statement = new iam.PolicyStatement({ actions, conditions });
    statements.set(key, statement);
    this.role.addToPrincipalPolicy(statement);
    suppressNag(this.role, this.wildcardReasons);
  }
  const known = new Set(statement.resources);
  const fresh = resources.filter((r) => !known.has(r));
  if (fresh.length > 0) statement.addResources(...fresh);
}
const perArnStatements = new WeakMap<object, Map<string, iam.PolicyStatement>>();

/** Runs `build` with the per-ARN `allow()` (see above). */
function withPerArnIam<T>(build: () => T): T {
  const current = StackHandlers.prototype.allow;
  StackHandlers.prototype.allow = perArnAllow;
  try {
    return build();
  } finally {
    StackHandlers.prototype.allow = current;
  }
}

const openZfsPerArn: ScaleCase = {
  ...openZfs,
  name: 'OpenZfsSnapshot, per-ARN IAM',
  note: 'OpenZfsSnapshot with every ARN granted exactly however many there are: `allow()` before this benchmark.',
  around: withPerArnIam,
};

const openZfsAwsCustomResource: ScaleCase = {
  name: 'AwsCustomResource',
  family: FAMILY.openZfs,
  kind: 'baseline',
  note: 'AwsCustomResource calling FSx CreateSnapshot on create: no wait for AVAILABLE, no delete, no client token, `fsx:CreateSnapshot` on `*`.',
  add: (stack, i) => awsCustomResource(stack, `Snap${i}`, 'FSx', 'createSnapshot', { VolumeId: idOf('fsvol-', i), Name: `snap-${i}` }, 'Snapshot.SnapshotId'),
};

const openZfsL1: ScaleCase = {
  name: 'AWS::FSx::Snapshot',
  family: FAMILY.openZfs,
  kind: 'baseline',
  note: 'The native L1 (fsx.CfnSnapshot): one snapshot for the life of the logical id.',
  add: (stack, i) => new fsx.CfnSnapshot(stack, `Snap${i}`, { name: `snap-${i}`, volumeId: idOf('fsvol-', i) }),
};

const openZfsL1PerChange: ScaleCase = {
  name: 'AWS::FSx::Snapshot, new copy per change',
  family: FAMILY.openZfs,
  kind: 'baseline',
  note: 'The L1 with a hash of the trigger in its logical id and RemovalPolicy.RETAIN: a change makes a new snapshot and keeps the old one.',
  add: (stack, i) => {
    const snap = new fsx.CfnSnapshot(stack, `Snap${i}${changeHash(i)}`, { name: `snap-${i}-${changeHash(i)}`, volumeId: idOf('fsvol-', i) });
    snap.applyRemovalPolicy(RemovalPolicy.RETAIN);
  },
};

const ebs: ScaleCase = {
  name: 'EbsSnapshotOnDeploy',
  family: FAMILY.ebs,
  kind: 'library',
  add: (stack, i) => new EbsSnapshotOnDeploy(stack, `Snap${i}`, { source: EbsSnapshotSource.fromVolumeId(idOf('vol-', i)) }),
};

const ebsAwsCustomResource: ScaleCase = {
  name: 'AwsCustomResource',
  family: FAMILY.ebs,
  kind: 'baseline',
  note: 'AwsCustomResource calling EC2 CreateSnapshot on create: no wait, no delete, no idempotency, `ec2:CreateSnapshot` on `*`. ' +
    'There is no native L1: the CloudFormation resource specification in aws-cdk-lib has no `AWS::EC2::Snapshot`.',
  add: (stack, i) => awsCustomResource(stack, `Snap${i}`, 'EC2', 'createSnapshot', { VolumeId: idOf('vol-', i), Description: `snap-${i}` }, 'SnapshotId'),
};

const fsxBackup: ScaleCase = {
  name: 'FsxBackupSchedule',
  family: FAMILY.fsxBackup,
  kind: 'library',
  targetAdds: 2,
  note: 'One daily schedule per file system (an EventBridge rule and an alarm each; one function, Lambda permission, dead-letter queue and its alarm per stack).',
  add: (stack, i) => new FsxBackupSchedule(stack, `Backup${i}`, { schedule: events.Schedule.rate(Duration.days(1)), fileSystemIds: [idOf('fs-', i)] }),
};

const fsxBackupOnScheduler: ScaleCase = {
  name: 'FsxBackupSchedule (Scheduler)',
  family: FAMILY.fsxBackup,
  kind: 'library',
  targetAdds: 2,
  note: 'The same on EventBridge Scheduler, 02:30 Europe/Berlin: a Scheduler schedule and an alarm each; one function, dead-letter queue ' +
    'and its alarm, schedule group and execution role per stack.',
  add: (stack, i) => new FsxBackupSchedule(stack, `Backup${i}`, { scheduler: { expression: BERLIN_NIGHTLY }, fileSystemIds: [idOf('fs-', i)] }),
};

const fsxBackupAwsCustomResource: ScaleCase = {
  name: 'AwsCustomResource',
  family: FAMILY.fsxBackup,
  kind: 'baseline',
  note: 'AwsCustomResource calling FSx CreateBackup once, on create (not on a schedule, no pruning). ' +
    'There is no native L1: the CloudFormation resource specification in aws-cdk-lib has no `AWS::FSx::Backup`.',
  add: (stack, i) => awsCustomResource(stack, `Backup${i}`, 'FSx', 'createBackup', { FileSystemId: idOf('fs-', i) }, 'Backup.BackupId'),
};

const openZfsSchedule: ScaleCase = {
  name: 'OpenZfsSnapshotSchedule (rule)',
  family: FAMILY.openZfsScheduled,
  kind: 'library',
  targetAdds: 2,
  note: 'Hourly snapshots of one volume each, the last 24 kept, on an EventBridge rule: a rule and an alarm each; the stack\'s one ' +
    'function, Lambda permission, dead-letter queue and its alarm (shared with FsxBackupSchedule).',
  add: (stack, i) => new OpenZfsSnapshotSchedule(stack, `Snapshots${i}`, {
    schedule: events.Schedule.rate(Duration.hours(1)), volumeIds: [idOf('fsvol-', i)], retention: { keepLast: 24 },
  }),
};

const openZfsScheduleOnScheduler: ScaleCase = {
  name: 'OpenZfsSnapshotSchedule (Scheduler)',
  family: FAMILY.openZfsScheduled,
  kind: 'library',
  targetAdds: 2,
  note: 'The same on EventBridge Scheduler, every hour on the hour in Europe/Berlin.',
  add: (stack, i) => new OpenZfsSnapshotSchedule(stack, `Snapshots${i}`, {
    scheduler: { expression: scheduler.ScheduleExpression.cron({ minute: '0', timeZone: TimeZone.EUROPE_BERLIN }) },
    volumeIds: [idOf('fsvol-', i)],
    retention: { keepLast: 24 },
  }),
};

/**
 * AWS's sample template for scheduled OpenZFS snapshots (FSx for OpenZFS User Guide, "Setting up a
 * custom snapshot schedule"), one deployment per volume: a scheduled rule, a function and its role,
 * plus the Lambda permission the rule needs to invoke it. Its SNS topic is left out.
 */
const openZfsAwsSample: ScaleCase = {
  name: 'AWS sample template',
  family: FAMILY.openZfsScheduled,
  kind: 'baseline',
  note: 'AWS\'s sample (one deployment per volume): a rule, a function, its role (inline policy) and the rule\'s Lambda permission per ' +
    'volume; no client token, errors swallowed, retention by calendar date. Its SNS topic per deployment is not counted.',
  add: (stack, i) => {
    const role = new iam.Role(stack, `SampleRole${i}`, {
      assumedBy: new iam.ServicePrincipal('lambda.amazonaws.com'),
      inlinePolicies: {
        fsx: new iam.PolicyDocument({
          statements: [new iam.PolicyStatement({ actions: ['fsx:CreateSnapshot', 'fsx:DescribeSnapshots', 'fsx:DeleteSnapshot'], resources: ['*'] })],
        }),
      },
    });
    const fn = new lambda.Function(stack, `SampleFunction${i}`, {
      runtime: lambda.Runtime.PYTHON_3_12,
      handler: 'index.lambda_handler',
      code: lambda.Code.fromInline('def lambda_handler(event, context):\n    pass\n'),
      role,
      environment: { VOLUME_ID: idOf('fsvol-', i), SNAPSHOT_RETAIN_DAYS: '2' },
    });
    new events.Rule(stack, `SampleRule${i}`, { schedule: events.Schedule.rate(Duration.hours(1)), targets: [new targets.LambdaFunction(fn, { retryAttempts: 0 })] });
  },
};

/**
 * Every case the template-scale part runs, grouped by family; the library's construct first.
 */
export const SCALE_CASES: ScaleCase[] = [
  openZfs,
  openZfsPerArn,
  openZfsAwsCustomResource,
  openZfsL1,
  openZfsL1PerChange,
  ebs,
  ebsAwsCustomResource,
  fsxBackup,
  fsxBackupOnScheduler,
  fsxBackupAwsCustomResource,
  openZfsSchedule,
  openZfsScheduleOnScheduler,
  openZfsAwsSample,
];
