import { MetricUnit, Metrics } from '@aws-lambda-powertools/metrics';
import { Attributes, Response, answer, devicesOfPhysicalId, identityHash, respond, respondNone, snapshotIdsOf } from './answer';
import { readClaim, recordLateFailure } from './claim';
import { CREATE, Plan, claimed } from './claimed-create';
import { Run, discard } from './owner';
import { SnapshotView, describeByIds, findByToken, startTime } from './snapshots';
import type { CopyOrigin } from '../../src/private/contract';
import { type EbsSnapshotOnDeployProperties, REPLACES_TAG_KEY } from '../../src/private/ebs-contract';
import { METRIC_NAMESPACE } from '../../src/private/shared-values';
import { clock } from '../shared/clock';
import type { InvocationContext } from '../shared/context';
import { deleteEc2Snapshot, describeOwnSnapshots } from '../shared/ec2-snapshots';
import { HandlerError, describeError, isTransient, step } from '../shared/errors';
import { IsCompleteRequest, IsCompleteResponse, OnEventRequest, isRollingBack } from '../shared/events';
import { awaitsNothing, deleteIfOwned, logRequest, lookForAdoptable, retainedOnDelete } from '../shared/lifecycle';
import { logger } from '../shared/logger';
import { OWNERSHIP_TAG_KEYS, isMadeFor, requestOwner, tagValue } from '../shared/ownership';
import { requestToken } from '../shared/token';
import { Progress, deadlineExceeded, ec2SnapshotProgress } from '../shared/waiter';

export type { Attributes } from './answer';
export { NO_SNAPSHOT_PREFIX, identityHash, snapshotIdsOf } from './answer';
export { READ_LAG_WINDOW_MS, SKEW_MS } from './owner';

type Props = EbsSnapshotOnDeployProperties;
type Request = OnEventRequest<Props>;
type CompleteRequest = IsCompleteRequest<Props, Attributes>;

/** onEvent's Lambda timeout: the budget when no Lambda context tells the time left. */
const ON_EVENT_TIMEOUT_MS = 5 * 60_000;
/** Kept at the end of onEvent for the clean-up after a failure and the answer. */
const END_MARGIN_MS = 30_000;
/** How long after onEvent a snapshot missing from a read by id is taken for not visible yet, not gone. */
const VISIBILITY_GRACE_MS = 5 * 60_000;
/** How long an Update reads again for snapshots that do not show yet (EC2 reads lagging behind a create moments ago). */
const SHOW_WAIT_MS = 120_000;
const SHOW_POLL_MS = 5_000;
/** Counted when isComplete sees a second snapshot of a request (the claim makes it impossible while EC2 reads lag less than the window). */
export const DUPLICATE_METRIC = 'EbsSnapshotDuplicates';
const metrics = new Metrics({ namespace: METRIC_NAMESPACE, serviceName: 'ebs-snapshot-on-deploy' });

export async function onEvent(event: Request, context?: InvocationContext): Promise<Response> {
  const startedAt = clock.now();
  const remaining = context?.getRemainingTimeInMillis?.();
  const run: Run = {
    startedAt,
    endAt: startedAt + (typeof remaining === 'number' && remaining > 0 ? remaining : ON_EVENT_TIMEOUT_MS) - END_MARGIN_MS,
    // Unique among the deliveries of one request: the invocation's id (in logs too) and a random
    // part, so that no two deliveries ever share one even if an id were reused.
    delivery: `${context?.awsRequestId ?? startedAt.toString(36)}.${Math.random().toString(36).slice(2, 10)}`,
  };
  logRequest(event);
  logger.info('onEvent', { physicalResourceId: event.PhysicalResourceId, properties: event.ResourceProperties, delivery: run.delivery });
  switch (event.RequestType) {
    case 'Create':
      return claimed(event, run, CREATE);
    case 'Update':
      return claimedUpdate(event, run);
    case 'Delete':
      return remove(event);
  }
}

