import { CONCURRENCY, chunks, mapLimit } from './calls';
import { type CopyRequest, copyRequest } from './copies';
import { scheduledMinute } from './identity';
import { FILTER_VALUES, type Retention, retentionOf } from './retention';
import { liveCreationTimes, staleReason } from './stale';
import type { Lookup } from './targets';
import type { TargetOutcome, TickInput, TickOperation } from './tick';
import { clock } from '../shared/clock';
import { HandlerError, describeError } from '../shared/errors';
import { logger } from '../shared/logger';
import { OWNERSHIP_TAG_KEYS, type Owner, type Tag, tagValue } from '../shared/ownership';

/*
 * A tick's copies made from a listing made before them, for every scheduled operation: the targets
 * are listed a batch at a time (FSx filters take 20 values), then each target's copy is requested
 * from its batch's listing. The tick's own copy already there (found by its token tag, an earlier
 * delivery's) is used, not requested again; one that retention would already have deleted is not
 * made (stale.ts); and what retention prunes after is that same listing, with the tick's copy.
 */

/** What a listing needs of a copy: its state and its tags. */
export interface ListedCopy {
  readonly Lifecycle?: string;
  readonly Tags?: Tag[];
  readonly CreationTime?: Date;
}

/** How one kind of copy is listed and judged before it is requested. */
export interface CopyListing<T, C extends ListedCopy> {
  /** `backup`, `snapshot`: in logs and reasons. */
  readonly noun: string;
  /** The target's id. */
  id(target: T): string;
  /** One listing lists targets of one group (backups: of file systems, or of volumes). @default one group */
  group?(target: T): string;
  /** The copies of the targets of a batch (at most 20, of one group), every page. */
  list(batch: T[], deadline: number): Promise<C[]>;
  /** The schedule's own copies of the target in a listing, newest first. */
  ours(listed: readonly C[], owner: Owner, target: string): C[];
  /** The tick's own copy being or having been deleted: retention's doing when the tick is stale. */
  deleted(copy: C): boolean;
}

/** A batch's copies, or what listing them failed with. */
export type Listing<C> = { readonly copies: C[] } | { readonly failed: unknown };

/** One target's tick, and the schedule's copies of the target as retention then sees them: those listed, and the tick's. */
export interface TargetTick<R, C> {
  readonly result: R;
  readonly ours: C[];
}

/** What the checks after the copies get besides a target's result: its copies, the tick's retention and minute. */
export interface AfterContext<C> {
  readonly ours: C[];
  /** Absent when the schedule keeps every copy. */
  readonly retention?: Retention;
  /** The tick's scheduled minute (epoch ms): ages are measured from it. */
  readonly tickMs: number;
}

/** An operation whose copies are made from a listing made before them: what it supplies besides the tick's checks and counts. */
export interface ListedOperation<E extends TickInput, T, R extends TargetOutcome, C extends ListedCopy, K> extends Omit<TickOperation<E, T, R, K>, 'create' | 'after'> {
  readonly listing: CopyListing<T, C>;
  /** Each target as its copy needs it, or why it cannot be copied. */
  lookUp(targets: T[], deadline: number): Promise<Map<string, Lookup>>;
  /** One target's copy, from its batch's listing. */
  copy(event: E, owner: Owner, target: T, lookup: Lookup, listing: Listing<C>, deadline: number): Promise<TargetTick<R, C>>;
  /** What follows one target's copy (checks, retention), from its copies as listed: no second listing. */
  afterCopy(event: E, owner: Owner, result: R, context: AfterContext<C>, deadline: number): Promise<R>;
}

/**
 * The operation of one invocation: the targets are looked up, listed a batch at a time and copied
 * (`copyInBatches`); each target's copies as listed (with the tick's) are kept between `create`
 * and `after`. A target whose copy failed, or whose tick was skipped as stale, is left as it is
 * after (it keeps every copy it has: the later ticks that made it stale prune it).
 */
export function listedOperation<E extends TickInput, T, R extends TargetOutcome, C extends ListedCopy, K>(
  op: ListedOperation<E, T, R, C, K>,
): TickOperation<E, T, R, K> {
  const { listing, lookUp, copy, afterCopy, ...tick } = op;
  const seen = new Map<string, C[]>();
  return {
    ...tick,
    create: async (event, owner, targets, deadline) => {
      const lookups = await lookUp(targets, deadline);
      const copyOf = (t: T, listed: Listing<C>) => copy(event, owner, t, lookups.get(listing.id(t))!, listed, deadline);
      return copyInBatches(targets, lookups, listing, seen, copyOf, deadline);
    },
    after: (event, owner, _targets, results, deadline) => {
      const context = { retention: retentionOf(event), tickMs: Date.parse(scheduledMinute(event.Time)) };
      const after = (r: R) => afterCopy(event, owner, r, { ...context, ours: seen.get(r.target) ?? [] }, deadline);
      return mapLimit(results, CONCURRENCY, async (r) => (r.error || r.skipped ? r : after(r)));
    },
  };
}

