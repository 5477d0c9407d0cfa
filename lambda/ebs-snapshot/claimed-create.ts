import { Response, respond, respondNone, snapshotIdsOf } from './answer';
import { Claim, putClaim, readClaim, recordAnswer, recordFailure, recordUnclaimedFailure, reopen, setCreators, takeOver } from './claim';
import {
  LostClaim, Ownership, Run, SKEW_MS, WATCH_POLL_MS, Work, adopt, create, discard, hold, shownOwn,
} from './owner';
import { SnapshotView, Source, attachedVolumes, resolveSource } from './snapshots';
import type { EbsSnapshotOnDeployProperties } from '../../src/private/ebs-contract';
import { clock } from '../shared/clock';
import { HandlerError, describeError, errorMessage, isTransient, step } from '../shared/errors';
import { OnEventRequest, currentStackOperation, resourceStatus } from '../shared/events';
import { logger } from '../shared/logger';
import { requestToken } from '../shared/token';

/*
 * A request that takes snapshots, under its claim (claim.ts): the delivery that claims it creates
 * and records the answer; every other delivery returns that answer. The timeline and the argument
 * are in docs/design/ebs-claim.md.
 */

type Request = OnEventRequest<EbsSnapshotOnDeployProperties>;

/** The owner's hold from its claim until its first create: the source look-up (a minute of retries at most) and slack. */
const CLAIM_FENCE_MS = 120_000;
const WAIT_POLL_MS = 2_000;
/** What a failure reason says when a snapshot the request may have made stays. */
const KEPT = ' (a snapshot this request may have made is kept: it carries the request\'s token, and a retry of the request adopts it)';

/** The answer of a Create or Update: this delivery's, if it wins the claim, or the one recorded by the delivery that did. */
export async function claimed(event: Request, run: Run, plan: Plan): Promise<Response> {
  try {
    const put = await putClaim(requestToken(event), run.delivery, CLAIM_FENCE_MS);
    if (put.won) return await own(event, run, put.claim!, plan);
    logger.info('another delivery holds the claim of this request', { state: put.claim?.state, owner: put.claim?.owner });
    return await awaitOutcome(event, run, put.claim, plan);
  } catch (err) {
    return lastWord(event, run, err);
  }
}

/**
 * Before a delivery fails, one more look at the claim: if another delivery has answered, this one
 * answers the same; if another still works on it, or nobody claimed it yet, the failure is
 * recorded, so that the other fails too (CloudFormation may take this delivery's failure while the
 * other answers success, leaving what it made to no request). Best effort: the original error
 * stands if the claim cannot be read.
 */
async function lastWord(event: Request, run: Run, err: unknown): Promise<Response> {
  const token = requestToken(event);
  const reason = describeError('Another delivery of this request', err);
  try {
    let claim = await readClaim(token);
    for (let attempt = 0; attempt < 3; attempt++) {
      if (claim?.state === 'answered') {
        logger.warn('failed, but another delivery of this request answered: answering the same', { error: err as Error });
        return JSON.parse(claim.answer ?? '{}') as Response;
      }
      // Failed already, this delivery's own, or reopened by a retried deployment after this delivery
      // started (this one belongs to an earlier stack operation): nothing to record.
      if (claim && (claim.state === 'failed' || claim.owner === run.delivery || (claim.reopenedAt ?? 0) > run.startedAt)) break;
      const w = claim ? await recordFailure(claim, reason) : await recordUnclaimedFailure(token, reason);
      if (w.won) break;
      claim = w.claim;
    }
  } catch (e) {
    logger.error('could not look at the claim of this request before failing', { error: e as Error });
  }
  throw err;
}

/**
 * What the owner of a request does: answer without a snapshot (an Update that keeps its snapshots,
 * a rollback), or create one (replacing the set a physical id names, for an Update). Decided by
 * the owner alone, so that every delivery of the request gives the same answer.
 */
export type Plan = () => Promise<{ readonly answer: Response } | { readonly create: true; readonly replaces?: string }>;

/** A Create always takes a snapshot. */
export const CREATE: Plan = async () => ({ create: true });

