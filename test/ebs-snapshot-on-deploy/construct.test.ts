import { App, Duration, RemovalPolicy, Size, Stack } from 'aws-cdk-lib';
import { Annotations, Match, Template } from 'aws-cdk-lib/assertions';
import * as ec2 from 'aws-cdk-lib/aws-ec2';
import * as iam from 'aws-cdk-lib/aws-iam';
import { EbsSnapshotOnDeploy, EbsSnapshotSource, OpenZfsSnapshot } from '../../src';

const VOLUME = 'vol-0123456789abcdef0';

function newStack(): Stack {
  return new Stack(new App(), 'Stack', { env: { account: '111111111111', region: 'us-east-1' } });
}

function instanceIn(stack: Stack, id = 'Instance'): ec2.Instance {
  const vpc = stack.node.tryFindChild('Vpc') as ec2.Vpc ?? new ec2.Vpc(stack, 'Vpc', { maxAzs: 1, natGateways: 0 });
  return new ec2.Instance(stack, id, {
    vpc,
    vpcSubnets: { subnetType: ec2.SubnetType.PUBLIC },
    instanceType: ec2.InstanceType.of(ec2.InstanceClass.T4G, ec2.InstanceSize.MICRO),
    machineImage: ec2.MachineImage.latestAmazonLinux2023({ cpuType: ec2.AmazonLinuxCpuType.ARM_64 }),
  });
}

function policyStatements(stack: Stack): any[] {
  const policies = Template.fromStack(stack).findResources('AWS::IAM::Policy');
  const ours = Object.entries<any>(policies).find(([k]) => /CdkStorageSnapshotsProviderRoleDefaultPolicy/.test(k))![1];
  return ours.Properties.PolicyDocument.Statement;
}

