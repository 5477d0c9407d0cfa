import { CfnResource } from 'aws-cdk-lib';
import { IConstruct } from 'constructs';

/**
 * A cdk-nag rule suppression, written as cdk-nag reads it from a resource's `cdk_nag` metadata.
 * Library code cannot depend on cdk-nag itself (users choose its version), so this is its
 * documented metadata format.
 */
export interface NagSuppression {
  readonly id: string;
  /** Why the finding does not apply; users see it in their reports. */
  readonly reason: string;
  /** The findings it covers (`Resource::…`, `Policy::…`), exact or `{ regex: '/…/' }`. */
  readonly appliesTo?: Array<string | { regex: string }>;
}

/** Adds `rules` to every CloudFormation resource under `scope` (or just those `filter` picks). */
export function suppressNag(scope: IConstruct, rules: NagSuppression[], filter: (r: CfnResource) => boolean = () => true): void {
  for (const c of scope.node.findAll()) {
    if (!CfnResource.isCfnResource(c) || !filter(c)) continue;
    const existing = (c.getMetadata('cdk_nag')?.rules_to_suppress ?? []) as unknown[];
    const added = rules.map(({ id, reason, appliesTo }) => (appliesTo ? { id, reason, applies_to: appliesTo } : { id, reason }));
    const all = [...new Set([...existing, ...added].map((r) => JSON.stringify(r)))].map((r) => JSON.parse(r));
    c.addMetadata('cdk_nag', { rules_to_suppress: all });
  }
}

/** Why a volume's ARN is granted with `*` for its file system (an FSx volume's ARN names it, its id does not). */
export const FSX_VOLUME_ARN_REASON: NagSuppression = {
  id: 'AwsSolutions-IAM5',
  reason: 'An FSx volume ARN names its file system (volume/<fs id>/<volume id>), which only the volume id does not tell: ' +
    'volume/*/<volume id> is the one volume.',
  appliesTo: [{ regex: '/^Resource::arn:<AWS::Partition>:fsx:[^:]*:[^:]*:volume\\/\\*\\/.+$/' }],
};

/** Why the snapshots of a volume are granted with `*` (an OpenZFS snapshot's id is not known before it is made). */
export const OPENZFS_SNAPSHOT_ARN_REASON: NagSuppression = {
  id: 'AwsSolutions-IAM5',
  reason: 'The id of a snapshot is not known before it is made: snapshot/<volume id>/* is the snapshots of that one volume; ' +
    'tagging needs the library\'s request tags and deleting this stack\'s ownership tags.',
  appliesTo: [{ regex: '/^Resource::arn:<AWS::Partition>:fsx:[^:]*:[^:]*:snapshot\\/.+\\/\\*$/' }],
};

/** Why `*` for FSx's describe calls. */
export const FSX_DESCRIBE_REASON: NagSuppression = {
  id: 'AwsSolutions-IAM5',
  reason: 'fsx:DescribeSnapshots, fsx:DescribeBackups, fsx:DescribeFileSystems and fsx:DescribeVolumes have no resource-level permissions.',
  appliesTo: ['Resource::*'],
};
