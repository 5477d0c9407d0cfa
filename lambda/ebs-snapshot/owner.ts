import { identityHash } from './answer';
import { Claim, extendFence } from './claim';
import {
  SnapshotView, Source, attachedVolumes, createSnapshots, findByToken, oldestPerVolume,
} from './snapshots';
import { DELIVERY_TAG_KEY, type EbsSnapshotOnDeployProperties, REPLACES_TAG_KEY } from '../../src/private/ebs-contract';
import { clock } from '../shared/clock';
import { deleteEc2Snapshot } from '../shared/ec2-snapshots';
import { HandlerError, errorCode, errorMessage, isThrottling, isTransient, step, withRetries } from '../shared/errors';
import type { OnEventRequest } from '../shared/events';
import { logger } from '../shared/logger';
import { KeyValue, isMadeBy, ownershipTags, parseUserTags, requestOwner, tagValue, withOwnershipTags } from '../shared/ownership';
import { requestToken } from '../shared/token';

/*
 * What the owner of a request does with EC2 while it holds the claim (claimed-create.ts runs the
 * claim): create the snapshots, or adopt what an earlier owner made, extending its fence as it goes.
 */

type Request = OnEventRequest<EbsSnapshotOnDeployProperties>;

/** One invocation of onEvent: when it started, when it must have answered, and its delivery id. */
export interface Run {
  readonly startedAt: number;
  readonly endAt: number;
  readonly delivery: string;
}

/** The hold renewed right before each create call: the call (5 s to connect, at most 30 s of silence) and the answer's record. */
const CREATE_FENCE_MS = 120_000;

/** The hold renewed on every read while watching for a snapshot, and before cleaning up after a failure. */
const WATCH_FENCE_MS = 60_000;

/**
 * How long after a create of unknown outcome a delivery that took over watches the token tag
 * before it concludes that the create made nothing. EC2's eventual-consistency guidance backs off
 * "up to a few minutes"; this is the one path whose outcome rests on how long EC2 reads lag.
 */
export const READ_LAG_WINDOW_MS = 5 * 60_000;

/** Clock skew between invocations (and between a Lambda and CloudFormation) that the claim tolerates. */
export const SKEW_MS = 10_000;

export const WATCH_POLL_MS = 5_000;

/** Kept after the creates for the device look-up, the record, and the clean-up after a failure. */
const ANSWER_RESERVE_MS = 45_000;

/** The retryable marker of a create of unknown outcome, while reads are watched for what it made. */
const UNCERTAIN = 'UncertainCreate';

/** EC2's refusals of a create that are retried with backoff. */
const RATE_LIMITS = new Set(['SnapshotCreationPerVolumeRateExceeded', 'ConcurrentSnapshotLimitExceeded']);

/** Tag values are at most 256 characters. */
const MAX_TAG_VALUE = 256;

/** The claim changed under its owner (taken over after its fence passed, or failed by a waiter): this delivery no longer owns the request. */
export class LostClaim extends Error {
  constructor(public readonly claim: Claim | undefined) {
    super('another delivery now holds the claim of this request');
    this.name = 'LostClaim';
  }
}

/**
 * What the owner is answerable for: the snapshots it made or adopted, the creators (deliveries,
 * itself included) whose snapshots those are all of, and whether a create of unknown outcome is
 * still unseen.
 */
export interface Work {
  readonly made: SnapshotView[];
  readonly accountedFor: Set<string>;
  unseenCreate: boolean;
}

export interface Ownership {
  claim: Claim;
  readonly delivery: string;
}

/**
 * Takes the snapshots of the request, holding the claim: the fence is extended (and this delivery
 * recorded as a creator) right before every create call. A create refused by EC2 (throttling, a
 * rate limit) is sent again; one of unknown outcome (a lost response, a 5xx, a timeout) never is:
 * reads are watched for what it made, found by this delivery's tag.
 */
