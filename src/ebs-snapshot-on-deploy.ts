import { Annotations, CfnResource, CustomResource, Fn, ITaggable, Lazy, Stack, TagManager, Token } from 'aws-cdk-lib';
import * as ec2 from 'aws-cdk-lib/aws-ec2';
import { Construct, IConstruct } from 'constructs';
import { EbsSnapshotSource } from './ebs-snapshot-source';
import { CopyTags } from './private/copy-tags';
import {
  CLAIM_TABLE_ENV, CLAIM_TABLE_KEY, CLAIM_TABLE_TTL_ATTRIBUTE, EBS_SNAPSHOT_EXTRA_TAG_COUNT, type EbsSnapshotOnDeployProperties,
} from './private/ebs-contract';
import type { EbsSourceConfig } from './private/ebs-source-config';
import { ec2SnapshotArn } from './private/ec2-arns';
import { DEFAULT_TIMEOUT, encodeRemovalPolicy } from './private/encode';
import { MANAGED_BY, OWNERSHIP_TAG_COUNT, OWNERSHIP_TAG_KEYS, stackOwnershipCondition } from './private/ownership-tags';
import { SnapshotProvider } from './private/provider';
import { SnapshotGuard } from './private/snapshot-before';
import { HandlerSpec } from './private/stack-handlers';
import { invalid, validateMaxLength, validatePattern, validateTimeout } from './private/validation';
import { SnapshotOnDeployOptions } from './snapshot-options';

/** Properties of an `EbsSnapshotOnDeploy`. */
export interface EbsSnapshotOnDeployProps extends SnapshotOnDeployOptions {
  /**
   * What to take a snapshot of: `EbsSnapshotSource.fromVolume(volume)`, `.fromVolumeId('vol-…')` or
   * `.fromInstance(instance)` (all of its volumes at one point in time).
   */
  readonly source: EbsSnapshotSource;

  /**
   * The snapshot's description, at most 255 characters. A change applies to the next snapshot; it
   * does not take one.
   *
   * @default - "cdk-storage-snapshots: <logical id> in <stack name>"
   * @see https://docs.aws.amazon.com/AWSEC2/latest/APIReference/API_CreateSnapshot.html
   */
  readonly description?: string;

  /**
   * The ARN of the Outpost to keep the snapshot on, for a volume on an Outpost (EC2 `OutpostArn`).
   *
   * @default - the snapshot is stored in the Region (for a volume on an Outpost, in its parent Region)
   */
  readonly outpostArn?: string;

  /**
   * Whether the deploy waits until the snapshot is `completed`. EBS fixes the snapshot's point in
   * time when `CreateSnapshot` returns and the volume can be used at once, so by default the deploy
   * goes on once the snapshot exists (`pending`). With `true`, a snapshot that ends in
   * `error` fails the deploy with EBS's state message, and one not `completed` within `timeout`
   * fails it too (a first, full snapshot of a large volume can take longer than an hour). A change
   * applies to the next snapshot; it does not take one.
   *
   * @default false
   */
  readonly waitForCompletion?: boolean;
}

/** The EBS snapshots an `EbsSnapshotOnDeploy` took. */
export interface IEbsSnapshotOnDeploy extends IConstruct {
  /**
   * The snapshot's id (`snap-…`): the only one for a volume source, the first one (in the order of
   * `volumeIds`) for an instance source. Empty when the source did not exist yet.
   * @attribute
   */
  readonly snapshotId: string;

  /**
   * The snapshot's ARN (`arn:<partition>:ec2:<region>::snapshot/<id>`: EC2 snapshot ARNs have no account).
   * @attribute
   */
  readonly snapshotArn: string;
}

/** EC2 descriptions are at most 255 characters. */
const MAX_DESCRIPTION_LENGTH = 255;

/**
 * EBS snapshots taken during `cdk deploy`: of one volume, or of every volume of an instance at
 * one point in time, before the resources in `snapshotBefore` change. A new snapshot is taken
 * whenever `trigger` changes or a guarded construct would change; earlier snapshots are kept (or
 * deleted, with `RemovalPolicy.DESTROY`). For a snapshot written from a disk image, see
 * `EbsSnapshotFromImage`.
 *
 * EC2 `CreateSnapshot` has no client token: before creating, the handler claims the CloudFormation
 * request with a conditional write to a DynamoDB table of the stack (one per stack, shared by its
 * EbsSnapshotOnDeploy instances, deleted with it), so that only one delivery of a retried or
 * duplicated request creates, and it tags each snapshot with the request's token. Snapshots of
 * encrypted volumes are encrypted, with the volume's key. `DryRun` is not offered: it would make a
 * deploy that does nothing.
 *
 * To guard the instance you snapshot (the snapshot comes before the change to the instance), put
 * it in both `source` and `snapshotBefore`: the handler then finds it by the tags CloudFormation
 * gives it rather than by a reference (which would be a dependency cycle). On the first deploy,
 * when the instance does not exist yet, no snapshot is taken; the `SourceFound` attribute and the
 * handler's log say so.
 *
 * @example
 *
 * declare const instance: ec2.Instance;
 * new EbsSnapshotOnDeploy(this, 'BeforeRelease', {
 *   source: EbsSnapshotSource.fromInstance(instance),
 *   snapshotBefore: [instance],
 *   description: 'before release 42',
 * });
 */