export async function isComplete(event: CompleteRequest, _context?: InvocationContext): Promise<IsCompleteResponse<Attributes>> {
  logRequest(event);
  // As for every type (a rollback must never fail on adopted or kept snapshots); and without
  // waitForCompletion the snapshot's point in time is already fixed.
  if (awaitsNothing(event)) return { IsComplete: true };
  const ids = snapshotIdsOf(event.PhysicalResourceId);
  if (ids.length === 0) return { IsComplete: true };
  if (event.ResourceProperties.WaitForCompletion !== 'true') {
    await reportDuplicates(event, ids);
    return { IsComplete: true };
  }
  let snapshots: Map<string, SnapshotView>;
  try {
    snapshots = await describeByIds(ids);
  } catch (err) {
    // Reads that keep failing (a throttling storm) are tried again at the next poll, until the timeout.
    if (!isTransient(err) || deadlineExceeded(event.Data?.StartedAt, event.ResourceProperties.TimeoutSeconds, clock.now())) {
      throw new HandlerError(describeError(`Reading EBS snapshots ${ids.join(', ')}`, err), isTransient(err));
    }
    logger.warn('could not read the snapshots; reading again at the next poll', { error: err as Error });
    return { IsComplete: false };
  }
  // Since the snapshot was taken (a create may come well after the request started: a take-over).
  const takenAt = Math.max(Number(event.Data?.StartedAt || 0), Date.parse(event.Data?.StartTime ?? '') || 0) || clock.now();
  const sinceStart = clock.now() - takenAt;
  const progress: Array<{ id: string; p: Progress }> = ids.map((id) => {
    const s = snapshots.get(id);
    // Just made, and not visible to reads by id yet: not gone.
    if (!s && sinceStart < VISIBILITY_GRACE_MS) return { id, p: { status: 'waiting', state: 'not visible yet' } };
    return { id, p: ec2SnapshotProgress(id, s) };
  });
  logger.info('isComplete', { progress });
  const failed = progress.find((x) => x.p.status === 'failed');
  // The whole set goes with it: the rest of it is waited for until it shows in reads.
  if (failed && snapshots.size < ids.length && sinceStart < VISIBILITY_GRACE_MS) return { IsComplete: false };
  if (failed && failed.p.status === 'failed') {
    await discard(event, [...snapshots.values()]);
    throw await failedLate(event, `${failed.p.reason}; the snapshots of this request have been deleted`);
  }
  if (progress.every((x) => x.p.status === 'done')) {
    await reportDuplicates(event, ids);
    return { IsComplete: true };
  }
  if (deadlineExceeded(event.Data?.StartedAt, event.ResourceProperties.TimeoutSeconds, clock.now())) {
    await discard(event, [...snapshots.values()]);
    const waiting = progress.filter((x) => x.p.status === 'waiting').map((x) => `${x.id} ${x.p.status === 'waiting' ? x.p.state : ''}`);
    throw await failedLate(event,
      `EBS snapshots were not completed within the timeout of ${event.ResourceProperties.TimeoutSeconds} seconds ` +
        `(still ${waiting.join(', ')}); they have been deleted so that no half-made snapshot is left behind. ` +
        'A first snapshot of a large volume can take hours: set waitForCompletion to false, or a longer timeout (at most 1 hour).');
  }
  return { IsComplete: false };
}

/** The failure of a request whose answer was recorded, recorded too (best effort: the failure stands either way). */
async function failedLate(event: CompleteRequest, reason: string): Promise<HandlerError> {
  await recordLateFailure(requestToken(event), reason).catch((err) => logger.error('could not record the failure of this request', { error: err as Error }));
  return new HandlerError(reason);
}

/**
 * A read-only check once the request's snapshots are answered: a second snapshot of the request
 * (one the claim did not prevent: EC2 reads lagging past the take-over window) is logged and counted
 * (metric EbsSnapshotDuplicates), never deleted here and never failing the deploy.
 */
