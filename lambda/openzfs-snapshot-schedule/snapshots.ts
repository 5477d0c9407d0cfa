import { CreateSnapshotCommand, DescribeSnapshotsCommand, Snapshot } from '@aws-sdk/client-fsx';
import { type OpenZfsSnapshotTickInput, snapshotName } from '../../src/private/openzfs-snapshot-schedule-contract';
import { retrying } from '../schedule/calls';
import { requestCopy } from '../schedule/copies';
import { scheduledMinute, targetHash } from '../schedule/identity';
import { type CopyListing, type Listing, type TargetTick, beforeCopy, withCopy } from '../schedule/listed';
import { type Lookup, resourceTags } from '../schedule/targets';
import type { TargetOutcome } from '../schedule/tick';
import { fsx } from '../shared/clients/fsx';
import { describeError, errorCode } from '../shared/errors';
import { OWNERSHIP_TAG_KEYS, type Owner, isMadeFor, tagValue } from '../shared/ownership';
import { allPages } from '../shared/paging';

/*
 * One volume's snapshot of one tick, and the listing of a volume's snapshots that finds them again.
 * The volumes are listed before their snapshots are made (lambda/schedule/listed.ts): a tick's
 * snapshot already there (found by its token tag) is used, not requested again; one that retention
 * would already have deleted is not made; and the same listing is what retention prunes from after.
 */

/** What one volume's tick came to. */
export interface VolumeResult extends TargetOutcome {
  readonly snapshotId?: string;
  readonly name?: string;
  /** Snapshots retention would delete but FSx refused to (a volume was cloned from them). */
  readonly kept: string[];
}

/** How the snapshots of a batch of volumes are listed before theirs are made, and judged. */
export const SNAPSHOT_LISTING: CopyListing<string, Snapshot> = {
  noun: 'snapshot',
  id: (volumeId) => volumeId,
  list: (volumeIds, deadline) => listSnapshots(volumeIds, deadline),
  ours: (listed, owner, volumeId) => ourSnapshotsOf(listed, owner, volumeId),
  deleted: (s) => s.Lifecycle === 'DELETING',
};

export async function snapshotVolume(
  event: OpenZfsSnapshotTickInput,
  owner: Owner,
  volumeId: string,
  lookup: Lookup,
  listing: Listing<Snapshot>,
  deadline: number,
): Promise<TargetTick<VolumeResult, Snapshot>> {
  const base = { target: volumeId, pruned: [], kept: [] };
  const before = beforeCopy(event, owner, volumeId, lookup, listing, SNAPSHOT_LISTING, deadline);
  if ('stop' in before) return { result: { ...base, tagsDropped: 0, ...before.stop }, ours: before.ours };
  const { request, own, ours } = before;
  const name = snapshotName(event.NamePrefix, scheduledMinute(event.Time), request.token);
  const input = { VolumeId: volumeId, Name: name, ClientRequestToken: request.token, Tags: request.tags };
  const { copy, error } = await requestCopy<Snapshot>(volumeId, {
    noun: 'snapshot',
    call: 'CreateSnapshot',
    found: own,
    create: async () => (await retrying('CreateSnapshot', () => fsx().send(new CreateSnapshotCommand(input)), deadline)).Snapshot,
    findByToken: () => findByToken(volumeId, owner, request.token, deadline),
    // BadRequest too: the name is the tick's, so a snapshot of that name on the volume may be the
    // one another delivery made since this one listed the volume (or when the listing failed), and
    // FSx remembers a token for an undocumented time.
    lookAfter: ['IncompatibleParameterError', 'BadRequest'],
    idOf: (s) => s.SnapshotId,
    failure: (s) => (s.Lifecycle === 'DELETING' ? vanished(volumeId, s) : undefined),
    explain: (err) => explainCreateError(volumeId, err),
  });
  const result = { ...base, tagsDropped: request.tagsDropped, snapshotId: copy?.SnapshotId, name: copy?.Name ?? name, ...(error ? { error } : {}) };
  return { result, ours: withCopy(ours, copy, (s) => s.SnapshotId) };
}

/**
 * The reason of this tick's snapshot found DELETING: FSx snapshots have no FAILED state, FSx
 * deletes one it could not make.
 */
function vanished(volumeId: string, s: Snapshot): string {
  const why = s.LifecycleTransitionReason?.Message;
  return `Taking a snapshot of ${volumeId}: this tick's snapshot ${s.SnapshotId} is DELETING${why ? `: ${why}` : ''}`;
}

function explainCreateError(volumeId: string, err: unknown): string {
  const hint: Record<string, string> = {
    VolumeNotFound: 'the volume does not exist',
    ServiceLimitExceeded: 'a snapshot quota is reached (delete snapshots, or keep fewer)',
    BadRequest: 'FSx refused the request (a volume not available, or a snapshot of this name on it made by other means?)',
    IncompatibleParameterError: 'the tick\'s token was used with other parameters, and no snapshot of this schedule carries it',
  };
  const code = errorCode(err);
  return describeError(`Taking a snapshot of ${volumeId}${hint[code] ? ` (${hint[code]})` : ''}`, err);
}

/** The snapshot of this tick, found by its token tag. */
async function findByToken(volumeId: string, owner: Owner, token: string, deadline: number): Promise<Snapshot | undefined> {
  const snapshots = await listSnapshots([volumeId], deadline);
  return ourSnapshotsOf(snapshots, owner, volumeId).find((s) => tagValue(s.Tags, OWNERSHIP_TAG_KEYS.token) === token);
}

/** The snapshots of `volumeId` this schedule made (tagged as its snapshots of this volume), newest first. */
export function ourSnapshotsOf(snapshots: readonly Snapshot[], owner: Owner, volumeId: string): Snapshot[] {
  return snapshots
    .filter((s) => s.VolumeId === volumeId && isMadeFor(s.Tags, owner, targetHash(volumeId)))
    .sort((a, b) => (b.CreationTime?.getTime() ?? 0) - (a.CreationTime?.getTime() ?? 0));
}

/**
 * The snapshots of the volumes (at most 20), every page, with their tags (listed for any the
 * description leaves them out of). Without retention this grows with the schedule's snapshots.
 */
export async function listSnapshots(volumeIds: string[], deadline: number): Promise<Snapshot[]> {
  const snapshots = await allPages(
    (NextToken) => retrying('DescribeSnapshots', () => fsx().send(new DescribeSnapshotsCommand({
      Filters: [{ Name: 'volume-id', Values: volumeIds }],
      NextToken,
    })), deadline),
    (page) => page.Snapshots,
  );
  const out: Snapshot[] = [];
  for (const s of snapshots) out.push(s.Tags ? s : { ...s, Tags: (await resourceTags(undefined, s.ResourceARN, deadline)) as Snapshot['Tags'] });
  return out;
}
