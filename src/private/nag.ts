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
