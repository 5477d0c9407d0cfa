import { Aws, Stack } from 'aws-cdk-lib';
import { IConstruct } from 'constructs';

/**
 * The ARN of an EC2 (EBS) snapshot in the stack's Region, or `*` for all of them. EC2 snapshot
 * ARNs have an empty account field (`arn:<partition>:ec2:<region>::snapshot/<id>`), which
 * `Stack.formatArn` fills in unless told otherwise.
 */
export function ec2SnapshotArn(scope: IConstruct, snapshotId: string): string {
  return `arn:${Aws.PARTITION}:ec2:${Stack.of(scope).region}::snapshot/${snapshotId}`;
}