describe('EbsSnapshotOnDeploy resources', () => {
  test('a volume id: the contract properties, RETAIN and no waiting by default', () => {
    // GIVEN
    const stack = newStack();
    // WHEN
    new EbsSnapshotOnDeploy(stack, 'Snap', {
      source: EbsSnapshotSource.fromVolumeId(VOLUME),
      description: 'before release 42',
      tags: { team: 'data', app: 'orders' },
      trigger: 'r1',
    });
    // THEN
    Template.fromStack(stack).hasResourceProperties('Custom::EbsSnapshotOnDeploy', {
      ServiceToken: { 'Fn::GetAtt': [Match.stringLikeRegexp('CdkStorageSnapshotsProviderframeworkonEvent'), 'Arn'] },
      Source: 'volume',
      VolumeId: VOLUME,
      InstanceId: Match.absent(),
      SourceLogicalId: Match.absent(),
      Description: 'before release 42',
      Trigger: 'r1',
      Tags: '{"app":"orders","team":"data"}',
      RemovalPolicy: 'retain',
      TimeoutSeconds: '1800',
      WaitForCompletion: 'false',
      SnapshotBeforeHash: Match.absent(),
    });
  });

  test('removal policy, timeout, waitForCompletion and outpostArn are passed to the handler', () => {
    const stack = newStack();
    const outpostArn = 'arn:aws:outposts:us-east-1:111111111111:outpost/op-0123456789abcdef0';
    new EbsSnapshotOnDeploy(stack, 'Snap', {
      source: EbsSnapshotSource.fromVolumeId(VOLUME),
      removalPolicy: RemovalPolicy.DESTROY,
      timeout: Duration.minutes(45),
      waitForCompletion: true,
      outpostArn,
    });
    Template.fromStack(stack).hasResourceProperties('Custom::EbsSnapshotOnDeploy', {
      RemovalPolicy: 'destroy', TimeoutSeconds: '2700', WaitForCompletion: 'true', OutpostArn: outpostArn,
    });
  });

  test('fromVolume references the volume (it exists before the snapshot)', () => {
    const stack = newStack();
    const volume = new ec2.Volume(stack, 'Data', { availabilityZone: 'us-east-1a', size: Size.gibibytes(8) });
    new EbsSnapshotOnDeploy(stack, 'Snap', { source: EbsSnapshotSource.fromVolume(volume) });
    Template.fromStack(stack).hasResourceProperties('Custom::EbsSnapshotOnDeploy', {
      Source: 'volume', VolumeId: { Ref: Match.stringLikeRegexp('^Data') },
    });
  });

  test('fromInstance references the instance; IAM names it by its CloudFormation tags, not by a reference', () => {
    const stack = newStack();
    const instance = instanceIn(stack);
    new EbsSnapshotOnDeploy(stack, 'Snap', { source: EbsSnapshotSource.fromInstance(instance) });
    Template.fromStack(stack).hasResourceProperties('Custom::EbsSnapshotOnDeploy', {
      Source: 'instance', InstanceId: { Ref: Match.stringLikeRegexp('^Instance') },
    });
    const instanceId = stack.resolve((instance.node.defaultChild as ec2.CfnInstance).logicalId);
    expect(policyStatements(stack)).toEqual(expect.arrayContaining([
      {
        Action: 'ec2:CreateSnapshots',
        Effect: 'Allow',
        Resource: { 'Fn::Join': ['', ['arn:', { Ref: 'AWS::Partition' }, ':ec2:us-east-1:111111111111:instance/*']] },
        Condition: { StringEquals: { 'aws:ResourceTag/aws:cloudformation:stack-id': { Ref: 'AWS::StackId' }, 'aws:ResourceTag/aws:cloudformation:logical-id': instanceId } },
      },
      // Its attached volumes, whose ids are not known at synth.
      { Action: 'ec2:CreateSnapshots', Effect: 'Allow', Resource: { 'Fn::Join': ['', ['arn:', { Ref: 'AWS::Partition' }, ':ec2:us-east-1:111111111111:volume/*']] } },
    ]));
    expect(JSON.stringify(policyStatements(stack))).not.toContain(`"Ref":"${instanceId}"`);
  });

  test('one shared provider for many instances: the N-th instance adds exactly one resource', () => {
    const one = newStack();
    new EbsSnapshotOnDeploy(one, 'Snap0', { source: EbsSnapshotSource.fromVolumeId(VOLUME) });
    const ten = newStack();
    for (let i = 0; i < 10; i++) new EbsSnapshotOnDeploy(ten, `Snap${i}`, { source: EbsSnapshotSource.fromVolumeId(VOLUME) });
    const count = (s: Stack) => Object.keys(Template.fromStack(s).toJSON().Resources).length;
    expect(count(ten) - count(one)).toBe(9);
    Template.fromStack(ten).resourceCountIs('Custom::EbsSnapshotOnDeploy', 10);
  });

  test('the stack\'s one provider, shared with OpenZfsSnapshot', () => {
    const stack = newStack();
    new EbsSnapshotOnDeploy(stack, 'Ebs', { source: EbsSnapshotSource.fromVolumeId(VOLUME) });
    new OpenZfsSnapshot(stack, 'Zfs', { volumeId: 'fsvol-0123456789abcdef0' });
    Template.fromStack(stack).resourceCountIs('AWS::StepFunctions::StateMachine', 1);
    Template.fromStack(stack).hasResourceProperties('AWS::Lambda::Function', { Handler: 'index.isComplete', Runtime: 'nodejs22.x' });
  });

  test('attributes are deploy-time references; snapshotIds and volumeIds are token lists', () => {
    const stack = newStack();
    const snap = new EbsSnapshotOnDeploy(stack, 'Snap', { source: EbsSnapshotSource.fromInstance(instanceIn(stack)) });
    const r = (v: unknown) => stack.resolve(v);
    const logicalId = Object.keys(Template.fromStack(stack).findResources('Custom::EbsSnapshotOnDeploy'))[0];
    expect(r(snap.snapshotId)).toEqual({ 'Fn::GetAtt': [logicalId, 'SnapshotId'] });
    expect(r(snap.snapshotIds)).toEqual({ 'Fn::Split': [',', { 'Fn::GetAtt': [logicalId, 'SnapshotIds'] }] });
    expect(r(snap.volumeIds)).toEqual({ 'Fn::Split': [',', { 'Fn::GetAtt': [logicalId, 'VolumeIds'] }] });
    expect(r(snap.snapshotIdOfDevice('/dev/xvda'))).toEqual({ 'Fn::GetAtt': [logicalId, 'Device:/dev/xvda'] });
    expect(r(snap.sourceFound)).toEqual({ 'Fn::GetAtt': [logicalId, 'SourceFound'] });
    expect(r(snap.snapshotArn)).toEqual({
      'Fn::Join': ['', ['arn:', { Ref: 'AWS::Partition' }, ':ec2:us-east-1::snapshot/', { 'Fn::GetAtt': [logicalId, 'SnapshotId'] }]],
    });
  });

  test('a restore: a volume from the snapshot', () => {
    const stack = newStack();
    const snap = new EbsSnapshotOnDeploy(stack, 'Snap', { source: EbsSnapshotSource.fromVolumeId(VOLUME) });
    new ec2.Volume(stack, 'Restored', { availabilityZone: 'us-east-1a', snapshotId: snap.snapshotId });
    Template.fromStack(stack).hasResourceProperties('AWS::EC2::Volume', { SnapshotId: { 'Fn::GetAtt': [Match.anyValue(), 'SnapshotId'] } });
  });
});

