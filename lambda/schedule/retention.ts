import { CONCURRENCY, chunks, mapLimit, retrying } from './calls';
import { scheduledMinute } from './identity';
import type { TargetOutcome, TickInput } from './tick';
import { clock } from '../shared/clock';
import { describeError, errorCode } from '../shared/errors';
import { logger } from '../shared/logger';
import { type Owner, type Tag, isOwnedBy } from '../shared/ownership';

/*
 * What follows a tick's copies, for every scheduled operation: the targets whose copy was
 * requested are listed (a few per call), each is checked, and retention prunes only the
 * schedule's own AVAILABLE copies, never a target's newest.
 */

/** FSx filters take at most 20 values. */
export const FILTER_VALUES = 20;

export interface Retention {
  readonly keepLast?: number;
  readonly maxAgeSeconds?: number;
}

/** The tick's retention; undefined when the schedule keeps every copy. */
export function retentionOf(event: TickInput): Retention | undefined {
  return event.KeepLast === undefined && event.MaxAgeSeconds === undefined
    ? undefined
    : { keepLast: event.KeepLast, maxAgeSeconds: event.MaxAgeSeconds };
}

/** What each target's listing is checked and pruned with. */
export interface AfterContext {
  /** Absent when the schedule keeps every copy. */
  readonly retention?: Retention;
  /** The tick's scheduled minute (epoch ms): ages are measured from it. */
  readonly tickMs: number;
}

/**
 * Of one target's AVAILABLE copies by this schedule, newest first, those the retention deletes:
 * beyond `keepLast`, or created more than `maxAgeSeconds` before the tick; never the newest.
 */
export function beyondRetention<C extends { readonly CreationTime?: Date }>(
  ours: readonly C[],
  retention: Retention | undefined,
  tickMs: number,
): C[] {
  if (!retention || (retention.keepLast === undefined && retention.maxAgeSeconds === undefined)) return [];
  return ours.filter((c, i) => {
    if (i === 0) return false; // the newest available copy stays, whatever the limits say
    if (retention.keepLast !== undefined && i >= retention.keepLast) return true;
    const created = c.CreationTime?.getTime();
    return retention.maxAgeSeconds !== undefined && created !== undefined && tickMs - created > retention.maxAgeSeconds * 1000;
  });
}

/**
 * The targets `ids` (those whose copy was requested in this tick), listed `FILTER_VALUES` a call,
 * each passed to `each` with the listing of its batch and the tick's retention. A listing that
 * fails, or time that runs out, fails the pruning of its targets when the tick prunes; otherwise
 * it is only logged (the checks `each` makes are made again at the next tick).
 */
export async function afterCopies<R extends TargetOutcome, C>(
  event: TickInput,
  results: readonly R[],
  ids: string[],
  how: {
    /** What is listed, in reasons: `backups`. */
    readonly copies: string;
    readonly deadline: number;
    list(batch: string[]): Promise<C[]>;
    each(result: R, listed: C[], context: AfterContext): Promise<R>;
  },
): Promise<R[]> {
  const retention = retentionOf(event);
  const context: AfterContext = { retention, tickMs: Date.parse(scheduledMinute(event.Time)) };
  const pruning = !!retention;
  const byId = new Map(results.map((r) => [r.target, r]));
  const fail = (batch: string[], reason: (id: string) => string) => {
    for (const id of batch) byId.set(id, { ...byId.get(id)!, pruneError: reason(id) });
  };
  for (const batch of chunks(ids, FILTER_VALUES)) {
    if (clock.now() >= how.deadline) {
      if (pruning) fail(batch, (id) => `${id}: pruning not attempted, the invocation ran out of time`);
      continue;
    }
    let listed: C[];
    try {
      listed = await how.list(batch);
    } catch (err) {
      const reason = describeError(`Listing the ${how.copies} of ${batch.join(', ')}${pruning ? ' to prune them' : ''}`, err);
      if (pruning) {
        logger.error('cannot prune', { targets: batch, reason });
        fail(batch, () => reason);
      } else {
        logger.warn(`cannot check the ${how.copies}`, { targets: batch, reason });
      }
      continue;
    }
    const done = await mapLimit(batch, CONCURRENCY, (id) => how.each(byId.get(id)!, listed, context));
    for (const r of done) byId.set(r.target, r);
  }
  return results.map((r) => byId.get(r.target) ?? r);
}

/** How one kind of copy is deleted. */
export interface CopyStore<C> {
  /** `Backup`, `Snapshot`: FSx's noun, in its `Delete…` call and `…NotFound` error. */
  readonly noun: 'Backup' | 'Snapshot';
  readonly idOf: (copy: C) => string;
  readonly delete: (id: string) => Promise<unknown>;
  /** Whether an error says FSx refuses to delete the copy for now (kept and counted, not a failure). */
  readonly refused?: (err: unknown) => boolean;
}

export interface PruneOutcome {
  readonly pruned: string[];
  /** The copies FSx refused to delete (a volume cloned from a snapshot): kept, tried again at the next tick. */
  readonly kept: string[];
  readonly pruneError?: string;
}

/**
 * Deletes `doomed`, one at a time. A copy already gone is what was wanted; one FSx refuses to
 * delete for now is kept; any other error fails the target's pruning after the others are tried.
 */
export async function pruneCopies<C extends { readonly Tags?: Tag[] }>(
  target: string,
  doomed: readonly C[],
  owner: Owner,
  deadline: number,
  store: CopyStore<C>,
): Promise<PruneOutcome> {
  const noun = store.noun.toLowerCase();
  const pruned: string[] = [];
  const kept: string[] = [];
  let pruneError: string | undefined;
  for (const copy of doomed) {
    const id = store.idOf(copy);
    // Checked again right before deleting: IAM cannot keep others from tagging a copy as ours,
    // but this list came from the service a moment ago with the copy's own tags.
    if (!isOwnedBy(copy.Tags, owner)) continue;
    if (clock.now() >= deadline) {
      pruneError = `${target}: pruning stopped, the invocation ran out of time`;
      break;
    }
    try {
      await retrying(`Delete${store.noun}`, () => store.delete(id), deadline);
      pruned.push(id);
      logger.info(`${noun} pruned`, { target, id });
    } catch (err) {
      if (errorCode(err) === `${store.noun}NotFound`) continue; // already gone: what we wanted
      const reason = describeError(`Deleting ${noun} ${id} of ${target}`, err);
      if (store.refused?.(err)) {
        kept.push(id);
        logger.warn(`${noun} kept: FSx refused to delete it`, { target, id, reason });
        continue;
      }
      pruneError = reason;
      logger.error('prune failed', { target, id, reason });
    }
  }
  return { pruned, kept, ...(pruneError ? { pruneError } : {}) };
}
