import { execFileSync } from 'child_process';
import * as fs from 'fs';
import * as path from 'path';
import { App, Duration, Size, Stack } from 'aws-cdk-lib';
import { Template } from 'aws-cdk-lib/assertions';
import * as ec2 from 'aws-cdk-lib/aws-ec2';
import * as events from 'aws-cdk-lib/aws-events';
import * as s3 from 'aws-cdk-lib/aws-s3';
import { BackupTarget, DiskImage, EbsSnapshotFromImage, EbsSnapshotOnDeploy, EbsSnapshotSource, FsxBackupSchedule, OpenZfsSnapshot } from '../../src';
import { DEPLOY_TIME_HANDLERS } from '../../src/private/deploy-time-types';

const env = { account: '111111111111', region: 'us-east-1' };
const volume = (i: number) => `vol-${i.toString(16).padStart(17, '0')}`;
const fsxVolume = (i: number) => `fsvol-${i.toString(16).padStart(17, '0')}`;

type Kind = 'openzfs' | 'ebs' | 'image' | 'schedule';

/** A stack with `n` instances of each kind in `kinds` (and one of each in `once`). */
function stackWith(kinds: Kind[], n = 1, handlerOptions?: (k: Kind) => object | undefined, once: Kind[] = []): Stack {
  const stack = new Stack(new App(), 'Stack', { env });
  const images = s3.Bucket.fromBucketName(stack, 'Images', 'disk-images');
  for (let i = 0; i < n; i++) {
    for (const kind of i === 0 ? [...once, ...kinds] : kinds) {
      const options = handlerOptions?.(kind);
      switch (kind) {
        case 'openzfs':
          new OpenZfsSnapshot(stack, `Zfs${i}`, { volumeId: fsxVolume(i), handlerOptions: options });
          break;
        case 'ebs':
          new EbsSnapshotOnDeploy(stack, `Ebs${i}`, { source: EbsSnapshotSource.fromVolume(ec2.Volume.fromVolumeAttributes(stack, `V${i}`, { volumeId: volume(i), availabilityZone: 'us-east-1a' })), handlerOptions: options });
          break;
        case 'image':
          new EbsSnapshotFromImage(stack, `Img${i}`, { image: DiskImage.fromS3Object(images, `disk-${i}.raw`), volumeSize: Size.gibibytes(1), handlerOptions: options });
          break;
        case 'schedule':
          new FsxBackupSchedule(stack, `Backups${i}`, { schedule: events.Schedule.rate(Duration.hours(24)), targets: [BackupTarget.fileSystemId(`fs-${i.toString(16).padStart(17, '0')}`)] });
          break;
      }
    }
  }
  return stack;
}

function resourceCount(stack: Stack): number {
  return Object.keys(Template.fromStack(stack).toJSON().Resources).length;
}

/** Resources the library adds per stack, before any instance: all resources minus one per deploy-time instance and per schedule rule. */
function fixedResources(kinds: Kind[]): number {
  const t = Template.fromStack(stackWith(kinds)).toJSON().Resources as Record<string, { Type: string }>;
  const perInstance = Object.values(t).filter((r) => r.Type.startsWith('Custom::') || r.Type === 'AWS::Events::Rule').length;
  return Object.keys(t).length - perInstance;
}

function count(stack: Stack, type: string): number {
  return Object.keys(Template.fromStack(stack).findResources(type)).length;
}

function handlerFunctions(stack: Stack): any[] {
  return Object.entries<any>(Template.fromStack(stack).findResources('AWS::Lambda::Function'))
    .filter(([id]) => /^CdkStorageSnapshotsProvider(OnEvent|IsComplete)/.test(id))
    .map(([, r]) => r);
}

function handlerStatements(stack: Stack): any[] {
  return Object.entries<any>(Template.fromStack(stack).findResources('AWS::IAM::Policy'))
    .filter(([id]) => id.startsWith('CdkStorageSnapshotsProviderRoleDefaultPolicy'))
    .flatMap(([, p]) => p.Properties.PolicyDocument.Statement);
}

function actionsOf(stack: Stack): string[] {
  return handlerStatements(stack).flatMap((s) => [s.Action].flat());
}

