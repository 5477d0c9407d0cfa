import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import { CfnGuardValidator } from '@cdklabs/cdk-validator-cfnguard';
import { App, CfnResource, Stack, TimeZone } from 'aws-cdk-lib';
import * as ec2 from 'aws-cdk-lib/aws-ec2';
import * as events from 'aws-cdk-lib/aws-events';
import * as kms from 'aws-cdk-lib/aws-kms';
import * as logs from 'aws-cdk-lib/aws-logs';
import * as s3 from 'aws-cdk-lib/aws-s3';
import * as scheduler from 'aws-cdk-lib/aws-scheduler';
import * as sns from 'aws-cdk-lib/aws-sns';
import * as sqs from 'aws-cdk-lib/aws-sqs';
import { ExampleStack } from '../../examples/stack';
import {
  DiskImage, EbsSnapshotFromImage, EbsSnapshotOnDeploy, EbsSnapshotSource, FsxBackupSchedule, HandlerOptions,
  OpenZfsSnapshot, OpenZfsSnapshotSchedule,
} from '../../src';

/*
 * cfn-guard's bundled AWS Control Tower proactive controls, run the way users run them: as a CDK
 * policy validation plugin at synth. What the library could avoid, it does; what is the user's
 * choice is listed here and in the README ("Policy checks"), with the handlerOptions that satisfy it.
 */

/** Rules a default configuration fails, each because of a choice only the user can make. */
const USERS_CHOICE: Record<string, string> = {
  // handlerOptions.logGroup: a log group of yours, encrypted with your KMS key.
  cloudwatch_log_group_encrypted_check: 'CT.CLOUDWATCH.PR.3',
  // handlerOptions.vpc (+ vpcSubnets, securityGroups): the handlers run in your VPC.
  lambda_inside_vpc_check: 'CT.LAMBDA.PR.3',
  // The schedules' dead-letter queue is the end of the line: a queue of yours (deadLetterQueue of
  // FsxBackupSchedule and OpenZfsSnapshotSchedule), with its own redrive if your rules want one.
  sqs_dlq_check: 'CT.SQS.PR.1',
  // aws-cdk-lib's Provider framework has no tracing option for its waiter state machine; an Aspect
  // of yours can turn it on (TracingConfiguration.Enabled, plus the X-Ray permissions).
  step_functions_state_machine_tracing_enabled_check: 'CT.STEPFUNCTIONS.PR.2',
};

const env = { account: '111111111111', region: 'us-east-1' };

/** The library's constructs: what they create is the library's responsibility. */
const LIBRARY_TYPES = [OpenZfsSnapshot, FsxBackupSchedule, OpenZfsSnapshotSchedule, EbsSnapshotOnDeploy, EbsSnapshotFromImage];

/** Logical ids of the resources the library created in `stack` (its handlers and its constructs' resources). */
function libraryLogicalIds(stack: Stack): Set<string> {
  const ids = new Set<string>();
  for (const c of stack.node.findAll()) {
    if (!CfnResource.isCfnResource(c)) continue;
    const scopes = c.node.scopes;
    const ours = scopes.some((s) => s.node.id.startsWith('CdkStorageSnapshots') || LIBRARY_TYPES.some((t) => s instanceof t));
    if (ours) ids.add(stack.resolve(c.logicalId));
  }
  return ids;
}

/** The rules that the library's own resources fail. */
function libraryRules(found: Record<string, string[]>, stack: Stack): string[] {
  const ours = libraryLogicalIds(stack);
  return Object.entries(found).filter(([, ids]) => ids.some((id) => ours.has(id))).map(([rule]) => rule).sort();
}

/** Synthesizes the stacks `build` adds to an app with the validator; returns rule -> logical ids. */
function violations(build: (app: App) => void): Record<string, string[]> {
  const outdir = fs.mkdtempSync(path.join(os.tmpdir(), 'cfn-guard-'));
  try {
    const app = new App({
      outdir,
      policyValidationBeta1: [new CfnGuardValidator()],
      context: { '@aws-cdk/core:validationReportJson': true },
    });
    build(app);
    const log = jest.spyOn(console, 'error').mockImplementation(() => undefined);
    const out = jest.spyOn(console, 'log').mockImplementation(() => undefined);
    // A failed validation sets process.exitCode = 1 (as the CDK CLI expects): it would fail the
    // whole jest run after every test passed.
    const exitCode = process.exitCode;
    try {
      app.synth();
    } finally {
      process.exitCode = exitCode;
      log.mockRestore();
      out.mockRestore();
    }
    const report = path.join(outdir, 'policy-validation-report.json');
    if (!fs.existsSync(report)) throw new Error('cfn-guard wrote no report: did the validator run?');
    const parsed = JSON.parse(fs.readFileSync(report, 'utf8'));
    const result: Record<string, string[]> = {};
    for (const plugin of parsed.pluginReports) {
      if (plugin.summary.status !== 'success' && plugin.summary.status !== 'failure') {
        throw new Error(`cfn-guard did not run: ${JSON.stringify(plugin.summary)}`);
      }
      for (const v of plugin.violations) {
        result[v.ruleName] = v.violatingResources.map((r: { resourceLogicalId: string }) => r.resourceLogicalId).sort();
      }
    }
    return result;
  } finally {
    fs.rmSync(outdir, { recursive: true, force: true });
  }
}

