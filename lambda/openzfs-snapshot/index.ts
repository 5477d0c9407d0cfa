import {
  CreateSnapshotCommand,
  DeleteSnapshotCommand,
  DescribeSnapshotsCommand,
  Snapshot,
  paginateDescribeSnapshots,
} from '@aws-sdk/client-fsx';
import type {
  CopyOrigin,
  OpenZfsSnapshotAttributes,
  OpenZfsSnapshotProperties,
} from '../../src/private/contract';
import { fsx } from '../shared/clients/fsx';
import { clock } from '../shared/clock';
import { HandlerError, errorCode, step, withRetries } from '../shared/errors';
import {
  IsCompleteRequest,
  IsCompleteResponse,
  OnEventRequest,
  OnEventResponse,
  isRollingBack,
} from '../shared/events';
import { logger } from '../shared/logger';
import { OWNERSHIP_TAG_KEYS, Owner, isOwnedBy, ownershipTags, tagValue, withOwnershipTags } from '../shared/ownership';
import { requestToken, stableHash } from '../shared/token';
import { deadlineExceeded, fsxSnapshotProgress } from '../shared/waiter';

type Request = OnEventRequest<OpenZfsSnapshotProperties>;
type Response = OnEventResponse<OpenZfsSnapshotAttributes>;
type CompleteRequest = IsCompleteRequest<OpenZfsSnapshotProperties, OpenZfsSnapshotAttributes>;

/** How long one onEvent call keeps retrying throttling and 5xx before it gives up. */
const CALL_BUDGET_MS = 60_000;

export async function onEvent(event: Request): Promise<Response> {
  logger.appendKeys({ requestType: event.RequestType, logicalResourceId: event.LogicalResourceId, requestId: event.RequestId });
  logger.info('onEvent', { physicalResourceId: event.PhysicalResourceId, properties: event.ResourceProperties });
  switch (event.RequestType) {
    case 'Create':
      return create(event);
    case 'Update':
      return update(event);
    case 'Delete':
      return remove(event);
  }
}

export async function isComplete(event: CompleteRequest): Promise<IsCompleteResponse<OpenZfsSnapshotAttributes>> {
  logger.appendKeys({ requestType: event.RequestType, logicalResourceId: event.LogicalResourceId, requestId: event.RequestId });
  // Deletes finish in onEvent; adopted and unchanged snapshots are not waited for, so that a
  // rollback can never fail on them.
  if (event.RequestType === 'Delete' || event.Data?.Origin !== 'created') return { IsComplete: true };

  const id = event.PhysicalResourceId;
  const snapshot = await step(`Reading FSx snapshot ${id}`, () => describeSnapshot(id));
  const progress = fsxSnapshotProgress(id, snapshot);
  logger.info('isComplete', { snapshotId: id, progress });
  if (progress.status === 'done') {
    return { IsComplete: true, Data: { CreationTime: snapshot?.CreationTime?.toISOString() ?? '' } };
  }
  if (progress.status === 'failed') {
    await discard(event, snapshot);
    throw new HandlerError(progress.reason);
  }
  if (deadlineExceeded(event.Data?.StartedAt, event.ResourceProperties.TimeoutSeconds, clock.now())) {
    await discard(event, snapshot);
    throw new HandlerError(
      `FSx snapshot ${id} was not AVAILABLE within the timeout of ${event.ResourceProperties.TimeoutSeconds} seconds ` +
        `(still ${progress.state}); it has been deleted so that no half-made snapshot is left behind`,
    );
  }
  return { IsComplete: false };
}