describe('one provider per stack', () => {
  test('every deploy-time type shares one Provider: 2 handler and 3 framework functions, 1 state machine, 4 roles', () => {
    const stack = stackWith(['openzfs', 'ebs', 'image']);
    expect(count(stack, 'AWS::Lambda::Function')).toBe(5);
    expect(count(stack, 'AWS::StepFunctions::StateMachine')).toBe(1);
    expect(count(stack, 'AWS::IAM::Role')).toBe(4);
    expect(count(stack, 'AWS::DynamoDB::Table')).toBe(1);
    const tokens = new Set(['Custom::OpenZfsSnapshot', 'Custom::EbsSnapshotOnDeploy', 'Custom::EbsSnapshotFromImage']
      .flatMap((type) => Object.values<any>(Template.fromStack(stack).findResources(type)).map((r) => JSON.stringify(r.Properties.ServiceToken))));
    expect([...tokens]).toEqual([JSON.stringify({ 'Fn::GetAtt': [SERVICE_TOKEN_FUNCTION, 'Arn'] })]);
  });

  test('fixed resources: at most 16 for the three deploy-time types, at most 26 with FsxBackupSchedule', () => {
    expect(fixedResources(['openzfs', 'ebs', 'image'])).toBeLessThanOrEqual(16);
    expect(fixedResources(['openzfs', 'ebs', 'image', 'schedule'])).toBeLessThanOrEqual(26);
    // Without the EBS type there is no claim table.
    expect(fixedResources(['openzfs', 'image'])).toBe(fixedResources(['openzfs', 'ebs', 'image']) - 1);
  });

  test('the N-th instance of each deploy-time type adds one resource; 200 of any one kind fit one stack beside the others', () => {
    const kinds: Kind[] = ['openzfs', 'ebs', 'image'];
    expect(resourceCount(stackWith(kinds, 3)) - resourceCount(stackWith(kinds, 2))).toBe(3);
    // Each instance is a resource of its own, so 200 of each of the three (600) cannot fit
    // CloudFormation's 500; 200 of one kind with every other kind present do, and so do 160 of each.
    for (const kind of [...kinds, 'schedule'] as Kind[]) {
      expect(resourceCount(stackWith([kind], 200, undefined, kinds.filter((k) => k !== kind)))).toBeLessThanOrEqual(500);
    }
    expect(resourceCount(stackWith(kinds, 160))).toBeLessThanOrEqual(500);
  }, 120_000);

  test('the service token is the same construct path in every release (CONTRIBUTING.md): the framework onEvent function\'s logical id is pinned', () => {
    const stack = stackWith(['openzfs']);
    expect(Object.keys(Template.fromStack(stack).findResources('AWS::Lambda::Function'))).toContain(SERVICE_TOKEN_FUNCTION);
  });

  test('two distinct framework roles, each allowed to write to the one log group', () => {
    const stack = stackWith(['openzfs']);
    const t = Template.fromStack(stack);
    const fns = Object.values<any>(t.findResources('AWS::Lambda::Function'));
    const roleOf = (pattern: RegExp) => fns.filter((f) => pattern.test(f.Properties.Handler)).map((f) => JSON.stringify(f.Properties.Role));
    const onEventRoles = new Set(roleOf(/^framework\.onEvent$/));
    const completeRoles = new Set([...roleOf(/^framework\.isComplete$/), ...roleOf(/^framework\.onTimeout$/)]);
    expect(onEventRoles.size).toBe(1);
    expect(completeRoles.size).toBe(1);
    expect([...onEventRoles][0]).not.toEqual([...completeRoles][0]);
    const handlerRoles = new Set(fns.filter((f) => /^index\./.test(f.Properties.Handler)).map((f) => JSON.stringify(f.Properties.Role)));
    expect(handlerRoles.size).toBe(1);
    expect(onEventRoles.has([...handlerRoles][0])).toBe(false);
    expect(completeRoles.has([...handlerRoles][0])).toBe(false);
    const logWriters = Object.values<any>(t.findResources('AWS::IAM::Policy'))
      .filter((p) => p.Properties.PolicyDocument.Statement.some((s: any) => [s.Action].flat().includes('logs:PutLogEvents')))
      .flatMap((p) => p.Properties.Roles.map((r: unknown) => JSON.stringify({ 'Fn::GetAtt': [(r as any).Ref, 'Arn'] })));
    for (const role of [...onEventRoles, ...completeRoles, ...handlerRoles]) expect(logWriters).toContain(role);
  });
});

