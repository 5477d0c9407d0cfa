import { clock } from './clock';
import type { InvocationContext } from './context';
import { HandlerError, describeError, step } from './errors';
import { IsCompleteRequest, IsCompleteResponse, OnEventRequest, OnEventResponse, isRollingBack } from './events';
import { logger } from './logger';
import { Tag, isMadeBy, isMadeFor, isOwnedBy, requestOwner } from './ownership';
import { requestToken } from './token';
import { Progress, deadlineExceeded } from './waiter';
import type { CopyOrigin, CopyRemovalPolicy } from '../../src/private/contract';

/*
 * The lifecycle of a custom resource that makes one copy (a snapshot) per request, written once:
 * create, adopt or keep on update and rollback, delete, and isComplete with its deadline and the
 * clean-up of a failed request's own copy. Each type supplies only what differs (`CopyHooks`).
 * docs/design/lifecycle.md describes the decisions.
 */

/** The properties every such resource has. */
export interface CopyProperties {
  readonly RemovalPolicy: CopyRemovalPolicy;
  readonly TimeoutSeconds: string;
}

/** The attributes every such resource answers. */
export interface CopyAttributes {
  readonly StartedAt: string;
  readonly Origin: CopyOrigin;
}

/** The current copy of an Update, or why it could not be read (a read must not fail a rollback by itself). */
export interface Current<C> {
  readonly copy?: C;
  readonly error?: unknown;
}

/** A copy as it carries the ownership tags. */
export interface TaggedCopy {
  readonly Tags?: Tag[];
}

/** Where copies of one kind live: reading one by id and deleting it. */
export interface CopyStore<C extends TaggedCopy> {
  /** What the copy is called in messages: `FSx snapshot`, `EBS snapshot`. */
  readonly noun: string;
  /** The prefix of a physical id that names a copy; a resource whose id has another never made one. */
  readonly idPrefix: string;
  /** The copy by id; undefined if it does not exist (or not yet: reads may lag). */
  describe(id: string): Promise<C | undefined>;
  /** Deletes the copy; one already gone is deleted. */
  delete(id: string): Promise<void>;
  /** A copy on its way out (FSx DELETING): a Delete has nothing left to do. */
  isGone?(copy: C): boolean;
}

/** What one type of copy supplies to the lifecycle. */
export interface CopyHooks<P extends CopyProperties, A extends CopyAttributes, C extends TaggedCopy> {
  readonly store: CopyStore<C>;
  /**
   * Whether an Update reads the current copy before deciding (then a current copy made for these
   * properties is kept: the rollback after a failure of this very update), or only to answer with it.
   */
  readonly readCurrentFirst: boolean;
  /** Appended to the reason an Update fails with when the copy it keeps cannot be read. */
  readonly unreadableKeptSuffix?: string;
  /** The properties that force a new copy, hashed (the `props-hash` tag). */
  identityHash(props: P): string;
  /** Makes a new copy for the request. */
  create(event: OnEventRequest<P>): Promise<OnEventResponse<A>>;
  /** The newest copy of this resource made for properties with this hash, if any. */
  findAdoptable(event: OnEventRequest<P>, hash: string): Promise<C | undefined>;
  /** The answer naming a copy that exists (adopted or kept). */
  respond(event: OnEventRequest<P>, copy: C, origin: CopyOrigin): OnEventResponse<A>;
  /** The current copy, read for an Update. */
  readCurrent(id: string): Promise<Current<C>>;
  /** What is known of a copy that could not be read (a rollback must not fail on it). */
  known(event: OnEventRequest<P>, id: string): C;
  /** isComplete: how far the copy is; undefined when it is not visible yet (and that is no failure). */
  progress(id: string, copy: C | undefined): Progress | undefined;
  /** Fields of the isComplete log line beyond the id and the progress. */
  progressLog?(copy: C | undefined): Record<string, unknown>;
  /** isComplete's attributes once the copy is done. */
  doneData(copy: C | undefined): Partial<A>;
  /** The reason CloudFormation shows when the copy was not done within the timeout. */
  timeoutReason(event: IsCompleteRequest<P, A>, copy: C | undefined, progress: Progress | undefined): string;
  /** isComplete's work while the copy is not done yet (the upload of an image); by default, wait. */
  work?(event: IsCompleteRequest<P, A>, copy: C | undefined, context?: InvocationContext): Promise<IsCompleteResponse<A>>;
  /** Whether the failed request's own copy may be deleted now (it may be done after all, or gone). */
  mayDiscard(id: string, copy: C | undefined): Promise<boolean>;
}