export class EbsSnapshotOnDeploy extends Construct implements IEbsSnapshotOnDeploy, ITaggable {
  /**
   * An existing EBS snapshot (`snap-…`), to restore from (`ec2.Volume` `snapshotId`) or to name
   * in a policy, for example.
   */
  public static fromSnapshotId(scope: Construct, id: string, snapshotId: string): IEbsSnapshotOnDeploy {
    class Import extends Construct implements IEbsSnapshotOnDeploy {
      public readonly snapshotId = snapshotId;
      public readonly snapshotArn = ec2SnapshotArn(scope, snapshotId);
    }
    const imported = new Import(scope, id);
    validatePattern(imported, 'snapshotId', snapshotId, /^snap-([0-9a-f]{8}|[0-9a-f]{17})$/, 'must be "snap-" followed by 8 or 17 lowercase hex digits');
    return imported;
  }

  public readonly snapshotId: string;
  public readonly snapshotArn: string;
  /**
   * The tags of the snapshots: the `tags` prop and what `Tags.of()` adds to this construct or a
   * scope above it. They apply to snapshots taken from then on.
   */
  public readonly tags: TagManager;

  private readonly resource: CustomResource;
  private readonly sourceKind: EbsSourceConfig['kind'];
  /** The device names `snapshotIdOfDevice()` was called with: the handler answers each of them. */
  private readonly devices = new Set<string>();
  /** Whether the source is found by its CloudFormation tags (then the first deploy takes no snapshot). */
  private foundByTags = false;

  constructor(scope: Construct, id: string, props: EbsSnapshotOnDeployProps) {
    super(scope, id);
    validateMaxLength(this, 'description', props.description, MAX_DESCRIPTION_LENGTH);
    validateTimeout(this, props.timeout);
    validatePattern(this, 'outpostArn', props.outpostArn, /^arn:aws[a-z-]*:outposts:[a-z0-9-]+:\d{12}:outpost\/op-[0-9a-f]{17}$/,
      'must be an Outpost ARN (arn:<partition>:outposts:<region>:<account>:outpost/op-<17 hex digits>)');

    const config = props.source._bind(this);
    this.sourceKind = config.kind;
    const tags = new CopyTags(this, 'Custom::EbsSnapshotOnDeploy', props.tags, OWNERSHIP_TAG_COUNT + EBS_SNAPSHOT_EXTRA_TAG_COUNT);
    this.tags = tags.tags;

    const guarded = props.snapshotBefore ?? [];
    const provider = SnapshotProvider.of(this, HANDLERS, props.handlerOptions);
    const guard = new SnapshotGuard(this, guarded);

    const source = this.sourceProperties(config, guarded);
    this.grant(provider, source);
    const properties: EbsSnapshotOnDeployProperties = {
      ...source.properties,
      Description: props.description,
      OutpostArn: props.outpostArn,
      Trigger: props.trigger,
      SnapshotBeforeHash: guard.hash,
      Tags: tags.encoded,
      RemovalPolicy: encodeRemovalPolicy(props.removalPolicy),
      TimeoutSeconds: String((props.timeout ?? DEFAULT_TIMEOUT).toSeconds()),
      WaitForCompletion: props.waitForCompletion ? 'true' : 'false',
      Devices: Lazy.string({ produce: () => (this.devices.size > 0 ? [...this.devices].sort().join(',') : undefined) }),
    };
    this.foundByTags = source.properties.SourceLogicalId !== undefined;
    this.resource = new CustomResource(this, 'Resource', {
      serviceToken: provider.serviceToken,
      resourceType: 'Custom::EbsSnapshotOnDeploy',
      properties: { ...properties },
    });
    guard.comesBefore(this.resource.node.defaultChild as CfnResource);
    // Deleted before the stack's claim table (on stack deletion and on a rolled-back creation), so
    // that the table is there for every request the handler still answers.
    provider.dependOnClaims(this.resource);
    if (this.foundByTags) this.node.addValidation({ validate: () => this.refuseEmptySnapshotForVolumes() });

    this.snapshotId = this.resource.getAttString('SnapshotId');
    this.snapshotArn = ec2SnapshotArn(this, this.snapshotId);
  }

