/*
 * The custom resource types that the stack's one provider serves, and the handler module of each.
 * A value module without dependencies: the construct side (src/private/provider.ts) and the
 * router (lambda/provider/index.ts) both import it, so a type the provider serves always has a
 * module the router loads.
 */

/** `ResourceType` → the handler module, bundled as `assets/provider/<module>.js`. */
export const DEPLOY_TIME_HANDLERS: Readonly<Record<string, string>> = {
  'Custom::OpenZfsSnapshot': 'openzfs-snapshot',
  'Custom::EbsSnapshotOnDeploy': 'ebs-snapshot',
  'Custom::EbsSnapshotFromImage': 'ebs-direct-snapshot',
};

/** The bundle directory under `assets/` of the provider's functions (the router and the type modules). */
export const PROVIDER_ASSET = 'provider';