async function create(event: Request): Promise<Response> {
  const props = event.ResourceProperties;
  const token = requestToken(event);
  const name = `${props.SnapshotName}-${token.slice(4, 12)}`;
  const tags = withOwnershipTags(parseTags(props.Tags), ownershipTags(owner(event), identityHash(props), token));
  const out = await step(`Creating an FSx snapshot of volume ${props.VolumeId}`, async () => {
    try {
      return await withRetries(
        () =>
          fsx().send(
            new CreateSnapshotCommand({ VolumeId: props.VolumeId, Name: name, Tags: tags, ClientRequestToken: token }),
          ),
        { budgetMs: CALL_BUDGET_MS, onRetry: (err, attempt) => logger.warn('retrying CreateSnapshot', { attempt, error: errorCode(err) }) },
      );
    } catch (err) {
      throw explainCreateError(err, props.VolumeId, token);
    }
  });
  const snapshot = out.Snapshot;
  if (!snapshot?.SnapshotId) throw new HandlerError(`FSx CreateSnapshot on ${props.VolumeId} returned no snapshot id`);
  logger.info('snapshot requested', { snapshotId: snapshot.SnapshotId, lifecycle: snapshot.Lifecycle, token });
  return respond(snapshot, 'created');
}

async function update(event: Request): Promise<Response> {
  const current = event.PhysicalResourceId!;
  const old = event.OldResourceProperties;
  if (old && identityHash(old) === identityHash(event.ResourceProperties)) {
    // Tags, removal policy, timeout or the library's version changed: none of them is a reason
    // for a new snapshot.
    logger.info('nothing that forces a new snapshot changed', { snapshotId: current });
    return respondUnchanged(current);
  }
  const rollingBack = await isRollingBack(event.StackId);
  if (rollingBack !== false) {
    // A rollback returns to the snapshot the old properties made. It must never fail and never
    // take a new snapshot. When the stack status could not be read, adopting a snapshot of ours
    // made for exactly these properties is still the right answer.
    const adopted = await findAdoptable(event).catch((err) => {
      logger.warn('could not look for a snapshot to adopt', { error: err as Error });
      return undefined;
    });
    if (adopted) {
      logger.info('adopting the snapshot these properties made', { snapshotId: adopted.SnapshotId, rollingBack });
      return respond(adopted, 'adopted');
    }
    if (rollingBack) {
      logger.warn('rolling back, and no snapshot of ours matches the old properties: keeping the current one', {
        snapshotId: current,
      });
      return respondUnchanged(current, true);
    }
  }
  return create(event);
}

async function remove(event: Request): Promise<Response> {
  const id = event.PhysicalResourceId!;
  const response = { PhysicalResourceId: id };
  if (event.ResourceProperties.RemovalPolicy !== 'destroy') {
    logger.info('removal policy is retain: keeping the snapshot', { snapshotId: id });
    return response;
  }
  if (!id.startsWith('fsvolsnap-')) return response; // never made one
  const snapshot = await step(`Reading FSx snapshot ${id}`, () => describeSnapshot(id));
  if (!snapshot || snapshot.Lifecycle === 'DELETING') {
    logger.info('snapshot already gone', { snapshotId: id });
    return response;
  }
  if (!isOwnedBy(snapshot.Tags, owner(event))) {
    logger.warn('not deleting a snapshot this resource did not make', { snapshotId: id, tags: snapshot.Tags });
    return response;
  }
  await step(`Deleting FSx snapshot ${id}`, () => deleteSnapshot(id));
  return response;
}

/** After a failure, delete the snapshot this very request made, so that nothing is orphaned. */
async function discard(event: CompleteRequest, snapshot: Snapshot | undefined): Promise<void> {
  if (!snapshot?.SnapshotId || snapshot.Lifecycle === 'DELETING') return;
  if (!isOwnedBy(snapshot.Tags, owner(event)) || tagValue(snapshot.Tags, OWNERSHIP_TAG_KEYS.token) !== requestToken(event)) return;
  try {
    await deleteSnapshot(snapshot.SnapshotId);
    logger.info('deleted the snapshot of the failed request', { snapshotId: snapshot.SnapshotId });
  } catch (err) {
    // It stays tagged as ours, with the request's token: visible, and deletable by the stack.
    logger.error('could not delete the snapshot of the failed request', { snapshotId: snapshot.SnapshotId, error: err as Error });
  }
}

