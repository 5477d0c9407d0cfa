import { CreateTagsCommand, Snapshot } from '@aws-sdk/client-ec2';
import { UploadCursor, encodeCursor } from './cursor';
import { type EbsSnapshotFromImageProperties, UPLOAD_CURSOR_TAG_KEY } from '../../src/private/ebs-direct-contract';
import { ec2 } from '../shared/clients/ec2';
import { EC2_SNAPSHOTS, describeEc2Snapshot, describeOwnSnapshots } from '../shared/ec2-snapshots';
import { HandlerError, withRetries } from '../shared/errors';
import type { IsCompleteRequest, OnEventRequest } from '../shared/events';
import { Current, discardOwnCopy } from '../shared/lifecycle';
import { logger } from '../shared/logger';
import { OWNERSHIP_TAG_KEYS, isMadeFor, requestOwner } from '../shared/ownership';

/*
 * The snapshot as EC2 shows it: reads (eventually consistent), the cursor tag, the delete, and the
 * look-up of a snapshot to adopt.
 */

type Request = OnEventRequest<EbsSnapshotFromImageProperties>;

export async function saveCursor(id: string, cursor: UploadCursor): Promise<void> {
  const Tags = [{ Key: UPLOAD_CURSOR_TAG_KEY, Value: encodeCursor(cursor) }];
  await withRetries(() => ec2().send(new CreateTagsCommand({ Resources: [id], Tags })), { budgetMs: 20_000 });
}

/** Our completed snapshots made for properties with this hash, newest first: the first is the one to adopt. */
export async function findAdoptable(event: Request, hash: string): Promise<Snapshot | undefined> {
  const candidates = (await describeOwnSnapshots([
    { Name: `tag:${OWNERSHIP_TAG_KEYS.owner}`, Values: [event.LogicalResourceId] },
    { Name: `tag:${OWNERSHIP_TAG_KEYS.propsHash}`, Values: [hash] },
    { Name: 'status', Values: ['completed'] },
  ])).filter((s) => isMadeFor(s.Tags, requestOwner(event), hash));
  candidates.sort((a, b) => (b.StartTime?.getTime() ?? 0) - (a.StartTime?.getTime() ?? 0));
  return candidates[0];
}

/**
 * The snapshot the resource already has, for an Update that keeps it: its attributes are read from
 * it (the volume size and the block count are known only there when the size comes from the image).
 */
export async function readCurrent(id: string): Promise<Current<Snapshot>> {
  try {
    return {
      copy: await withRetries(
        async () => (await describeEc2Snapshot(id)) ?? Promise.reject(new HandlerError(`EBS snapshot ${id} does not exist`)),
        // Not found may be EC2's eventual consistency: read once more before giving up.
        { budgetMs: 10_000, baseDelayMs: 2_000, retryable: (err) => err instanceof HandlerError },
      ),
    };
  } catch (error) {
    logger.warn('could not read the current snapshot', { snapshotId: id, error: error as Error });
    return { error };
  }
}

/**
 * Never delete a completed snapshot after a failure: a duplicate of this request may have reported
 * it to CloudFormation. The state is read again just before the delete (a snapshot in `error` never
 * completes).
 */
export async function mayDiscard(id: string, snapshot: Snapshot | undefined): Promise<boolean> {
  if (snapshot?.State === 'error') return true;
  const now = await describeEc2Snapshot(id).catch(() => undefined);
  if (now?.State === 'completed' || snapshot?.State === 'completed') {
    logger.warn('not deleting a completed snapshot after a failure', { snapshotId: id });
    return false;
  }
  return true;
}

/**
 * After a failure, delete the snapshot this very request made; never completed, EBS would cancel it
 * after StartSnapshot's Timeout anyway, and it stays tagged as ours meanwhile.
 */
export function discard(event: IsCompleteRequest<unknown, unknown>, snapshot: Snapshot | undefined): Promise<void> {
  return discardOwnCopy(EC2_SNAPSHOTS, mayDiscard, event, snapshot);
}