describe('sizing: the largest any type present needs', () => {
  const sizes = (stack: Stack) => handlerFunctions(stack).map((f) => [f.Properties.Handler, f.Properties.MemorySize, f.Properties.Timeout]).sort();

  test('OpenZFS and EBS only: 256 MB, onEvent 5 minutes, isComplete 2 minutes', () => {
    expect(sizes(stackWith(['openzfs', 'ebs']))).toEqual([['index.isComplete', 256, 120], ['index.onEvent', 256, 300]]);
  });

  test('with a snapshot from an image, whichever instance comes first: 2,048 MB and a 14-minute isComplete', () => {
    for (const kinds of [['openzfs', 'image'], ['image', 'openzfs']] as Kind[][]) {
      expect(sizes(stackWith(kinds))).toEqual([['index.isComplete', 2048, 840], ['index.onEvent', 2048, 300]]);
    }
  });

  test('handlerOptions.memorySize given on any type\'s instance applies to the shared functions', () => {
    const stack = stackWith(['openzfs', 'image'], 1, () => ({ memorySize: 1024 }));
    expect(sizes(stack)).toEqual([['index.isComplete', 1024, 840], ['index.onEvent', 1024, 300]]);
  });

  test('conflicting handler options between instances of different types are refused at synth', () => {
    expect(() => stackWith(['openzfs', 'ebs'], 1, (k) => ({ memorySize: k === 'openzfs' ? 512 : 1024 })))
      .toThrow(/Stack\/Ebs0: invalid handlerOptions.memorySize: the handlers are shared by every deploy-time construct .*Stack\/Zfs0 already set them differently/);
  });
});