async function reportDuplicates(event: CompleteRequest, answered: string[]): Promise<void> {
  try {
    const extra = (await findByToken(event, requestToken(event))).filter((s) => !answered.includes(s.SnapshotId!));
    if (extra.length === 0) return;
    logger.error('a second snapshot of this request exists: it carries the request\'s token and this stack\'s tags; delete it by hand', {
      answered, duplicates: extra.map((s) => s.SnapshotId),
    });
    metrics.addMetric(DUPLICATE_METRIC, MetricUnit.Count, extra.length);
    metrics.publishStoredMetrics();
  } catch (err) {
    logger.warn('could not check for a second snapshot of this request', { error: err as Error });
  }
}

/**
 * An Update, under the claim like a Create: its owner decides whether it keeps, returns to or
 * replaces the snapshots, and every delivery answers that. A rollback takes no claim: it never
 * creates, and nothing that could fail it (a claim write, a Lambda killed after one) is worth
 * adding to it, since a failed rollback leaves the stack in UPDATE_ROLLBACK_FAILED.
 */
async function claimedUpdate(event: Request, run: Run): Promise<Response> {
  const plan: Plan = () => planUpdate(event);
  // A request that has a claim is a forward one (a rollback is a new request, never claimed),
  // even if the stack rolls back by now: a late delivery of it answers what its claim says.
  if (await isRollingBack(event.StackId) && !(await hasClaim(event))) {
    const planned = await plan();
    if ('answer' in planned) return planned.answer;
  }
  return claimed(event, run, plan);
}

/** Whether the request has a claim; a table that cannot be read counts as none (a rollback must not fail on it). */
async function hasClaim(event: Request): Promise<boolean> {
  try {
    return (await readClaim(requestToken(event))) !== undefined;
  } catch (err) {
    logger.warn('could not read the claim of this request; taking it for a rollback\'s own', { error: err as Error });
    return false;
  }
}

async function planUpdate(event: Request): ReturnType<Plan> {
  const currentId = event.PhysicalResourceId!;
  const wanted = identityHash(event.ResourceProperties);
  const old = event.OldResourceProperties;
  let current = await readForUpdate(currentId, 0);
  // A snapshot EBS failed after a deploy that did not wait for it is replaced by the next update (never by a rollback).
  const failedOf = () => current.snapshots?.filter((s) => s.State === 'error') ?? [];
  const sameIdentityOf = () => (old && identityHash(old) === wanted) ||
    (current.snapshots && current.snapshots.length > 0 && current.snapshots.every((s) => isMadeFor(s.Tags, requestOwner(event), wanted)));
  let failed = failedOf();
  let sameIdentity = sameIdentityOf();
  if (sameIdentity && failed.length === 0) {
    // Nothing that forces a new snapshot changed, or the current snapshots were made for exactly
    // these properties (the rollback that follows a failure of this very update).
    logger.info('keeping the current snapshots', { physicalResourceId: currentId });
    return { answer: await respondKept(event, currentId, current) };
  }
  if (sameIdentity) logger.warn('EBS failed the current snapshots: taking new ones unless rolling back', { failed: failed.map((s) => s.SnapshotId) });
  const rollingBack = await isRollingBack(event.StackId);
  if (rollingBack !== false && (current.snapshots?.length ?? 0) < snapshotIdsOf(currentId).length) {
    // A rollback right after the update that made the current set: their tags (what they replaced,
    // what they were made for) show once EC2 reads do.
    current = await readForUpdate(currentId, SHOW_WAIT_MS);
    failed = failedOf();
    sameIdentity = sameIdentityOf();
  }
  if (sameIdentity && rollingBack !== false) {
    // The current set was made for these very properties: a rollback returns to it as it is (even
    // with a snapshot EBS failed); only an update replaces it.
    logger.warn('keeping the current snapshots (possibly a rollback): a failed snapshot is replaced by the next update', { physicalResourceId: currentId });
    return { answer: await respondKept(event, currentId, current) };
  }
  if (rollingBack !== false) {
    // A rollback returns to the snapshots the old properties made: it never fails and never takes
    // a new snapshot. First choice: the set the current snapshots replaced (their tag names it).
    const returnTo = await findReplaced(event, current.snapshots, wanted).catch((err) => {
      logger.error('could not read the snapshots the current ones replaced', { error: err as Error });
      return undefined;
    });
    if (returnTo) {
      logger.info('returning to the snapshots the current ones replaced', { physicalResourceId: returnTo.physicalId, rollingBack });
      return { answer: await respondKept(event, returnTo.physicalId, { snapshots: returnTo.snapshots }, 'adopted') };
    }
    const adopted = await lookForAdoptable(() => findAdoptable(event));
    if (adopted) {
      logger.info('adopting the snapshots these properties made', { snapshotIds: adopted.map((s) => s.SnapshotId), rollingBack });
      return { answer: await respond(event, adopted, 'adopted', false) };
    }
    const madeForOld = old !== undefined && current.snapshots !== undefined && current.snapshots.length > 0 &&
      current.snapshots.every((s) => isMadeFor(s.Tags, requestOwner(event), identityHash(old)));
    if (rollingBack || madeForOld || current.error !== undefined) {
      // Rolling back; or the status is unknown and this may be a rollback (the current snapshots
      // were made for the properties it leaves, or cannot be read): never take a snapshot in a
      // rollback. An update whose status cannot be read keeps the current snapshots, and says so.
      logger.warn(rollingBack
        ? 'rolling back, and no snapshot of ours matches the old properties: keeping the current one'
        : 'could not tell a rollback from an update: keeping the current snapshots rather than taking one in a rollback', { physicalResourceId: currentId });
      return { answer: await respondKept(event, currentId, current) };
    }
    logger.warn('could not tell a rollback from an update, and the current snapshots were not made for the old properties: taking a new snapshot');
  }
  return { create: true, replaces: snapshotIdsOf(currentId).length > 0 ? currentId : undefined };
}