/** The two entry points of a custom resource handler built on the lifecycle. */
export interface CopyLifecycle<P extends CopyProperties, A extends CopyAttributes, C extends TaggedCopy> {
  onEvent(event: OnEventRequest<P>, context?: InvocationContext): Promise<OnEventResponse<A>>;
  isComplete(event: IsCompleteRequest<P, A>, context?: InvocationContext): Promise<IsCompleteResponse<A>>;
  /** Deletes the copy this very request made, after a failure of it (never one it did not make). */
  discard(event: IsCompleteRequest<P, A>, copy: C | undefined): Promise<void>;
}

/** Every request's log lines name it. */
export function logRequest(event: OnEventRequest<unknown>): void {
  logger.appendKeys({ requestType: event.RequestType, logicalResourceId: event.LogicalResourceId, requestId: event.RequestId });
}

/** isComplete has nothing to wait for: Deletes finish in onEvent; adopted and kept copies are not waited for, so that a rollback can never fail on them. */
export function awaitsNothing(event: IsCompleteRequest<unknown, Partial<CopyAttributes>>): boolean {
  return event.RequestType === 'Delete' || event.Data?.Origin !== 'created';
}

/** A Delete under removal policy `retain` keeps the copy. */
export function retainedOnDelete(event: OnEventRequest<CopyProperties>): boolean {
  if (event.ResourceProperties.RemovalPolicy === 'destroy') return false;
  logger.info('removal policy is retain: keeping the snapshot', { physicalResourceId: event.PhysicalResourceId });
  return true;
}

/** Deletes a copy a Delete found, if this resource made it; one someone else made (or tagged to look like ours) stays. */
export async function deleteIfOwned(
  event: OnEventRequest<unknown>, noun: string, id: string, tags: readonly Tag[] | undefined, del: () => Promise<void>,
): Promise<void> {
  if (!isOwnedBy(tags, requestOwner(event))) {
    logger.warn('not deleting a snapshot this resource did not make', { snapshotId: id, tags });
    return;
  }
  await step(`Deleting ${noun} ${id}`, del);
}

/** A look-up for a copy to adopt; a failure of it is logged and counts as nothing found (a rollback must not fail on it). */
export function lookForAdoptable<C>(find: () => Promise<C | undefined>): Promise<C | undefined> {
  return find().catch((err) => {
    logger.error('could not look for a snapshot to adopt', { error: err as Error });
    return undefined;
  });
}

