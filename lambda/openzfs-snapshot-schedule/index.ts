import { afterSnapshots } from './retention';
import { VolumeResult, snapshotVolume } from './snapshots';
import { describeOpenZfsVolumes } from './volumes';
import {
  MAX_NAME_PREFIX,
  OPENZFS_SNAPSHOT_METRICS as METRICS,
  type OpenZfsSnapshotTickInput,
  SNAPSHOT_NAME_PATTERN,
} from '../../src/private/openzfs-snapshot-schedule-contract';
import { CONCURRENCY, mapLimit } from '../schedule/calls';
import { Summary, TickOperation, retentionProblems, runTick, uniqueBy } from '../schedule/tick';

export type { VolumeResult } from './snapshots';
export { ourSnapshotsOf } from './snapshots';
export { snapshotsToPrune } from './retention';
export { metrics } from '../schedule/metrics';

/** An OpenZFS volume id. */
const VOLUME_ID = /^fsvol-[0-9a-f]{17}$/;

/** The counts of a tick of snapshots. */
export interface SnapshotCounts {
  readonly created: number;
  readonly failed: number;
  readonly pruned: number;
  /** Snapshots retention would have deleted but FSx refused to (a volume was cloned from them). */
  readonly kept: number;
}

/** What the handler returns when every volume succeeded. */
export type SnapshotTickSummary = Summary<VolumeResult, SnapshotCounts>;

const sum = (results: VolumeResult[], n: (r: VolumeResult) => number) => results.reduce((total, r) => total + n(r), 0);

const SNAPSHOTS: TickOperation<OpenZfsSnapshotTickInput, string, VolumeResult, SnapshotCounts> = {
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
  create: async (event, owner, volumes, deadline) => {
    const lookups = await describeOpenZfsVolumes(volumes, deadline);
    return mapLimit(volumes, CONCURRENCY, (id) => snapshotVolume(event, owner, id, lookups.get(id)!, deadline));
  },
  after: (event, owner, _volumes, results, deadline) => afterSnapshots(event, owner, results, deadline),
  metrics: (results, notReached) => ({
    [METRICS.created]: results.filter((r) => !r.error).length,
    [METRICS.failed]: results.filter((r) => r.error).length + notReached,
    [METRICS.pruned]: sum(results, (r) => r.pruned.length),
    [METRICS.pruneFailed]: results.filter((r) => r.pruneError).length,
    [METRICS.kept]: sum(results, (r) => r.kept.length),
    [METRICS.tagsDropped]: sum(results, (r) => r.tagsDropped),
  }),
  counts: (results) => ({
    created: results.filter((r) => !r.error).length,
    failed: results.filter((r) => r.error).length,
    pruned: sum(results, (r) => r.pruned.length),
    kept: sum(results, (r) => r.kept.length),
  }),
};

export function handler(event: OpenZfsSnapshotTickInput): Promise<SnapshotTickSummary> {
  return runTick(event, SNAPSHOTS);
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