export async function create(
  event: Request, run: Run, owned: Ownership, source: Source, work: Work, replaces: string | undefined,
): Promise<SnapshotView[]> {
  const props = event.ResourceProperties;
  const token = requestToken(event);
  const extra: KeyValue[] = [{ Key: DELIVERY_TAG_KEY, Value: run.delivery }];
  if (replaces && replaces.length <= MAX_TAG_VALUE) extra.push({ Key: REPLACES_TAG_KEY, Value: replaces });
  const tags = withOwnershipTags(parseUserTags(props.Tags), [...ownershipTags(requestOwner(event), identityHash(props), token), ...extra]);
  const what = source.kind === 'volume' ? `volume ${source.volumeId}` : `the volumes of instance ${source.instanceId}`;
  const budgetMs = Math.max(0, run.endAt - ANSWER_RESERVE_MS - clock.now());
  let uncertainAt: number | undefined;
  let lastCreateError: unknown;
  let expected: string[] | undefined;
  try {
    await withRetries(async () => {
      if (uncertainAt !== undefined) {
        await hold(owned, WATCH_FENCE_MS, false);
        expected ??= source.kind === 'instance' ? await attachedVolumes(source.instanceId) : [];
        const mine = await shownOwn(event, run, expected);
        if (mine) {
          logger.info('the create of unknown outcome made these snapshots', { snapshotIds: mine.map((s) => s.SnapshotId) });
          work.made.push(...mine);
          work.unseenCreate = false;
          work.accountedFor.add(run.delivery);
          return;
        }
        throw Object.assign(new Error('waiting for what a create of unknown outcome made to show in reads'), { name: UNCERTAIN });
      }
      await hold(owned, CREATE_FENCE_MS, true);
      const created = await createSnapshots(event, source, tags).catch((err) => {
        lastCreateError = err;
        // A lost response or a 5xx may follow a create that acted: what it made shows in reads later.
        if (isTransient(err) && !isThrottling(err)) {
          uncertainAt = clock.now();
          work.unseenCreate = true;
        }
        throw err;
      });
      work.made.push(...created);
      work.accountedFor.add(run.delivery);
      logger.info('snapshot requested', { snapshotIds: created.map((s) => s.SnapshotId), token });
    }, {
      budgetMs,
      baseDelayMs: 2_000,
      maxDelayMs: 15_000,
      retryable: (err) => !(err instanceof LostClaim) && (isTransient(err) || RATE_LIMITS.has(errorCode(err)) || errorCode(err) === UNCERTAIN),
      onRetry: (err, attempt, delayMs) => logger.warn('retrying the snapshot', { attempt, delayMs, error: errorCode(err) }),
    });
  } catch (err) {
    if (err instanceof LostClaim || err instanceof HandlerError) throw err;
    if (uncertainAt !== undefined) {
      throw new HandlerError(
        `EC2 ${source.kind === 'volume' ? 'CreateSnapshot' : 'CreateSnapshots'} on ${what} may have acted (${errorMessage(lastCreateError)}), ` +
          `and no snapshot of this request showed in reads within ${Math.round((clock.now() - uncertainAt) / 1000)} seconds. ` +
          'It was not sent again, so as not to make two; a snapshot it made keeps this request\'s token tag (a retry of the request adopts it). Deploy again.',
        true,
      );
    }
    throw explainCreateError(err, what, budgetMs);
  }
  return [...oldestPerVolume(work.made).values()];
}

/**
 * After a take-over (or a reopened failure) whose earlier owners may have created: adopts, per
 * volume, what they made (found by their delivery tags) as soon as it shows, or, once
 * READ_LAG_WINDOW_MS has passed since their last create may have been sent with nothing shown,
 * returns undefined (nothing was made: create).
 */
export async function adopt(event: Request, run: Run, owned: Ownership, source: Source | undefined, work: Work): Promise<SnapshotView[] | undefined> {
  const token = requestToken(event);
  const creators = new Set(owned.claim.creators);
  const since = owned.claim.createSentAt ?? clock.now();
  const until = since + READ_LAG_WINDOW_MS + SKEW_MS;
  const expected = source?.kind === 'instance' ? await step('Reading the volumes of the instance', () => attachedVolumes(source.instanceId)) : [];
  logger.warn('an earlier owner of this request may have created: watching for what it made', { creators: [...creators], until: new Date(until).toISOString() });
  for (;;) {
    await hold(owned, WATCH_FENCE_MS, false);
    const found = (await step('Reading the snapshots of this request', () => findByToken(event, token)))
      .filter((s) => creators.has(tagValue(s.Tags, DELIVERY_TAG_KEY) ?? ''));
    const kept = [...oldestPerVolume(found).values()];
    if (clock.now() >= until && kept.length > 0 && !covers(kept, expected)) {
      // This delivery answers for them (deleted when it fails): no point in time of the whole instance.
      work.made.push(...found);
      for (const c of creators) work.accountedFor.add(c);
      throw new HandlerError(`the snapshots an earlier delivery of this request made (${kept.map((s) => s.SnapshotId).join(', ')}) ` +
        `do not cover the attached volumes ${expected.filter((v) => !kept.some((s) => s.VolumeId === v)).join(', ')}`);
    }
    if (covers(kept, expected)) {
      // This delivery now answers for them: deleted if it fails.
      work.made.push(...found);
      for (const c of creators) work.accountedFor.add(c);
      for (const extra of found.filter((s) => !kept.includes(s))) {
        logger.warn('deleting a second snapshot of this request (two creates acted: EC2 reads lagged past the window)', { snapshotId: extra.SnapshotId });
        await step(`Deleting EBS snapshot ${extra.SnapshotId}`, () => deleteEc2Snapshot(extra.SnapshotId!));
      }
      const failed = kept.find((s) => s.State === 'error');
      if (failed) throw new HandlerError(`EBS snapshot ${failed.SnapshotId} failed: ${failed.StateMessage ?? 'state error'}`);
      logger.info('adopting what the earlier owner made', { snapshotIds: kept.map((s) => s.SnapshotId) });
      return kept;
    }
    if (clock.now() >= until) {
      logger.warn('nothing an earlier owner may have made showed in reads within the window: creating', { sinceMs: clock.now() - since });
      for (const c of creators) work.accountedFor.add(c);
      return undefined;
    }
    if (clock.now() + WATCH_POLL_MS > run.endAt - ANSWER_RESERVE_MS) {
      // Nothing to delete, and no failure to record: what the earlier owner made may still show.
      work.unseenCreate = true;
      throw new HandlerError(
        'an earlier delivery of this request stopped after it may have created a snapshot, and nothing it made showed in EC2 reads in the ' +
          `${Math.round((clock.now() - since) / 1000)} seconds since (EC2 reads can lag a few minutes): no second snapshot was taken. ` +
          `Deploy again: a retry of the request adopts it, or takes a snapshot once ${READ_LAG_WINDOW_MS / 60_000} minutes have passed.`,
        true,
      );
    }
    await clock.sleep(WATCH_POLL_MS);
  }
}