async function findAdoptable(event: Request): Promise<Snapshot | undefined> {
  const props = event.ResourceProperties;
  const wanted = identityHash(props);
  const candidates: Snapshot[] = [];
  const pages = paginateDescribeSnapshots(
    { client: fsx() },
    { Filters: [{ Name: 'volume-id', Values: [props.VolumeId] }] },
  );
  for await (const page of pages) {
    for (const s of page.Snapshots ?? []) {
      if (
        isOwnedBy(s.Tags, owner(event)) &&
        tagValue(s.Tags, OWNERSHIP_TAG_KEYS.propsHash) === wanted &&
        (s.Lifecycle === 'AVAILABLE' || s.Lifecycle === 'CREATING' || s.Lifecycle === 'PENDING')
      ) {
        candidates.push(s);
      }
    }
  }
  candidates.sort((a, b) => (b.CreationTime?.getTime() ?? 0) - (a.CreationTime?.getTime() ?? 0));
  return candidates[0];
}

async function describeSnapshot(id: string): Promise<Snapshot | undefined> {
  try {
    const out = await withRetries(() => fsx().send(new DescribeSnapshotsCommand({ SnapshotIds: [id] })), {
      budgetMs: CALL_BUDGET_MS,
    });
    return out.Snapshots?.find((s) => s.SnapshotId === id);
  } catch (err) {
    if (errorCode(err) === 'SnapshotNotFound') return undefined;
    throw err;
  }
}

async function deleteSnapshot(id: string): Promise<void> {
  try {
    await withRetries(() => fsx().send(new DeleteSnapshotCommand({ SnapshotId: id })), { budgetMs: CALL_BUDGET_MS });
  } catch (err) {
    if (errorCode(err) !== 'SnapshotNotFound') throw err;
  }
}

/**
 * Answers with the snapshot the resource already has. A rollback must not fail on it, so there a
 * failed read answers with the id alone rather than failing.
 */
async function respondUnchanged(id: string, rollingBack = false): Promise<Response> {
  const snapshot = await step(`Reading FSx snapshot ${id}`, () => describeSnapshot(id)).catch((err) => {
    if (!rollingBack) throw err;
    return undefined;
  });
  return respond(snapshot ?? { SnapshotId: id }, 'unchanged');
}

function respond(snapshot: Snapshot, origin: CopyOrigin): Response {
  const id = snapshot.SnapshotId!;
  return {
    PhysicalResourceId: id,
    Data: {
      SnapshotId: id,
      SnapshotArn: snapshot.ResourceARN ?? '',
      SnapshotName: snapshot.Name ?? '',
      CreationTime: snapshot.CreationTime?.toISOString() ?? '',
      StartedAt: String(clock.now()),
      Origin: origin,
    },
  };
}

function explainCreateError(err: unknown, volumeId: string, token: string): unknown {
  switch (errorCode(err)) {
    case 'IncompatibleParameterError':
      return new HandlerError(
        `FSx refused CreateSnapshot on ${volumeId}: IncompatibleParameterError: a snapshot was already requested with ` +
          `client token ${token} and different parameters. This happens only if the same request was replayed with ` +
          'changed properties; deploy again to make a new request.',
      );
    case 'VolumeNotFound':
      return new HandlerError(`FSx volume ${volumeId} was not found (VolumeNotFound): is it an OpenZFS volume in this account and region?`);
    case 'ServiceLimitExceeded':
      return new HandlerError(
        `FSx refused CreateSnapshot on ${volumeId}: ServiceLimitExceeded: ${(err as Error).message}. ` +
          'Delete old snapshots or ask for a higher quota.',
      );
    default:
      return err;
  }
}

/**
 * The properties that force a new snapshot: the source, the trigger and the guarded resources'
 * hash. Nothing else does (a new name prefix applies to the next snapshot).
 */
function identityHash(props: OpenZfsSnapshotProperties): string {
  return stableHash({
    VolumeId: props.VolumeId,
    Trigger: props.Trigger,
    SnapshotBeforeHash: props.SnapshotBeforeHash,
  });
}

function owner(event: Request): Owner {
  return { stackId: event.StackId, owner: event.LogicalResourceId };
}

function parseTags(json: string | undefined): Record<string, string> {
  return json ? (JSON.parse(json) as Record<string, string>) : {};
}
