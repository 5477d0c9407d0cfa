import { DeleteSnapshotCommand, Snapshot } from '@aws-sdk/client-fsx';
import { VolumeResult, listSnapshots, ourSnapshotsOf, vanished } from './snapshots';
import type { OpenZfsSnapshotTickInput } from '../../src/private/openzfs-snapshot-schedule-contract';
import { CopyStore, Retention, afterCopies, beyondRetention, pruneCopies } from '../schedule/retention';
import { fsx } from '../shared/clients/fsx';
import { errorCode } from '../shared/errors';
import { logger } from '../shared/logger';
import type { Owner } from '../shared/ownership';

/*
 * What follows the snapshots of a tick: the check that each is still there, and retention.
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
 * After the snapshots are requested, one listing of the volumes whose snapshot was: a snapshot
 * already DELETING or gone failed (FSx has no FAILED state for snapshots), and its volume keeps
 * every snapshot it has; the others' retention prunes.
 */
export function afterSnapshots(event: OpenZfsSnapshotTickInput, owner: Owner, results: VolumeResult[], deadline: number): Promise<VolumeResult[]> {
  return afterCopies(event, results, results.filter((r) => !r.error).map((r) => r.target), {
    copies: 'snapshots',
    deadline,
    list: (batch) => listSnapshots(batch, deadline),
    each: async (r, snapshots, { retention, tickMs }) => {
      const listed = snapshots.find((s) => s.SnapshotId === r.snapshotId);
      if (!listed || listed.Lifecycle === 'DELETING') {
        const error = vanished(r.target, listed, r.snapshotId);
        logger.error('snapshot failed', { target: r.target, id: r.snapshotId, reason: error });
        return { ...r, error };
      }
      if (!retention) return r;
      return { ...r, ...(await pruneCopies(r.target, snapshotsToPrune(snapshots, owner, r.target, retention, tickMs), owner, deadline, SNAPSHOTS)) };
    },
  });
}