  /**
   * Every snapshot's id: one for a volume source, one per attached volume for an instance source
   * (in the order of `volumeIds`). For an instance, a token for a list whose length is known only
   * at deploy time: use `Fn.select(i, snapshotIds)` for one of them, or `snapshotIdOfDevice`.
   * @attribute
   */
  public get snapshotIds(): string[] {
    return Fn.split(',', this.resource.getAttString('SnapshotIds'));
  }

  /**
   * The volumes snapshotted, in the order of `snapshotIds`.
   * @attribute
   */
  public get volumeIds(): string[] {
    return Fn.split(',', this.resource.getAttString('VolumeIds'));
  }

  /**
   * When EC2 took the (first) snapshot (ISO 8601): the point in time it holds.
   * @attribute
   */
  public get startTime(): string {
    return this.resource.getAttString('StartTime');
  }

  /**
   * `true`, or `false` when the source was looked up in this stack and did not exist yet (the
   * first deploy of an instance or volume guarded by this snapshot): then no snapshot was taken.
   * @attribute
   */
  public get sourceFound(): string {
    return this.resource.getAttString('SourceFound');
  }

  /**
   * The id of the snapshot of the volume attached at `deviceName` (as the instance's block device
   * mapping names it, for example `/dev/xvda`), for an instance source. The deploy fails if the
   * instance has no volume at that device when the snapshot is taken.
   *
   * The attribute is always there, and EMPTY when no snapshot was taken: on the first deploy of an
   * instance this construct guards (`snapshotBefore`), which is found by its tags and does not exist
   * yet. Synth refuses an `ec2.Volume` restored from such an id (it would get an empty snapshot id
   * on the first deploy); an output or a parameter is fine.
   */
  public snapshotIdOfDevice(deviceName: string): string {
    if (this.sourceKind !== 'instance') {
      invalid(this, 'source', 'snapshotIdOfDevice() needs an instance source (EbsSnapshotSource.fromInstance)');
    }
    if (!Token.isUnresolved(deviceName) && !/^\/dev\/[a-z0-9]+$|^xvd[a-z]+$/.test(deviceName)) {
      invalid(this, 'deviceName', 'must be a device name such as /dev/xvda or /dev/sdf', deviceName);
    }
    this.devices.add(deviceName);
    if (this.foundByTags) {
      Annotations.of(this).addWarningV2('cdk-storage-snapshots:empty-on-first-deploy',
        `snapshotIdOfDevice('${deviceName}') is empty on the first deploy: the instance is guarded by this snapshot and does not exist yet`);
    }
    return this.resource.getAttString(`Device:${deviceName}`);
  }

  /**
   * A source found by its tags has no snapshot on the first deploy, so its ids are empty then: an
   * `ec2.Volume` restored from one would fail (or be created empty). Refused at synth.
   */
  private refuseEmptySnapshotForVolumes(): string[] {
    const stack = Stack.of(this);
    const logicalId = stack.resolve((this.resource.node.defaultChild as CfnResource).logicalId);
    const errors: string[] = [];
    for (const c of stack.node.findAll()) {
      if (!(c instanceof ec2.CfnVolume) || c.snapshotId === undefined) continue;
      const refs = JSON.stringify(stack.resolve(c.snapshotId));
      if (refs.includes(`"${logicalId}"`)) {
        errors.push(`${c.node.path} restores from a snapshot id of ${this.node.path}, whose source is guarded by it and found by its tags: ` +
          'no snapshot is taken on the first deploy, so the id is empty then. Restore from a source that is not guarded, or from EbsSnapshotOnDeploy.fromSnapshotId');
      }
    }
    return errors;
  }

  /**
   * How the handler finds the source: by id (a literal or a reference), or, for a source of this
   * stack that the snapshot guards, by the tags CloudFormation puts on it (a reference would make
   * the snapshot depend on what must depend on the snapshot).
   */
  private sourceProperties(config: EbsSourceConfig, guarded: IConstruct[]): SourceBinding {
    const kind = (config as { kind: string }).kind;
    switch (config.kind) {
      case 'volume':
      case 'instance': {
        const sameStack = config.resource && Stack.of(config.resource) === Stack.of(this) ? config.resource : undefined;
        const id = config.kind === 'volume' ? config.volumeId : config.instanceId;
        // IAM names a source of this stack by its CloudFormation tags: a reference in the shared
        // policy would make every snapshot of the stack wait for it (a cycle when one guards it).
        const logicalId = sameStack?.logicalId;
        if (sameStack && this.isGuarded(sameStack, guarded)) {
          return { kind: config.kind, logicalId, properties: { Source: config.kind, SourceLogicalId: logicalId } };
        }
        return {
          kind: config.kind,
          id,
          logicalId,
          properties: config.kind === 'volume' ? { Source: 'volume', VolumeId: id } : { Source: 'instance', InstanceId: id },
        };
      }
      default:
        return invalid(this, 'source', `sources of kind "${kind}" are not supported by this version of EbsSnapshotOnDeploy`);
    }
  }