/**
 * Snapshots by id, read again while some do not show (made moments ago: EC2 reads lag), for at
 * most `waitMs`: an Update or rollback right after the Create that made them sees them all.
 */
async function describeShown(ids: string[], waitMs = SHOW_WAIT_MS): Promise<Map<string, SnapshotView>> {
  const until = clock.now() + waitMs;
  for (;;) {
    const found = await describeByIds(ids);
    if (found.size === ids.length || clock.now() + SHOW_POLL_MS > until) return found;
    await clock.sleep(SHOW_POLL_MS);
  }
}

async function readForUpdate(physicalId: string, waitMs: number): Promise<{ snapshots?: SnapshotView[]; error?: unknown }> {
  const ids = snapshotIdsOf(physicalId);
  if (ids.length === 0) return { snapshots: [] };
  try {
    const found = await describeShown(ids, waitMs);
    return { snapshots: ids.map((id) => found.get(id)).filter((s): s is SnapshotView => !!s) };
  } catch (error) {
    logger.warn('could not read the current snapshots', { physicalResourceId: physicalId, error: error as Error });
    return { error };
  }
}

/** The set the current snapshots replaced (the physical id in their `replaces` tag), if it is ours, made for `wanted`, and all there. */
async function findReplaced(
  event: Request, current: SnapshotView[] | undefined, wanted: string,
): Promise<{ physicalId: string; snapshots: SnapshotView[] } | undefined> {
  const physicalId = current?.map((s) => tagValue(s.Tags, REPLACES_TAG_KEY)).find((v) => v);
  const ids = snapshotIdsOf(physicalId);
  if (!physicalId || ids.length === 0) return undefined;
  const found = await describeShown(ids);
  const snapshots = ids.map((id) => found.get(id));
  if (!snapshots.every((s): s is SnapshotView => !!s && isMadeFor(s.Tags, requestOwner(event), wanted) && s.State !== 'error')) return undefined;
  return { physicalId, snapshots };
}

