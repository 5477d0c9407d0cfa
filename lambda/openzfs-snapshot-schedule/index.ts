import type { Snapshot } from '@aws-sdk/client-fsx';
import { pruneSnapshots } from './retention';
import { VolumeResult, listBatch, snapshotVolume } from './snapshots';
import { describeOpenZfsVolumes } from './volumes';
import {
  MAX_NAME_PREFIX,
  OPENZFS_SNAPSHOT_METRICS as METRICS,
  type OpenZfsSnapshotTickInput,
  SNAPSHOT_NAME_PATTERN,
} from '../../src/private/openzfs-snapshot-schedule-contract';
import { CONCURRENCY, chunks, mapLimit } from '../schedule/calls';
import { FILTER_VALUES } from '../schedule/retention';
import { Summary, TickOperation, retentionProblems, runTick, uniqueBy } from '../schedule/tick';

export type { VolumeResult } from './snapshots';
export { ourSnapshotsOf } from './snapshots';
export { snapshotsToPrune } from './retention';
export { staleReason } from './stale';
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

const sum = (results: VolumeResult[], n: (r: VolumeResult) => number) => results.reduce((total, r) => total + n(r), 0);
const count = (results: VolumeResult[], p: (r: VolumeResult) => unknown) => results.filter(p).length;

/**
 * One invocation's operation: the snapshots each volume's batch listed before its snapshot was
 * made (with the snapshot the tick made) are kept between `create` and `after`, for retention.
 */
function snapshotOperation(): TickOperation<OpenZfsSnapshotTickInput, string, VolumeResult, SnapshotCounts> {
  const snapshots = new Map<string, Snapshot[]>();
  return {
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
    // The volumes that can be snapshotted are listed 20 a call (every page), and each batch's
    // snapshots are made from its listing; a listing that fails fails only its batch's volumes.
    create: async (event, owner, volumes, deadline) => {
      const lookups = await describeOpenZfsVolumes(volumes, deadline);
      const readable = new Set(volumes.filter((id) => 'info' in lookups.get(id)!));
      const out = new Map<string, VolumeResult>();
      const snapshotBatch = async (batch: string[], listed: boolean) => {
        const listing = listed ? await listBatch(batch, deadline) : { snapshots: [] };
        for (const tick of await mapLimit(batch, CONCURRENCY, (id) => snapshotVolume(event, owner, id, lookups.get(id)!, listing, deadline))) {
          out.set(tick.result.target, tick.result);
          snapshots.set(tick.result.target, tick.snapshots);
        }
      };
      // Those that cannot (not found, not OpenZFS) fail with their reason, unlisted.
      await snapshotBatch(volumes.filter((id) => !readable.has(id)), false);
      for (const batch of chunks([...readable], FILTER_VALUES)) await snapshotBatch(batch, true);
      return volumes.map((id) => out.get(id)!);
    },
    after: (event, owner, _volumes, results, deadline) => pruneSnapshots(event, owner, results, snapshots, deadline),
    metrics: (results, notReached) => ({
      [METRICS.created]: count(results, (r) => !r.error && !r.skipped),
      [METRICS.failed]: count(results, (r) => r.error) + notReached,
      [METRICS.stale]: count(results, (r) => r.skipped),
      [METRICS.pruned]: sum(results, (r) => r.pruned.length),
      [METRICS.pruneFailed]: count(results, (r) => r.pruneError),
      [METRICS.kept]: sum(results, (r) => r.kept.length),
      [METRICS.tagsDropped]: sum(results, (r) => r.tagsDropped),
    }),
    counts: (results) => ({
      created: count(results, (r) => !r.error && !r.skipped),
      failed: count(results, (r) => r.error),
      skipped: count(results, (r) => r.skipped),
      pruned: sum(results, (r) => r.pruned.length),
      kept: sum(results, (r) => r.kept.length),
    }),
  };
}

export function handler(event: OpenZfsSnapshotTickInput): Promise<SnapshotTickSummary> {
  return runTick(event, snapshotOperation());
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
