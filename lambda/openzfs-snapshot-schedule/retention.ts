import { DeleteSnapshotCommand, Snapshot } from '@aws-sdk/client-fsx';
import { VolumeResult, ourSnapshotsOf } from './snapshots';
import type { OpenZfsSnapshotTickInput } from '../../src/private/openzfs-snapshot-schedule-contract';
import { CONCURRENCY, mapLimit } from '../schedule/calls';
import { scheduledMinute } from '../schedule/identity';
import { CopyStore, Retention, beyondRetention, pruneCopies, retentionOf } from '../schedule/retention';
import { fsx } from '../shared/clients/fsx';
import { clock } from '../shared/clock';
import { errorCode } from '../shared/errors';
import type { Owner } from '../shared/ownership';

/*
 * Retention after the snapshots of a tick, from the listing made before them (and the snapshots
 * the tick made): no second listing.
 */

const SNAPSHOTS: CopyStore<Snapshot> = {
  noun: 'Snapshot',
  idOf: (s) => s.SnapshotId!,
  delete: (id) => fsx().send(new DeleteSnapshotCommand({ SnapshotId: id })),
  // DeleteSnapshot's only client error besides SnapshotNotFound: FSx refuses to delete a snapshot
  // a volume was cloned from (ZFS: "snapshot has dependent clones"). Kept until the clone goes.
  refused: (err) => errorCode(err) === 'BadRequest',
};

/** What retention deletes of one volume's snapshots: only ours, only AVAILABLE, never the newest. */
export function snapshotsToPrune(snapshots: readonly Snapshot[], owner: Owner, volumeId: string, retention: Retention, tickMs: number): Snapshot[] {
  return beyondRetention(ourSnapshotsOf(snapshots, owner, volumeId).filter((s) => s.Lifecycle === 'AVAILABLE'), retention, tickMs);
}

/**
 * Retention of the volumes whose snapshot this tick has (made, or found made by an earlier
 * delivery), each from `snapshots` (its listing before the tick's snapshot, and that snapshot).
 * A volume whose snapshot failed, or whose tick was skipped as stale, keeps every snapshot it has:
 * the later ticks that made it stale prune it.
 */
export async function pruneSnapshots(
  event: OpenZfsSnapshotTickInput,
  owner: Owner,
  results: VolumeResult[],
  snapshots: ReadonlyMap<string, Snapshot[]>,
  deadline: number,
): Promise<VolumeResult[]> {
  const retention = retentionOf(event);
  if (!retention) return results;
  const tickMs = Date.parse(scheduledMinute(event.Time));
  return mapLimit(results, CONCURRENCY, async (r) => {
    if (r.error || r.skipped) return r;
    if (clock.now() >= deadline) return { ...r, pruneError: `${r.target}: pruning not attempted, the invocation ran out of time` };
    const doomed = snapshotsToPrune(snapshots.get(r.target) ?? [], owner, r.target, retention, tickMs);
    return { ...r, ...(await pruneCopies(r.target, doomed, owner, deadline, SNAPSHOTS)) };
  });
}
