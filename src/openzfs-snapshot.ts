import { CfnResource, CustomResource, ITaggable, Stack, TagManager } from 'aws-cdk-lib';
import { Construct, IConstruct } from 'constructs';
import type { OpenZfsSnapshotProperties } from './private/contract';
import { CopyTags } from './private/copy-tags';
import { DEFAULT_TIMEOUT, encodeRemovalPolicy } from './private/encode';
import { FSX_DESCRIBE_REASON, FSX_VOLUME_ARN_REASON, OPENZFS_SNAPSHOT_ARN_REASON } from './private/nag';
import { MANAGED_BY, OWNERSHIP_TAG_COUNT, OWNERSHIP_TAG_KEYS } from './private/ownership-tags';
import { SnapshotProvider } from './private/provider';
import { SnapshotGuard } from './private/snapshot-before';
import { HandlerSpec } from './private/stack-handlers';
import { validatePattern, validateTimeout } from './private/validation';
import { SnapshotOnDeployOptions } from './snapshot-options';

/** Properties of an `OpenZfsSnapshot`. */
export interface OpenZfsSnapshotProps extends SnapshotOnDeployOptions {
  /**
   * The FSx for OpenZFS volume to snapshot (`fsvol-` and 17 hex digits), or a token such as
   * `cfnVolume.attrVolumeId`.
   *
   * @see https://docs.aws.amazon.com/fsx/latest/APIReference/API_CreateSnapshot.html
   */
  readonly volumeId: string;

  /**
   * Prefix of the snapshot's name. A short hash of the request is appended (`<prefix>-<8 hex>`),
   * so that every snapshot of the volume has its own name.
   *
   * @default - the construct's id, with characters FSx does not allow replaced by `-`
   */
  readonly snapshotName?: string;
}

/** A snapshot of an FSx for OpenZFS volume. */
export interface IOpenZfsSnapshot extends IConstruct {
  /**
   * The snapshot's id (`fsvolsnap-…`).
   * @attribute
   */
  readonly snapshotId: string;

  /**
   * The snapshot's ARN.
   * @attribute
   */
  readonly snapshotArn: string;
}

/** What identifies an existing OpenZFS snapshot. */
export interface OpenZfsSnapshotAttributes {
  /** The snapshot's id (`fsvolsnap-…`). */
  readonly snapshotId: string;
  /** The id of the volume the snapshot is of (`fsvol-…`); the snapshot's ARN names it. */
  readonly volumeId: string;
}

/** FSx allows snapshot names of 1–203 characters; 9 are taken by `-` and the 8-hex request hash. */
const MAX_PREFIX_LENGTH = 203 - 9;

/**
 * A snapshot of an FSx for OpenZFS volume, taken during `cdk deploy` and waited for until it is
 * `AVAILABLE`. A new snapshot is taken whenever `trigger` changes or a construct in
 * `snapshotBefore` would change, before that construct changes; earlier snapshots are kept (or
 * deleted, with `RemovalPolicy.DESTROY`).
 *
 * @example
 *
 * declare const volume: fsx.CfnVolume;
 * new OpenZfsSnapshot(this, 'BeforeMigration', {
 *   volumeId: volume.attrVolumeId,
 *   trigger: '2026-11-release',
 * });
 */
export class OpenZfsSnapshot extends Construct implements IOpenZfsSnapshot, ITaggable {
  /**
   * An existing snapshot, to restore from (`originSnapshot`) or to grant access to, for example.
   */
  public static fromSnapshotAttributes(scope: Construct, id: string, attrs: OpenZfsSnapshotAttributes): IOpenZfsSnapshot {
    class Import extends Construct implements IOpenZfsSnapshot {
      public readonly snapshotId = attrs.snapshotId;
      public readonly snapshotArn = Stack.of(scope).formatArn({
        service: 'fsx',
        resource: 'snapshot',
        resourceName: `${attrs.volumeId}/${attrs.snapshotId}`,
      });
    }
    const imported = new Import(scope, id);
    validatePattern(imported, 'snapshotId', attrs.snapshotId, /^fsvolsnap-[0-9a-f]{17}$/, 'must be "fsvolsnap-" followed by 17 lowercase hex digits');
    validatePattern(imported, 'volumeId', attrs.volumeId, /^fsvol-[0-9a-f]{17}$/, 'must be "fsvol-" followed by 17 lowercase hex digits');
    return imported;
  }