describe('EbsSnapshotOnDeploy validation', () => {
  test.each([
    ['vol-123', /invalid source: the volume id must be "vol-" followed by 8 or 17 lowercase hex digits \(received "vol-123"\)/],
    ['vol-0123456789ABCDEF0', /invalid source/],
    ['snap-01234567', /invalid source/],
  ])('volume id %s is refused', (id, error) => {
    expect(() => new EbsSnapshotOnDeploy(newStack(), 'Snap', { source: EbsSnapshotSource.fromVolumeId(id) })).toThrow(error);
  });

  test('8- and 17-digit volume ids are accepted', () => {
    const stack = newStack();
    new EbsSnapshotOnDeploy(stack, 'A', { source: EbsSnapshotSource.fromVolumeId('vol-01234567') });
    new EbsSnapshotOnDeploy(stack, 'B', { source: EbsSnapshotSource.fromVolumeId(VOLUME) });
    Template.fromStack(stack).resourceCountIs('Custom::EbsSnapshotOnDeploy', 2);
  });

  test('a description over 255 characters is refused', () => {
    expect(() => new EbsSnapshotOnDeploy(newStack(), 'Snap', { source: EbsSnapshotSource.fromVolumeId(VOLUME), description: 'x'.repeat(256) }))
      .toThrow(/invalid description: must be at most 255 characters long, not 256/);
  });

  test('more than 43 user tags (50 with the library\'s 5 ownership tags, the delivery and the replaced set) are refused', () => {
    const tags = Object.fromEntries(Array.from({ length: 44 }, (_, i) => [`k${i}`, 'v']));
    expect(() => new EbsSnapshotOnDeploy(newStack(), 'Snap', { source: EbsSnapshotSource.fromVolumeId(VOLUME), tags }))
      .toThrow(/invalid tags: at most 43 tags are allowed/);
  });

  test('a timeout over 1 hour is refused', () => {
    expect(() => new EbsSnapshotOnDeploy(newStack(), 'Snap', { source: EbsSnapshotSource.fromVolumeId(VOLUME), timeout: Duration.minutes(61) }))
      .toThrow(/invalid timeout: must be between 1 minute and 1 hour/);
  });

  test('an outpostArn that is not an Outpost ARN is refused', () => {
    expect(() => new EbsSnapshotOnDeploy(newStack(), 'Snap', { source: EbsSnapshotSource.fromVolumeId(VOLUME), outpostArn: 'op-123' }))
      .toThrow(/invalid outpostArn/);
  });

  test('snapshotIdOfDevice needs an instance source and a device name', () => {
    const stack = newStack();
    const vol = new EbsSnapshotOnDeploy(stack, 'Vol', { source: EbsSnapshotSource.fromVolumeId(VOLUME) });
    expect(() => vol.snapshotIdOfDevice('/dev/xvda')).toThrow(/snapshotIdOfDevice\(\) needs an instance source/);
    const inst = new EbsSnapshotOnDeploy(stack, 'Inst', { source: EbsSnapshotSource.fromInstance(instanceIn(stack)) });
    expect(() => inst.snapshotIdOfDevice('sda; rm')).toThrow(/invalid deviceName/);
  });

  test('a source kind this version does not know is refused', () => {
    const unknown = { _bind: () => ({ kind: 'tape' }) } as unknown as EbsSnapshotSource;
    expect(() => new EbsSnapshotOnDeploy(newStack(), 'Snap', { source: unknown })).toThrow(/invalid source: sources of kind "tape" are not supported/);
  });
});

