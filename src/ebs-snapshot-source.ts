import { CfnResource } from 'aws-cdk-lib';
import * as ec2 from 'aws-cdk-lib/aws-ec2';
import { IConstruct } from 'constructs';
import type { EbsSourceConfig } from './private/ebs-source-config';
import { validatePattern } from './private/validation';

/** EBS volume ids: `vol-` and 8 (older volumes) or 17 lowercase hex digits. */
const VOLUME_ID = /^vol-([0-9a-f]{8}|[0-9a-f]{17})$/;

/**
 * What an `EbsSnapshotOnDeploy` takes a snapshot of, in the style of `lambda.Code`: one volume, or
 * every volume of an instance at one point in time. (A snapshot written from a disk image is an
 * `EbsSnapshotFromImage`.)
 *
 * @example
 *
 * declare const dataVolume: ec2.IVolume;
 * declare const instance: ec2.Instance;
 * EbsSnapshotSource.fromVolume(dataVolume);
 * EbsSnapshotSource.fromVolumeId('vol-0123456789abcdef0');
 * EbsSnapshotSource.fromInstance(instance);
 */
export abstract class EbsSnapshotSource {
  /**
   * One EBS volume (EC2 `CreateSnapshot`). A volume defined in the same stack may also be guarded
   * by the snapshot (`snapshotBefore`): then it is found at deploy time by the tags CloudFormation
   * puts on it rather than referenced, and the first deploy, before it exists, takes no snapshot.
   */
  public static fromVolume(volume: ec2.IVolume): EbsSnapshotSource {
    return new VolumeSource(volume.volumeId, volume.node.defaultChild);
  }

  /**
   * One EBS volume by id (`vol-` and 8 or 17 hex digits), or a token such as `cfnVolume.ref`.
   */
  public static fromVolumeId(volumeId: string): EbsSnapshotSource {
    return new VolumeSource(volumeId, undefined);
  }

  /**
   * Every EBS volume attached to an instance, crash-consistent at one point in time (EC2
   * `CreateSnapshots`): one snapshot per volume, the boot volume included. An instance defined in
   * the same stack may also be guarded by the snapshot (`snapshotBefore: [instance]`, the main use:
   * a snapshot of its volumes before the deploy changes it): then it is found at deploy time by the
   * tags CloudFormation puts on it, and the first deploy, before it exists, takes no snapshot.
   */
  public static fromInstance(instance: ec2.IInstance): EbsSnapshotSource {
    return new InstanceSource(instance.instanceId, instance.node.defaultChild);
  }

  /**
   * What the construct snapshots, checked against `scope` (the snapshot construct).
   * @internal
   */
  public abstract _bind(scope: IConstruct): EbsSourceConfig;
}

class VolumeSource extends EbsSnapshotSource {
  constructor(private readonly volumeId: string, private readonly l1: IConstruct | undefined) {
    super();
  }

  public _bind(scope: IConstruct): EbsSourceConfig {
    validatePattern(scope, 'source', this.volumeId, VOLUME_ID, 'the volume id must be "vol-" followed by 8 or 17 lowercase hex digits');
    return { kind: 'volume', volumeId: this.volumeId, resource: cfnOfType(this.l1, 'AWS::EC2::Volume') };
  }
}

class InstanceSource extends EbsSnapshotSource {
  constructor(private readonly instanceId: string, private readonly l1: IConstruct | undefined) {
    super();
  }

  public _bind(scope: IConstruct): EbsSourceConfig {
    validatePattern(scope, 'source', this.instanceId, /^i-([0-9a-f]{8}|[0-9a-f]{17})$/,
      'the instance id must be "i-" followed by 8 or 17 lowercase hex digits');
    return { kind: 'instance', instanceId: this.instanceId, resource: cfnOfType(this.l1, 'AWS::EC2::Instance') };
  }
}

function cfnOfType(c: IConstruct | undefined, type: string): CfnResource | undefined {
  return c && CfnResource.isCfnResource(c) && c.cfnResourceType === type ? c : undefined;
}
