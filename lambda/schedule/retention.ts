import { retrying } from './calls';
import type { TickInput } from './tick';
import { clock } from '../shared/clock';
import { describeError, errorCode } from '../shared/errors';
import { logger } from '../shared/logger';
import { type Owner, type Tag, isOwnedBy } from '../shared/ownership';

/*
 * Retention of a tick's copies, for every scheduled operation: it prunes only the schedule's own
 * AVAILABLE copies of a target, never the target's newest, from the listing the tick made before
 * its copies (listed.ts).
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
 * An invocation already out of time fails the target's pruning, not attempted.
 */
export async function pruneCopies<C extends { readonly Tags?: Tag[] }>(
  target: string,
  doomed: readonly C[],
  owner: Owner,
  deadline: number,
  store: CopyStore<C>,
): Promise<PruneOutcome> {
  if (clock.now() >= deadline) return { pruned: [], kept: [], pruneError: `${target}: pruning not attempted, the invocation ran out of time` };
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