test('the example app (every construct) fails only the Control Tower rules that are the user\'s choice', () => {
  let stack!: Stack;
  const found = violations((app) => {
    stack = new ExampleStack(app, 'Example', { env });
  });
  expect(libraryRules(found, stack)).toEqual(Object.keys(USERS_CHOICE).sort());
});

test('with the handlers in a VPC and an encrypted log group of the user\'s, only waiter tracing remains', () => {
  let stack!: Stack;
  const found = violations((app) => {
    stack = new Stack(app, 'Hardened', { env });
    const vpc = new ec2.Vpc(stack, 'Vpc', { maxAzs: 2, natGateways: 0, subnetConfiguration: [{ name: 'isolated', subnetType: ec2.SubnetType.PRIVATE_ISOLATED }] });
    const key = new kms.Key(stack, 'LogsKey', { enableKeyRotation: true });
    const handlerOptions: HandlerOptions = {
      vpc,
      vpcSubnets: { subnetType: ec2.SubnetType.PRIVATE_ISOLATED },
      logGroup: new logs.LogGroup(stack, 'HandlerLogs', { encryptionKey: key, retention: logs.RetentionDays.ONE_YEAR }),
    };
    new OpenZfsSnapshot(stack, 'Snap', { volumeId: 'fsvol-0123456789abcdef0', handlerOptions });
    new EbsSnapshotOnDeploy(stack, 'Ebs', { source: EbsSnapshotSource.fromVolumeId('vol-0123456789abcdef0'), handlerOptions });
    new EbsSnapshotFromImage(stack, 'Golden', {
      image: DiskImage.fromS3Object(s3.Bucket.fromBucketName(stack, 'Images', 'images'), 'disk.raw'),
      handlerOptions,
    });
    // CT.CLOUDWATCH.PR.1: an alarm needs an action.
    const alarmTopic = sns.Topic.fromTopicArn(stack, 'Alarms', 'arn:aws:sns:us-east-1:111111111111:alarms');
    const deadLetterQueue = new sqs.Queue(stack, 'BackupFailures', { encryption: sqs.QueueEncryption.KMS_MANAGED, enforceSSL: true });
    const berlin = (hour: string) => ({ expression: scheduler.ScheduleExpression.cron({ hour, minute: '0', timeZone: TimeZone.EUROPE_BERLIN }) });
    new FsxBackupSchedule(stack, 'Backups', {
      schedule: events.Schedule.cron({ hour: '2', minute: '0' }),
      fileSystemIds: ['fs-0123456789abcdef0'],
      deadLetterQueue,
      alarmTopic,
      handlerOptions,
    });
    // Both constructs on Scheduler too (its group and execution role), sharing the queue and the handlers.
    new FsxBackupSchedule(stack, 'NightlyBackups', { scheduler: berlin('3'), fileSystemIds: ['fs-0123456789abcdef0'], alarmTopic, handlerOptions });
    new OpenZfsSnapshotSchedule(stack, 'Snapshots', { scheduler: berlin('*'), volumeIds: ['fsvol-0123456789abcdef0'], alarmTopic, handlerOptions });
    new OpenZfsSnapshotSchedule(stack, 'DailySnapshots', {
      schedule: events.Schedule.cron({ hour: '4', minute: '0' }), volumeIds: ['fsvol-0123456789abcdef0'], deadLetterQueue, alarmTopic, handlerOptions,
    });
  });
  // Resources of the test's own VPC, key and queue are not the library's: keep to what it made.
  expect(libraryRules(found, stack)).toEqual(['step_functions_state_machine_tracing_enabled_check']);
});

test('the check can fail: a deliberately non-compliant bucket is reported', () => {
  const found = violations((app) => {
    const stack = new Stack(app, 'Bad', { env });
    new s3.CfnBucket(stack, 'Open', {});
  });
  expect(Object.keys(found).filter((r) => r.startsWith('s3_'))).not.toEqual([]);
  expect(Object.values(found).flat()).toContain('Open');
});
