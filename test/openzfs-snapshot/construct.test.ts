import { App, CfnParameter, CfnResource, Duration, RemovalPolicy, Stack, Tags } from 'aws-cdk-lib';
import { Match, Template } from 'aws-cdk-lib/assertions';
import * as ec2 from 'aws-cdk-lib/aws-ec2';
import * as fsx from 'aws-cdk-lib/aws-fsx';
import * as iam from 'aws-cdk-lib/aws-iam';
import * as logs from 'aws-cdk-lib/aws-logs';
import { OpenZfsSnapshot } from '../../src';

const VOLUME = 'fsvol-0123456789abcdef0';

function newStack(): Stack {
  return new Stack(new App(), 'Stack', { env: { account: '111111111111', region: 'us-east-1' } });
}

describe('OpenZfsSnapshot resources', () => {
  test('a custom resource with the contract properties and RETAIN by default', () => {
    // GIVEN
    const stack = newStack();
    // WHEN
    new OpenZfsSnapshot(stack, 'Snap', { volumeId: VOLUME, tags: { team: 'data', app: 'orders' }, trigger: 'r1' });
    // THEN
    Template.fromStack(stack).hasResourceProperties('Custom::OpenZfsSnapshot', {
      ServiceToken: { 'Fn::GetAtt': [Match.stringLikeRegexp('CdkStorageSnapshotsProviderframeworkonEvent'), 'Arn'] },
      VolumeId: VOLUME,
      SnapshotName: 'Snap',
      Trigger: 'r1',
      Tags: '{"app":"orders","team":"data"}',
      RemovalPolicy: 'retain',
      TimeoutSeconds: '1800',
      SnapshotBeforeHash: Match.absent(),
    });
  });

  test('removal policy DESTROY and timeout are passed to the handler', () => {
    const stack = newStack();
    new OpenZfsSnapshot(stack, 'Snap', { volumeId: VOLUME, removalPolicy: RemovalPolicy.DESTROY, timeout: Duration.minutes(45) });
    Template.fromStack(stack).hasResourceProperties('Custom::OpenZfsSnapshot', { RemovalPolicy: 'destroy', TimeoutSeconds: '2700' });
  });

  test('one shared provider for many instances: the N-th instance adds exactly one resource', () => {
    const one = newStack();
    new OpenZfsSnapshot(one, 'Snap0', { volumeId: VOLUME });
    const ten = newStack();
    for (let i = 0; i < 10; i++) new OpenZfsSnapshot(ten, `Snap${i}`, { volumeId: VOLUME });

    const count = (s: Stack) => Object.keys(Template.fromStack(s).toJSON().Resources).length;
    expect(count(ten) - count(one)).toBe(9);
    Template.fromStack(ten).resourceCountIs('AWS::StepFunctions::StateMachine', 1);
    Template.fromStack(ten).resourceCountIs('Custom::OpenZfsSnapshot', 10);
  });

  test('handlers: pinned nodejs22.x runtime, bundled asset, JSON logs with retention', () => {
    const stack = newStack();
    new OpenZfsSnapshot(stack, 'Snap', { volumeId: VOLUME, handlerOptions: { logRetention: logs.RetentionDays.ONE_MONTH } });
    const template = Template.fromStack(stack);
    template.hasResourceProperties('AWS::Lambda::Function', {
      Handler: 'index.onEvent',
      Runtime: 'nodejs22.x',
      LoggingConfig: Match.objectLike({ LogFormat: 'JSON' }),
    });
    template.hasResourceProperties('AWS::Lambda::Function', { Handler: 'index.isComplete', Runtime: 'nodejs22.x' });
    template.hasResourceProperties('AWS::Logs::LogGroup', { RetentionInDays: 30 });
  });

  test('handlers in a VPC when asked', () => {
    const stack = newStack();
    const vpc = new ec2.Vpc(stack, 'Vpc');
    new OpenZfsSnapshot(stack, 'Snap', { volumeId: VOLUME, handlerOptions: { vpc } });
    Template.fromStack(stack).hasResourceProperties('AWS::Lambda::Function', {
      Handler: 'index.onEvent',
      VpcConfig: Match.objectLike({ SubnetIds: Match.anyValue() }),
    });
  });

  test('different handler options on two instances of one stack are refused', () => {
    const stack = newStack();
    new OpenZfsSnapshot(stack, 'A', { volumeId: VOLUME, handlerOptions: { memorySize: 512 } });
    expect(() => new OpenZfsSnapshot(stack, 'B', { volumeId: VOLUME, handlerOptions: { memorySize: 1024 } })).toThrow(
      /Stack\/B: invalid handlerOptions.memorySize: .*Stack\/A already set them differently/,
    );
    // The same options, or none, are fine.
    new OpenZfsSnapshot(stack, 'C', { volumeId: VOLUME, handlerOptions: { memorySize: 512 } });
    new OpenZfsSnapshot(stack, 'D', { volumeId: VOLUME });
  });

  test('reserved concurrency applies to the handler functions, not to the Provider framework\'s', () => {
    const stack = newStack();
    new OpenZfsSnapshot(stack, 'Snap', { volumeId: VOLUME, handlerOptions: { reservedConcurrentExecutions: 5 } });
    const template = Template.fromStack(stack);
    template.hasResourceProperties('AWS::Lambda::Function', { Handler: 'index.onEvent', ReservedConcurrentExecutions: 5 });
    template.hasResourceProperties('AWS::Lambda::Function', { Handler: 'index.isComplete', ReservedConcurrentExecutions: 5 });
    template.hasResourceProperties('AWS::Lambda::Function', { Handler: 'framework.onEvent', ReservedConcurrentExecutions: Match.absent() });
  });

  test.each([
    [{ memorySize: 64 }, /invalid handlerOptions.memorySize: must be a whole number of MiB from 128 to 10,240 \(received 64\)/],
    [{ memorySize: 512.5 }, /invalid handlerOptions.memorySize/],
    [{ reservedConcurrentExecutions: 0 }, /invalid handlerOptions.reservedConcurrentExecutions: must be a whole number of at least 1/],
  ])('handler options %j are refused', (handlerOptions, error) => {
    expect(() => new OpenZfsSnapshot(newStack(), 'Snap', { volumeId: VOLUME, handlerOptions })).toThrow(error);
  });

  test('attributes are deploy-time references to the custom resource', () => {
    const stack = newStack();
    const snap = new OpenZfsSnapshot(stack, 'Snap', { volumeId: VOLUME });
    const resolved = stack.resolve([snap.snapshotId, snap.snapshotArn, snap.creationTime, snap.snapshotName]);
    expect(resolved[0]).toEqual({ Ref: expect.stringMatching(/^Snap/) });
    expect(resolved[1]).toEqual({ 'Fn::GetAtt': [expect.stringMatching(/^Snap/), 'SnapshotArn'] });
    expect(resolved[2]).toEqual({ 'Fn::GetAtt': [expect.stringMatching(/^Snap/), 'CreationTime'] });
    expect(resolved[3]).toEqual({ 'Fn::GetAtt': [expect.stringMatching(/^Snap/), 'SnapshotName'] });
  });
});

