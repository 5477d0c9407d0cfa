import { App, Aspects, Stack } from 'aws-cdk-lib';
import { Annotations, Match } from 'aws-cdk-lib/assertions';
import * as iam from 'aws-cdk-lib/aws-iam';
import { AwsSolutionsChecks } from 'cdk-nag';
import { ExampleStack } from '../../examples/stack';

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

test('the check can fail: a stack with an unjustified wildcard is reported', () => {
  const stack = new Stack(new App(), 'Bad', { env });
  const role = new iam.Role(stack, 'Role', { assumedBy: new iam.ServicePrincipal('lambda.amazonaws.com') });
  role.addToPrincipalPolicy(new iam.PolicyStatement({ actions: ['fsx:DeleteSnapshot'], resources: ['*'] }));
  expect(findings(stack)).toContainEqual(expect.stringMatching(/Bad\/Role\/DefaultPolicy\/Resource: AwsSolutions-IAM5/));
});