describe('EbsSnapshotOnDeploy guarding its own source', () => {
  test('an instance in both source and snapshotBefore is found by its CloudFormation tags, not referenced', () => {
    // GIVEN
    const stack = newStack();
    const instance = instanceIn(stack);
    // WHEN
    new EbsSnapshotOnDeploy(stack, 'Snap', { source: EbsSnapshotSource.fromInstance(instance), snapshotBefore: [instance] });
    // THEN: synth succeeds (no cycle), the instance depends on the snapshot, the snapshot names its logical id
    const template = Template.fromStack(stack);
    const instanceId = stack.resolve((instance.node.defaultChild as ec2.CfnInstance).logicalId);
    const snapId = Object.keys(template.findResources('Custom::EbsSnapshotOnDeploy'))[0];
    template.hasResourceProperties('Custom::EbsSnapshotOnDeploy', {
      Source: 'instance',
      InstanceId: Match.absent(),
      SourceLogicalId: instanceId,
      // The hash, and the AMI parameter CloudFormation resolves at deploy: a new AMI is a new snapshot first.
      SnapshotBeforeHash: { 'Fn::Join': ['|', [Match.stringLikeRegexp('^[0-9a-f]{32}$'), { Ref: Match.stringLikeRegexp('^SsmParameterValue') }]] },
    });
    expect(template.toJSON().Resources[instanceId].DependsOn).toContain(snapId);
    // CreateSnapshots on instance/* only for the instance of this stack with that logical id
    expect(policyStatements(stack)).toContainEqual({
      Action: 'ec2:CreateSnapshots',
      Effect: 'Allow',
      Resource: { 'Fn::Join': ['', ['arn:', { Ref: 'AWS::Partition' }, ':ec2:us-east-1:111111111111:instance/*']] },
      Condition: { StringEquals: { 'aws:ResourceTag/aws:cloudformation:stack-id': { Ref: 'AWS::StackId' }, 'aws:ResourceTag/aws:cloudformation:logical-id': instanceId } },
    });
  });

  test('snapshotIdOfDevice names its devices in the properties (the handler always answers them) and warns when empty on a first deploy', () => {
    const stack = newStack();
    const instance = instanceIn(stack);
    const snap = new EbsSnapshotOnDeploy(stack, 'Snap', { source: EbsSnapshotSource.fromInstance(instance), snapshotBefore: [instance] });
    snap.snapshotIdOfDevice('/dev/xvda');
    snap.snapshotIdOfDevice('/dev/sdf');
    const template = Template.fromStack(stack);
    template.hasResourceProperties('Custom::EbsSnapshotOnDeploy', { Devices: '/dev/sdf,/dev/xvda' });
    Annotations.fromStack(stack).hasWarning('/Stack/Snap', Match.stringLikeRegexp('is empty on the first deploy'));
  });

  test('no Devices property without snapshotIdOfDevice', () => {
    const stack = newStack();
    new EbsSnapshotOnDeploy(stack, 'Snap', { source: EbsSnapshotSource.fromInstance(instanceIn(stack)) });
    Template.fromStack(stack).hasResourceProperties('Custom::EbsSnapshotOnDeploy', { Devices: Match.absent() });
  });

  test('an ec2.Volume restored from a snapshot of a guarded source (empty on the first deploy) is refused at synth', () => {
    const stack = newStack();
    const instance = instanceIn(stack);
    const snap = new EbsSnapshotOnDeploy(stack, 'Snap', { source: EbsSnapshotSource.fromInstance(instance), snapshotBefore: [instance] });
    new ec2.Volume(stack, 'Restored', { availabilityZone: 'us-east-1a', snapshotId: snap.snapshotIdOfDevice('/dev/xvda') });
    expect(() => Template.fromStack(stack)).toThrow(/Restored\/Resource restores from a snapshot id of Stack\/Snap, whose source is guarded by it and found by its tags/);
  });

  test('a volume in a guarded scope is found by its tags too', () => {
    const stack = newStack();
    const volume = new ec2.Volume(stack, 'Data', { availabilityZone: 'us-east-1a', size: Size.gibibytes(8) });
    new EbsSnapshotOnDeploy(stack, 'Snap', { source: EbsSnapshotSource.fromVolume(volume), snapshotBefore: [volume] });
    Template.fromStack(stack).hasResourceProperties('Custom::EbsSnapshotOnDeploy', {
      Source: 'volume', VolumeId: Match.absent(), SourceLogicalId: stack.resolve((volume.node.defaultChild as ec2.CfnVolume).logicalId),
    });
  });

  test('a snapshot guarding its instance next to one of a volume that depends on the instance: no cycle through the shared policy', () => {
    const stack = newStack();
    const instance = instanceIn(stack);
    const data = new ec2.Volume(stack, 'Data', { availabilityZone: instance.instanceAvailabilityZone, size: Size.gibibytes(1) });
    new EbsSnapshotOnDeploy(stack, 'DataSnapshot', { source: EbsSnapshotSource.fromVolume(data) });
    new EbsSnapshotOnDeploy(stack, 'BeforeChange', { source: EbsSnapshotSource.fromInstance(instance), snapshotBefore: [instance] });
    const template = Template.fromStack(stack);
    template.resourceCountIs('Custom::EbsSnapshotOnDeploy', 2);
  });

  test('a volume referenced by id (a Ref) and guarded is refused as a cycle at synth', () => {
    const stack = newStack();
    const volume = new ec2.CfnVolume(stack, 'Data', { availabilityZone: 'us-east-1a', size: 8 });
    new EbsSnapshotOnDeploy(stack, 'Snap', { source: EbsSnapshotSource.fromVolumeId(volume.ref), snapshotBefore: [volume] });
    expect(() => Template.fromStack(stack)).toThrow(/invalid snapshotBefore: Stack\/Data must exist before the snapshot can be taken/);
  });

  test('a cycle through another resource is refused too', () => {
    // The snapshot refers to the instance; guarding its security group (which the instance needs) is a cycle.
    const stack = newStack();
    const instance = instanceIn(stack);
    new EbsSnapshotOnDeploy(stack, 'Snap', { source: EbsSnapshotSource.fromInstance(instance), snapshotBefore: [instance.connections.securityGroups[0]] });
    expect(() => Template.fromStack(stack)).toThrow(/invalid snapshotBefore: .* must exist before the snapshot can be taken/);
  });

  test('guarding other resources keeps the reference', () => {
    const stack = newStack();
    const instance = instanceIn(stack);
    const other = instanceIn(stack, 'Other');
    new EbsSnapshotOnDeploy(stack, 'Snap', { source: EbsSnapshotSource.fromInstance(instance), snapshotBefore: [other] });
    Template.fromStack(stack).hasResourceProperties('Custom::EbsSnapshotOnDeploy', { InstanceId: { Ref: Match.stringLikeRegexp('^Instance') } });
  });
});

