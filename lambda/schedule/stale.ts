import { scheduledMinute } from './identity';
import type { Retention } from './retention';
import { SCHEDULED_TICK_TAG_KEY } from '../../src/private/ownership-tags';
import { type KeyValue, type Tag, tagValue } from '../shared/ownership';

/*
 * A tick that comes so late that retention would already have deleted its copy had it been made
 * in time (a retry after later ticks). Its copy is not made: once retention deleted the tick's
 * copy and FSx forgot the tick's client token (it does not document for how long it remembers
 * one), nothing would stop a second copy of the tick; and a copy that was never made would be
 * pruned again at the next tick. Judged for backups and snapshots alike, by the tick each copy of
 * the schedule carries in its tick tag.
 */

/** The states in which a copy counts: it is, or is becoming, one that retention keeps or deletes (not DELETING, DELETED, FAILED). */
const LIVE = new Set<string>(['PENDING', 'CREATING', 'TRANSFERRING', 'AVAILABLE']);

/** The tag that records a scheduled copy's tick: its scheduled minute (`2026-03-29T01:30Z`). */
export function tickTag(time: string): KeyValue {
  return { Key: SCHEDULED_TICK_TAG_KEY, Value: scheduledMinute(time) };
}

/** The tick (epoch ms) a copy's tick tag carries; undefined without one, or for a value that is not a minute. */
export function tickTagMs(tags: readonly Tag[] | undefined): number | undefined {
  const m = /^(\d{4})-(\d{2})-(\d{2})T(\d{2}):(\d{2})Z$/.exec(tagValue(tags, SCHEDULED_TICK_TAG_KEY) ?? '');
  return m ? Date.UTC(+m[1], +m[2] - 1, +m[3], +m[4], +m[5]) : undefined;
}

/**
 * The ticks of `ours` (the schedule's copies of one target) that count: live ones, by their tick
 * tag, or (`untagged`) by what else says their tick when they carry none.
 */
export function liveTicks<C extends { readonly Lifecycle?: string; readonly Tags?: Tag[] }>(
  ours: readonly C[],
  untagged: (copy: C) => number | undefined = () => undefined,
): number[] {
  return ours
    .filter((c) => LIVE.has(c.Lifecycle ?? ''))
    .map((c) => tickTagMs(c.Tags) ?? untagged(c))
    .filter((t): t is number => t !== undefined);
}

/**
 * Why retention's window has already passed the tick at `tickMs` (its scheduled minute), judged
 * from `ticks` (those of the schedule's live copies of one target, the tick's own not among them):
 * `keepLast` or more of them are later, or the tick is more than `maxAgeSeconds` older than the
 * latest. Undefined when it has not: the tick's copy is made. `noun`: `backup`, `snapshot`.
 */
export function staleReason(ticks: readonly number[], tickMs: number, retention: Retention, noun: string): string | undefined {
  const later = ticks.filter((t) => t > tickMs).length;
  if (retention.keepLast !== undefined && later >= retention.keepLast) {
    return `${later} ${noun}(s) of later ticks exist, and keepLast is ${retention.keepLast}`;
  }
  const latest = ticks.reduce<number | undefined>((max, t) => (max === undefined || t > max ? t : max), undefined);
  if (retention.maxAgeSeconds !== undefined && latest !== undefined && latest - tickMs > retention.maxAgeSeconds * 1000) {
    return `it is ${(latest - tickMs) / 1000} s older than the latest ${noun}'s tick (${new Date(latest).toISOString()}), and maxAge is ${retention.maxAgeSeconds} s`;
  }
  return undefined;
}
