import { Duration, Stack } from 'aws-cdk-lib';
import * as kms from 'aws-cdk-lib/aws-kms';
import { UPLOAD_CURSOR_TAG_KEY } from './ebs-direct-contract';
import type { EbsImageLocation } from './ebs-image';
import { ec2SnapshotArn } from './ec2-arns';
import { stackOwnershipCondition } from './ownership-tags';
import { SnapshotProvider } from './provider';
import { HandlerSpec } from './stack-handlers';

/** The handler that writes snapshots from disk images (`EbsSnapshotFromImage`), and how it is sized. */
export const EBS_IMAGE_HANDLER: HandlerSpec = {
  kind: 'EbsSnapshotFromImage',
  handler: 'ebs-direct-snapshot',
  // More memory is more CPU: SHA-256 of every block, and 64 writes in flight.
  defaultMemorySize: 2048,
  onEventTimeout: Duration.minutes(5),
  // Each isComplete uploads for all but the last minute of its 14, under the framework's 15.
  isCompleteTimeout: Duration.minutes(14),
  wildcardReasons: [
    {
      id: 'AwsSolutions-IAM5',
      reason: 'The id of a snapshot is not known before StartSnapshot makes it: snapshot/* with the library\'s request tags for ' +
        'StartSnapshot, and this stack\'s ownership tags for writing, completing, tagging (the resume cursor only) and deleting.',
      appliesTo: [{ regex: '/^Resource::arn:<AWS::Partition>:ec2:[^:]*::snapshot\\/\\*$/' }],
    },
    {
      id: 'AwsSolutions-IAM5',
      reason: 'ec2:DescribeSnapshots has no resource-level permissions (the service authorization reference lists no resource type).',
      appliesTo: ['Resource::*'],
    },
    {
      id: 'AwsSolutions-IAM5',
      reason: 'kms:ReEncrypt* is ReEncryptFrom and ReEncryptTo on the one key the snapshot is encrypted with, as EBS needs.',
      appliesTo: ['Action::kms:ReEncrypt*'],
    },
  ],
};

/** What one snapshot from a disk image needs beyond what every one of them does. */
export interface ImageSnapshotGrant {
  readonly image: EbsImageLocation;
  readonly parentSnapshotId?: string;
  readonly kmsKey?: kms.IKey;
}

/** Grants the shared handler role exactly what one snapshot from a disk image needs. */
export function grantImageSnapshot(provider: SnapshotProvider, grant: ImageSnapshotGrant): void {
  const stack = Stack.of(provider);
  const snapshots = ec2SnapshotArn(provider, '*');
  const requestTagsOurs = stackOwnershipCondition('RequestTag', stack.stackId);
  const ours = stackOwnershipCondition('ResourceTag', stack.stackId);
  // StartSnapshot authorizes the new snapshot (and the parent); the tags on creation must be ours.
  const startResources = [snapshots];
  if (grant.parentSnapshotId) startResources.push(ec2SnapshotArn(provider, grant.parentSnapshotId));
  provider.allow(['ebs:StartSnapshot'], startResources, { StringEquals: requestTagsOurs });
  // Writes only to snapshots this stack started.
  provider.allow(['ebs:PutSnapshotBlock', 'ebs:CompleteSnapshot'], [snapshots], { StringEquals: ours });
  // StartSnapshot with Tags is also authorized as ec2:CreateTags on the new snapshot (the service
  // authorization reference maps StartSnapshot to ebs:StartSnapshot and ec2:CreateTags): only with
  // the library's and this stack's tags in the request.
  provider.allow(['ec2:CreateTags'], [snapshots], { StringEquals: requestTagsOurs });
  // The resume cursor: one tag key, on snapshots this stack owns.
  provider.allow(['ec2:CreateTags'], [snapshots], {
    'StringEquals': ours,
    'ForAllValues:StringEquals': { 'aws:TagKeys': [UPLOAD_CURSOR_TAG_KEY] },
  });
  // Reading and deleting snapshots (only with this stack's ownership tags) are the provider's.
  // The image object only (GetObject also authorizes HeadObject), and its bucket's key if it has one.
  provider.allow(['s3:GetObject'], [grant.image.bucket.arnForObjects(grant.image.objectKey)]);
  grant.image.bucket.encryptionKey?.grantDecrypt(provider.role);
  if (grant.kmsKey) {
    // What the EBS direct APIs need of the caller to write a snapshot encrypted with a customer
    // managed key (EBS user guide, "Control access to EBS direct APIs using IAM", KMS keys).
    grant.kmsKey.grant(provider.role, 'kms:Encrypt', 'kms:Decrypt', 'kms:GenerateDataKey', 'kms:GenerateDataKeyWithoutPlaintext',
      'kms:ReEncrypt*', 'kms:DescribeKey');
    provider.allow(['kms:CreateGrant'], [grant.kmsKey.keyArn], { Bool: { 'kms:GrantIsForAWSResource': true } });
  }
}