describe('EbsSnapshotOnDeploy IAM', () => {
  test('create on the volume and tagged snapshots, tags only on creation, delete only what this stack tagged', () => {
    const stack = newStack();
    new EbsSnapshotOnDeploy(stack, 'Snap', { source: EbsSnapshotSource.fromVolumeId(VOLUME) });
    const snapshots = { 'Fn::Join': ['', ['arn:', { Ref: 'AWS::Partition' }, ':ec2:us-east-1::snapshot/*']] };
    const statements = policyStatements(stack);
    expect(statements).toEqual(expect.arrayContaining([
      {
        Action: 'ec2:CreateSnapshot',
        Effect: 'Allow',
        Resource: { 'Fn::Join': ['', ['arn:', { Ref: 'AWS::Partition' }, `:ec2:us-east-1:111111111111:volume/${VOLUME}`]] },
      },
      {
        Action: 'ec2:CreateSnapshot',
        Effect: 'Allow',
        Resource: snapshots,
        Condition: { StringEquals: { 'aws:RequestTag/cdk-storage-snapshots:managed-by': 'cdk-storage-snapshots', 'aws:RequestTag/cdk-storage-snapshots:stack-id': { Ref: 'AWS::StackId' } } },
      },
      {
        Action: 'ec2:CreateTags',
        Effect: 'Allow',
        Resource: snapshots,
        Condition: { StringEquals: { 'ec2:CreateAction': ['CreateSnapshot', 'CreateSnapshots'], 'aws:RequestTag/cdk-storage-snapshots:managed-by': 'cdk-storage-snapshots' } },
      },
      {
        Action: 'ec2:DeleteSnapshot',
        Effect: 'Allow',
        Resource: snapshots,
        Condition: { StringEquals: { 'aws:ResourceTag/cdk-storage-snapshots:managed-by': 'cdk-storage-snapshots', 'aws:ResourceTag/cdk-storage-snapshots:stack-id': { Ref: 'AWS::StackId' } } },
      },
      { Action: ['fsx:DescribeSnapshots', 'ec2:DescribeSnapshots'], Effect: 'Allow', Resource: '*' },
      { Action: ['ec2:DescribeVolumes', 'ec2:DescribeInstances'], Effect: 'Allow', Resource: '*' },
    ]));
    // Nothing else is granted on "*", and nothing EC2 without a scope or condition beyond the source.
    const wildcards = statements.filter((s) => s.Resource === '*').flatMap((s) => [].concat(s.Action));
    expect(wildcards.filter((a: string) => a.startsWith('ec2:'))).toEqual(['ec2:DescribeSnapshots', 'ec2:DescribeVolumes', 'ec2:DescribeInstances']);
  });

  test('many volumes share statements: another volume adds an ARN, not a statement', () => {
    const one = newStack();
    new EbsSnapshotOnDeploy(one, 'A', { source: EbsSnapshotSource.fromVolumeId(VOLUME) });
    const two = newStack();
    new EbsSnapshotOnDeploy(two, 'A', { source: EbsSnapshotSource.fromVolumeId(VOLUME) });
    new EbsSnapshotOnDeploy(two, 'B', { source: EbsSnapshotSource.fromVolumeId('vol-0123456789abcdef1') });
    expect(policyStatements(two)).toHaveLength(policyStatements(one).length);
    const create = policyStatements(two).find((s) => s.Action === 'ec2:CreateSnapshot' && !s.Condition);
    expect(create.Resource).toHaveLength(2);
  });

  test('wildcards carry cdk-nag reasons', () => {
    const stack = newStack();
    new EbsSnapshotOnDeploy(stack, 'Snap', { source: EbsSnapshotSource.fromVolumeId(VOLUME) });
    const policies = Template.fromStack(stack).findResources('AWS::IAM::Policy');
    const ours = Object.entries<any>(policies).find(([k]) => /CdkStorageSnapshotsProviderRoleDefaultPolicy/.test(k))![1];
    const reasons = ours.Metadata.cdk_nag.rules_to_suppress.filter((r: any) => r.id === 'AwsSolutions-IAM5');
    expect(reasons.map((r: any) => r.applies_to)).toEqual(expect.arrayContaining([
      [{ regex: '/^Resource::arn:<AWS::Partition>:ec2:[^:]*::snapshot\\/\\*$/' }],
      ['Resource::*'],
    ]));
  });
});

