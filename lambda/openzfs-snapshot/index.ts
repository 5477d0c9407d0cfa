import {
  CreateSnapshotCommand,
  DeleteSnapshotCommand,
  DescribeSnapshotsCommand,
  Snapshot,
} from '@aws-sdk/client-fsx';
import type {
  CopyOrigin,
  OpenZfsSnapshotAttributes,
  OpenZfsSnapshotProperties,
} from '../../src/private/contract';
import { fsx } from '../shared/clients/fsx';
import { clock } from '../shared/clock';
import { HandlerError, describeError, errorCode, step, withRetries } from '../shared/errors';
import {
  IsCompleteRequest,
  IsCompleteResponse,
  OnEventRequest,
  OnEventResponse,
  isRollingBack,
} from '../shared/events';
import { logger } from '../shared/logger';
import { OWNERSHIP_TAG_KEYS, isOwnedBy, ownershipTags, parseUserTags, requestOwner, tagValue, withOwnershipTags } from '../shared/ownership';
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
  const tags = withOwnershipTags(parseUserTags(props.Tags), ownershipTags(requestOwner(event), identityHash(props), token));
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
  const currentId = event.PhysicalResourceId!;
  const wanted = identityHash(event.ResourceProperties);
  const old = event.OldResourceProperties;
  const current = await readForUpdate(currentId);
  if ((old && identityHash(old) === wanted) || (current.snapshot && madeFor(current.snapshot, event, wanted))) {
    // Nothing that forces a new snapshot changed (tags, name prefix, removal policy, timeout, the
    // library's version), or the current snapshot was made for exactly these properties (the
    // rollback that follows a failure of this very update).
    logger.info('keeping the current snapshot', { snapshotId: currentId });
    return respondKept(event, currentId, current);
  }
  const rollingBack = await isRollingBack(event.StackId);
  if (rollingBack !== false) {
    // A rollback returns to the snapshot the old properties made: it must never fail and never
    // take a new snapshot. When the stack status could not be read, adopting a snapshot of ours
    // made for exactly these properties is still the right answer.
    const adopted = await findAdoptable(event).catch((err) => {
      logger.error('could not look for a snapshot to adopt', { error: err as Error });
      return undefined;
    });
    if (adopted) {
      logger.info('adopting the snapshot these properties made', { snapshotId: adopted.SnapshotId, rollingBack });
      return respond(adopted, 'adopted');
    }
    if (rollingBack) {
      logger.warn('rolling back, and no snapshot of ours matches the old properties: keeping the current one', { snapshotId: currentId });
      return respondKept(event, currentId, current);
    }
    // The status could not be read (say, the role may not call DescribeStacks) and nothing of ours
    // matches: this is most likely an update, whose snapshot must not be skipped.
    logger.warn('could not tell a rollback from an update, and nothing to adopt: taking a new snapshot');
  }
  return create(event);
}

/** The current snapshot, or why it could not be read (a read must not fail a rollback by itself). */
async function readForUpdate(id: string): Promise<{ snapshot?: Snapshot; error?: unknown }> {
  try {
    return { snapshot: await describeSnapshot(id) };
  } catch (error) {
    logger.warn('could not read the current snapshot', { snapshotId: id, error: error as Error });
    return { error };
  }
}

/**
 * Answers with the snapshot the resource already has. If it could not be read, an update fails
 * with the reason; a rollback (or a request whose status cannot be read) answers with what is
 * known without reading (the id and the ARN, which follows from the stack's account and region),
 * because failing a rollback leaves the stack in UPDATE_ROLLBACK_FAILED.
 */
async function respondKept(event: Request, id: string, current: { snapshot?: Snapshot; error?: unknown }): Promise<Response> {
  if (current.snapshot || current.error === undefined) return respond(current.snapshot ?? knownSnapshot(event, id), 'unchanged');
  if ((await isRollingBack(event.StackId)) === false) {
    throw new HandlerError(describeError(`Reading FSx snapshot ${id}`, current.error));
  }
  return respond(knownSnapshot(event, id), 'unchanged');
}

/** What is known of a snapshot without reading it. */
function knownSnapshot(event: Request, id: string): Snapshot {
  // arn:<partition>:cloudformation:<region>:<account>:stack/<name>/<uuid>
  const [, partition, , region, account] = event.StackId.split(':');
  return { SnapshotId: id, ResourceARN: `arn:${partition}:fsx:${region}:${account}:snapshot/${event.ResourceProperties.VolumeId}/${id}` };
}

/** Ours, for this resource, and made for properties with this identity. */
function madeFor(snapshot: Snapshot, event: Request, hash: string): boolean {
  return isOwnedBy(snapshot.Tags, requestOwner(event)) && tagValue(snapshot.Tags, OWNERSHIP_TAG_KEYS.propsHash) === hash;
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
  if (!isOwnedBy(snapshot.Tags, requestOwner(event))) {
    logger.warn('not deleting a snapshot this resource did not make', { snapshotId: id, tags: snapshot.Tags });
    return response;
  }
  await step(`Deleting FSx snapshot ${id}`, () => deleteSnapshot(id));
  return response;
}

/** After a failure, delete the snapshot this very request made, so that nothing is orphaned. */
async function discard(event: CompleteRequest, snapshot: Snapshot | undefined): Promise<void> {
  if (!snapshot?.SnapshotId || snapshot.Lifecycle === 'DELETING') return;
  if (!isOwnedBy(snapshot.Tags, requestOwner(event)) || tagValue(snapshot.Tags, OWNERSHIP_TAG_KEYS.token) !== requestToken(event)) return;
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
  let NextToken: string | undefined;
  do {
    const page = await withRetries(
      () => fsx().send(new DescribeSnapshotsCommand({ Filters: [{ Name: 'volume-id', Values: [props.VolumeId] }], NextToken })),
      { budgetMs: CALL_BUDGET_MS },
    );
    for (const s of page.Snapshots ?? []) {
      if (madeFor(s, event, wanted) && (s.Lifecycle === 'AVAILABLE' || s.Lifecycle === 'CREATING' || s.Lifecycle === 'PENDING')) {
        candidates.push(s);
      }
    }
    NextToken = page.NextToken;
  } while (NextToken);
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
export function identityHash(props: OpenZfsSnapshotProperties): string {
  return stableHash({
    VolumeId: props.VolumeId,
    Trigger: props.Trigger,
    SnapshotBeforeHash: props.SnapshotBeforeHash,
  });
}