/** `second`: this delivery is not the request's first owner (it took over, or reopened a failure). */
async function own(event: Request, run: Run, claim: Claim, plan: Plan, second = false): Promise<Response> {
  const owned: Ownership = { claim, delivery: run.delivery };
  const work: Work = { made: [], accountedFor: new Set(), unseenCreate: false };
  logger.info('this delivery owns the request', { token: claim.token, earlierCreators: claim.creators });
  let response: Response | undefined;
  try {
    // A claim written late (its fence is computed before the write is sent) is extended at once.
    if (claim.fence - clock.now() < CLAIM_FENCE_MS / 2) await hold(owned, CLAIM_FENCE_MS, false);
    let source: Source | undefined;
    let snapshots: SnapshotView[] | undefined;
    if (claim.creators.length > 0) {
      // An earlier owner decided to create, and may have: what it made is the answer.
      source = await step('Finding the source of the EBS snapshot', () => resolveSource(event));
      snapshots = await adopt(event, run, owned, source, work);
    }
    if (!snapshots) {
      const planned = await plan();
      if ('answer' in planned) {
        response = planned.answer;
      } else {
        source ??= await step('Finding the source of the EBS snapshot', () => resolveSource(event));
        if (!source) {
          logger.warn('the source does not exist yet (first deploy of a guarded source): no snapshot taken', {
            sourceLogicalId: event.ResourceProperties.SourceLogicalId,
          });
          response = respondNone(event);
        } else {
          await inForwardOperation(event, second);
          snapshots = await create(event, run, owned, source, work, planned.replaces);
        }
      }
    }
    if (snapshots) response = await respond(event, snapshots, 'created', true, String(run.startedAt));
    // A delivery that took over looks again before answering: the owner it replaced may have been
    // frozen past its fence and failed (its Lambda timed out) since; then what this one made goes.
    if (snapshots && second) await inForwardOperation(event, true);
  } catch (err) {
    if (err instanceof LostClaim) return lostClaim(event, run, err, work, plan);
    return failOwned(event, run, owned, work, err, plan);
  }
  let recorded;
  try {
    recorded = await recordAnswer(owned.claim, run.delivery, JSON.stringify(response!));
  } catch (err) {
    // The record may have acted: what this delivery made stays (a delivery that takes over adopts it).
    const kept = work.made.length > 0 ? ' (the snapshots of this request were kept; a retry of the request adopts them)' : '';
    throw new HandlerError(`${errorMessage(err)}${kept}`, true);
  }
  if (!recorded.won) return lostClaim(event, run, new LostClaim(recorded.claim), work, plan);
  logger.info('recorded the answer of this request', { physicalResourceId: response!.PhysicalResourceId });
  return response!;
}

/**
 * A delivery that does not own the request waits for its outcome, takes over a claim whose owner
 * stopped, or reopens an earlier operation's failure. `mine`: what this delivery made while it owned
 * the request (it lost the claim): deleted if the request fails, or if the answer does not name it.
 */
async function awaitOutcome(event: Request, run: Run, seen: Claim | undefined, plan: Plan, mine?: Work): Promise<Response> {
  const token = requestToken(event);
  let claim = seen;
  for (;;) {
    if (!claim) {
      const put = await putClaim(token, run.delivery, CLAIM_FENCE_MS);
      if (put.won) return own(event, run, put.claim!, plan);
      if (!put.claim) throw new HandlerError('the claim of this request could not be read back; no snapshot was taken. Deploy again.', true);
      claim = put.claim;
      continue;
    }
    if (claim.state === 'answered') {
      logger.info('returning the answer another delivery of this request recorded', { owner: claim.owner });
      const answer = JSON.parse(claim.answer ?? '{}') as Response;
      // What this delivery made as owner and the answer does not name, nobody will.
      const unnamed = (mine?.made ?? []).filter((s) => !snapshotIdsOf(answer.PhysicalResourceId).includes(s.SnapshotId!));
      if (unnamed.length > 0) await discard(event, unnamed);
      return answer;
    }
    if (claim.state === 'failed') {
      if (!(await failedInEarlierOperation(event, claim))) return failAs(event, run, claim, claim.reason ?? 'another delivery of this request failed', mine);
      logger.warn('reopening a failure recorded in an earlier stack operation (a retried deployment)', { recordedAt: claim.recordedAt });
      const w = await reopen(claim, run.delivery, CLAIM_FENCE_MS);
      if (w.won) return own(event, run, w.claim!, plan, true);
      claim = w.claim;
      continue;
    }
    const now = clock.now();
    if (now > claim.fence + SKEW_MS) {
      logger.warn('the owner of this request stopped before recording an outcome: taking over', { owner: claim.owner, creators: claim.creators });
      const w = await takeOver(claim, run.delivery, CLAIM_FENCE_MS);
      if (w.won) return own(event, run, w.claim!, plan, true);
      claim = w.claim;
      continue;
    }
    if (now + WAIT_POLL_MS > run.endAt) {
      // Failing alone could let CloudFormation take this failure while the owner answers: the
      // failure is recorded, so the owner fails too and deletes what it made.
      const reason = 'another delivery of this request was still taking its snapshot when this delivery\'s time ran out: the request fails, and that ' +
        'delivery deletes what it made once it sees the failure. Deploy again.';
      const w = await recordFailure(claim, reason);
      if (w.won) return failAs(event, run, w.claim ?? claim, reason, mine);
      claim = w.claim;
      continue;
    }
    await clock.sleep(Math.max(1, Math.min(WAIT_POLL_MS, claim.fence + SKEW_MS + 1 - now)));
    claim = await readClaim(token);
  }
}

