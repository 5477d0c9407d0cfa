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
import { CALL_BUDGET_MS } from '../shared/budget';
import { fsx } from '../shared/clients/fsx';
import { clock } from '../shared/clock';
import { HandlerError, errorCode, step, withRetries } from '../shared/errors';
import type { OnEventRequest, OnEventResponse } from '../shared/events';
import { copyLifecycle } from '../shared/lifecycle';
import { logger } from '../shared/logger';
import { isMadeFor, ownershipTags, parseUserTags, requestOwner, withOwnershipTags } from '../shared/ownership';
import { allPages } from '../shared/paging';
import { requestToken, stableHash } from '../shared/token';
import { fsxSnapshotProgress } from '../shared/waiter';

type Request = OnEventRequest<OpenZfsSnapshotProperties>;
type Response = OnEventResponse<OpenZfsSnapshotAttributes>;

/** What differs for OpenZFS snapshots; the lifecycle (lambda/shared/lifecycle.ts) does the rest. */
const lifecycle = copyLifecycle<OpenZfsSnapshotProperties, OpenZfsSnapshotAttributes, Snapshot>({
  store: {
    noun: 'FSx snapshot',
    idPrefix: 'fsvolsnap-',
    describe: describeSnapshot,
    delete: deleteSnapshot,
    isGone: (s) => s.Lifecycle === 'DELETING',
  },
  identityHash,
  create,
  findAdoptable,
  respond: (_event, snapshot, origin) => respond(snapshot, origin),
  readCurrentFirst: true,
  readCurrent: async (id) => {
    try {
      return { copy: await describeSnapshot(id) };
    } catch (error) {
      logger.warn('could not read the current snapshot', { snapshotId: id, error: error as Error });
      return { error };
    }
  },
  known: knownSnapshot,
  progress: fsxSnapshotProgress,
  doneData: (snapshot) => ({ CreationTime: snapshot?.CreationTime?.toISOString() ?? '' }),
  timeoutReason: (event, _snapshot, progress) =>
    `FSx snapshot ${event.PhysicalResourceId} was not AVAILABLE within the timeout of ${event.ResourceProperties.TimeoutSeconds} seconds ` +
    `(still ${progress?.status === 'waiting' ? progress.state : ''}); it has been deleted so that no half-made snapshot is left behind`,
  mayDiscard: async (_id, snapshot) => !!snapshot?.SnapshotId && snapshot.Lifecycle !== 'DELETING',
});

export const onEvent = lifecycle.onEvent;
export const isComplete = lifecycle.isComplete;

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

/** What is known of a snapshot without reading it: its id, and the ARN that follows from the stack's account and region. */
function knownSnapshot(event: Request, id: string): Snapshot {
  // arn:<partition>:cloudformation:<region>:<account>:stack/<name>/<uuid>
  const [, partition, , region, account] = event.StackId.split(':');
  return { SnapshotId: id, ResourceARN: `arn:${partition}:fsx:${region}:${account}:snapshot/${event.ResourceProperties.VolumeId}/${id}` };
}

/** The newest of our snapshots of the volume made for properties with this hash, and not on its way out. */
async function findAdoptable(event: Request, wanted: string): Promise<Snapshot | undefined> {
  const snapshots = await allPages(
    (NextToken) => withRetries(
      () => fsx().send(new DescribeSnapshotsCommand({ Filters: [{ Name: 'volume-id', Values: [event.ResourceProperties.VolumeId] }], NextToken })),
      { budgetMs: CALL_BUDGET_MS },
    ),
    (page) => page.Snapshots,
  );
  const candidates = snapshots.filter((s) => isMadeFor(s.Tags, requestOwner(event), wanted) &&
    (s.Lifecycle === 'AVAILABLE' || s.Lifecycle === 'CREATING' || s.Lifecycle === 'PENDING'));
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