/**
 * Extends the owner's fence to `fenceMs` from now. The fence is computed before the write is sent,
 * so a write that took long (retries, a frozen invocation) may land with little of it left: then it
 * is extended again, and the caller goes on only with at least half of `fenceMs` ahead.
 */
export async function hold(owned: Ownership, fenceMs: number, creating: boolean): Promise<void> {
  for (let attempt = 1; ; attempt++) {
    const w = await extendFence(owned.claim, owned.delivery, fenceMs, creating);
    if (!w.won) throw new LostClaim(w.claim);
    owned.claim = w.claim!;
    if (owned.claim.fence - clock.now() >= fenceMs / 2) return;
    if (attempt >= 3) throw new HandlerError('the claim of this request could not be held (its table answered too slowly); deploy again', true);
    logger.warn('the claim was extended too late to rely on: extending it again', { fence: owned.claim.fence });
  }
}

/** This delivery's snapshots of the request, once reads show one of every expected volume (for a volume source: any). */
export async function shownOwn(event: Request, run: Run, expected: string[]): Promise<SnapshotView[] | undefined> {
  const mine = (await findByToken(event, requestToken(event))).filter((s) => tagValue(s.Tags, DELIVERY_TAG_KEY) === run.delivery);
  return covers(mine, expected) ? mine : undefined;
}

/** A set that has a snapshot of every expected volume (for a volume source: any snapshot). */
function covers(snapshots: SnapshotView[], expected: string[]): boolean {
  return snapshots.length > 0 && expected.every((v) => snapshots.some((s) => s.VolumeId === v));
}

/** Deletes these snapshots (of this request, tagged as ours); tells whether every one is gone. */
export async function discard(event: Request, snapshots: SnapshotView[]): Promise<boolean> {
  const token = requestToken(event);
  let all = true;
  for (const id of new Set(snapshots.filter((s) => s.SnapshotId && isMadeBy(s.Tags, requestOwner(event), token)).map((s) => s.SnapshotId!))) {
    try {
      await deleteEc2Snapshot(id);
      logger.info('deleted a snapshot of the failed request', { snapshotId: id });
    } catch (err) {
      all = false;
      // It stays tagged as ours, with the request's token: visible, and deletable by the stack.
      logger.error('could not delete a snapshot of the failed request', { snapshotId: id, error: err as Error });
    }
  }
  return all;
}

function explainCreateError(err: unknown, what: string, budgetMs: number): unknown {
  const code = errorCode(err);
  switch (code) {
    case 'SnapshotCreationPerVolumeRateExceeded':
      return new HandlerError(
        `EC2 kept refusing a snapshot of ${what} for ${Math.round(budgetMs / 1000)} seconds: ${code} (snapshots of one volume must be ` +
          'at least 15 seconds apart). Is something else snapshotting it at the same time? Deploy again.',
        true,
      );
    case 'ConcurrentSnapshotLimitExceeded':
      return new HandlerError(
        `EC2 kept refusing a snapshot of ${what} for ${Math.round(budgetMs / 1000)} seconds: ${code} (at most 5 pending snapshots per ` +
          'gp2/gp3/io1/io2/standard volume, 1 per st1/sc1 volume). Wait for the pending snapshots to complete, then deploy again.',
        true,
      );
    case 'InvalidVolume.NotFound':
    case 'InvalidInstanceID.NotFound':
    case 'InvalidInstanceID.Malformed':
    case 'InvalidVolumeID.Malformed':
      return new HandlerError(`EC2 could not find ${what} (${code}): does it exist in this account and region?`);
    default:
      return err;
  }
}
