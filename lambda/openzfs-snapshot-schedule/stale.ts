import type { Snapshot } from '@aws-sdk/client-fsx';
import { tickOfSnapshotName } from '../../src/private/openzfs-snapshot-schedule-contract';
import type { Retention } from '../schedule/retention';

/*
 * A tick that comes so late that retention would already have deleted its snapshot had it been
 * made in time. Its snapshot is not made: its name (the only guard once FSx has forgotten the
 * tick's token) no longer exists when retention deleted it, so a snapshot made now could be the
 * tick's second one; and one that was never made would be pruned again at the next tick.
 */

/** The states in which a snapshot counts: it is, or is becoming, one retention keeps or deletes. */
const LIVE = new Set<string>(['PENDING', 'CREATING', 'AVAILABLE']);

/** The tick (epoch ms) a snapshot's name carries (`snapshotName()`'s `20260329T0130Z`); undefined for another name. */
export function nameTickMs(name: string | undefined): number | undefined {
  const m = /^(\d{4})(\d{2})(\d{2})T(\d{2})(\d{2})Z$/.exec((name && tickOfSnapshotName(name)) ?? '');
  return m ? Date.UTC(+m[1], +m[2] - 1, +m[3], +m[4], +m[5]) : undefined;
}

/**
 * Why retention's window has already passed the tick at `tickMs` (its scheduled minute), judged
 * from `ours` (this schedule's snapshots of one volume, the tick's own not among them) by the
 * ticks their names carry: `keepLast` or more of them are of later ticks, or the tick is more than
 * `maxAgeSeconds` older than the latest. Undefined when it has not: the tick's snapshot is made.
 * DELETING snapshots and names without a tick do not count.
 */
export function staleReason(ours: readonly Snapshot[], tickMs: number, retention: Retention): string | undefined {
  const ticks = ours.filter((s) => LIVE.has(s.Lifecycle ?? '')).map((s) => nameTickMs(s.Name)).filter((t): t is number => t !== undefined);
  const later = ticks.filter((t) => t > tickMs).length;
  if (retention.keepLast !== undefined && later >= retention.keepLast) {
    return `${later} snapshot(s) of later ticks exist, and keepLast is ${retention.keepLast}`;
  }
  const latest = ticks.reduce<number | undefined>((max, t) => (max === undefined || t > max ? t : max), undefined);
  if (retention.maxAgeSeconds !== undefined && latest !== undefined && latest - tickMs > retention.maxAgeSeconds * 1000) {
    return `it is ${(latest - tickMs) / 1000} s older than the latest snapshot's tick (${new Date(latest).toISOString()}), and maxAge is ${retention.maxAgeSeconds} s`;
  }
  return undefined;
}