describe('OpenZfsSnapshot snapshotBefore', () => {
  function guardedStack(capacity: number, trigger?: string) {
    const stack = newStack();
    const volume = new fsx.CfnVolume(stack, 'Child', {
      name: 'child',
      volumeType: 'OPENZFS',
      openZfsConfiguration: { parentVolumeId: VOLUME, storageCapacityQuotaGiB: capacity },
    });
    new OpenZfsSnapshot(stack, 'Snap', { volumeId: VOLUME, snapshotBefore: [volume], trigger });
    return Template.fromStack(stack).toJSON();
  }
  const hashOf = (t: any) => Object.values<any>(t.Resources).find((r) => r.Type === 'Custom::OpenZfsSnapshot').Properties.SnapshotBeforeHash;

  test('the guarded resource depends on the snapshot', () => {
    const t = guardedStack(100);
    const snapId = Object.keys(t.Resources).find((k) => t.Resources[k].Type === 'Custom::OpenZfsSnapshot');
    expect(t.Resources[Object.keys(t.Resources).find((k) => t.Resources[k].Type === 'AWS::FSx::Volume')!].DependsOn).toContain(snapId);
  });

  test('the hash changes when a guarded resource changes, and only then', () => {
    expect(hashOf(guardedStack(100))).toMatch(/^[0-9a-f]{32}$/);
    expect(hashOf(guardedStack(100))).toBe(hashOf(guardedStack(100)));
    expect(hashOf(guardedStack(200))).not.toBe(hashOf(guardedStack(100)));
  });

  test('synth output is byte-identical when nothing changed', () => {
    expect(JSON.stringify(guardedStack(100, 'r1'))).toBe(JSON.stringify(guardedStack(100, 'r1')));
  });

  test('guarding the volume the snapshot is taken of is refused (a cycle)', () => {
    const stack = newStack();
    const volume = new fsx.CfnVolume(stack, 'Child', { name: 'child', volumeType: 'OPENZFS', openZfsConfiguration: { parentVolumeId: VOLUME } });
    new OpenZfsSnapshot(stack, 'Snap', { volumeId: volume.attrVolumeId, snapshotBefore: [volume] });
    expect(() => Template.fromStack(stack)).toThrow(/Stack\/Snap: invalid snapshotBefore: Stack\/Child must exist before the snapshot/);
  });

  test('a cycle through another resource is refused too', () => {
    const stack = newStack();
    const parent = new fsx.CfnVolume(stack, 'Parent', { name: 'p', volumeType: 'OPENZFS', openZfsConfiguration: { parentVolumeId: VOLUME } });
    const child = new fsx.CfnVolume(stack, 'Child', { name: 'c', volumeType: 'OPENZFS', openZfsConfiguration: { parentVolumeId: parent.attrVolumeId } });
    new OpenZfsSnapshot(stack, 'Snap', { volumeId: child.attrVolumeId, snapshotBefore: [parent] });
    expect(() => Template.fromStack(stack)).toThrow(/Stack\/Parent must exist before the snapshot/);
  });

  test('a construct in another stack is refused', () => {
    const app = new App();
    const other = new Stack(app, 'Other');
    const volume = new fsx.CfnVolume(other, 'Child', { name: 'child', volumeType: 'OPENZFS' });
    const stack = new Stack(app, 'Stack');
    expect(() => new OpenZfsSnapshot(stack, 'Snap', { volumeId: VOLUME, snapshotBefore: [volume] })).toThrow(
      /Stack\/Snap: invalid snapshotBefore: Other\/Child is in stack Other/,
    );
  });

  test('a scope that contains the snapshot itself is refused', () => {
    const stack = newStack();
    expect(() => new OpenZfsSnapshot(stack, 'Snap', { volumeId: VOLUME, snapshotBefore: [stack] })).toThrow(/contains the snapshot itself/);
  });
});