/**
 * A recorded failure is final for the stack operation it happened in. A retried deployment re-sends
 * the same RequestId in a new operation (aws-cdk issue 35957): one that began after the failure was
 * recorded, and is no rollback, may try again.
 */
async function failedInEarlierOperation(event: Request, claim: Claim): Promise<boolean> {
  const op = await currentStackOperation(event.StackId);
  if (!op || claim.recordedAt === undefined) return false;
  const forward = op.status.endsWith('_IN_PROGRESS') && !/ROLLBACK|CLEANUP|DELETE/.test(op.status);
  return forward && op.startedAt > claim.recordedAt + SKEW_MS;
}

/**
 * A delivery creates (and one that took over answers) only while CloudFormation still waits for
 * this request: the resource is `CREATE_IN_PROGRESS`/`UPDATE_IN_PROGRESS` and the stack's operation
 * goes forward. Once CloudFormation took another delivery's failure of the request (the resource
 * failed, the stack rolls back), what it made would belong to no request. A status that cannot be
 * read stops only a delivery that took over (`strict`).
 */
async function inForwardOperation(event: Request, strict: boolean): Promise<void> {
  const [op, resource] = await Promise.all([currentStackOperation(event.StackId), resourceStatus(event.StackId, event.LogicalResourceId)]);
  const forward = op === undefined || /^(CREATE|UPDATE|IMPORT)_IN_PROGRESS$/.test(op.status);
  const waiting = resource === undefined || /^(CREATE|UPDATE)_IN_PROGRESS$/.test(resource);
  if (forward && waiting && ((op && resource) || !strict)) return;
  const state = !forward ? `the stack is ${op!.status}` : !waiting ? `the resource is ${resource}` : 'the stack\'s status could not be read';
  throw new HandlerError(`${state}: CloudFormation has taken this request's outcome from another delivery, so no snapshot was taken`);
}

/**
 * The owner failed. The failure is recorded first (a failed claim is taken over by nobody in this
 * stack operation, so nobody adopts what is deleted next), so that every delivery of the request
 * fails the same way; then what it made goes (nobody else can have answered it). Except when a
 * create of unknown outcome is still unseen: then nothing is recorded, and a later delivery (or a
 * retry of the request) watches for what it made.
 */
async function failOwned(event: Request, run: Run, owned: Ownership, work: Work, err: unknown, plan: Plan): Promise<never> {
  const reason = describeError('Taking the EBS snapshot', err);
  const transient = err instanceof HandlerError ? err.transient : isTransient(err);
  if (work.unseenCreate) throw new HandlerError(`${reason}${KEPT}`, true);
  let recorded;
  try {
    // With nothing made, no creator of this delivery's needs watching: it drops out at once.
    const done = (c: string) => c === run.delivery || work.accountedFor.has(c);
    const creators = work.made.length > 0 ? owned.claim.creators : owned.claim.creators.filter((c) => !done(c));
    recorded = await recordFailure(owned.claim, reason, { delivery: run.delivery, creators });
  } catch (e) {
    // Nothing recorded: the claim stays this delivery's until its fence passes, and a delivery that takes over adopts what it made.
    logger.error('could not record the failure of this request; keeping what this delivery made', { error: e as Error });
    throw new HandlerError(work.made.length > 0 ? `${reason}${KEPT}` : reason, transient);
  }
  if (!recorded.won) return lostClaim(event, run, new LostClaim(recorded.claim), work, plan) as Promise<never>;
  if (work.made.length === 0) throw new HandlerError(reason, transient);
  const cleaned = await cleanUpAfterFailure(event, run, recorded.claim!, work);
  throw new HandlerError(`${reason}; ${cleaned ? 'the snapshots this request made have been deleted' : `some could not be deleted${KEPT}`}`, transient);
}