describe('EbsSnapshotOnDeploy claim table', () => {
  function tables(stack: Stack): Record<string, any> {
    return Template.fromStack(stack).findResources('AWS::DynamoDB::Table');
  }

  test('one table per stack, shared by its instances: on demand, encrypted, point-in-time recovery, TTL, deleted with the stack', () => {
    // GIVEN
    const stack = newStack();
    // WHEN
    new EbsSnapshotOnDeploy(stack, 'A', { source: EbsSnapshotSource.fromVolumeId(VOLUME) });
    new EbsSnapshotOnDeploy(stack, 'B', { source: EbsSnapshotSource.fromVolumeId('vol-0123456789abcdef1') });
    // THEN
    const all = tables(stack);
    expect(Object.keys(all)).toEqual([expect.stringMatching(/^CdkStorageSnapshotsProviderClaims[0-9A-F]{8}$/)]);
    const [table] = Object.values<any>(all);
    expect(table.Properties).toEqual({
      KeySchema: [{ AttributeName: 'Token', KeyType: 'HASH' }],
      AttributeDefinitions: [{ AttributeName: 'Token', AttributeType: 'S' }],
      BillingMode: 'PAY_PER_REQUEST',
      SSESpecification: { SSEEnabled: true },
      PointInTimeRecoverySpecification: { PointInTimeRecoveryEnabled: true },
      TimeToLiveSpecification: { AttributeName: 'ExpiresAt', Enabled: true },
    });
    expect(table.DeletionPolicy).toBe('Delete');
    expect(table.UpdateReplacePolicy).toBe('Delete');
  });

  test('onEvent and isComplete get the table\'s name (isComplete records a failure it meets)', () => {
    const stack = newStack();
    new EbsSnapshotOnDeploy(stack, 'A', { source: EbsSnapshotSource.fromVolumeId(VOLUME) });
    const t = Template.fromStack(stack);
    const [tableId] = Object.keys(tables(stack));
    for (const handler of ['index.onEvent', 'index.isComplete']) {
      t.hasResourceProperties('AWS::Lambda::Function', {
        Handler: handler,
        Environment: { Variables: Match.objectLike({ CLAIM_TABLE_NAME: { Ref: tableId } }) },
      });
    }
  });

  test('the role may get, put and update items of that table only', () => {
    const stack = newStack();
    new EbsSnapshotOnDeploy(stack, 'A', { source: EbsSnapshotSource.fromVolumeId(VOLUME) });
    const [tableId] = Object.keys(tables(stack));
    const dynamodb = policyStatements(stack).filter((s) => [].concat(s.Action).some((a: string) => a.startsWith('dynamodb:')));
    expect(dynamodb).toEqual([{
      Action: ['dynamodb:GetItem', 'dynamodb:PutItem', 'dynamodb:UpdateItem'],
      Effect: 'Allow',
      Resource: { 'Fn::GetAtt': [tableId, 'Arn'] },
    }]);
    // No KMS statement: the table uses the AWS managed key.
    expect(policyStatements(stack).flatMap((s) => [].concat(s.Action)).filter((a: string) => a.startsWith('kms:'))).toEqual([]);
  });

  test('the role may read its own resource\'s status (checked before a create); an OpenZfsSnapshot\'s may not', () => {
    const stack = newStack();
    new EbsSnapshotOnDeploy(stack, 'A', { source: EbsSnapshotSource.fromVolumeId(VOLUME) });
    const reads = policyStatements(stack).filter((s) => [].concat(s.Action).includes('cloudformation:DescribeStackResource' as never));
    expect(reads).toEqual([{ Action: 'cloudformation:DescribeStackResource', Effect: 'Allow', Resource: { Ref: 'AWS::StackId' } }]);
    const zfs = newStack();
    new OpenZfsSnapshot(zfs, 'Z', { volumeId: 'fsvol-0123456789abcdef0' });
    expect(JSON.stringify(Template.fromStack(zfs).toJSON())).not.toContain('cloudformation:DescribeStackResource');
  });

  test('a role of the user\'s gets the statement too', () => {
    const stack = newStack();
    const role = new iam.Role(stack, 'Mine', { assumedBy: new iam.ServicePrincipal('lambda.amazonaws.com') });
    new EbsSnapshotOnDeploy(stack, 'A', { source: EbsSnapshotSource.fromVolumeId(VOLUME), handlerOptions: { role } });
    const [tableId] = Object.keys(tables(stack));
    Template.fromStack(stack).hasResourceProperties('AWS::IAM::Policy', {
      Roles: [{ Ref: stack.getLogicalId(role.node.defaultChild as iam.CfnRole) }],
      PolicyDocument: {
        Statement: Match.arrayWith([{
          Action: ['dynamodb:GetItem', 'dynamodb:PutItem', 'dynamodb:UpdateItem'],
          Effect: 'Allow',
          Resource: { 'Fn::GetAtt': [tableId, 'Arn'] },
        }]),
      },
    });
  });

  test('an immutable role of the user\'s is left alone (its owner grants the three actions)', () => {
    const stack = newStack();
    const role = iam.Role.fromRoleArn(stack, 'Theirs', 'arn:aws:iam::111111111111:role/handlers', { mutable: false });
    new EbsSnapshotOnDeploy(stack, 'A', { source: EbsSnapshotSource.fromVolumeId(VOLUME), handlerOptions: { role } });
    const t = Template.fromStack(stack);
    t.resourceCountIs('AWS::DynamoDB::Table', 1);
    t.resourceCountIs('AWS::IAM::Policy', 3); // the Provider framework's two roles' and its state machine's only
  });

  test('every snapshot resource depends on the table, so CloudFormation deletes the table after all of them', () => {
    const stack = newStack();
    new EbsSnapshotOnDeploy(stack, 'A', { source: EbsSnapshotSource.fromVolumeId(VOLUME) });
    new EbsSnapshotOnDeploy(stack, 'B', { source: EbsSnapshotSource.fromInstance(instanceIn(stack)) });
    const [tableId] = Object.keys(tables(stack));
    const snapshots = Object.values<any>(Template.fromStack(stack).findResources('Custom::EbsSnapshotOnDeploy'));
    expect(snapshots).toHaveLength(2);
    for (const snapshot of snapshots) expect(snapshot.DependsOn).toContain(tableId);
  });

  test('no queue, no event source, no drain', () => {
    const stack = newStack();
    new EbsSnapshotOnDeploy(stack, 'A', { source: EbsSnapshotSource.fromVolumeId(VOLUME) });
    const t = Template.fromStack(stack);
    t.resourceCountIs('AWS::SQS::Queue', 0);
    t.resourceCountIs('AWS::SQS::QueuePolicy', 0);
    t.resourceCountIs('AWS::Lambda::EventSourceMapping', 0);
    t.resourceCountIs('Custom::EbsSnapshotQueueDrain', 0);
  });

  test('the fixed resources of a stack with one EbsSnapshotOnDeploy: 16 (its custom resource aside)', () => {
    const stack = newStack();
    new EbsSnapshotOnDeploy(stack, 'A', { source: EbsSnapshotSource.fromVolumeId(VOLUME) });
    const resources = Object.values<any>(Template.fromStack(stack).toJSON().Resources);
    const types: Record<string, number> = {};
    for (const r of resources) types[r.Type] = (types[r.Type] ?? 0) + 1;
    expect(types).toEqual({
      'Custom::EbsSnapshotOnDeploy': 1,
      // The handlers' role, the Provider framework's two (onEvent; isComplete and onTimeout), the waiter's.
      'AWS::IAM::Role': 4,
      'AWS::IAM::Policy': 4,
      // onEvent and isComplete, and the framework's three.
      'AWS::Lambda::Function': 5,
      'AWS::StepFunctions::StateMachine': 1,
      'AWS::Logs::LogGroup': 1,
      'AWS::DynamoDB::Table': 1,
    });
    expect(resources.length - 1).toBe(16);
  });

  test('reservedConcurrentExecutions caps both handlers', () => {
    const stack = newStack();
    new EbsSnapshotOnDeploy(stack, 'A', { source: EbsSnapshotSource.fromVolumeId(VOLUME), handlerOptions: { reservedConcurrentExecutions: 3 } });
    const t = Template.fromStack(stack);
    t.hasResourceProperties('AWS::Lambda::Function', { Handler: 'index.onEvent', ReservedConcurrentExecutions: 3 });
    t.hasResourceProperties('AWS::Lambda::Function', { Handler: 'index.isComplete', ReservedConcurrentExecutions: 3 });
  });

  test('other constructs get no table (EbsSnapshotFromImage\'s is tested with it)', () => {
    const zfs = newStack();
    new OpenZfsSnapshot(zfs, 'Zfs', { volumeId: 'fsvol-0123456789abcdef0' });
    Template.fromStack(zfs).resourceCountIs('AWS::DynamoDB::Table', 0);
  });
});

describe('EbsSnapshotOnDeploy.fromSnapshotId', () => {
  test('an existing snapshot: its id, and an ARN with no account field', () => {
    const stack = newStack();
    const snap = EbsSnapshotOnDeploy.fromSnapshotId(stack, 'Existing', 'snap-0123456789abcdef0');
    expect(snap.snapshotId).toBe('snap-0123456789abcdef0');
    expect(stack.resolve(snap.snapshotArn)).toEqual({ 'Fn::Join': ['', ['arn:', { Ref: 'AWS::Partition' }, ':ec2:us-east-1::snapshot/snap-0123456789abcdef0']] });
  });

  test('a malformed id is refused', () => {
    expect(() => EbsSnapshotOnDeploy.fromSnapshotId(newStack(), 'Bad', 'vol-0123456789abcdef0'))
      .toThrow(/Stack\/Bad: invalid snapshotId: must be "snap-" followed by 8 or 17 lowercase hex digits/);
  });
});