describe('OpenZfsSnapshot IAM', () => {
  test('create on the volume and its snapshots, tag with our tag, delete only what this stack tagged', () => {
    const stack = newStack();
    new OpenZfsSnapshot(stack, 'Snap', { volumeId: VOLUME });
    const arn = (suffix: string) => ({ 'Fn::Join': ['', ['arn:', { Ref: 'AWS::Partition' }, `:fsx:us-east-1:111111111111:${suffix}`]] });
    Template.fromStack(stack).hasResourceProperties('AWS::IAM::Policy', {
      PolicyDocument: {
        Statement: Match.arrayWith([
          {
            // The provider's, for every deploy-time type: a Delete must not depend on the instance being in the app.
            Action: 'fsx:DeleteSnapshot',
            Effect: 'Allow',
            Resource: arn('snapshot/*'),
            Condition: {
              StringEquals: {
                'aws:ResourceTag/cdk-storage-snapshots:managed-by': 'cdk-storage-snapshots',
                'aws:ResourceTag/cdk-storage-snapshots:stack-id': { Ref: 'AWS::StackId' },
              },
            },
          },
          { Action: ['fsx:DescribeSnapshots', 'ec2:DescribeSnapshots'], Effect: 'Allow', Resource: '*' },
          { Action: 'cloudformation:DescribeStacks', Effect: 'Allow', Resource: { Ref: 'AWS::StackId' } },
          { Action: 'fsx:CreateSnapshot', Effect: 'Allow', Resource: [arn(`volume/*/${VOLUME}`), arn(`snapshot/${VOLUME}/*`)] },
          {
            Action: 'fsx:TagResource',
            Effect: 'Allow',
            Resource: arn(`snapshot/${VOLUME}/*`),
            Condition: { StringEquals: { 'aws:RequestTag/cdk-storage-snapshots:managed-by': 'cdk-storage-snapshots' } },
          },
        ]),
      },
    });
  });

  test('many instances on one volume share statements; another volume adds ARNs, not statements', () => {
    const stack = newStack();
    for (let i = 0; i < 5; i++) new OpenZfsSnapshot(stack, `Snap${i}`, { volumeId: VOLUME });
    new OpenZfsSnapshot(stack, 'Other', { volumeId: 'fsvol-0123456789abcdef1' });
    const policies = Template.fromStack(stack).findResources('AWS::IAM::Policy');
    const ours = Object.entries<any>(policies).find(([k]) => /CdkStorageSnapshotsProviderRoleDefaultPolicy/.test(k))![1];
    const statements = ours.Properties.PolicyDocument.Statement;
    expect(statements.filter((s: any) => s.Action === 'fsx:CreateSnapshot')).toHaveLength(1);
    expect(statements.find((s: any) => s.Action === 'fsx:CreateSnapshot').Resource).toHaveLength(4);
  });
});

