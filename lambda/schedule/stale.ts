import { scheduledMinute } from './identity';
import type { Retention } from './retention';
import { SCHEDULED_TICK_TAG_KEY } from '../../src/private/ownership-tags';
import type { KeyValue } from '../shared/ownership';

/*
 * A tick that comes so late that retention would already have deleted its copy had it been made
 * (a retry after later ticks). Its copy is not made: once retention deleted the tick's copy and
 * FSx forgot the tick's client token (it does not document for how long it remembers one),
 * nothing would stop a second copy of the tick. Judged for backups and snapshots alike, and by
 * what retention ranks copies by, their CreationTime: retention deletes a copy only when
 * `keepLast` live copies were created after it (so after the tick's scheduled time, when the copy
 * was made), or when a tick at least `maxAge` after its creation made a copy; so whenever the
 * tick's copy was deleted, the rule below holds, and no second copy can follow, whatever order
 * the ticks ran in. (Judged by the ticks the copies are tagged with instead, a retry after ticks
 * that ran out of order could find its pruned copy's slot free again.)
 */

/** The states in which a copy counts: it is, or is becoming, one that retention keeps or deletes (not DELETING, DELETED, FAILED). */
const LIVE = new Set<string>(['PENDING', 'CREATING', 'TRANSFERRING', 'AVAILABLE']);

/** The tag that records a scheduled copy's tick: its scheduled minute (`2026-03-29T01:30Z`). */
export function tickTag(time: string): KeyValue {
  return { Key: SCHEDULED_TICK_TAG_KEY, Value: scheduledMinute(time) };
}

/** When the live ones of `ours` (the schedule's copies of one target) were created (epoch ms). */
export function liveCreationTimes<C extends { readonly Lifecycle?: string; readonly CreationTime?: Date }>(ours: readonly C[]): number[] {
  return ours
    .filter((c) => LIVE.has(c.Lifecycle ?? ''))
    .map((c) => c.CreationTime?.getTime())
    .filter((t): t is number => t !== undefined);
}

/**
 * Why retention's window has already passed the tick at `tickMs` (its scheduled minute), judged
 * from `created` (when the schedule's live copies of one target were created, the tick's own not
 * among them): `keepLast` or more were created after the tick, or the tick is more than
 * `maxAgeSeconds` older than the latest. Undefined when it has not: the tick's copy is made.
 * `noun`: `backup`, `snapshot`.
 */
export function staleReason(created: readonly number[], tickMs: number, retention: Retention, noun: string): string | undefined {
  const later = created.filter((t) => t > tickMs).length;
  if (retention.keepLast !== undefined && later >= retention.keepLast) {
    return `${later} ${noun}(s) were made after this tick's scheduled time, and keepLast is ${retention.keepLast}`;
  }
  const latest = created.reduce<number | undefined>((max, t) => (max === undefined || t > max ? t : max), undefined);
  if (retention.maxAgeSeconds !== undefined && latest !== undefined && latest - tickMs > retention.maxAgeSeconds * 1000) {
    return `it is ${(latest - tickMs) / 1000} s older than the latest ${noun} (${new Date(latest).toISOString()}), and maxAge is ${retention.maxAgeSeconds} s`;
  }
  return undefined;
}
