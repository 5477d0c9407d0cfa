import { App, Stack } from 'aws-cdk-lib';
import { Template } from 'aws-cdk-lib/assertions';
import { OpenZfsSnapshot } from '../../src';
import { EXACT_ARNS_PER_STATEMENT, resourceTypePattern } from '../../src/private/stack-handlers';
import { policySize, rolePolicies } from '../fixtures/iam-policies';

const env = { account: '111111111111', region: 'us-east-1' };
const volume = (i: number) => `fsvol-${i.toString(16).padStart(17, '0')}`;
const arn = (suffix: string) => ({ 'Fn::Join': ['', ['arn:', { Ref: 'AWS::Partition' }, `:fsx:us-east-1:111111111111:${suffix}`]] });

/** A stack with `n` OpenZfsSnapshots, each on a volume of its own. */
function snapshots(n: number): Template {
  const stack = new Stack(new App(), 'Stack', { env });
  for (let i = 0; i < n; i++) new OpenZfsSnapshot(stack, `Snap${i}`, { volumeId: volume(i) });
  return Template.fromStack(stack);
}

function handlerPolicies(template: Template): Array<[string, any]> {
  return rolePolicies(template, 'CdkStorageSnapshotsProviderRole');
}

function statement(template: Template, action: string): any {
  const [[, policy]] = handlerPolicies(template);
  return policy.Properties.PolicyDocument.Statement.find((s: any) => s.Action === action);
}

describe('IAM statements as instances on distinct volumes grow', () => {
  test('200 OpenZfsSnapshots keep one inline policy, far under IAM\'s 10,240 characters', () => {
    const template = snapshots(200);
    const policies = handlerPolicies(template);
    // One default policy, no OverflowPolicy managed policies split off by CDK.
    expect(policies.map(([id]) => id)).toEqual([expect.stringMatching(/^CdkStorageSnapshotsProviderRoleDefaultPolicy/)]);
    expect(policySize(policies[0][1].Properties.PolicyDocument)).toBeLessThan(4_000);
    expect(statement(template, 'fsx:CreateSnapshot').Resource).toEqual([arn('volume/*'), arn('snapshot/*')]);
  });

  test('past the threshold the tag and delete statements keep their ownership conditions', () => {
    const template = snapshots(EXACT_ARNS_PER_STATEMENT + 1);
    expect(statement(template, 'fsx:TagResource')).toEqual({
      Action: 'fsx:TagResource',
      Effect: 'Allow',
      Resource: arn('snapshot/*'),
      Condition: { StringEquals: { 'aws:RequestTag/cdk-storage-snapshots:managed-by': 'cdk-storage-snapshots' } },
    });
    expect(statement(template, 'fsx:DeleteSnapshot')).toEqual({
      Action: 'fsx:DeleteSnapshot',
      Effect: 'Allow',
      Resource: arn('snapshot/*'),
      Condition: {
        StringEquals: {
          'aws:ResourceTag/cdk-storage-snapshots:managed-by': 'cdk-storage-snapshots',
          'aws:ResourceTag/cdk-storage-snapshots:stack-id': { Ref: 'AWS::StackId' },
        },
      },
    });
  });

  test('up to the threshold every ARN stays exact', () => {
    // 10 volumes: 10 snapshot ARNs in the tag statement (exact), 20 in the create statement (patterns).
    const template = snapshots(EXACT_ARNS_PER_STATEMENT);
    expect(statement(template, 'fsx:TagResource').Resource).toEqual(
      Array.from({ length: EXACT_ARNS_PER_STATEMENT }, (_, i) => arn(`snapshot/${volume(i)}/*`)),
    );
    expect(statement(template, 'fsx:CreateSnapshot').Resource).toEqual([arn('volume/*'), arn('snapshot/*')]);
  });

  test('a few volumes keep exact ARNs in every statement', () => {
    const template = snapshots(3);
    expect(statement(template, 'fsx:CreateSnapshot').Resource).toEqual([0, 1, 2].flatMap((i) => [arn(`volume/*/${volume(i)}`), arn(`snapshot/${volume(i)}/*`)]));
    expect(statement(template, 'fsx:TagResource').Resource).toEqual([0, 1, 2].map((i) => arn(`snapshot/${volume(i)}/*`)));
    // Deletes are the provider's, on every snapshot with this stack's tags (test/provider/provider.test.ts).
    expect(statement(template, 'fsx:DeleteSnapshot').Resource).toEqual(arn('snapshot/*'));
  });

  test('the cdk-nag reason for resource-type patterns is there only once a statement uses them', () => {
    const reasons = (template: Template) => {
      const [[, policy]] = handlerPolicies(template);
      return JSON.stringify(policy.Metadata?.cdk_nag ?? {});
    };
    expect(reasons(snapshots(2))).not.toMatch(/distinct ARNs in one statement/);
    expect(reasons(snapshots(EXACT_ARNS_PER_STATEMENT + 1))).toMatch(/distinct ARNs in one statement/);
  });
});

describe('resourceTypePattern', () => {
  test.each([
    ['arn:${Token[AWS.Partition.8]}:fsx:us-east-1:111111111111:snapshot/fsvol-1/*', 'arn:${Token[AWS.Partition.8]}:fsx:us-east-1:111111111111:snapshot/*'],
    ['arn:aws:fsx:${Token[AWS.Region.4]}:${Token[AWS.AccountId.1]}:volume/*/fsvol-1', 'arn:aws:fsx:${Token[AWS.Region.4]}:${Token[AWS.AccountId.1]}:volume/*'],
    ['arn:aws:ec2:us-east-1::snapshot/*', 'arn:aws:ec2:us-east-1::snapshot/*'],
    ['arn:aws:lambda:us-east-1:111111111111:function:name', 'arn:aws:lambda:us-east-1:111111111111:function:*'],
  ])('%s becomes %s', (input, pattern) => {
    expect(resourceTypePattern(input)).toBe(pattern);
  });

  test.each(['*', '${Token[TOKEN.12]}', 'arn:aws:s3:::bucket'])('%s has no pattern', (input) => {
    expect(resourceTypePattern(input)).toBeUndefined();
  });
});