export function copyLifecycle<P extends CopyProperties, A extends CopyAttributes, C extends TaggedCopy>(
  hooks: CopyHooks<P, A, C>,
): CopyLifecycle<P, A, C> {
  const store = hooks.store;
  type Request = OnEventRequest<P>;
  type Response = OnEventResponse<A>;
  type CompleteRequest = IsCompleteRequest<P, A>;

  async function onEvent(event: Request): Promise<Response> {
    logRequest(event);
    logger.info('onEvent', { physicalResourceId: event.PhysicalResourceId, properties: event.ResourceProperties });
    switch (event.RequestType) {
      case 'Create':
        return hooks.create(event);
      case 'Update':
        return update(event);
      case 'Delete':
        return remove(event);
    }
  }

  async function update(event: Request): Promise<Response> {
    const currentId = event.PhysicalResourceId!;
    const wanted = hooks.identityHash(event.ResourceProperties);
    const old = event.OldResourceProperties;
    let current = hooks.readCurrentFirst ? await hooks.readCurrent(currentId) : undefined;
    const madeForThese = current?.copy !== undefined && isMadeFor(current.copy.Tags, requestOwner(event), wanted);
    if ((old && hooks.identityHash(old) === wanted) || madeForThese) {
      // Nothing that forces a new copy changed (tags, name, removal policy, timeout, the library's
      // version), or the current copy was made for exactly these properties (the rollback that
      // follows a failure of this very update).
      logger.info('keeping the current snapshot', { snapshotId: currentId });
      return keep(event, currentId, current);
    }
    const rollingBack = await isRollingBack(event.StackId);
    if (rollingBack !== false) {
      // A rollback returns to the copy the old properties made: it must never fail and never make
      // a new one. When the stack status could not be read, adopting a copy of ours made for
      // exactly these properties is still the right answer.
      const adopted = await lookForAdoptable(() => hooks.findAdoptable(event, wanted));
      if (adopted) {
        const response = hooks.respond(event, adopted, 'adopted');
        logger.info('adopting the snapshot these properties made', { snapshotId: response.PhysicalResourceId, rollingBack });
        return response;
      }
      if (rollingBack) {
        logger.warn('rolling back, and no snapshot of ours matches the old properties: keeping the current one', { snapshotId: currentId });
        return keep(event, currentId, current, true);
      }
      // The status could not be read (say, the role may not call DescribeStacks) and nothing of
      // ours matches: this is most likely an update, whose copy must not be skipped.
      logger.warn('could not tell a rollback from an update, and nothing to adopt: taking a new snapshot');
    }
    return hooks.create(event);
  }

  /**
   * Answers with the copy the resource already has. If it could not be read, an update fails with
   * the reason; a rollback (or a request whose status cannot be read) answers with what is known
   * without reading, because failing a rollback leaves the stack in UPDATE_ROLLBACK_FAILED.
   */
  async function keep(event: Request, id: string, read: Current<C> | undefined, rollingBack?: boolean): Promise<Response> {
    const current = read ?? await hooks.readCurrent(id);
    if (current.copy !== undefined) return hooks.respond(event, current.copy, 'unchanged');
    if (current.error !== undefined && (rollingBack ?? (await isRollingBack(event.StackId))) === false) {
      throw new HandlerError(`${describeError(`Reading ${store.noun} ${id}`, current.error)}${hooks.unreadableKeptSuffix ?? ''}`);
    }
    return hooks.respond(event, hooks.known(event, id), 'unchanged');
  }

  async function remove(event: Request): Promise<Response> {
    const id = event.PhysicalResourceId!;
    const response = { PhysicalResourceId: id };
    if (retainedOnDelete(event)) return response;
    if (!id.startsWith(store.idPrefix)) return response; // never made one
    const copy = await step(`Reading ${store.noun} ${id}`, () => store.describe(id));
    if (copy === undefined || store.isGone?.(copy)) {
      logger.info('snapshot already gone', { snapshotId: id });
      return response;
    }
    await deleteIfOwned(event, store.noun, id, copy.Tags, () => store.delete(id));
    return response;
  }

  async function isComplete(event: CompleteRequest, context?: InvocationContext): Promise<IsCompleteResponse<A>> {
    logRequest(event);
    if (awaitsNothing(event)) return { IsComplete: true };
    const id = event.PhysicalResourceId;
    const copy = await step(`Reading ${store.noun} ${id}`, () => store.describe(id));
    const progress = hooks.progress(id, copy);
    logger.info('isComplete', { snapshotId: id, progress, ...hooks.progressLog?.(copy) });
    if (progress?.status === 'done') return { IsComplete: true, Data: hooks.doneData(copy) };
    if (progress?.status === 'failed') {
      await discard(event, copy);
      throw new HandlerError(progress.reason);
    }
    if (deadlineExceeded(event.Data?.StartedAt, event.ResourceProperties.TimeoutSeconds, clock.now())) {
      await discard(event, copy);
      throw new HandlerError(hooks.timeoutReason(event, copy, progress));
    }
    return hooks.work ? hooks.work(event, copy, context) : { IsComplete: false };
  }

  const discard = (event: CompleteRequest, copy: C | undefined) => discardOwnCopy(store, hooks.mayDiscard, event, copy);
  return { onEvent, isComplete, discard };
}

/** After a failure, delete the copy this very request made (its token tag says so), so that nothing is orphaned. */
export async function discardOwnCopy<C extends TaggedCopy>(
  store: CopyStore<C>,
  mayDiscard: (id: string, copy: C | undefined) => Promise<boolean>,
  event: IsCompleteRequest<unknown, unknown>,
  copy: C | undefined,
): Promise<void> {
  const id = event.PhysicalResourceId;
  if (copy !== undefined && !isMadeBy(copy.Tags, requestOwner(event), requestToken(event))) return;
  if (!(await mayDiscard(id, copy))) return;
  try {
    await store.delete(id);
    logger.info('deleted the snapshot of the failed request', { snapshotId: id });
  } catch (err) {
    // It stays tagged as ours, with the request's token: visible, and deletable by the stack.
    logger.error('could not delete the snapshot of the failed request', { snapshotId: id, error: err as Error });
  }
}