  private isGuarded(resource: CfnResource, guarded: IConstruct[]): boolean {
    return guarded.some((g) => g === resource || resource.node.scopes.includes(g));
  }

  private grant(provider: SnapshotProvider, source: SourceBinding): void {
    const stack = Stack.of(this);
    const ec2Arn = (resource: string, name: string) => stack.formatArn({ service: 'ec2', resource, resourceName: name });
    const snapshots = ec2SnapshotArn(this, '*');
    const action = source.kind === 'volume' ? 'ec2:CreateSnapshot' : 'ec2:CreateSnapshots';
    const sourceType = source.kind === 'volume' ? 'volume' : 'instance';
    if (source.logicalId !== undefined) {
      // A source of this stack, by CloudFormation's own tags: only that resource of this stack.
      provider.allow([action], [ec2Arn(sourceType, '*')], {
        StringEquals: {
          'aws:ResourceTag/aws:cloudformation:stack-id': stack.stackId,
          'aws:ResourceTag/aws:cloudformation:logical-id': source.logicalId,
        },
      });
    } else {
      provider.allow([action], [ec2Arn(sourceType, source.id!)]);
    }
    if (source.kind === 'instance') {
      // CreateSnapshots authorizes every volume attached to the instance, whose ids are not known here.
      provider.allow(['ec2:CreateSnapshots'], [ec2Arn('volume', '*')]);
    }
    // The new snapshot: only with the library's tags in the request.
    provider.allow([action], [snapshots], {
      StringEquals: stackOwnershipCondition('RequestTag', stack.stackId),
    });
    provider.allow(['ec2:CreateTags'], [snapshots], {
      StringEquals: {
        'ec2:CreateAction': ['CreateSnapshot', 'CreateSnapshots'],
        [`aws:RequestTag/${OWNERSHIP_TAG_KEYS.managedBy}`]: MANAGED_BY,
      },
    });
    // Reading and deleting snapshots (only with this stack's ownership tags) are the provider's: a
    // Delete must not depend on this instance still being in the app. The Describe actions have no
    // resource-level permissions.
    provider.allow(['ec2:DescribeVolumes', 'ec2:DescribeInstances'], ['*']);
  }
}

interface SourceBinding {
  readonly kind: 'volume' | 'instance';
  /** The id, when the source is referenced; absent when it is looked up by tags. */
  readonly id?: string;
  /** The logical id of a source defined in this stack. */
  readonly logicalId?: string;
  readonly properties: Pick<EbsSnapshotOnDeployProperties, 'Source' | 'VolumeId' | 'InstanceId' | 'SourceLogicalId'>;
}

const HANDLERS: HandlerSpec = {
  kind: 'EbsSnapshotOnDeploy',
  handler: 'ebs-snapshot',
  // EC2 CreateSnapshot(s) takes no client token: the handler claims each request in the stack's table.
  claimTable: { envName: CLAIM_TABLE_ENV, partitionKey: CLAIM_TABLE_KEY, timeToLiveAttribute: CLAIM_TABLE_TTL_ATTRIBUTE },
  wildcardReasons: [
    {
      id: 'AwsSolutions-IAM5',
      reason: 'The id of a snapshot is not known before it is made (and EC2 snapshot ARNs have no account): creating one needs the ' +
        'library\'s and this stack\'s request tags, tagging is limited to creation (ec2:CreateAction), deleting needs this stack\'s ownership tags.',
      appliesTo: [{ regex: '/^Resource::arn:<AWS::Partition>:ec2:[^:]*::snapshot\\/\\*$/' }],
    },
    {
      id: 'AwsSolutions-IAM5',
      reason: 'A source defined in this stack is named by its CloudFormation tags, not by a reference (which would make the shared ' +
        'policy, and so every snapshot of the stack, wait for it: a cycle when a snapshot guards it): volume/* and instance/* ' +
        'are limited to that one resource by aws:cloudformation:stack-id and aws:cloudformation:logical-id; ' +
        'CreateSnapshots also authorizes the instance\'s attached volumes, whose ids are not known at synth.',
      appliesTo: [{ regex: '/^Resource::arn:<AWS::Partition>:ec2:[^:]*:[^:]*:(volume|instance)\\/\\*$/' }],
    },
    {
      id: 'AwsSolutions-IAM5',
      reason: 'ec2:DescribeSnapshots, ec2:DescribeVolumes and ec2:DescribeInstances have no resource-level permissions ' +
        '(the service authorization reference lists no resource type).',
      appliesTo: ['Resource::*'],
    },
  ],
};
