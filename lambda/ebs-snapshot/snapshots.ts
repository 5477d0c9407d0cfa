import {
  CreateSnapshotCommand,
  CreateSnapshotsCommand,
  DescribeInstancesCommand,
  DescribeSnapshotsCommand,
  DescribeVolumesCommand,
  Filter,
  Tag,
} from '@aws-sdk/client-ec2';
import type { EbsSnapshotOnDeployProperties } from '../../src/private/ebs-contract';
import { CALL_BUDGET_MS } from '../shared/budget';
import { ec2, ec2Create } from '../shared/clients/ec2';
import { describeOwnSnapshots } from '../shared/ec2-snapshots';
import { HandlerError, errorCode, withRetries } from '../shared/errors';
import type { OnEventRequest } from '../shared/events';
import { logger } from '../shared/logger';
import { KeyValue, OWNERSHIP_TAG_KEYS, isMadeBy, requestOwner } from '../shared/ownership';

/*
 * What the EbsSnapshotOnDeploy handler asks of EC2: finding the source, creating, reading and
 * deleting snapshots. Reads are eventually consistent (a new snapshot may be missing from them for
 * a while); only the take-over path of the claim depends on how long (see `adopt` in owner.ts).
 */

type Request = OnEventRequest<EbsSnapshotOnDeployProperties>;
/** The stack and logical id whose snapshots a call is about (their ownership tags). */
export type OwnerRef = Pick<Request, 'StackId' | 'LogicalResourceId'>;

const CFN_STACK_ID_TAG = 'aws:cloudformation:stack-id';
const CFN_LOGICAL_ID_TAG = 'aws:cloudformation:logical-id';

/** What the handler knows of one snapshot (from CreateSnapshot, CreateSnapshots or DescribeSnapshots). */
export interface SnapshotView {
  readonly SnapshotId?: string;
  readonly VolumeId?: string;
  readonly StartTime?: Date;
  readonly State?: string;
  readonly StateMessage?: string;
  readonly Progress?: string;
  readonly Tags?: Tag[];
}

/** The source, resolved at deploy time. */
export type Source = { readonly kind: 'volume'; readonly volumeId: string } | { readonly kind: 'instance'; readonly instanceId: string };

/** The source: by id, or (guarded by this snapshot) by the tags CloudFormation put on it; undefined if it does not exist yet. */
export async function resolveSource(event: Request): Promise<Source | undefined> {
  const props = event.ResourceProperties;
  if (props.Source === 'volume' && props.VolumeId) return { kind: 'volume', volumeId: props.VolumeId };
  if (props.Source === 'instance' && props.InstanceId) return { kind: 'instance', instanceId: props.InstanceId };
  if (!props.SourceLogicalId) throw new HandlerError(`the resource names no ${props.Source} to snapshot`);
  const filters: Filter[] = [
    { Name: `tag:${CFN_STACK_ID_TAG}`, Values: [event.StackId] },
    { Name: `tag:${CFN_LOGICAL_ID_TAG}`, Values: [props.SourceLogicalId] },
  ];
  if (props.Source === 'volume') {
    const out = await withRetries(() => ec2().send(new DescribeVolumesCommand({ Filters: filters })), { budgetMs: CALL_BUDGET_MS });
    const volume = (out.Volumes ?? []).find((v) => v.VolumeId && v.State !== 'deleting' && v.State !== 'deleted');
    logger.info('looked up the volume by its CloudFormation tags', { sourceLogicalId: props.SourceLogicalId, volumeId: volume?.VolumeId });
    return volume ? { kind: 'volume', volumeId: volume.VolumeId! } : undefined;
  }
  const out = await withRetries(
    () => ec2().send(new DescribeInstancesCommand({
      Filters: [...filters, { Name: 'instance-state-name', Values: ['pending', 'running', 'stopping', 'stopped'] }],
    })),
    { budgetMs: CALL_BUDGET_MS },
  );
  const instances = (out.Reservations ?? []).flatMap((r) => r.Instances ?? []).filter((i) => i.InstanceId);
  // After a replacement both may exist for a moment: the newest is the one the stack now has.
  instances.sort((a, b) => (b.LaunchTime?.getTime() ?? 0) - (a.LaunchTime?.getTime() ?? 0));
  logger.info('looked up the instance by its CloudFormation tags', { sourceLogicalId: props.SourceLogicalId, instanceId: instances[0]?.InstanceId });
  return instances[0] ? { kind: 'instance', instanceId: instances[0].InstanceId! } : undefined;
}