/** The newest group (by token) of our snapshots made for exactly these properties. */
async function findAdoptable(event: Request): Promise<SnapshotView[] | undefined> {
  const wanted = identityHash(event.ResourceProperties);
  const found = await describeOwnSnapshots([
    { Name: `tag:${OWNERSHIP_TAG_KEYS.owner}`, Values: [event.LogicalResourceId] },
    { Name: `tag:${OWNERSHIP_TAG_KEYS.propsHash}`, Values: [wanted] },
  ]);
  const groups = new Map<string, SnapshotView[]>();
  for (const s of found) {
    if (!isMadeFor(s.Tags, requestOwner(event), wanted)) continue;
    const token = tagValue(s.Tags, OWNERSHIP_TAG_KEYS.token) ?? '';
    groups.set(token, [...(groups.get(token) ?? []), s]);
  }
  // A set with a snapshot EBS failed is no point in time to return to.
  const newest = [...groups.values()].filter((g) => g.every((s) => s.State !== 'error'))
    .map((g) => g.sort((a, b) => startTime(a) - startTime(b))).sort((a, b) => startTime(b[0]) - startTime(a[0]))[0];
  if (!newest) return undefined;
  // One per volume (a delete that failed, say).
  const perVolume = new Map<string, SnapshotView>();
  for (const s of newest) if (!perVolume.has(s.VolumeId ?? '')) perVolume.set(s.VolumeId ?? '', s);
  return [...perVolume.values()];
}

/**
 * Answers with the set a physical id names, in its order and with its device names. If it could
 * not be read, an update fails with the reason; a rollback answers with the ids alone, because
 * failing a rollback leaves the stack in UPDATE_ROLLBACK_FAILED.
 */
async function respondKept(
  event: Request, physicalId: string, current: { snapshots?: SnapshotView[]; error?: unknown }, origin: CopyOrigin = 'unchanged',
): Promise<Response> {
  const ids = snapshotIdsOf(physicalId);
  if (ids.length === 0) return respondNone(event, physicalId);
  if (current.error !== undefined && (await isRollingBack(event.StackId)) === false) {
    throw new HandlerError(describeError(`Reading EBS snapshots ${ids.join(', ')}`, current.error));
  }
  const known = new Map((current.snapshots ?? []).map((s) => [s.SnapshotId!, s]));
  const devices = devicesOfPhysicalId(physicalId);
  const snapshots = ids.map((id) => known.get(id) ?? { SnapshotId: id });
  return answer(event, snapshots.map((s) => ({ snapshot: s, device: devices.get(s.SnapshotId!) })), origin, '', physicalId);
}

/**
 * A Delete: with removal policy `destroy`, the snapshots the physical id names, if this resource
 * made them. One made moments ago may not show in reads yet: it is read again until it shows (for
 * at most SHOW_WAIT_MS; one that never shows is taken for deleted already). Older ones are deleted
 * at once.
 */
async function remove(event: Request): Promise<Response> {
  const physicalId = event.PhysicalResourceId!;
  const response = { PhysicalResourceId: physicalId } as Response;
  if (retainedOnDelete(event)) return response;
  const until = clock.now() + SHOW_WAIT_MS;
  let pending = await deleteVisible(event, snapshotIdsOf(physicalId));
  while (pending.length > 0 && clock.now() + SHOW_POLL_MS <= until) {
    logger.info('snapshots not visible to reads yet: deleting them once they are', { pending });
    await clock.sleep(SHOW_POLL_MS);
    pending = await deleteVisible(event, pending);
  }
  if (pending.length > 0) logger.warn('snapshots never showed in reads: taking them for deleted already', { pending });
  return response;
}

/** Deletes each of these snapshots that reads show and this resource made; returns those reads do not show. */
async function deleteVisible(event: Request, ids: string[]): Promise<string[]> {
  const pending: string[] = [];
  for (const id of ids) {
    const snapshot = await step(`Reading EBS snapshot ${id}`, async () => (await describeByIds([id])).get(id));
    if (!snapshot) {
      pending.push(id);
      continue;
    }
    await deleteIfOwned(event, 'EBS snapshot', id, snapshot.Tags, () => deleteEc2Snapshot(id));
  }
  return pending;
}