describe('OpenZfsSnapshot validation', () => {
  test.each([
    ['volumeId', { volumeId: 'vol-0123456789abcdef0' }, /Stack\/Snap: invalid volumeId: must be "fsvol-" followed by 17 lowercase hex digits \(received "vol-0123456789abcdef0"\)/],
    ['volumeId', { volumeId: 'fsvol-0123' }, /invalid volumeId/],
    ['snapshotName', { snapshotName: 'has space' }, /Stack\/Snap: invalid snapshotName: must be 1 to 194 characters/],
    ['snapshotName', { snapshotName: 'x'.repeat(195) }, /invalid snapshotName/],
    ['tags', { tags: Object.fromEntries(Array.from({ length: 46 }, (_, i) => [`k${i}`, 'v'])) }, /at most 45 tags are allowed .* not 46/],
    ['tags', { tags: { 'aws:owner': 'me' } }, /reserved prefix "aws:"/],
    ['tags', { tags: { 'cdk-storage-snapshots:owner': 'me' } }, /library's own ownership tags/],
    ['tags', { tags: { ['k'.repeat(129)]: 'v' } }, /tag keys must be 1 to 128 characters/],
    ['tags', { tags: { k: 'v'.repeat(257) } }, /tag values must be at most 256 characters/],
    ['timeout', { timeout: Duration.minutes(61) }, /Stack\/Snap: invalid timeout: must be between 1 minute and 1 hour/],
  ])('%s (case %#) is refused', (_, props, message) => {
    const stack = newStack();
    expect(() => new OpenZfsSnapshot(stack, 'Snap', { volumeId: VOLUME, ...props })).toThrow(message);
  });

  test('45 tags and a one-hour timeout are allowed', () => {
    const stack = newStack();
    new OpenZfsSnapshot(stack, 'Snap', {
      volumeId: VOLUME,
      tags: Object.fromEntries(Array.from({ length: 45 }, (_, i) => [`k${i}`, 'v'])),
      timeout: Duration.hours(1),
    });
  });

  test('unresolved tokens pass through unchecked', () => {
    const stack = newStack();
    const volume = new fsx.CfnVolume(stack, 'Vol', { name: 'v', volumeType: 'OPENZFS' });
    new OpenZfsSnapshot(stack, 'Snap', { volumeId: volume.attrVolumeId, snapshotName: volume.attrVolumeId });
    Template.fromStack(stack).hasResourceProperties('Custom::OpenZfsSnapshot', {
      VolumeId: { 'Fn::GetAtt': [Match.stringLikeRegexp('^Vol'), 'VolumeId'] },
    });
  });

  test('the default name prefix is the construct id with disallowed characters replaced', () => {
    const stack = newStack();
    new OpenZfsSnapshot(stack, 'Before Release#42', { volumeId: VOLUME });
    Template.fromStack(stack).hasResourceProperties('Custom::OpenZfsSnapshot', { SnapshotName: 'Before-Release-42' });
  });
});

describe('OpenZfsSnapshot handler options', () => {
  test('a role of yours gets the statements; no role is created', () => {
    const stack = newStack();
    const role = new iam.Role(stack, 'Mine', { assumedBy: new iam.ServicePrincipal('lambda.amazonaws.com') });
    new OpenZfsSnapshot(stack, 'Snap', { volumeId: VOLUME, handlerOptions: { role } });
    const template = Template.fromStack(stack);
    template.hasResourceProperties('AWS::Lambda::Function', { Handler: 'index.onEvent', Role: { 'Fn::GetAtt': [Match.stringLikeRegexp('^Mine'), 'Arn'] } });
    template.hasResourceProperties('AWS::IAM::Policy', {
      Roles: [{ Ref: Match.stringLikeRegexp('^Mine') }],
      PolicyDocument: { Statement: Match.arrayWith([Match.objectLike({ Action: 'fsx:CreateSnapshot' })]) },
    });
    expect(Object.keys(template.findResources('AWS::IAM::Role')).filter((k) => /^CdkStorageSnapshotsProviderRole[0-9A-F]{8}$/.test(k))).toEqual([]);
  });

  test('a log group of yours receives the logs', () => {
    const stack = newStack();
    const logGroup = new logs.LogGroup(stack, 'MyLogs');
    new OpenZfsSnapshot(stack, 'Snap', { volumeId: VOLUME, handlerOptions: { logGroup } });
    Template.fromStack(stack).hasResourceProperties('AWS::Lambda::Function', {
      Handler: 'index.onEvent',
      LoggingConfig: Match.objectLike({ LogGroup: { Ref: Match.stringLikeRegexp('^MyLogs') } }),
    });
    Template.fromStack(stack).resourceCountIs('AWS::Logs::LogGroup', 1);
  });

  test('logGroup and logRetention together are refused', () => {
    const stack = newStack();
    const logGroup = new logs.LogGroup(stack, 'MyLogs');
    expect(() => new OpenZfsSnapshot(stack, 'Snap', {
      volumeId: VOLUME, handlerOptions: { logGroup, logRetention: logs.RetentionDays.ONE_DAY },
    })).toThrow(/Stack\/Snap: invalid handlerOptions: give logGroup or logRetention, not both/);
  });

  test('a permissions boundary applies to every role the library creates', () => {
    const stack = newStack();
    const boundary = new iam.ManagedPolicy(stack, 'Boundary', { statements: [new iam.PolicyStatement({ actions: ['*'], resources: ['*'] })] });
    new OpenZfsSnapshot(stack, 'Snap', { volumeId: VOLUME, handlerOptions: { permissionsBoundary: boundary } });
    const roles = Template.fromStack(stack).findResources('AWS::IAM::Role');
    expect(Object.keys(roles).length).toBe(4); // the handlers', two framework roles, the waiter state machine's
    for (const role of Object.values<any>(roles)) {
      expect(role.Properties.PermissionsBoundary).toEqual({ Ref: expect.stringMatching(/^Boundary/) });
    }
  });
});

describe('OpenZfsSnapshot.fromSnapshotAttributes', () => {
  test('an existing snapshot, with its ARN, usable to restore a volume', () => {
    const stack = newStack();
    const snap = OpenZfsSnapshot.fromSnapshotAttributes(stack, 'Existing', { snapshotId: 'fsvolsnap-0123456789abcdef0', volumeId: VOLUME });
    new fsx.CfnVolume(stack, 'Restored', {
      name: 'restored',
      volumeType: 'OPENZFS',
      openZfsConfiguration: { parentVolumeId: VOLUME, originSnapshot: { snapshotArn: snap.snapshotArn, copyStrategy: 'FULL_COPY' } },
    });
    Template.fromStack(stack).hasResourceProperties('AWS::FSx::Volume', {
      OpenZFSConfiguration: Match.objectLike({
        OriginSnapshot: {
          SnapshotARN: { 'Fn::Join': ['', ['arn:', { Ref: 'AWS::Partition' }, `:fsx:us-east-1:111111111111:snapshot/${VOLUME}/fsvolsnap-0123456789abcdef0`]] },
          CopyStrategy: 'FULL_COPY',
        },
      }),
    });
  });

  test('a deployed snapshot\'s ARN wires into a restored volume', () => {
    const stack = newStack();
    const snap = new OpenZfsSnapshot(stack, 'Snap', { volumeId: VOLUME });
    new fsx.CfnVolume(stack, 'Restored', {
      name: 'restored',
      volumeType: 'OPENZFS',
      openZfsConfiguration: { parentVolumeId: VOLUME, originSnapshot: { snapshotArn: snap.snapshotArn, copyStrategy: 'CLONE' } },
    });
    Template.fromStack(stack).hasResourceProperties('AWS::FSx::Volume', {
      OpenZFSConfiguration: Match.objectLike({ OriginSnapshot: { SnapshotARN: { 'Fn::GetAtt': [Match.stringLikeRegexp('^Snap'), 'SnapshotArn'] }, CopyStrategy: 'CLONE' } }),
    });
  });

  test('malformed ids are refused', () => {
    const stack = newStack();
    expect(() => OpenZfsSnapshot.fromSnapshotAttributes(stack, 'Bad', { snapshotId: 'snap-1', volumeId: VOLUME }))
      .toThrow(/Stack\/Bad: invalid snapshotId: must be "fsvolsnap-"/);
  });
});

describe('Tags.of()', () => {
  test('tags added with Tags.of reach the snapshot (merged with the tags prop) and the handlers', () => {
    const stack = newStack();
    new OpenZfsSnapshot(stack, 'Snap', { volumeId: VOLUME, tags: { team: 'data' } });
    Tags.of(stack).add('costCenter', '42');
    const template = Template.fromStack(stack);
    template.hasResourceProperties('Custom::OpenZfsSnapshot', { Tags: '{"costCenter":"42","team":"data"}' });
    template.hasResourceProperties('AWS::Lambda::Function', { Tags: Match.arrayWith([{ Key: 'costCenter', Value: '42' }]) });
    template.hasResourceProperties('AWS::IAM::Role', { Tags: Match.arrayWith([{ Key: 'costCenter', Value: '42' }]) });
  });

  test('no tags at all leaves the property out', () => {
    const stack = newStack();
    new OpenZfsSnapshot(stack, 'Snap', { volumeId: VOLUME });
    Template.fromStack(stack).hasResourceProperties('Custom::OpenZfsSnapshot', { Tags: Match.absent() });
  });

  test('too many tags once Tags.of has added its own fail at synth', () => {
    const stack = newStack();
    new OpenZfsSnapshot(stack, 'Snap', { volumeId: VOLUME, tags: Object.fromEntries(Array.from({ length: 45 }, (_, i) => [`k${i}`, 'v'])) });
    Tags.of(stack).add('one-more', 'v');
    expect(() => Template.fromStack(stack)).toThrow(/Stack\/Snap: invalid tags \(with those added by Tags.of\): at most 45 tags are allowed .* not 46/);
  });
});

describe('snapshotBefore and deploy-time values', () => {
  test('a parameter the guarded resource uses (an SSM-backed AMI) reaches the snapshot\'s properties; a NoEcho one does not', () => {
    const stack = newStack();
    const vpc = new ec2.Vpc(stack, 'Vpc', { maxAzs: 1, natGateways: 0 });
    const instance = new ec2.Instance(stack, 'Server', {
      vpc,
      vpcSubnets: { subnetType: ec2.SubnetType.PUBLIC },
      instanceType: ec2.InstanceType.of(ec2.InstanceClass.T4G, ec2.InstanceSize.MICRO),
      machineImage: ec2.MachineImage.latestAmazonLinux2023({ cpuType: ec2.AmazonLinuxCpuType.ARM_64 }),
      userData: ec2.UserData.custom('{{resolve:ssm:/app/release}}'),
    });
    const secret = new CfnParameter(stack, 'Password', { type: 'String', noEcho: true });
    (instance.node.defaultChild as ec2.CfnInstance).addPropertyOverride('Tags', [{ Key: 'pw', Value: secret.valueAsString }]);
    new OpenZfsSnapshot(stack, 'Snap', { volumeId: VOLUME, snapshotBefore: [instance] });
    const props = Object.values<any>(Template.fromStack(stack).findResources('Custom::OpenZfsSnapshot'))[0].Properties;
    const joined = props.SnapshotBeforeHash['Fn::Join'];
    expect(joined[0]).toBe('|');
    expect(joined[1][0]).toMatch(/^[0-9a-f]{32}$/);
    expect(joined[1]).toContainEqual({ Ref: expect.stringMatching(/^SsmParameterValue.*al2023/) });
    expect(JSON.stringify(joined[1])).not.toContain('Password');
  });

  test('a dynamic reference written in a guarded property is copied as written; secrets are not', () => {
    const stack = newStack();
    const guarded = new CfnResource(stack, 'Guarded', {
      type: 'AWS::SSM::Parameter',
      properties: { Type: 'String', Value: '{{resolve:ssm:/app/release:3}}', Description: '{{resolve:secretsmanager:db:SecretString:password}}' },
    });
    new OpenZfsSnapshot(stack, 'Snap', { volumeId: VOLUME, snapshotBefore: [guarded] });
    const props = Object.values<any>(Template.fromStack(stack).findResources('Custom::OpenZfsSnapshot'))[0].Properties;
    // CloudFormation resolves the reference in the snapshot's properties as it does in the guarded resource's.
    expect(props.SnapshotBeforeHash).toMatch(/^[0-9a-f]{32}\|\{\{resolve:ssm:\/app\/release:3\}\}$/);
  });

  test('without deploy-time values the property stays a plain hash', () => {
    const stack = newStack();
    const guarded = new CfnResource(stack, 'Guarded', { type: 'AWS::SSM::Parameter', properties: { Type: 'String', Value: 'v1' } });
    new OpenZfsSnapshot(stack, 'Snap', { volumeId: VOLUME, snapshotBefore: [guarded] });
    Template.fromStack(stack).hasResourceProperties('Custom::OpenZfsSnapshot', { SnapshotBeforeHash: Match.stringLikeRegexp('^[0-9a-f]{32}$') });
  });
});
