import { CfnResource } from 'aws-cdk-lib';

/**
 * What an `EbsSnapshotSource` binds to: the construct switches on `kind`, and refuses a kind it
 * does not know.
 */
export type EbsSourceConfig = EbsVolumeSourceConfig | EbsInstanceSourceConfig;

export interface EbsVolumeSourceConfig {
  readonly kind: 'volume';
  /** The volume id (a literal or a token). */
  readonly volumeId: string;
  /** The volume's L1 when it is defined in the app: lets the construct find it by tags if it is guarded. */
  readonly resource?: CfnResource;
}

export interface EbsInstanceSourceConfig {
  readonly kind: 'instance';
  /** The instance id (a literal or a token). */
  readonly instanceId: string;
  /** The instance's L1 when it is defined in the app: lets the construct find it by tags if it is guarded. */
  readonly resource?: CfnResource;
}