/** One create call: CreateSnapshot of a volume, or CreateSnapshots of every volume of an instance. Never retried by the SDK (ec2Create). */
export async function createSnapshots(event: Request, source: Source, tags: KeyValue[]): Promise<SnapshotView[]> {
  const props = event.ResourceProperties;
  const common = {
    Description: props.Description ?? defaultDescription(event),
    OutpostArn: props.OutpostArn,
    TagSpecifications: [{ ResourceType: 'snapshot' as const, Tags: tags }],
  };
  if (source.kind === 'volume') {
    const out = await ec2Create().send(new CreateSnapshotCommand({ VolumeId: source.volumeId, ...common }));
    if (!out.SnapshotId) throw new HandlerError(`EC2 CreateSnapshot on ${source.volumeId} returned no snapshot id`);
    return [{ ...out, Tags: out.Tags ?? tags }];
  }
  const out = await ec2Create().send(new CreateSnapshotsCommand({ InstanceSpecification: { InstanceId: source.instanceId }, ...common }));
  const snapshots = (out.Snapshots ?? []).filter((s) => s.SnapshotId).map((s) => ({ ...s, Tags: s.Tags ?? tags }));
  if (snapshots.length === 0) throw new HandlerError(`EC2 CreateSnapshots on ${source.instanceId} returned no snapshots (no volume attached?)`);
  return snapshots;
}

/** Our snapshots carrying this request's token (owner self, tag filter), every page. */
export async function findByToken(event: OwnerRef, token: string): Promise<SnapshotView[]> {
  const found = await describeOwnSnapshots([{ Name: `tag:${OWNERSHIP_TAG_KEYS.token}`, Values: [token] }]);
  return found.filter((s) => isMadeBy(s.Tags, requestOwner(event), token));
}

/** Snapshots by id; a missing one (deleted, or not visible yet) is absent from the map. */
export async function describeByIds(ids: string[]): Promise<Map<string, SnapshotView>> {
  const read = async (list: string[]) =>
    (await withRetries(() => ec2().send(new DescribeSnapshotsCommand({ SnapshotIds: list })), { budgetMs: CALL_BUDGET_MS })).Snapshots ?? [];
  const found = new Map<string, SnapshotView>();
  try {
    for (const s of await read(ids)) found.set(s.SnapshotId!, s);
  } catch (err) {
    if (errorCode(err) !== 'InvalidSnapshot.NotFound') throw err;
    // One unknown id fails the whole call: read them one by one.
    for (const id of ids) {
      try {
        for (const s of await read([id])) found.set(s.SnapshotId!, s);
      } catch (e) {
        if (errorCode(e) !== 'InvalidSnapshot.NotFound') throw e;
      }
    }
  }
  return found;
}

/** The volumes attached to an instance (CreateSnapshots takes one snapshot of each). */
export async function attachedVolumes(instanceId: string): Promise<string[]> {
  const out = await withRetries(
    () => ec2().send(new DescribeVolumesCommand({ Filters: [{ Name: 'attachment.instance-id', Values: [instanceId] }] })),
    { budgetMs: CALL_BUDGET_MS },
  );
  return (out.Volumes ?? []).map((v) => v.VolumeId).filter((v): v is string => !!v);
}

/** The device each volume is attached at (for the `Device:<name>` attributes of instance sources). */
export async function devicesOf(volumeIds: string[]): Promise<Map<string, string>> {
  const out = await withRetries(() => ec2().send(new DescribeVolumesCommand({ VolumeIds: volumeIds })), { budgetMs: CALL_BUDGET_MS });
  const devices = new Map<string, string>();
  for (const v of out.Volumes ?? []) {
    const device = v.Attachments?.find((a) => a.Device)?.Device;
    if (v.VolumeId && device) devices.set(v.VolumeId, device);
  }
  return devices;
}

/** The oldest snapshot (StartTime, then id) of each volume. */
export function oldestPerVolume(snapshots: SnapshotView[]): Map<string, SnapshotView> {
  const out = new Map<string, SnapshotView>();
  for (const s of [...snapshots].sort(oldestFirst)) if (!out.has(s.VolumeId ?? '')) out.set(s.VolumeId ?? '', s);
  return out;
}

export function oldestFirst(a: SnapshotView, b: SnapshotView): number {
  return startTime(a) - startTime(b) || (a.SnapshotId! < b.SnapshotId! ? -1 : a.SnapshotId! > b.SnapshotId! ? 1 : 0);
}

/** When EC2 took the snapshot (epoch ms); unknown sorts last. */
export function startTime(s: SnapshotView): number {
  return s.StartTime ? new Date(s.StartTime).getTime() : Number.MAX_SAFE_INTEGER;
}

function defaultDescription(event: Request): string {
  const stackName = event.StackId.split('/')[1] ?? event.StackId;
  return `cdk-storage-snapshots: ${event.LogicalResourceId} in ${stackName}`.slice(0, 255);
}