/**
 * The owner lost its claim. If a recorded failure took it, nobody answers what this delivery made:
 * it goes. If another delivery took it over, that one may adopt it: it stays, unless the request
 * ends failed (awaitOutcome, with `work`).
 */
async function lostClaim(event: Request, run: Run, lost: LostClaim, work: Work, plan: Plan): Promise<Response> {
  logger.warn('this delivery lost the claim of this request', { state: lost.claim?.state, owner: lost.claim?.owner });
  if (lost.claim?.state !== 'failed') return awaitOutcome(event, run, lost.claim, plan, work);
  if ((work.made.length > 0 || work.unseenCreate) && !(await cleanUpAfterFailure(event, run, lost.claim, work))) {
    throw new HandlerError(`${lost.claim.reason ?? 'another delivery of this request failed'}${KEPT}`, true);
  }
  return awaitOutcome(event, run, lost.claim, plan);
}

/** Fails with the request's recorded failure, after deleting what this delivery made as its owner (`mine`), if anything. */
async function failAs(event: Request, run: Run, claim: Claim, reason: string, mine: Work | undefined): Promise<never> {
  if (!mine || (mine.made.length === 0 && !mine.unseenCreate)) throw new HandlerError(reason, true);
  throw new HandlerError(`${reason}${(await cleanUpAfterFailure(event, run, claim, mine)) ? '' : KEPT}`, true);
}

/**
 * Deletes what this delivery made for a request whose failure is recorded (`claim`), and tells
 * whether all of it is gone. A create of unknown outcome is watched for, until it shows in full (a
 * snapshot of every volume) or the delivery's time is up. Before deleting, the delivery drops itself
 * (and the earlier owners whose snapshots it took on) from the claim's creators, on condition that
 * the claim is still that failure: a retried deployment that reopened it meanwhile adopts what is
 * there, and nothing is deleted. If a delete fails, the creators are put back.
 */
async function cleanUpAfterFailure(event: Request, run: Run, claim: Claim, work: Work): Promise<boolean> {
  let made = work.made;
  if (work.unseenCreate) {
    const shown = await ownSnapshots(event, run);
    if (!shown) return false;
    made = [...made, ...shown];
  }
  const to = claim.creators.filter((c) => c !== run.delivery && !work.accountedFor.has(c));
  const released = await setCreators(claim, claim.creators, to).catch((e) => {
    logger.error('could not update the claim of this request', { error: e as Error });
    return false;
  });
  if (!released) {
    logger.warn('the claim of this request changed (reopened by a retried deployment?): keeping what this delivery made');
    return false;
  }
  const cleaned = await discard(event, made);
  if (!cleaned) {
    await setCreators({ ...claim, creators: to }, to, claim.creators).catch((e) => logger.error('could not update the claim of this request', { error: e as Error }));
  }
  return cleaned;
}

/** The snapshots this delivery's create made, once reads show one of every volume of the source (at least one read); undefined if not in its time. */
async function ownSnapshots(event: Request, run: Run): Promise<SnapshotView[] | undefined> {
  const expected = await resolveSource(event)
    .then((source) => (source?.kind === 'instance' ? attachedVolumes(source.instanceId) : []))
    .catch((err) => {
      logger.warn('could not read the source\'s volumes', { error: err as Error });
      return undefined;
    });
  if (!expected) return undefined;
  for (;;) {
    const mine = await shownOwn(event, run, expected).catch((err) => {
      logger.warn('could not read the snapshots of this request', { error: err as Error });
      return undefined;
    });
    if (mine) return mine;
    if (clock.now() + WATCH_POLL_MS >= run.endAt) return undefined;
    await clock.sleep(WATCH_POLL_MS);
  }
}

