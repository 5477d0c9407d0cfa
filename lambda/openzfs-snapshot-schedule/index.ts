import type { Snapshot } from '@aws-sdk/client-fsx';
import { pruneSnapshots } from './retention';
import { SNAPSHOT_LISTING, VolumeResult, snapshotVolume } from './snapshots';
import { describeOpenZfsVolumes } from './volumes';
import {
  MAX_NAME_PREFIX,
  OPENZFS_SNAPSHOT_METRICS as METRICS,
  type OpenZfsSnapshotTickInput,
  SNAPSHOT_NAME_PATTERN,
} from '../../src/private/openzfs-snapshot-schedule-contract';
import { type ListedOperation, listedOperation } from '../schedule/listed';
import { Summary, retentionProblems, runTick, sum, tickCounts, tickMetrics, uniqueBy } from '../schedule/tick';

export type { VolumeResult } from './snapshots';
export { ourSnapshotsOf } from './snapshots';
export { snapshotsToPrune } from './retention';
export { liveCreationTimes, staleReason } from '../schedule/stale';
export { metrics } from '../schedule/metrics';

/** An OpenZFS volume id. */
const VOLUME_ID = /^fsvol-[0-9a-f]{17}$/;

/** The counts of a tick of snapshots. */
export interface SnapshotCounts {
  readonly created: number;
  readonly failed: number;
  /** Volumes whose snapshot of this tick was not made: retention would already have deleted it (a stale tick). */
  readonly skipped: number;
  readonly pruned: number;
  /** Snapshots retention would have deleted but FSx refused to (a volume was cloned from them). */
  readonly kept: number;
}

/** What the handler returns when every volume succeeded. */
export type SnapshotTickSummary = Summary<VolumeResult, SnapshotCounts>;

const SNAPSHOTS: ListedOperation<OpenZfsSnapshotTickInput, string, VolumeResult, Snapshot, SnapshotCounts> = {
  copies: 'snapshots',
  target: 'volume',
  check: (event) => [
    ...(event.Operation !== 'OpenZfsSnapshot' ? [`Operation ${JSON.stringify(event.Operation)} is not OpenZfsSnapshot`] : []),
    ...volumeProblems(event.VolumeIds),
    ...prefixProblems(event.NamePrefix),
    ...(event.Tags !== undefined && (typeof event.Tags !== 'object' || event.Tags === null || Array.isArray(event.Tags)) ? ['Tags is not an object'] : []),
    ...retentionProblems(event),
  ],
  // A volume given twice (a token and a literal of the same id, say) gets one snapshot.
  targets: (event) => uniqueBy(event.VolumeIds, (id) => id),
  // The volumes are listed 20 a call (every page) and each batch's snapshots made from its
  // listing; with retention, a listing that fails fails only its batch's volumes.
  listing: SNAPSHOT_LISTING,
  lookUp: describeOpenZfsVolumes,
  copy: snapshotVolume,
  afterCopy: pruneSnapshots,
  metrics: (results, notReached) => ({
    ...tickMetrics(results, { made: METRICS.created, failed: METRICS.failed, pruned: METRICS.pruned }, notReached),
    [METRICS.kept]: sum(results, (r) => r.kept.length),
  }),
  counts: (results) => {
    const { made, ...counts } = tickCounts(results);
    return { created: made, ...counts, kept: sum(results, (r) => r.kept.length) };
  },
};

export function handler(event: OpenZfsSnapshotTickInput): Promise<SnapshotTickSummary> {
  return runTick(event, listedOperation(SNAPSHOTS));
}

function volumeProblems(ids: unknown): string[] {
  if (!Array.isArray(ids) || ids.length === 0) return ['VolumeIds is empty'];
  const bad = ids.filter((id) => typeof id !== 'string' || !VOLUME_ID.test(id));
  return bad.length ? [`VolumeIds ${JSON.stringify(bad)} are not volume ids (fsvol-…)`] : [];
}

function prefixProblems(prefix: unknown): string[] {
  if (typeof prefix !== 'string' || !SNAPSHOT_NAME_PATTERN.test(prefix) || prefix.length > MAX_NAME_PREFIX) {
    return [`NamePrefix ${JSON.stringify(prefix)} is not 1 to ${MAX_NAME_PREFIX} of the characters a-z A-Z 0-9 _ : . -`];
  }
  return [];
}
