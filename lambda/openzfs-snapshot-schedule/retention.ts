import { DeleteSnapshotCommand, Snapshot } from '@aws-sdk/client-fsx';
import { VolumeResult, ourSnapshotsOf } from './snapshots';
import type { OpenZfsSnapshotTickInput } from '../../src/private/openzfs-snapshot-schedule-contract';
import type { AfterContext } from '../schedule/listed';
import { CopyStore, Retention, beyondRetention, pruneCopies } from '../schedule/retention';
import { fsx } from '../shared/clients/fsx';
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
 * Retention of a volume whose snapshot this tick has (made, or found made by an earlier delivery),
 * from its snapshots as the tick's listing had them, with the tick's snapshot.
 */
export async function pruneSnapshots(
  _event: OpenZfsSnapshotTickInput,
  owner: Owner,
  r: VolumeResult,
  { ours, retention, tickMs }: AfterContext<Snapshot>,
  deadline: number,
): Promise<VolumeResult> {
  if (!retention) return r;
  return { ...r, ...(await pruneCopies(r.target, snapshotsToPrune(ours, owner, r.target, retention, tickMs), owner, deadline, SNAPSHOTS)) };
}