/**
 * Each target's copy (`copy`), made from its batch's listing. The targets that cannot be copied
 * (`lookups` says why) fail with their reason, unlisted; the others are listed FILTER_VALUES a
 * call, and a listing that fails is given to its batch's targets only. `seen` gets each target's
 * copies as retention sees them. The results are in the order of `targets`.
 */
async function copyInBatches<T, R extends TargetOutcome, C extends ListedCopy>(
  targets: T[],
  lookups: ReadonlyMap<string, Lookup>,
  how: CopyListing<T, C>,
  seen: Map<string, C[]>,
  copy: (target: T, listing: Listing<C>) => Promise<TargetTick<R, C>>,
  deadline: number,
): Promise<R[]> {
  const out = new Map<string, R>();
  const copyBatch = async (batch: T[], listing: Listing<C>) => {
    for (const tick of await mapLimit(batch, CONCURRENCY, (t) => copy(t, listing))) {
      out.set(tick.result.target, tick.result);
      seen.set(tick.result.target, tick.ours);
    }
  };
  const readable = (t: T) => 'info' in lookups.get(how.id(t))!;
  await copyBatch(targets.filter((t) => !readable(t)), { copies: [] });
  const groups = new Map<string, T[]>();
  for (const t of targets.filter(readable)) {
    const group = how.group?.(t) ?? '';
    groups.set(group, [...(groups.get(group) ?? []), t]);
  }
  for (const group of groups.values()) {
    for (const batch of chunks(group, FILTER_VALUES)) await copyBatch(batch, await listBatch(batch, how, deadline));
  }
  return targets.map((t) => out.get(how.id(t))!);
}

async function listBatch<T, C extends ListedCopy>(batch: T[], how: CopyListing<T, C>, deadline: number): Promise<Listing<C>> {
  if (clock.now() >= deadline) return { failed: new HandlerError('not listed, the invocation ran out of time') };
  try {
    return { copies: await how.list(batch, deadline) };
  } catch (failed) {
    logger.error(`cannot list the ${how.noun}s of the targets`, { targets: batch.map(how.id), reason: describeError(`Listing the ${how.noun}s`, failed) });
    return { failed };
  }
}

/** Why a target's copy is not requested in this tick: it failed, or it is not made (`skipped`, not a failure). */
export interface NotRequested<C> {
  readonly stop: { readonly error: string } | { readonly skipped: string };
  readonly ours: C[];
}

/** A target's copy to request: the request, the tick's own copy when the listing has it, and the schedule's copies of the target listed. */
export interface ToRequest<C> {
  readonly request: CopyRequest;
  readonly own?: C;
  readonly ours: C[];
}

/**
 * What the listing says of one target's copy before it is requested. With retention, a listing
 * that failed fails the target (the tick cannot tell whether retention passed it); without,
 * nothing is ever deleted, and FSx's answer to the token finds the tick's own: it is requested.
 */
export function beforeCopy<T, C extends ListedCopy>(
  event: TickInput,
  owner: Owner,
  target: string,
  lookup: Lookup,
  listing: Listing<C>,
  how: CopyListing<T, C>,
  deadline: number,
): NotRequested<C> | ToRequest<C> {
  const request = copyRequest(event, owner, target, lookup, deadline);
  if ('error' in request) return { stop: request, ours: [] };
  const retention = retentionOf(event);
  if ('failed' in listing) {
    const error = describeError(`Listing the ${how.noun}s of ${target}`, listing.failed);
    if (retention) return { stop: { error }, ours: [] };
    logger.warn(`${how.noun}s not listed: requesting the ${how.noun} without looking for it first`, { target, reason: error });
  }
  const ours = 'copies' in listing ? how.ours(listing.copies, owner, target) : [];
  const own = ours.find((c) => tagValue(c.Tags, OWNERSHIP_TAG_KEYS.token) === request.token);
  const stale = retention && (!own || how.deleted(own)) ? staleTick(event, ours, retention, how) : undefined;
  if (stale) {
    logger.warn(`no ${how.noun} for this tick: retention would already have deleted it`, { target, tick: scheduledMinute(event.Time), reason: stale });
    return { stop: { skipped: stale }, ours };
  }
  return { request, own, ours };
}

function staleTick<T, C extends ListedCopy>(event: TickInput, ours: C[], retention: Retention, how: CopyListing<T, C>): string | undefined {
  return staleReason(liveCreationTimes(ours), Date.parse(scheduledMinute(event.Time)), retention, how.noun);
}

/** The schedule's copies of a target with the copy the tick requested (when the listing did not have it). */
export function withCopy<C>(ours: C[], copy: C | undefined, idOf: (c: C) => string | undefined): C[] {
  return copy && !ours.some((c) => idOf(c) === idOf(copy)) ? [copy, ...ours] : ours;
}

