import { SnapshotView, devicesOf } from './snapshots';
import type { CopyOrigin } from '../../src/private/contract';
import type { EbsSnapshotOnDeployAttributes, EbsSnapshotOnDeployProperties } from '../../src/private/ebs-contract';
import { HandlerError, step } from '../shared/errors';
import type { OnEventRequest, OnEventResponse } from '../shared/events';
import { logger } from '../shared/logger';
import { requestToken, stableHash } from '../shared/token';

/*
 * The answers of the EbsSnapshotOnDeploy handler: the physical id and the attributes (`Data`) for a
 * set of snapshots, or for none.
 */

type Props = EbsSnapshotOnDeployProperties;
type Request = OnEventRequest<Props>;
/** The contract's attributes plus one `Device:<device name>` per snapshot of an instance. */
export type Attributes = EbsSnapshotOnDeployAttributes & Record<string, string>;
export type Response = OnEventResponse<Attributes>;

/** Physical id prefix of a resource that took no snapshot (its source did not exist yet). */
export const NO_SNAPSHOT_PREFIX = 'no-snapshot-';
/** CloudFormation takes custom resource responses of at most 4,096 bytes; the framework adds a reason of about 200. */
const MAX_RESPONSE_BYTES = 4_096 - 300;

/**
 * The response for new or adopted snapshots, ordered by device name (instances) or volume id.
 * `strict`: a failure to read the devices fails the request (a Create); otherwise (rollbacks) it is
 * logged and the device attributes are empty. `startedAt` (epoch ms) is where isComplete counts the
 * timeout from: only for snapshots this request made.
 */
export async function respond(event: Request, snapshots: SnapshotView[], origin: CopyOrigin, strict: boolean, startedAt = ''): Promise<Response> {
  let devices = new Map<string, string>();
  const volumeIds = snapshots.map((s) => s.VolumeId).filter((v): v is string => !!v);
  if (event.ResourceProperties.Source === 'instance' && volumeIds.length > 0) {
    try {
      devices = await step('Reading the devices of the snapshotted volumes', () => devicesOf(volumeIds));
    } catch (err) {
      if (strict) throw err;
      logger.error('could not read the devices of the volumes; the Device attributes are empty', { error: err as Error });
    }
  }
  const entries = snapshots.map((snapshot) => ({ snapshot, device: devices.get(snapshot.VolumeId ?? '') }));
  const key = (e: { snapshot: SnapshotView; device?: string }) => `${e.device ?? '~'}|${e.snapshot.VolumeId ?? ''}|${e.snapshot.SnapshotId}`;
  entries.sort((a, b) => (key(a) < key(b) ? -1 : key(a) > key(b) ? 1 : 0));
  if (strict && event.ResourceProperties.Source === 'instance') {
    const missing = requestedDevices(event).filter((d) => !entries.some((e) => e.device === d));
    if (missing.length > 0) {
      throw new HandlerError(`snapshotIdOfDevice() names ${missing.join(', ')}, but the instance has no volume attached there ` +
        `(attached: ${entries.map((e) => e.device).filter((d) => d).join(', ') || 'none'})`);
    }
  }
  return answer(event, entries, origin, startedAt);
}

/**
 * The answer: the physical id names each snapshot, in order, with its device for an instance source
 * (`snap-…=/dev/xvda,…`, so that a later rollback keeps the order and the device attributes without
 * reading the volumes, which may be gone by then). Every requested `Device:<name>` is answered.
 */
export function answer(
  event: Request, entries: Array<{ snapshot: SnapshotView; device?: string }>, origin: CopyOrigin, startedAt: string, physicalId?: string,
): Response {
  const ids = entries.map((e) => e.snapshot.SnapshotId!);
  const first = entries[0]?.snapshot;
  const data: Attributes = {
    SnapshotId: ids[0] ?? '',
    SnapshotIds: ids.join(','),
    VolumeIds: entries.map((e) => e.snapshot.VolumeId ?? '').join(','),
    StartTime: first?.StartTime ? new Date(first.StartTime).toISOString() : '',
    SourceFound: 'true',
    StartedAt: startedAt,
    Origin: origin,
  };
  for (const d of requestedDevices(event)) data[`Device:${d}`] = '';
  for (const e of entries) if (e.device) data[`Device:${e.device}`] = e.snapshot.SnapshotId!;
  const response: Response = {
    PhysicalResourceId: physicalId ?? entries.map((e) => (e.device && event.ResourceProperties.Source === 'instance'
      ? `${e.snapshot.SnapshotId}=${e.device}` : e.snapshot.SnapshotId)).join(','),
    Data: data,
  };
  const envelope = { ...response, StackId: event.StackId, RequestId: event.RequestId, LogicalResourceId: event.LogicalResourceId };
  const size = Buffer.byteLength(JSON.stringify(envelope));
  if (size > MAX_RESPONSE_BYTES) {
    throw new HandlerError(`the answer for ${ids.length} snapshots would be ${size} bytes, more than a CloudFormation custom resource ` +
      'response may carry (4,096 bytes with the framework\'s fields): snapshot fewer volumes per resource (one EbsSnapshotOnDeploy per volume, say)');
  }
  return response;
}

/** The answer of a resource that took no snapshot (its source did not exist yet), or keeps a physical id that names none. */
export function respondNone(event: Request, physicalId?: string): Response {
  const data: Attributes = { SnapshotId: '', SnapshotIds: '', VolumeIds: '', StartTime: '', SourceFound: 'false', StartedAt: '', Origin: 'unchanged' };
  for (const d of requestedDevices(event)) data[`Device:${d}`] = '';
  return { PhysicalResourceId: physicalId ?? `${NO_SNAPSHOT_PREFIX}${requestToken(event).slice(4, 20)}`, Data: data };
}

/** The device names the template reads `Device:<name>` attributes of. */
function requestedDevices(event: Request): string[] {
  return (event.ResourceProperties.Devices ?? '').split(',').filter((d) => d);
}

/** The properties that force a new snapshot: the source, the Outpost, the trigger and the guarded resources' hash. */
export function identityHash(props: Props): string {
  return stableHash({
    Source: props.Source,
    VolumeId: props.VolumeId,
    InstanceId: props.InstanceId,
    SourceLogicalId: props.SourceLogicalId,
    OutpostArn: props.OutpostArn,
    Trigger: props.Trigger,
    SnapshotBeforeHash: props.SnapshotBeforeHash,
  });
}

/** The snapshot ids a physical id names (none for a resource that took no snapshot), in its order. */
export function snapshotIdsOf(physicalId: string | undefined): string[] {
  return (physicalId ?? '').split(',').map((e) => e.split('=')[0]).filter((id) => /^snap-[0-9a-f]+$/.test(id));
}

/** The device of each snapshot a physical id names (`snap-…=/dev/xvda`). */
export function devicesOfPhysicalId(physicalId: string): Map<string, string> {
  const out = new Map<string, string>();
  for (const e of physicalId.split(',')) {
    const [id, device] = e.split('=');
    if (device) out.set(id, device);
  }
  return out;
}