  public readonly snapshotId: string;
  public readonly snapshotArn: string;
  /**
   * The snapshot's name (the prefix and a short hash of the request that made it).
   * @attribute
   */
  public readonly snapshotName: string;
  /**
   * When the snapshot was made (ISO 8601).
   * @attribute
   */
  public readonly creationTime: string;
  /**
   * The tags of the snapshots: the `tags` prop and what `Tags.of()` adds to this construct or a
   * scope above it. They apply to snapshots taken from then on.
   */
  public readonly tags: TagManager;

  constructor(scope: Construct, id: string, props: OpenZfsSnapshotProps) {
    super(scope, id);
    const prefix = props.snapshotName ?? defaultPrefix(id);
    validatePattern(this, 'volumeId', props.volumeId, /^fsvol-[0-9a-f]{17}$/, 'must be "fsvol-" followed by 17 lowercase hex digits');
    validatePattern(this, 'snapshotName', prefix, /^[a-zA-Z0-9_:.-]{1,194}$/,
      `must be 1 to ${MAX_PREFIX_LENGTH} characters of a-z, A-Z, 0-9, _, :, . and - (FSx allows 203, and the library appends 9)`);
    const tags = new CopyTags(this, 'Custom::OpenZfsSnapshot', props.tags, OWNERSHIP_TAG_COUNT);
    this.tags = tags.tags;
    validateTimeout(this, props.timeout);

    const provider = SnapshotProvider.of(this, HANDLERS, props.handlerOptions);
    this.grant(provider, props.volumeId);

    const guard = new SnapshotGuard(this, props.snapshotBefore ?? []);
    const properties: OpenZfsSnapshotProperties = {
      VolumeId: props.volumeId,
      SnapshotName: prefix,
      Trigger: props.trigger,
      SnapshotBeforeHash: guard.hash,
      Tags: tags.encoded,
      RemovalPolicy: encodeRemovalPolicy(props.removalPolicy),
      TimeoutSeconds: String((props.timeout ?? DEFAULT_TIMEOUT).toSeconds()),
    };
    const resource = new CustomResource(this, 'Resource', {
      serviceToken: provider.serviceToken,
      resourceType: 'Custom::OpenZfsSnapshot',
      properties: { ...properties },
    });
    guard.comesBefore(resource.node.defaultChild as CfnResource);

    this.snapshotId = resource.ref;
    this.snapshotArn = resource.getAttString('SnapshotArn');
    this.snapshotName = resource.getAttString('SnapshotName');
    this.creationTime = resource.getAttString('CreationTime');
  }

  private grant(provider: SnapshotProvider, volumeId: string): void {
    const stack = Stack.of(this);
    const fsxArn = (resource: string, resourceName: string) => stack.formatArn({ service: 'fsx', resource, resourceName });
    const snapshots = fsxArn('snapshot', `${volumeId}/*`);
    // CreateSnapshot authorizes both the volume (whose ARN also names its file system, unknown
    // here) and the new snapshot; tagging on creation also needs TagResource.
    provider.allow(['fsx:CreateSnapshot'], [fsxArn('volume', `*/${volumeId}`), snapshots]);
    provider.allow(['fsx:TagResource'], [snapshots], {
      StringEquals: { [`aws:RequestTag/${OWNERSHIP_TAG_KEYS.managedBy}`]: MANAGED_BY },
    });
    // Reads and deletes (only of snapshots with this stack's ownership tags) are the provider's:
    // a Delete must not depend on this instance still being in the app.
  }
}

const HANDLERS: HandlerSpec = {
  kind: 'OpenZfsSnapshot',
  handler: 'openzfs-snapshot',
  wildcardReasons: [FSX_VOLUME_ARN_REASON, OPENZFS_SNAPSHOT_ARN_REASON, FSX_DESCRIBE_REASON],
};

function defaultPrefix(id: string): string {
  return id.replace(/[^a-zA-Z0-9_:.-]/g, '-').slice(0, MAX_PREFIX_LENGTH) || 'snapshot';
}