describe('permissions follow use', () => {
  /** What the provider grants every stack, whatever types it has: the Delete path and its reads. */
  const ALWAYS = ['fsx:DeleteSnapshot', 'ec2:DeleteSnapshot', 'fsx:DescribeSnapshots', 'ec2:DescribeSnapshots', 'cloudformation:DescribeStacks'];
  const typeActions = (stack: Stack) => actionsOf(stack).filter((a) => !ALWAYS.includes(a) && !a.startsWith('logs:'));

  test('only OpenZfsSnapshot: FSx statements, no EC2, EBS, S3 or DynamoDB statement beyond the Delete path', () => {
    const actions = typeActions(stackWith(['openzfs']));
    expect(actions).toEqual(expect.arrayContaining(['fsx:CreateSnapshot', 'fsx:TagResource']));
    expect(actions.filter((a) => /^(ec2|ebs|s3|dynamodb|kms):/.test(a))).toEqual([]);
    expect(actions).not.toContain('cloudformation:DescribeStackResource');
  });

  test('only EbsSnapshotOnDeploy: EC2 and the claim table, no FSx, EBS direct or S3 statement beyond the Delete path', () => {
    const actions = typeActions(stackWith(['ebs']));
    expect(actions).toEqual(expect.arrayContaining(['ec2:CreateSnapshot', 'dynamodb:PutItem', 'cloudformation:DescribeStackResource']));
    expect(actions.filter((a) => /^(fsx|ebs|s3):/.test(a))).toEqual([]);
  });

  test('only EbsSnapshotFromImage: EBS direct, S3 and EC2 tagging, no FSx, claim table or EC2 CreateSnapshot', () => {
    const actions = typeActions(stackWith(['image']));
    expect(actions).toEqual(expect.arrayContaining(['ebs:StartSnapshot', 's3:GetObject']));
    expect(actions.filter((a) => /^(fsx|dynamodb):/.test(a) || a === 'ec2:CreateSnapshot' || a === 'cloudformation:DescribeStackResource')).toEqual([]);
    expect(count(stackWith(['image']), 'AWS::DynamoDB::Table')).toBe(0);
  });

  test('the Delete path does not depend on which instances the app still has: removing the last of a type or of a volume can still delete', () => {
    // CloudFormation updates the policy before it sends the Delete of a removed resource.
    const deletes = (stack: Stack) => handlerStatements(stack).filter((st) => /DeleteSnapshot$/.test(st.Action));
    const withAll = deletes(stackWith(['openzfs', 'ebs', 'image'], 3));
    for (const kinds of [['openzfs'], ['ebs'], ['image'], ['openzfs', 'ebs', 'image']] as Kind[][]) {
      expect(deletes(stackWith(kinds))).toEqual(withAll);
    }
    expect(withAll.map((st) => st.Action).sort()).toEqual(['ec2:DeleteSnapshot', 'fsx:DeleteSnapshot']);
    for (const st of withAll) {
      expect(JSON.stringify(st.Resource)).toMatch(/:snapshot\/\*"/);
      expect(Object.keys(st.Condition.StringEquals).sort()).toEqual(['aws:ResourceTag/cdk-storage-snapshots:managed-by', 'aws:ResourceTag/cdk-storage-snapshots:stack-id']);
      expect(st.Condition.StringEquals['aws:ResourceTag/cdk-storage-snapshots:stack-id']).toEqual({ Ref: 'AWS::StackId' });
    }
  });

  test('handlers in a VPC: the roles the library makes may manage the functions\' network interfaces', () => {
    const stack = new Stack(new App(), 'Stack', { env });
    const vpc = new ec2.Vpc(stack, 'Vpc');
    new OpenZfsSnapshot(stack, 'Zfs', { volumeId: fsxVolume(1), handlerOptions: { vpc } });
    const roles = Object.entries<any>(Template.fromStack(stack).findResources('AWS::IAM::Role')).filter(([id]) => id.startsWith('CdkStorageSnapshotsProvider'));
    const lambdaRoles = roles.filter(([, r]) => JSON.stringify(r.Properties.AssumeRolePolicyDocument).includes('lambda.amazonaws.com'));
    expect(lambdaRoles.length).toBe(3);
    for (const [, r] of lambdaRoles) expect(JSON.stringify(r.Properties.ManagedPolicyArns)).toContain('AWSLambdaVPCAccessExecutionRole');
  });
});

describe('the router (assets/provider, as bundled)', () => {
  const assets = path.join(__dirname, '..', '..', 'assets', 'provider');

  /** In a fresh node: answers a Delete of `type` through the router and lists the bundles it loaded. */
  function route(type: string, requestType = 'Delete', entry = 'isComplete'): { result?: unknown; error?: string; loaded: string[] } {
    const script = `
      const router = require(${JSON.stringify(path.join(assets, 'index.js'))});
      const loaded = () => Object.keys(require.cache).filter((f) => f.startsWith(${JSON.stringify(assets)})).map((f) => require('path').basename(f)).sort();
      router[${JSON.stringify(entry)}]({ ResourceType: ${JSON.stringify(type)}, RequestType: ${JSON.stringify(requestType)}, PhysicalResourceId: 'x', ResourceProperties: {} })
        .then((result) => process.stdout.write(JSON.stringify({ result, loaded: loaded() })),
              (err) => process.stdout.write(JSON.stringify({ error: err.message, loaded: loaded() })));`;
    const out = execFileSync(process.execPath, ['-e', script], {
      encoding: 'utf8', env: { PATH: process.env.PATH, AWS_REGION: 'us-east-1', AWS_ACCESS_KEY_ID: 'x', AWS_SECRET_ACCESS_KEY: 'x' },
    });
    return JSON.parse(out);
  }

  test('every type the provider serves has its bundle beside the router', () => {
    for (const name of Object.values(DEPLOY_TIME_HANDLERS)) expect(fs.existsSync(path.join(assets, `${name}.js`))).toBe(true);
  });

  test.each(Object.entries(DEPLOY_TIME_HANDLERS))('a %s request loads only the router and %s.js', (type, name) => {
    const routed = route(type);
    expect(routed.loaded).toEqual([`${name}.js`, 'index.js'].sort());
  });

  test('a Create or Update of an unknown resource type fails with the types it serves', () => {
    for (const requestType of ['Create', 'Update']) {
      const routed = route('Custom::Unknown', requestType, 'onEvent');
      expect(routed.error).toMatch(/no handler for resource type Custom::Unknown \(this provider serves Custom::OpenZfsSnapshot, /);
      expect(routed.loaded).toEqual(['index.js']);
    }
  });

  test('a Delete of an unknown resource type is answered without acting, so that clean-up and stack deletion go on', () => {
    expect(route('Custom::Unknown', 'Delete', 'onEvent')).toEqual({ result: { PhysicalResourceId: 'x' }, loaded: ['index.js'] });
    expect(route('Custom::Unknown', 'Delete', 'isComplete')).toEqual({ result: { IsComplete: true }, loaded: ['index.js'] });
  });
});

/** The logical id of the framework onEvent function: its ARN is every custom resource's ServiceToken, which must never change. */
const SERVICE_TOKEN_FUNCTION = 'CdkStorageSnapshotsProviderframeworkonEventA09B6144';
