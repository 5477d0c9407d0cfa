import { targetHash, targetToken } from './identity';
import { tickTag } from './stale';
import type { Lookup } from './targets';
import type { TickInput } from './tick';
import { FSX_TAG_PATTERN } from '../../src/private/shared-values';
import { clock } from '../shared/clock';
import { HandlerError, errorCode } from '../shared/errors';
import { logger } from '../shared/logger';
import { type KeyValue, type Owner, type Tag, ownershipTags } from '../shared/ownership';

/*
 * One target's copy of one tick, for every scheduled operation: the request (the tick's token,
 * the tags), and the copy FSx made for it, whichever delivery of the tick asked first.
 */

/** AWS allows 50 tags per resource. */
const MAX_TAGS = 50;

/**
 * A copy's tags: the target's own (when it copies tags to its copies, since tags in the request
 * turn that off), then the user's, then ours; later ones win. Sorted by key, so that a retry sends
 * exactly the same request. Copied tags that FSx would refuse (characters outside its tag
 * pattern) or that do not fit in AWS's 50 are left out (and reported).
 */
export function tagsOfCopy(copied: Tag[], user: Record<string, string>, ours: KeyValue[]): { tags: KeyValue[]; dropped: string[] } {
  const fixed = new Map<string, string>([...Object.entries(user), ...ours.map((t) => [t.Key, t.Value] as const)]);
  const byKey = (a: KeyValue, b: KeyValue) => (a.Key < b.Key ? -1 : a.Key > b.Key ? 1 : 0);
  const copyable = copied
    .filter((t): t is KeyValue => !!t.Key && t.Value !== undefined && !t.Key.startsWith('aws:') && !fixed.has(t.Key))
    .sort(byKey);
  const valid = (t: KeyValue) => FSX_TAG_PATTERN.test(t.Key) && t.Key.length <= 128 && FSX_TAG_PATTERN.test(t.Value) && t.Value.length <= 256;
  const candidates = copyable.filter(valid);
  const room = Math.max(0, MAX_TAGS - fixed.size);
  const kept = candidates.slice(0, room);
  const tags = [...kept, ...[...fixed].map(([Key, Value]) => ({ Key, Value }))].sort(byKey);
  return { tags, dropped: [...copyable.filter((t) => !valid(t)), ...candidates.slice(room)].map((t) => t.Key) };
}

/**
 * What one target's request of one tick sends: the tick's token, and the tags (with how many of
 * the target's were left out), the tick's tag among them. Every delivery of the tick sends the same.
 */
export interface CopyRequest {
  readonly token: string;
  readonly tags: KeyValue[];
  readonly tagsDropped: number;
}

/** The target's request, or why it is not made: the invocation ran out of time, or the target could not be read. */
export function copyRequest(
  event: TickInput,
  owner: Owner,
  target: string,
  lookup: Lookup,
  deadline: number,
): CopyRequest | { readonly error: string } {
  if (clock.now() >= deadline) return { error: `${target}: not attempted, the invocation ran out of time` };
  if ('error' in lookup) {
    logger.error('cannot copy the target', { target, reason: lookup.error });
    return lookup;
  }
  const token = targetToken(event, target);
  // Ours: the ownership tags, and the tick's (what tells a late retry whether retention passed it).
  const ours = [...ownershipTags(owner, targetHash(target), token), tickTag(event.Time)];
  const { tags, dropped } = tagsOfCopy(lookup.info.tags, event.Tags ?? {}, ours);
  if (dropped.length > 0) {
    logger.warn('tags of the target were not copied: FSx refuses their characters, or they did not fit in the copy\'s 50 tags', { target, dropped });
  }
  return { token, tags, tagsDropped: dropped.length };
}

/** How one kind of copy is requested. */
export interface CopyCreation<C> {
  /** `backup`, `snapshot`, and the create call: in logs and reasons. */
  readonly noun: string;
  readonly call: string;
  /** The create call (retried as the copy's kind needs); resolves to the copy FSx returns. */
  readonly create: () => Promise<C | undefined>;
  /** The tick's copy already found (by its token tag, in a listing made before): judged, and `create` not called. */
  readonly found?: C;
  /** The copy an earlier delivery of the tick made, found by its token tag. */
  readonly findByToken: () => Promise<C | undefined>;
  /**
   * The error codes of the create call after which the copy is looked for by its token tag.
   * @default IncompatibleParameterError only
   */
  readonly lookAfter?: readonly string[];
  readonly idOf: (copy: C) => string | undefined;
  /** Why the copy, as FSx reports it now, failed; undefined when it has not. */
  readonly failure: (copy: C) => string | undefined;
  /** The reason of an error of the create call. */
  readonly explain: (err: unknown) => string;
}

/** One target's copy of the tick: the copy (failed or not) when there is one, and the reason when it failed. */
export type Requested<C> = { readonly copy: C; readonly error?: string } | { readonly copy?: undefined; readonly error: string };

/**
 * Requests the copy with the tick's token (unless it was already `found`). A later delivery of
 * the tick gets the tick's copy back, in whatever state it is now; the token used with other
 * parameters (an earlier delivery sent other tags: the target's changed in between) means the
 * copy that delivery made is this tick's.
 */
export async function requestCopy<C>(target: string, how: CopyCreation<C>): Promise<Requested<C>> {
  const judged = (copy: C, message: string): Requested<C> => {
    const failure = how.failure(copy);
    if (failure) {
      logger.error(`${how.noun} failed`, { target, id: how.idOf(copy), reason: failure });
      return { copy, error: failure };
    }
    logger.info(message, { target, id: how.idOf(copy) });
    return { copy };
  };
  if (how.found) return judged(how.found, `${how.noun} already requested by an earlier delivery of this tick`);
  try {
    const copy = await how.create();
    if (!copy || !how.idOf(copy)) throw new HandlerError(`FSx ${how.call} of ${target} returned no ${how.noun} id`);
    return judged(copy, `${how.noun} requested`);
  } catch (err) {
    if ((how.lookAfter ?? ['IncompatibleParameterError']).includes(errorCode(err))) {
      const earlier = await how.findByToken().catch(() => undefined);
      if (earlier) return judged(earlier, `${how.noun} already requested by an earlier delivery of this tick`);
    }
    const reason = how.explain(err);
    logger.error(`${how.noun} failed`, { target, reason, error: err as Error });
    return { error: reason };
  }
}
