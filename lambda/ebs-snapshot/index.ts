import {
  CreateSnapshotCommand,
  CreateSnapshotsCommand,
  DeleteSnapshotCommand,
  DescribeInstancesCommand,
  DescribeSnapshotsCommand,
  DescribeVolumesCommand,
  Filter,
  Tag,
} from '@aws-sdk/client-ec2';
import { GetQueueAttributesCommand, SendMessageCommand } from '@aws-sdk/client-sqs';
import type { SQSBatchResponse, SQSEvent } from 'aws-lambda';
import type { CopyOrigin } from '../../src/private/contract';
import type {
  EbsSnapshotExtraTagKey, EbsSnapshotOnDeployAttributes, EbsSnapshotOnDeployProperties, EbsSnapshotQueueDrainProperties, LATE_DUPLICATE_QUEUE_ENV,
  LateDuplicateSweep,
} from '../../src/private/ebs-contract';
import { REQUEST_TIMEOUT_MS } from '../shared/clients/config';
import { ec2, ec2Create } from '../shared/clients/ec2';
import { sqs } from '../shared/clients/sqs';
import { clock } from '../shared/clock';
import { HandlerError, describeError, errorCode, errorMessage, isThrottling, isTransient, step, withRetries } from '../shared/errors';
import { IsCompleteRequest, IsCompleteResponse, OnEventRequest, OnEventResponse, isRollingBack } from '../shared/events';
import { logger } from '../shared/logger';
import { KeyValue, OWNERSHIP_TAG_KEYS, isOwnedBy, ownershipTags, parseUserTags, requestOwner, tagValue, withOwnershipTags } from '../shared/ownership';
import { requestToken, stableHash } from '../shared/token';
import { Progress, deadlineExceeded, ec2SnapshotProgress } from '../shared/waiter';

type Props = EbsSnapshotOnDeployProperties;
/** The contract's attributes plus one `Device:<device name>` per snapshot of an instance. */
export type Attributes = EbsSnapshotOnDeployAttributes & Record<string, string>;
type Request = OnEventRequest<Props>;
type Response = OnEventResponse<Attributes>;
/** What a Delete of young snapshots hands on to isComplete: the request tokens to sweep, and until when (epoch ms). */
export interface LateSweep {
  readonly SweepTokens: string;
  readonly SweepUntil: string;
}
type CompleteRequest = IsCompleteRequest<Props, Attributes>;
/** The stack and logical id whose snapshots a call is about (their ownership tags). */
type OwnerRef = Pick<Request, 'StackId' | 'LogicalResourceId'>;

/** What the handler uses of the Lambda context. */
export interface LambdaContext {
  getRemainingTimeInMillis(): number;
}

/** How long one read or delete keeps retrying throttling and 5xx. */
const CALL_BUDGET_MS = 60_000;
/** onEvent's Lambda timeout: the budget when no Lambda context tells the time left. */
const ON_EVENT_TIMEOUT_MS = 5 * 60_000;
/** Kept at the end of onEvent for the clean-up after a failure and the answer. */
const END_MARGIN_MS = 30_000;
/**
 * Longer than EC2 reads lag behind a new snapshot (the design bound, see settleAndDeduplicate): a
 * snapshot is answered only once this long has passed since it (or what this delivery may have
 * made) was created or first seen, so that every older snapshot of the request shows in reads.
 */
const SETTLE_WINDOW_MS = 100_000;
/**
 * How long after the request's answer was made a duplicate delivery's snapshot can still come to
 * show in reads. A delivery creates only after a look-up that found no snapshot of the request, so
 * it missed the answer: that look-up read it less than SETTLE_WINDOW_MS after the answer was made,
 * and the create follows at most CALL_BUDGET_MS later (slack for a look-up of several pages whose
 * later pages retried throttling). What it made shows within SETTLE_WINDOW_MS more. A Delete of a
 * set younger than this keeps sweeping until then (a delivery killed after such a create leaves a
 * snapshot nobody else deletes: see completeDelete). This assumes duplicate deliveries arrive while
 * CloudFormation still waits for the request (a delivery arriving after the answer was deleted
 * would find nothing and make a new snapshot).
 */
const LATE_DUPLICATE_HORIZON_MS = 2 * SETTLE_WINDOW_MS + CALL_BUDGET_MS;
/** How long past the horizon a Delete keeps trying to sweep when every sweep fails (throttling, say). */
const LATE_SWEEP_GIVE_UP_MS = 5 * 60_000;
/** How long one isComplete poll may start calls for its sweep (the isComplete Lambda has 2 minutes). */
const POLL_SWEEP_BUDGET_MS = 20_000;
/** Kept after the create for the settle window, the reads and the clean-up of duplicates. */
const SETTLE_RESERVE_MS = SETTLE_WINDOW_MS + 20_000;
const SETTLE_INTERVAL_MS = 5_000;
/**
 * After EC2 refused a create because the volume had a snapshot seconds ago (perhaps one of another
 * delivery of this request), how long reads are watched before creating: longer than reads lag.
 */
const RATE_LIMIT_QUIET_MS = SETTLE_WINDOW_MS;
/** How long after onEvent a snapshot missing from a read by id is taken for not visible yet, not gone. */
const VISIBILITY_GRACE_MS = 5 * 60_000;
/** CloudFormation takes custom resource responses of at most 4,096 bytes; the framework adds a reason of about 200. */
const MAX_RESPONSE_BYTES = 4_096 - 300;
/** Tag values are at most 256 characters. */
const MAX_TAG_VALUE = 256;
/**
 * How long after the late-duplicate sweep is queued (right before a create) it is delivered:
 * longer than the create call can last (REQUEST_TIMEOUT_MS of silence, 30 s) plus the time a
 * new snapshot takes to show in reads (SETTLE_WINDOW_MS), so that the sweep sees what the create
 * made. SQS delivers it no earlier; later is harmless.
 */
export const LATE_DUPLICATE_SWEEP_DELAY_S = 180;
const QUEUE_ENV: typeof LATE_DUPLICATE_QUEUE_ENV = 'LATE_DUPLICATE_QUEUE_URL';
/**
 * How long after a sweep was queued a create is still covered by it: the sweep comes 180 s after
 * it, and a create started this long after it has shown in reads by then (30 s of call, 100 s of
 * read lag, 20 s to spare).
 */
const SWEEP_COVERS_MS = LATE_DUPLICATE_SWEEP_DELAY_S * 1000 - REQUEST_TIMEOUT_MS - SETTLE_WINDOW_MS - 20_000;
/** Physical id prefix of a resource that took no snapshot (its source did not exist yet). */
export const NO_SNAPSHOT_PREFIX = 'no-snapshot-';
const DELIVERY_TAG: EbsSnapshotExtraTagKey = 'cdk-storage-snapshots:delivery';
const REPLACES_TAG: EbsSnapshotExtraTagKey = 'cdk-storage-snapshots:replaces';

/** The retryable markers of a create held back: its outcome is unknown, or reads are watched first. */
const UNCERTAIN = 'UncertainCreate';
const QUIET = 'WaitingForReads';
const RATE_LIMITS = new Set(['SnapshotCreationPerVolumeRateExceeded', 'ConcurrentSnapshotLimitExceeded']);
const CFN_STACK_ID_TAG = 'aws:cloudformation:stack-id';
const CFN_LOGICAL_ID_TAG = 'aws:cloudformation:logical-id';

/** What the handler knows of one snapshot (from CreateSnapshot, CreateSnapshots or DescribeSnapshots). */
export interface SnapshotView {
  readonly SnapshotId?: string;
  readonly VolumeId?: string;
  readonly StartTime?: Date;
  readonly State?: string;
  readonly StateMessage?: string;
  readonly Progress?: string;
  readonly Tags?: Tag[];
}

/** One invocation of onEvent: when it started, when it must have answered, and its delivery tag. */
interface Run {
  readonly startedAt: number;
  readonly endAt: number;
  readonly delivery: string;
}

/** The source, resolved at deploy time. */
type Source = { readonly kind: 'volume'; readonly volumeId: string } | { readonly kind: 'instance'; readonly instanceId: string };

export async function onEvent(event: Request, context?: LambdaContext): Promise<Response | OnEventResponse<LateSweep | DrainData>> {
  if (isDrain(event)) return onDrainEvent(event);
  const startedAt = clock.now();
  const remaining = context?.getRemainingTimeInMillis?.();
  const run: Run = {
    startedAt,
    endAt: startedAt + (typeof remaining === 'number' && remaining > 0 ? remaining : ON_EVENT_TIMEOUT_MS) - END_MARGIN_MS,
    // Unique among the deliveries of one request (Math.random is enough: it only has to differ).
    delivery: `${startedAt.toString(36)}-${Math.random().toString(36).slice(2, 12)}`,
  };
  logger.appendKeys({ requestType: event.RequestType, logicalResourceId: event.LogicalResourceId, requestId: event.RequestId });
  logger.info('onEvent', { physicalResourceId: event.PhysicalResourceId, properties: event.ResourceProperties, delivery: run.delivery });
  switch (event.RequestType) {
    case 'Create':
      return create(event, run);
    case 'Update': {
      const response = await update(event, run);
      // Never what the current physical id names, nor what the answer (a rollback's, say) returns to.
      await sweep(event, event.PhysicalResourceId, snapshotIdsOf(response.PhysicalResourceId), run.endAt);
      return response;
    }
    case 'Delete': {
      const sweptAt = clock.now();
      const swept = await sweep(event, event.PhysicalResourceId, [], run.endAt);
      const response = await remove(event);
      if (swept.tokens.length === 0 || (swept.complete && (swept.horizon === undefined || swept.horizon <= sweptAt))) return response;
      // isComplete sweeps the request until no duplicate of it can be still to show, and at least
      // once successfully (completeDelete); a StartTime ahead of this clock never makes it wait
      // longer than the horizon itself.
      const until = Math.min(swept.horizon ?? sweptAt, sweptAt + LATE_DUPLICATE_HORIZON_MS);
      logger.info('sweeping the request of the deleted snapshots until no late duplicate can show', { until: new Date(until).toISOString(), swept: swept.complete });
      return { ...response, Data: { SweepTokens: swept.tokens.join(','), SweepUntil: String(until) } };
    }
  }
}

export async function isComplete(event: CompleteRequest): Promise<IsCompleteResponse<Attributes>> {
  logger.appendKeys({ requestType: event.RequestType, logicalResourceId: event.LogicalResourceId, requestId: event.RequestId });
  if (isDrain(event)) return completeDrain(event as unknown as OnEventRequest<EbsSnapshotQueueDrainProperties> & { Data?: DrainData });
  if (event.RequestType === 'Delete') return completeDelete(event);
  // Adopted and unchanged snapshots are not waited for (a rollback must never fail on them), and
  // without waitForCompletion the snapshot's point in time is already fixed.
  if (event.Data?.Origin !== 'created') return { IsComplete: true };
  const ids = snapshotIdsOf(event.PhysicalResourceId);
  if (ids.length === 0) return { IsComplete: true };
  // The answer was settled (see settleAndDeduplicate): a snapshot of this request that a delivery
  // killed after its create made, and that showed after the answering delivery stopped reading, is
  // removed on every poll, not only at the next event.
  if (event.ResourceProperties.WaitForCompletion !== 'true') {
    await sweep(event, event.PhysicalResourceId, [], clock.now() + POLL_SWEEP_BUDGET_MS);
    return { IsComplete: true };
  }
  const snapshots = await step(`Reading EBS snapshots ${ids.join(', ')}`, () => describeByIds(ids));
  await sweep(event, event.PhysicalResourceId, [], clock.now() + POLL_SWEEP_BUDGET_MS, snapshots);
  const sinceStart = clock.now() - Number(event.Data?.StartedAt ?? clock.now());
  const progress: Array<{ id: string; p: Progress }> = ids.map((id) => {
    const s = snapshots.get(id);
    // Just made, and not visible to reads by id yet: not gone.
    if (!s && sinceStart < VISIBILITY_GRACE_MS) return { id, p: { status: 'waiting', state: 'not visible yet' } };
    return { id, p: ec2SnapshotProgress(id, s) };
  });
  logger.info('isComplete', { progress });
  const failed = progress.find((x) => x.p.status === 'failed');
  if (failed && failed.p.status === 'failed') {
    await discard(event, [...snapshots.values()]);
    throw new HandlerError(`${failed.p.reason}; the snapshots of this request have been deleted`);
  }
  if (progress.every((x) => x.p.status === 'done')) return { IsComplete: true };
  if (deadlineExceeded(event.Data?.StartedAt, event.ResourceProperties.TimeoutSeconds, clock.now())) {
    await discard(event, [...snapshots.values()]);
    const waiting = progress.filter((x) => x.p.status === 'waiting').map((x) => `${x.id} ${x.p.status === 'waiting' ? x.p.state : ''}`);
    throw new HandlerError(
      `EBS snapshots were not completed within the timeout of ${event.ResourceProperties.TimeoutSeconds} seconds ` +
        `(still ${waiting.join(', ')}); they have been deleted so that no half-made snapshot is left behind. ` +
        'A first snapshot of a large volume can take hours: set waitForCompletion to false, or a longer timeout (at most 1 hour).',
    );
  }
  return { IsComplete: false };
}

/** `replaces`: the physical id of the snapshots this request replaces (an Update), tagged on the new ones. */
async function create(event: Request, run: Run, replaces?: string): Promise<Response> {
  // What this delivery made: the only snapshots it ever deletes (on failure, or as a duplicate).
  const made: SnapshotView[] = [];
  const seen = new Seen();
  const token = requestToken(event);
  try {
    const source = await step('Finding the source of the EBS snapshot', () => resolveSource(event));
    if (!source) {
      logger.warn('the source does not exist yet (first deploy of a guarded source): no snapshot taken', {
        sourceLogicalId: event.ResourceProperties.SourceLogicalId,
      });
      return respondNone(event, run);
    }
    const { unseenSince } = await createOrAdopt(event, run, source, token, made, seen, replaces);
    // A look-up can find some of an instance's snapshots and not yet the others: wait for one of each attached volume.
    const expected = source.kind === 'instance' ? await step(`Reading the volumes of instance ${source.instanceId}`, () => attachedVolumes(source.instanceId)) : [];
    const kept = await step('Checking for duplicate snapshots of this request', () => settleAndDeduplicate(event, run, token, made, seen, expected, unseenSince));
    return await respond(event, run, kept, 'created', true);
  } catch (err) {
    // What this delivery made (what it created, and what reads show carrying its delivery tag) is
    // deleted, except what another delivery of the request may have answered: never what another
    // delivery made, and never the oldest of a volume, unless no delivery can answer it.
    const all = await findByToken(event, token).catch(() => undefined);
    const mine = [...new Map([...made, ...(all ?? []).filter((s) => isMine(s, run))].map((s) => [s.SnapshotId!, s])).values()];
    // A failure every delivery meets (not throttling, a 5xx, a timeout or reads that did not settle)
    // means no delivery answers: everything this one made goes.
    const transient = err instanceof HandlerError ? err.transient : isTransient(err);
    // What is known of the request's snapshots: the last look-up, or if it failed, all this delivery saw.
    const kept = transient ? mayBeAnswered(mine, all ?? [...seen.views.values()]) : [];
    await discard(event, mine.filter((s) => !kept.includes(s)));
    if (kept.length === 0) throw err;
    const ids = kept.map((s) => s.SnapshotId).join(', ');
    logger.warn('failed, keeping what may be another delivery\'s answer', { snapshotIds: ids, token });
    throw new HandlerError(`${errorMessage(err)} (kept ${ids}: another delivery of this request may have answered with it; it carries the request's token)`, true);
  }
}

/**
 * Of the snapshots a failing delivery made, those another delivery may answer: per volume, the
 * oldest snapshot of the request this delivery knows of (in no error), if it made it. Another
 * delivery answers that snapshot 100 s after it was taken, and a deletion, like a creation, may
 * show in reads late: deleting it could leave CloudFormation an answer that no longer exists.
 * (Snapshots that are not the oldest of their volume are no delivery's answer: they are deleted.)
 */
function mayBeAnswered(mine: SnapshotView[], known: SnapshotView[]): SnapshotView[] {
  const oldest = oldestPerVolume([...mine, ...known].filter((s) => s.State !== 'error'));
  return mine.filter((s) => oldest.get(s.VolumeId ?? '')?.SnapshotId === s.SnapshotId);
}

/**
 * The snapshots of this request: those a look-up by its token finds (a delivery of the same
 * request made them), or new ones (pushed onto `made`). The look-up runs again before every retry,
 * and a create whose outcome is unknown (its response was lost, a 5xx) is never sent again: reads
 * are watched for what it made until the time is up.
 */
async function createOrAdopt(
  event: Request, run: Run, source: Source, token: string, made: SnapshotView[], seen: Seen, replaces: string | undefined,
): Promise<{ unseenSince?: number }> {
  const props = event.ResourceProperties;
  const extra: KeyValue[] = [{ Key: DELIVERY_TAG, Value: run.delivery }];
  if (replaces && replaces.length <= MAX_TAG_VALUE) extra.push({ Key: REPLACES_TAG, Value: replaces });
  const tags = withOwnershipTags(parseUserTags(props.Tags), [...ownershipTags(requestOwner(event), identityHash(props), token), ...extra]);
  const what = source.kind === 'volume' ? `volume ${source.volumeId}` : `the volumes of instance ${source.instanceId}`;
  let uncertainAt: number | undefined;
  let rateLimitedAt: number | undefined;
  let sweepQueuedAt: number | undefined;
  let lastCreateError: unknown;
  const budgetMs = Math.max(0, run.endAt - SETTLE_RESERVE_MS - clock.now());
  await step(`Creating an EBS snapshot of ${what}`, async () => {
    try {
      await withRetries(
        async () => {
          const found = await findByToken(event, token);
          for (const s of found) seen.note(s);
          if (found.length > 0) {
            logger.info('adopting the snapshots of this request', { snapshotIds: found.map((s) => s.SnapshotId), token });
            // One whose create response was lost is this delivery's own.
            for (const s of found) if (isMine(s, run) && !made.some((m) => m.SnapshotId === s.SnapshotId)) made.push(s);
            return;
          }
          if (uncertainAt !== undefined) {
            throw Object.assign(new Error('waiting for what a create of unknown outcome made to show in reads'), { name: UNCERTAIN });
          }
          if (rateLimitedAt !== undefined && clock.now() - rateLimitedAt < RATE_LIMIT_QUIET_MS) {
            throw Object.assign(new Error('waiting for the snapshot that made EC2 refuse to show in reads'), { name: QUIET });
          }
          // Whatever this create makes, a sweep of the request comes once it shows in reads, even if
          // this invocation dies right after the create (or CloudFormation takes another delivery's
          // failure). One message covers the creates of the next SWEEP_COVERS_MS (retries after a rate limit).
          if (sweepQueuedAt === undefined || clock.now() - sweepQueuedAt > SWEEP_COVERS_MS) {
            await queueLateDuplicateSweep(event, token);
            sweepQueuedAt = clock.now();
          }
          const created = await createSnapshots(event, source, tags).catch((err) => {
            lastCreateError = err;
            // A lost response or a 5xx may follow a create that acted: what it made shows in reads later.
            if (isTransient(err) && !isThrottling(err)) uncertainAt = clock.now();
            // A snapshot of the volume seconds ago (by another delivery of this request, maybe).
            if (errorCode(err) === 'SnapshotCreationPerVolumeRateExceeded') rateLimitedAt = clock.now();
            throw err;
          });
          made.push(...created);
          for (const s of created) seen.note(s);
          logger.info('snapshot requested', { snapshotIds: created.map((s) => s.SnapshotId), token });
        },
        {
          budgetMs,
          baseDelayMs: 2_000,
          maxDelayMs: 15_000,
          retryable: (err) => isTransient(err) || RATE_LIMITS.has(errorCode(err)) || errorCode(err) === UNCERTAIN || errorCode(err) === QUIET,
          onRetry: (err, attempt, delayMs) => logger.warn('retrying the snapshot', { attempt, delayMs, error: errorCode(err) }),
        },
      );
    } catch (err) {
      // A create of unknown outcome is never sent again, whatever the last error (the budget may end before a retry).
      if (uncertainAt !== undefined && (errorCode(err) === UNCERTAIN || err === lastCreateError)) {
        throw new HandlerError(
          `EC2 ${source.kind === 'volume' ? 'CreateSnapshot' : 'CreateSnapshots'} on ${what} may have acted (${errorMessage(lastCreateError)}), ` +
            `and no snapshot of this request showed in reads within ${Math.round((clock.now() - uncertainAt!) / 1000)} seconds. ` +
            'It was not sent again, so as not to make two; a snapshot it made keeps this request\'s token tag (a retry of the request adopts it). Deploy again.',
          true,
        );
      }
      throw explainCreateError(errorCode(err) === QUIET && lastCreateError ? lastCreateError : err, what, budgetMs);
    }
  });
  // The latest moment by which a snapshot this delivery cannot name may have been made: a create of
  // unknown outcome, or the one that made EC2 refuse (perhaps another delivery's).
  const times = [uncertainAt, rateLimitedAt].filter((t): t is number => t !== undefined);
  return { unseenSince: times.length > 0 ? Math.max(...times) : undefined };
}

async function createSnapshots(event: Request, source: Source, tags: KeyValue[]): Promise<SnapshotView[]> {
  const props = event.ResourceProperties;
  const common = {
    Description: props.Description ?? defaultDescription(event),
    OutpostArn: props.OutpostArn,
    TagSpecifications: [{ ResourceType: 'snapshot' as const, Tags: tags }],
  };
  if (source.kind === 'volume') {
    const out = await ec2Create().send(new CreateSnapshotCommand({ VolumeId: source.volumeId, ...common }));
    if (!out.SnapshotId) throw new HandlerError(`EC2 CreateSnapshot on ${source.volumeId} returned no snapshot id`);
    return [{ ...out, Tags: out.Tags ?? tags }];
  }
  const out = await ec2Create().send(new CreateSnapshotsCommand({ InstanceSpecification: { InstanceId: source.instanceId }, ...common }));
  const snapshots = (out.Snapshots ?? []).filter((s) => s.SnapshotId).map((s) => ({ ...s, Tags: s.Tags ?? tags }));
  if (snapshots.length === 0) throw new HandlerError(`EC2 CreateSnapshots on ${source.instanceId} returned no snapshots (no volume attached?)`);
  return snapshots;
}

/**
 * EC2 reads are eventually consistent, so the look-up before creating can miss a snapshot another
 * delivery of this request made. Every delivery answers, per volume, the same snapshot: the oldest
 * of the request (StartTime, then snapshot id), and deletes every other snapshot of the request
 * and volume, whoever made it.
 *
 * Why that never deletes another delivery's answer, as long as reads lag less than
 * SETTLE_WINDOW_MS (W): a delivery answers S only once W has passed since S was made (its
 * StartTime, or when this delivery made or first saw it, whichever is earliest), and since any
 * create of its own it cannot name (a lost response, a rate-limit refusal). Every snapshot older
 * than S was made before S, so it shows in reads by then, and S would not be the oldest. Two
 * deliveries answering S and S' ≠ S of one volume: say S is older; the one answering S' waited W
 * after S' was made, later than S was made, so it saw S: a contradiction. So all answers agree,
 * and a snapshot deleted as "not the answer" is nobody's answer. If an older snapshot shows up
 * while settling, the answer switches to it and this delivery's own is deleted. A snapshot a
 * delivery made after the answering one stopped reading (a delivery killed after its create) is
 * deleted by the delivery that made it, or by the sweep (isComplete, and every later event; a
 * Delete of young snapshots keeps sweeping until LATE_DUPLICATE_HORIZON_MS after them), or by the
 * late-duplicate sweep queued before its create (onLateDuplicateSweep), which needs no event.
 * If W cannot be waited for inside the time left, the delivery fails rather than answer a
 * snapshot that may not be the oldest.
 */
async function settleAndDeduplicate(
  event: Request, run: Run, token: string, made: SnapshotView[], seen: Seen, expectedVolumes: string[],
  unseenSince: number | undefined,
): Promise<SnapshotView[]> {
  const deadline = run.endAt - END_MARGIN_MS / 2;
  const gone = new Set<string>();
  const shownBefore = new Set<string>();
  let candidates = new Map<string, SnapshotView>();
  let answers = new Map<string, SnapshotView>();
  for (;;) {
    let visible: SnapshotView[];
    try {
      visible = await findByToken(event, token);
    } catch (err) {
      // Reads that keep failing (a throttling storm) are waited out until the deadline, not failed at once.
      if (!isTransient(err) || clock.now() + SETTLE_INTERVAL_MS > deadline) {
        throw new HandlerError(describeError('Reading the snapshots of this request', err), isTransient(err));
      }
      logger.warn('could not read the snapshots of this request; reading again', { error: errorCode(err) });
      await clock.sleep(SETTLE_INTERVAL_MS);
      continue;
    }
    const now = clock.now();
    const shown = new Set(visible.map((s) => s.SnapshotId!));
    for (const s of visible) {
      seen.note(s, now);
      // One whose create response was lost is this delivery's own.
      if (isMine(s, run) && !made.some((m) => m.SnapshotId === s.SnapshotId)) made.push(s);
    }
    // One of ours that showed and no longer does was deleted (by a delivery that answers another).
    for (const m of made) if (!shown.has(m.SnapshotId!) && shownBefore.has(m.SnapshotId!)) gone.add(m.SnapshotId!);
    for (const id of shown) shownBefore.add(id);
    candidates = new Map<string, SnapshotView>();
    for (const s of [...made.filter((m) => !gone.has(m.SnapshotId!)), ...visible]) {
      candidates.set(s.SnapshotId!, { ...candidates.get(s.SnapshotId!), ...s });
    }
    answers = oldestPerVolume([...candidates.values()]);
    const settled = [...answers.values()].every((s) => now - madeAt(s, seen) >= SETTLE_WINDOW_MS) &&
      (unseenSince === undefined || now - unseenSince >= SETTLE_WINDOW_MS);
    const covered = expectedVolumes.every((v) => answers.has(v));
    const madeShown = made.every((s) => shown.has(s.SnapshotId!) || gone.has(s.SnapshotId!));
    if (settled && covered && madeShown) break;
    if (now + SETTLE_INTERVAL_MS > deadline) {
      if (!settled) {
        // Answering now could answer a snapshot another delivery deletes as a newer duplicate.
        throw new HandlerError(`EC2 reads did not settle within the time left (${Math.round(SETTLE_WINDOW_MS / 1000)} seconds after the ` +
          'snapshots of this request were made), so this delivery cannot tell which of them is the request\'s. Deploy again.', true);
      }
      // An answer of its own that never showed may have been deleted already, as a duplicate, by
      // a delivery that saw an older snapshot of the request (one this delivery never saw, since
      // it was deleted too): never name it.
      const unseen = [...answers.values()].filter((s) => !shownBefore.has(s.SnapshotId!));
      if (unseen.length > 0) {
        throw new HandlerError(`the new snapshot ${unseen.map((s) => s.SnapshotId).join(', ')} did not show in EC2 reads within the time left, ` +
          'so this delivery cannot tell whether another delivery of this request deleted it. Deploy again.', true);
      }
      logger.warn('some new snapshots (not the answer) do not show in reads yet; going on', {
        made: made.map((s) => s.SnapshotId),
        visible: [...shown],
      });
      break;
    }
    await clock.sleep(SETTLE_INTERVAL_MS);
  }
  const uncovered = expectedVolumes.filter((v) => !answers.has(v));
  if (uncovered.length > 0) {
    // A set without some attached volume (one deleted by a delivery that failed, say) is no point in time to restore to.
    throw new HandlerError(
      `the snapshots of this request (${[...candidates.keys()].join(', ') || 'none'}) do not cover the attached volumes ${uncovered.join(', ')}; deploy again`,
    );
  }
  if (answers.size === 0) {
    // Every snapshot this delivery adopted is gone from reads (deleted by the delivery that made it, which failed?).
    throw new HandlerError('no snapshot of this request shows in reads any more (the one this delivery adopted was deleted); deploy again', true);
  }
  const kept = [...answers.values()];
  const keptIds = new Set(kept.map((s) => s.SnapshotId));
  for (const extra of candidates.values()) {
    if (keptIds.has(extra.SnapshotId) || !isOurs(event, extra, token)) continue;
    logger.warn('deleting a duplicate snapshot of this request', {
      volumeId: extra.VolumeId, kept: answers.get(extra.VolumeId ?? '')?.SnapshotId, duplicate: extra.SnapshotId, madeHere: isMine(extra, run) || made.includes(extra),
    });
    try {
      await deleteSnapshot(extra.SnapshotId!);
    } catch (err) {
      // Not a reason to fail the request (and delete the one kept): it stays tagged as ours, and the sweep retries.
      logger.error('could not delete a duplicate snapshot; it stays, tagged with this request\'s token', { snapshotId: extra.SnapshotId, error: err as Error });
    }
  }
  const failed = kept.find((s) => s.State === 'error');
  if (failed) {
    // No point in time to restore to, for any delivery: the whole set goes (create() deletes what
    // this delivery made), even what another delivery may have answered while it was pending: a set
    // with one in error is no restore point either, and a partial set kept could be adopted by a rollback.
    throw new HandlerError(`${(ec2SnapshotProgress(failed.SnapshotId!, failed) as { reason: string }).reason}; the snapshots this request made have been deleted`);
  }
  return kept;
}

/** What one delivery has seen of its request's snapshots: when it first saw each, and the latest view of each. */
class Seen {
  public readonly views = new Map<string, SnapshotView>();
  private readonly first = new Map<string, number>();

  public note(s: SnapshotView, at = clock.now()): void {
    const id = s.SnapshotId!;
    if (!this.first.has(id)) this.first.set(id, at);
    this.views.set(id, { ...this.views.get(id), ...s });
  }

  public firstSeen(id: string): number | undefined {
    return this.first.get(id);
  }
}

/** The oldest snapshot (StartTime, then id) of each volume: the answer every delivery of the request gives. */
function oldestPerVolume(snapshots: SnapshotView[]): Map<string, SnapshotView> {
  const out = new Map<string, SnapshotView>();
  for (const s of [...snapshots].sort(oldestFirst)) if (!out.has(s.VolumeId ?? '')) out.set(s.VolumeId ?? '', s);
  return out;
}

/** The earliest moment this delivery knows the snapshot existed: its StartTime, or when it was made or first seen here. */
function madeAt(s: SnapshotView, seen: Seen): number {
  return Math.min(time(s), seen.firstSeen(s.SnapshotId!) ?? clock.now());
}

async function update(event: Request, run: Run): Promise<Response> {
  const currentId = event.PhysicalResourceId!;
  const wanted = identityHash(event.ResourceProperties);
  const old = event.OldResourceProperties;
  const current = await readForUpdate(currentId);
  // A snapshot EBS failed after a deploy that did not wait for it is replaced by the next update (never by a rollback).
  const failed = current.snapshots?.filter((s) => s.State === 'error') ?? [];
  const sameIdentity = (old && identityHash(old) === wanted) ||
    (current.snapshots && current.snapshots.length > 0 && current.snapshots.every((s) => madeFor(s, event, wanted)));
  if (sameIdentity && failed.length === 0) {
    // Nothing that forces a new snapshot changed, or the current snapshots were made for exactly
    // these properties (the rollback that follows a failure of this very update).
    logger.info('keeping the current snapshots', { physicalResourceId: currentId });
    return respondKept(event, run, currentId, current);
  }
  if (sameIdentity) logger.warn('EBS failed the current snapshots: taking new ones unless rolling back', { failed: failed.map((s) => s.SnapshotId) });
  const rollingBack = await isRollingBack(event.StackId);
  if (sameIdentity && rollingBack !== false) {
    // The current set was made for these very properties: a rollback returns to it as it is (even
    // with a snapshot EBS failed); only an update replaces it.
    logger.warn('keeping the current snapshots (possibly a rollback): a failed snapshot is replaced by the next update', { physicalResourceId: currentId });
    return respondKept(event, run, currentId, current);
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
      return respondKept(event, run, returnTo.physicalId, { snapshots: returnTo.snapshots }, 'adopted');
    }
    const adopted = await findAdoptable(event).catch((err) => {
      logger.error('could not look for snapshots to adopt', { error: err as Error });
      return undefined;
    });
    if (adopted) {
      logger.info('adopting the snapshots these properties made', { snapshotIds: adopted.map((s) => s.SnapshotId), rollingBack });
      return respond(event, run, adopted, 'adopted', false);
    }
    const madeForOld = old !== undefined && current.snapshots !== undefined && current.snapshots.length > 0 &&
      current.snapshots.every((s) => madeFor(s, event, identityHash(old)));
    if (rollingBack || madeForOld || current.error !== undefined) {
      // Rolling back; or the status is unknown and this may be a rollback (the current snapshots
      // were made for the properties it leaves, or cannot be read): never take a snapshot in a
      // rollback. An update whose status cannot be read keeps the current snapshots, and says so.
      logger.warn(rollingBack
        ? 'rolling back, and no snapshot of ours matches the old properties: keeping the current one'
        : 'could not tell a rollback from an update: keeping the current snapshots rather than taking one in a rollback', { physicalResourceId: currentId });
      return respondKept(event, run, currentId, current);
    }
    logger.warn('could not tell a rollback from an update, and the current snapshots were not made for the old properties: taking a new snapshot');
  }
  return create(event, run, snapshotIdsOf(currentId).length > 0 ? currentId : undefined);
}

async function readForUpdate(physicalId: string): Promise<{ snapshots?: SnapshotView[]; error?: unknown }> {
  const ids = snapshotIdsOf(physicalId);
  if (ids.length === 0) return { snapshots: [] };
  try {
    const found = await describeByIds(ids);
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
  const physicalId = current?.map((s) => tagValue(s.Tags, REPLACES_TAG)).find((v) => v);
  const ids = snapshotIdsOf(physicalId);
  if (!physicalId || ids.length === 0) return undefined;
  const found = await describeByIds(ids);
  const snapshots = ids.map((id) => found.get(id));
  if (!snapshots.every((s): s is SnapshotView => !!s && madeFor(s, event, wanted) && s.State !== 'error')) return undefined;
  return { physicalId, snapshots };
}

/**
 * Answers with the set a physical id names, in its order and with its device names. If it could
 * not be read, an update fails with the reason; a rollback answers with the ids alone, because
 * failing a rollback leaves the stack in UPDATE_ROLLBACK_FAILED.
 */
async function respondKept(
  event: Request, run: Run, physicalId: string, current: { snapshots?: SnapshotView[]; error?: unknown }, origin: CopyOrigin = 'unchanged',
): Promise<Response> {
  const ids = snapshotIdsOf(physicalId);
  if (ids.length === 0) return respondNone(event, run, physicalId);
  if (current.error !== undefined && (await isRollingBack(event.StackId)) === false) {
    throw new HandlerError(describeError(`Reading EBS snapshots ${ids.join(', ')}`, current.error));
  }
  const known = new Map((current.snapshots ?? []).map((s) => [s.SnapshotId!, s]));
  const devices = devicesOfPhysicalId(physicalId);
  const snapshots = ids.map((id) => known.get(id) ?? { SnapshotId: id });
  return answer(event, run, snapshots.map((s) => ({ snapshot: s, device: devices.get(s.SnapshotId!) })), origin, physicalId);
}

async function remove(event: Request): Promise<Response> {
  const physicalId = event.PhysicalResourceId!;
  const response = { PhysicalResourceId: physicalId };
  if (event.ResourceProperties.RemovalPolicy !== 'destroy') {
    logger.info('removal policy is retain: keeping the snapshots', { physicalResourceId: physicalId });
    return response;
  }
  for (const id of snapshotIdsOf(physicalId)) {
    const snapshot = await step(`Reading EBS snapshot ${id}`, async () => (await describeByIds([id])).get(id));
    if (!snapshot) {
      logger.info('snapshot already gone', { snapshotId: id });
      continue;
    }
    if (!isOwnedBy(snapshot.Tags, requestOwner(event))) {
      logger.warn('not deleting a snapshot this resource did not make', { snapshotId: id, tags: snapshot.Tags });
      continue;
    }
    await step(`Deleting EBS snapshot ${id}`, () => deleteSnapshot(id));
  }
  return response;
}

/**
 * The sweep, on every event after the one that answered (and in isComplete): the snapshots tagged
 * with the token of a request whose snapshots `physicalId` names, that it does not name, are
 * duplicates a delivery of that request left behind (one killed after its create, say): delete
 * them. The token comes from the named snapshots' own tags, so only that request's snapshots are
 * looked at; each is checked for our ownership tags (this stack and resource); never one the
 * physical id or `keep` names. It never fails the event: what it cannot delete is logged, and the
 * next event tries again. Returns the tokens it swept and, when the newest named snapshot is young,
 * the moment until which a duplicate of its request may still come to show in reads.
 */
async function sweep(
  event: Request, physicalId: string | undefined, keep: string[], until: number, read?: Map<string, SnapshotView>,
): Promise<{ tokens: string[]; horizon?: number; complete: boolean }> {
  const ids = snapshotIdsOf(physicalId);
  if (ids.length === 0) return { tokens: [], complete: true };
  let named: SnapshotView[];
  try {
    named = [...(read ?? await describeByIds(ids)).values()].filter((s) => isOwnedBy(s.Tags, requestOwner(event)));
  } catch (err) {
    logger.error('could not read the snapshots to sweep the request of; the next event tries again', { physicalResourceId: physicalId, error: err as Error });
    return { tokens: [], complete: false };
  }
  const tokens = [...new Set(named.map((s) => tagValue(s.Tags, OWNERSHIP_TAG_KEYS.token)).filter((t): t is string => !!t))];
  const complete = await sweepTokens(event, tokens, new Set([...ids, ...keep]), until, physicalId);
  const newest = Math.max(...named.map((s) => (s.StartTime ? new Date(s.StartTime).getTime() : 0)));
  return { tokens, horizon: tokens.length > 0 && newest > 0 ? newest + LATE_DUPLICATE_HORIZON_MS : undefined, complete };
}

/**
 * Deletes the snapshots carrying one of these request tokens (and our ownership tags) that `kept`
 * does not name; starts no call after `until`. Never throws: tells whether it looked up every token
 * and deleted everything it found.
 */
async function sweepTokens(event: Request, tokens: string[], kept: Set<string>, until: number, physicalId: string | undefined): Promise<boolean> {
  try {
    for (const token of tokens) {
      if (clock.now() > until) return outOfTime(physicalId);
      for (const s of await findByToken(event, token)) {
        if (kept.has(s.SnapshotId!)) continue;
        if (clock.now() > until) return outOfTime(physicalId);
        logger.warn('deleting a snapshot a delivery of the request left behind', { snapshotId: s.SnapshotId, volumeId: s.VolumeId, token, physicalResourceId: physicalId });
        await deleteSnapshot(s.SnapshotId!);
      }
    }
    return true;
  } catch (err) {
    logger.error('could not delete the snapshots a delivery left behind; a later sweep tries again', { physicalResourceId: physicalId, error: err as Error });
    return false;
  }
}

function outOfTime(physicalId: string | undefined): false {
  logger.warn('no time left to sweep the request; a later sweep will', { physicalResourceId: physicalId });
  return false;
}

/**
 * A Delete of snapshots younger than LATE_DUPLICATE_HORIZON_MS (a rollback's clean-up right after
 * the deploy that made them, say) is the last event for their request: a duplicate delivery killed
 * after its create may have made a snapshot that shows in reads only later, and nothing would
 * delete it. So it sweeps the request on every poll until the horizon has passed (260 s after the
 * newest snapshot was taken: at most 160 s after the answer, which came 100 s after it), and
 * completes with the first sweep that starts at or after it.
 */
async function completeDelete(event: CompleteRequest): Promise<IsCompleteResponse<Attributes>> {
  const data = (event.Data ?? {}) as Partial<LateSweep>;
  const until = Number(data.SweepUntil ?? 0);
  const tokens = (data.SweepTokens ?? '').split(',').filter((t) => t);
  if (!(until > 0) || tokens.length === 0) return { IsComplete: true };
  const startedAt = clock.now();
  const kept = new Set(snapshotIdsOf(event.PhysicalResourceId));
  const swept = await sweepTokens(event, tokens, kept, startedAt + POLL_SWEEP_BUDGET_MS, event.PhysicalResourceId);
  if (startedAt >= until && swept) return { IsComplete: true };
  if (startedAt >= until + LATE_SWEEP_GIVE_UP_MS) {
    // Never fail (nor hold up) a Delete for it: what is left carries the request's token and our tags.
    logger.error('could not sweep the request of the deleted snapshots; giving up (what is left carries its token)', { tokens });
    return { IsComplete: true };
  }
  return { IsComplete: false };
}

/**
 * Queues the late-duplicate sweep of this request (see onLateDuplicateSweep), delivered
 * LATE_DUPLICATE_SWEEP_DELAY_S from now. Called before a create (one covers the creates of the next
 * SWEEP_COVERS_MS): a create whose sweep could not be queued is not sent, since nothing else would
 * be sure to see what it made.
 */
async function queueLateDuplicateSweep(event: Request, token: string): Promise<void> {
  const queueUrl = process.env[QUEUE_ENV];
  if (!queueUrl) throw new HandlerError(`the handler has no ${QUEUE_ENV} (the late-duplicate queue): no snapshot was taken`);
  const body: LateDuplicateSweep = { StackId: event.StackId, LogicalResourceId: event.LogicalResourceId, Token: token };
  try {
    await withRetries(
      () => sqs().send(new SendMessageCommand({ QueueUrl: queueUrl, MessageBody: JSON.stringify(body), DelaySeconds: LATE_DUPLICATE_SWEEP_DELAY_S })),
      { budgetMs: CALL_BUDGET_MS },
    );
  } catch (err) {
    logger.error('could not queue the late-duplicate sweep', { queueUrl, error: err as Error });
    throw new HandlerError(
      `${describeError('Queuing the check for late duplicate snapshots (SQS SendMessage)', err)}; no snapshot was taken ` +
        '(handlers in a VPC need a route or an interface endpoint to SQS as well as to EC2)',
      isTransient(err),
    );
  }
}

/**
 * The late-duplicate sweep, delivered by SQS LATE_DUPLICATE_SWEEP_DELAY_S after a delivery of a
 * request queued it (right before its create): by then every snapshot that create made shows in
 * reads. Per volume, the request's oldest snapshot stays (the one every delivery answers, see
 * settleAndDeduplicate) and every other snapshot of the request goes, whoever made it. It is what
 * removes a duplicate no event of the resource would see: one made by a delivery killed right
 * after its create, whose request CloudFormation then failed with that delivery's answer (no event
 * follows a failed Create), or made while every delivery failed. It deletes only snapshots tagged
 * with this stack's and resource's ownership tags and the request's token, never the oldest of a
 * volume: it never deletes what an answer names. A failed record is retried by SQS (and after 5
 * receives kept in the dead-letter queue).
 */
export async function onLateDuplicateSweep(event: SQSEvent): Promise<SQSBatchResponse> {
  const batchItemFailures: SQSBatchResponse['batchItemFailures'] = [];
  for (const record of event.Records ?? []) {
    try {
      await sweepLateDuplicates(parseSweep(record.body));
    } catch (err) {
      logger.error('the late-duplicate sweep failed; SQS delivers it again', { messageId: record.messageId, error: err as Error });
      batchItemFailures.push({ itemIdentifier: record.messageId });
    }
  }
  return { batchItemFailures };
}

function parseSweep(body: string): LateDuplicateSweep {
  const message = JSON.parse(body) as Partial<LateDuplicateSweep>;
  if (typeof message.StackId !== 'string' || typeof message.LogicalResourceId !== 'string' || typeof message.Token !== 'string' || !message.Token) {
    throw new Error(`not a late-duplicate sweep: ${body.slice(0, 200)}`);
  }
  // The construct gives the sweep function its own stack's id: it sweeps for no other stack.
  const stackId = process.env.STACK_ID;
  if (stackId && message.StackId !== stackId) throw new Error(`a late-duplicate sweep for another stack (${message.StackId.slice(0, 200)}) is refused`);
  return message as LateDuplicateSweep;
}

async function sweepLateDuplicates(message: LateDuplicateSweep): Promise<void> {
  logger.appendKeys({ logicalResourceId: message.LogicalResourceId });
  const found = await findByToken(message, message.Token);
  const kept = oldestPerVolume(found);
  const duplicates = found.filter((s) => kept.get(s.VolumeId ?? '')?.SnapshotId !== s.SnapshotId);
  if (duplicates.length === 0) return;
  // A deletion, too, shows in reads late: an oldest snapshot deleted moments ago (with a failed
  // delivery's set) could still be listed, and keeping it would delete the real answer. Each one
  // kept must still read by id; if one does not, SQS delivers the sweep again later.
  const confirmed = await describeByIds([...kept.values()].map((s) => s.SnapshotId!));
  const missing = [...kept.values()].filter((s) => !confirmed.has(s.SnapshotId!));
  if (missing.length > 0) {
    throw new Error(`the oldest snapshot of the request (${missing.map((s) => s.SnapshotId).join(', ')}) no longer reads by id: sweeping again later`);
  }
  logger.info('late-duplicate sweep', { token: message.Token, kept: [...kept.values()].map((s) => s.SnapshotId), duplicates: duplicates.map((s) => s.SnapshotId) });
  for (const s of duplicates) {
    logger.warn('deleting a late duplicate snapshot of the request', { snapshotId: s.SnapshotId, volumeId: s.VolumeId, kept: kept.get(s.VolumeId ?? '')?.SnapshotId });
    await deleteSnapshot(s.SnapshotId!);
  }
}

/** The physical id of the stack's queue drain. */
const DRAIN_PHYSICAL_ID = 'late-duplicate-queue-drain';
/** SQS's approximate message counts may lag this long behind the last send (SQS developer guide). */
const QUEUE_COUNT_LAG_MS = 60_000;
/** How long a drain waits for the queue before it lets the stack delete it anyway (never failing the delete). */
const DRAIN_GIVE_UP_MS = 15 * 60_000;
interface DrainData {
  readonly DrainStartedAt: string;
}

function isDrain(event: { ResourceProperties?: unknown }): boolean {
  return (event.ResourceProperties as Partial<EbsSnapshotQueueDrainProperties> | undefined)?.Drain === 'late-duplicate-queue';
}

/** The drain does nothing on Create and Update; its Delete hands the start time to isComplete. */
async function onDrainEvent(event: Request): Promise<OnEventResponse<DrainData>> {
  logger.appendKeys({ requestType: event.RequestType, logicalResourceId: event.LogicalResourceId, requestId: event.RequestId });
  logger.info('onEvent (queue drain)', { physicalResourceId: event.PhysicalResourceId });
  if (event.RequestType !== 'Delete') return { PhysicalResourceId: DRAIN_PHYSICAL_ID };
  return { PhysicalResourceId: event.PhysicalResourceId ?? DRAIN_PHYSICAL_ID, Data: { DrainStartedAt: String(clock.now()) } };
}

/**
 * The drain's Delete completes once the late-duplicate queue is empty (no message delayed, waiting
 * or being handled) in a count made at least QUEUE_COUNT_LAG_MS after the Delete began, so that the
 * stack's deletion (or the rollback of its creation) does not delete the queue with sweeps still to
 * run. It never fails the delete: a queue already gone is done, and past DRAIN_GIVE_UP_MS (a sweep
 * that keeps failing) it logs what is left and lets the deletion go on.
 */
async function completeDrain(event: OnEventRequest<EbsSnapshotQueueDrainProperties> & { Data?: DrainData }): Promise<IsCompleteResponse<Attributes>> {
  if (event.RequestType !== 'Delete') return { IsComplete: true };
  const startedAt = Number(event.Data?.DrainStartedAt ?? clock.now());
  const waited = clock.now() - startedAt;
  let pending: number;
  try {
    const out = await withRetries(() => sqs().send(new GetQueueAttributesCommand({
      QueueUrl: event.ResourceProperties.QueueUrl,
      AttributeNames: ['ApproximateNumberOfMessages', 'ApproximateNumberOfMessagesDelayed', 'ApproximateNumberOfMessagesNotVisible'],
    })), { budgetMs: POLL_SWEEP_BUDGET_MS });
    pending = Object.values(out.Attributes ?? {}).reduce((sum, v) => sum + Number(v ?? 0), 0);
  } catch (err) {
    if (['QueueDoesNotExist', 'AWS.SimpleQueueService.NonExistentQueue'].includes(errorCode(err))) return { IsComplete: true };
    logger.error('could not read the late-duplicate queue; reading again', { error: err as Error });
    pending = Number.NaN;
  }
  logger.info('draining the late-duplicate queue', { pending, waitedMs: waited });
  if (pending === 0 && waited >= QUEUE_COUNT_LAG_MS) return { IsComplete: true };
  if (waited >= DRAIN_GIVE_UP_MS) {
    logger.error('the late-duplicate queue did not drain; deleting it anyway (what its sweeps did not delete keeps the request tokens and our tags)', { pending });
    return { IsComplete: true };
  }
  return { IsComplete: false };
}

/** After a failure, delete these snapshots (of this request, tagged as ours), so that nothing is orphaned. */
async function discard(event: Request, snapshots: SnapshotView[]): Promise<void> {
  const token = requestToken(event);
  const done = new Set<string>();
  for (const s of snapshots) {
    if (!s.SnapshotId || done.has(s.SnapshotId) || !isOurs(event, s, token)) continue;
    done.add(s.SnapshotId);
    try {
      await deleteSnapshot(s.SnapshotId);
      logger.info('deleted a snapshot of the failed request', { snapshotId: s.SnapshotId });
    } catch (err) {
      // It stays tagged as ours, with the request's token: visible, and deletable by the stack.
      logger.error('could not delete a snapshot of the failed request', { snapshotId: s.SnapshotId, error: err as Error });
    }
  }
}

/** The source: by id, or (guarded by this snapshot) by the tags CloudFormation put on it; undefined if it does not exist yet. */
async function resolveSource(event: Request): Promise<Source | undefined> {
  const props = event.ResourceProperties;
  if (props.Source === 'volume' && props.VolumeId) return { kind: 'volume', volumeId: props.VolumeId };
  if (props.Source === 'instance' && props.InstanceId) return { kind: 'instance', instanceId: props.InstanceId };
  if (!props.SourceLogicalId) throw new HandlerError(`the resource names no ${props.Source} to snapshot`);
  const filters: Filter[] = [
    { Name: `tag:${CFN_STACK_ID_TAG}`, Values: [event.StackId] },
    { Name: `tag:${CFN_LOGICAL_ID_TAG}`, Values: [props.SourceLogicalId] },
  ];
  if (props.Source === 'volume') {
    const out = await withRetries(() => ec2().send(new DescribeVolumesCommand({ Filters: filters })), { budgetMs: CALL_BUDGET_MS });
    const volume = (out.Volumes ?? []).find((v) => v.VolumeId && v.State !== 'deleting' && v.State !== 'deleted');
    logger.info('looked up the volume by its CloudFormation tags', { sourceLogicalId: props.SourceLogicalId, volumeId: volume?.VolumeId });
    return volume ? { kind: 'volume', volumeId: volume.VolumeId! } : undefined;
  }
  const out = await withRetries(
    () =>
      ec2().send(
        new DescribeInstancesCommand({
          Filters: [...filters, { Name: 'instance-state-name', Values: ['pending', 'running', 'stopping', 'stopped'] }],
        }),
      ),
    { budgetMs: CALL_BUDGET_MS },
  );
  const instances = (out.Reservations ?? []).flatMap((r) => r.Instances ?? []).filter((i) => i.InstanceId);
  // After a replacement both may exist for a moment: the newest is the one the stack now has.
  instances.sort((a, b) => (b.LaunchTime?.getTime() ?? 0) - (a.LaunchTime?.getTime() ?? 0));
  logger.info('looked up the instance by its CloudFormation tags', { sourceLogicalId: props.SourceLogicalId, instanceId: instances[0]?.InstanceId });
  return instances[0] ? { kind: 'instance', instanceId: instances[0].InstanceId! } : undefined;
}

/** Our snapshots carrying this request's token (owner self, tag filter), every page. */
async function findByToken(event: OwnerRef, token: string): Promise<SnapshotView[]> {
  const found = await describeAll([{ Name: `tag:${OWNERSHIP_TAG_KEYS.token}`, Values: [token] }]);
  return found.filter((s) => isOurs(event, s, token));
}

/** The newest group (by token) of our snapshots made for exactly these properties. */
async function findAdoptable(event: Request): Promise<SnapshotView[] | undefined> {
  const wanted = identityHash(event.ResourceProperties);
  const found = await describeAll([
    { Name: `tag:${OWNERSHIP_TAG_KEYS.owner}`, Values: [event.LogicalResourceId] },
    { Name: `tag:${OWNERSHIP_TAG_KEYS.propsHash}`, Values: [wanted] },
  ]);
  const groups = new Map<string, SnapshotView[]>();
  for (const s of found) {
    if (!madeFor(s, event, wanted)) continue;
    const token = tagValue(s.Tags, OWNERSHIP_TAG_KEYS.token) ?? '';
    groups.set(token, [...(groups.get(token) ?? []), s]);
  }
  // A set with a snapshot EBS failed is no point in time to return to.
  const newest = [...groups.values()].filter((g) => g.every((s) => s.State !== 'error')).map((g) => g.sort(oldestFirst)).sort((a, b) => time(b[0]) - time(a[0]))[0];
  if (!newest) return undefined;
  // One per volume (a duplicate left by an older version, or a delete that failed).
  const perVolume = new Map<string, SnapshotView>();
  for (const s of newest) if (!perVolume.has(s.VolumeId ?? '')) perVolume.set(s.VolumeId ?? '', s);
  return [...perVolume.values()];
}

async function describeAll(filters: Filter[]): Promise<SnapshotView[]> {
  const out: SnapshotView[] = [];
  let NextToken: string | undefined;
  do {
    const page = await withRetries(
      () => ec2().send(new DescribeSnapshotsCommand({ OwnerIds: ['self'], Filters: filters, NextToken })),
      { budgetMs: CALL_BUDGET_MS },
    );
    out.push(...(page.Snapshots ?? []));
    NextToken = page.NextToken;
  } while (NextToken);
  return out;
}

/** Snapshots by id; a missing one (deleted, or not visible yet) is absent from the map. */
async function describeByIds(ids: string[]): Promise<Map<string, SnapshotView>> {
  const read = async (list: string[]) =>
    (await withRetries(() => ec2().send(new DescribeSnapshotsCommand({ SnapshotIds: list })), { budgetMs: CALL_BUDGET_MS })).Snapshots ?? [];
  const found = new Map<string, SnapshotView>();
  try {
    for (const s of await read(ids)) found.set(s.SnapshotId!, s);
  } catch (err) {
    if (errorCode(err) !== 'InvalidSnapshot.NotFound') throw err;
    // One unknown id fails the whole call: read them one by one.
    for (const id of ids) {
      try {
        for (const s of await read([id])) found.set(s.SnapshotId!, s);
      } catch (e) {
        if (errorCode(e) !== 'InvalidSnapshot.NotFound') throw e;
      }
    }
  }
  return found;
}

async function deleteSnapshot(id: string): Promise<void> {
  try {
    await withRetries(() => ec2().send(new DeleteSnapshotCommand({ SnapshotId: id })), { budgetMs: CALL_BUDGET_MS });
  } catch (err) {
    if (errorCode(err) !== 'InvalidSnapshot.NotFound') throw err;
  }
}

/** The volumes attached to an instance (CreateSnapshots takes one snapshot of each). */
async function attachedVolumes(instanceId: string): Promise<string[]> {
  const out = await withRetries(
    () => ec2().send(new DescribeVolumesCommand({ Filters: [{ Name: 'attachment.instance-id', Values: [instanceId] }] })),
    { budgetMs: CALL_BUDGET_MS },
  );
  return (out.Volumes ?? []).map((v) => v.VolumeId).filter((v): v is string => !!v);
}

/** The device each volume is attached at (for the `Device:<name>` attributes of instance sources). */
async function devicesOf(volumeIds: string[]): Promise<Map<string, string>> {
  const out = await withRetries(() => ec2().send(new DescribeVolumesCommand({ VolumeIds: volumeIds })), { budgetMs: CALL_BUDGET_MS });
  const devices = new Map<string, string>();
  for (const v of out.Volumes ?? []) {
    const device = v.Attachments?.find((a) => a.Device)?.Device;
    if (v.VolumeId && device) devices.set(v.VolumeId, device);
  }
  return devices;
}

/**
 * The response for new or adopted snapshots, ordered by device name (instances) or volume id.
 * `strict`: a failure to read the devices fails the request (a Create); otherwise (rollbacks) it is
 * logged and the device attributes are empty.
 */
async function respond(event: Request, run: Run, snapshots: SnapshotView[], origin: CopyOrigin, strict: boolean): Promise<Response> {
  let devices = new Map<string, string>();
  const volumeIds = snapshots.map((s) => s.VolumeId).filter((v): v is string => !!v);
  if (event.ResourceProperties.Source === 'instance' && volumeIds.length > 0) {
    try {
      devices = await step('Reading the devices of the snapshotted volumes', () => devicesOf(volumeIds));
    } catch (err) {
      if (strict) throw err;
      logger.error('could not read the devices of the volumes; the Device attributes are empty', { error: err as Error });
    }
  }
  const entries = snapshots.map((snapshot) => ({ snapshot, device: devices.get(snapshot.VolumeId ?? '') }));
  const key = (e: { snapshot: SnapshotView; device?: string }) => `${e.device ?? '~'}|${e.snapshot.VolumeId ?? ''}|${e.snapshot.SnapshotId}`;
  entries.sort((a, b) => (key(a) < key(b) ? -1 : key(a) > key(b) ? 1 : 0));
  if (strict && event.ResourceProperties.Source === 'instance') {
    const missing = requestedDevices(event).filter((d) => !entries.some((e) => e.device === d));
    if (missing.length > 0) {
      throw new HandlerError(`snapshotIdOfDevice() names ${missing.join(', ')}, but the instance has no volume attached there ` +
        `(attached: ${entries.map((e) => e.device).filter((d) => d).join(', ') || 'none'}); the snapshots this request made have been deleted`);
    }
  }
  return answer(event, run, entries, origin);
}

/**
 * The answer: the physical id names each snapshot, in order, with its device for an instance source
 * (`snap-…=/dev/xvda,…`, so that a later rollback keeps the order and the device attributes without
 * reading the volumes, which may be gone by then). Every requested `Device:<name>` is answered.
 */
function answer(
  event: Request, run: Run, entries: Array<{ snapshot: SnapshotView; device?: string }>, origin: CopyOrigin, physicalId?: string,
): Response {
  const ids = entries.map((e) => e.snapshot.SnapshotId!);
  const first = entries[0]?.snapshot;
  const data: Attributes = {
    SnapshotId: ids[0] ?? '',
    SnapshotIds: ids.join(','),
    VolumeIds: entries.map((e) => e.snapshot.VolumeId ?? '').join(','),
    StartTime: first?.StartTime ? new Date(first.StartTime).toISOString() : '',
    SourceFound: 'true',
    StartedAt: String(run.startedAt),
    Origin: origin,
  };
  for (const d of requestedDevices(event)) data[`Device:${d}`] = '';
  for (const e of entries) if (e.device) data[`Device:${e.device}`] = e.snapshot.SnapshotId!;
  const response: Response = {
    PhysicalResourceId: physicalId ?? entries.map((e) => (e.device && event.ResourceProperties.Source === 'instance'
      ? `${e.snapshot.SnapshotId}=${e.device}` : e.snapshot.SnapshotId)).join(','),
    Data: data,
  };
  const envelope = { ...response, StackId: event.StackId, RequestId: event.RequestId, LogicalResourceId: event.LogicalResourceId };
  const size = Buffer.byteLength(JSON.stringify(envelope));
  if (size > MAX_RESPONSE_BYTES) {
    throw new HandlerError(`the answer for ${ids.length} snapshots would be ${size} bytes, more than a CloudFormation custom resource ` +
      'response may carry (4,096 bytes with the framework\'s fields): snapshot fewer volumes per resource (one EbsSnapshotOnDeploy per volume, say)');
  }
  return response;
}

function respondNone(event: Request, run: Run, physicalId?: string): Response {
  const data: Attributes = { SnapshotId: '', SnapshotIds: '', VolumeIds: '', StartTime: '', SourceFound: 'false', StartedAt: String(run.startedAt), Origin: 'unchanged' };
  for (const d of requestedDevices(event)) data[`Device:${d}`] = '';
  return { PhysicalResourceId: physicalId ?? `${NO_SNAPSHOT_PREFIX}${requestToken(event).slice(4, 20)}`, Data: data };
}

/** The device names the template reads `Device:<name>` attributes of. */
function requestedDevices(event: Request): string[] {
  return (event.ResourceProperties.Devices ?? '').split(',').filter((d) => d);
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

/** The properties that force a new snapshot: the source, the Outpost, the trigger and the guarded resources' hash. */
export function identityHash(props: Props): string {
  return stableHash({
    Source: props.Source,
    VolumeId: props.VolumeId,
    InstanceId: props.InstanceId,
    SourceLogicalId: props.SourceLogicalId,
    OutpostArn: props.OutpostArn,
    Trigger: props.Trigger,
    SnapshotBeforeHash: props.SnapshotBeforeHash,
  });
}

/** The snapshot ids a physical id names (none for a resource that took no snapshot), in its order. */
export function snapshotIdsOf(physicalId: string | undefined): string[] {
  return (physicalId ?? '').split(',').map((e) => e.split('=')[0]).filter((id) => /^snap-[0-9a-f]+$/.test(id));
}

/** The device of each snapshot a physical id names (`snap-…=/dev/xvda`). */
function devicesOfPhysicalId(physicalId: string): Map<string, string> {
  const out = new Map<string, string>();
  for (const e of physicalId.split(',')) {
    const [id, device] = e.split('=');
    if (device) out.set(id, device);
  }
  return out;
}

function madeFor(s: SnapshotView, event: Request, hash: string): boolean {
  return isOwnedBy(s.Tags, requestOwner(event)) && tagValue(s.Tags, OWNERSHIP_TAG_KEYS.propsHash) === hash;
}

/** Whether this delivery made it (its delivery tag). */
function isMine(s: SnapshotView, run: Run): boolean {
  return tagValue(s.Tags, DELIVERY_TAG) === run.delivery;
}

function isOurs(event: OwnerRef, s: SnapshotView, token: string): boolean {
  return isOwnedBy(s.Tags, requestOwner(event)) && tagValue(s.Tags, OWNERSHIP_TAG_KEYS.token) === token;
}

function oldestFirst(a: SnapshotView, b: SnapshotView): number {
  return time(a) - time(b) || (a.SnapshotId! < b.SnapshotId! ? -1 : a.SnapshotId! > b.SnapshotId! ? 1 : 0);
}

function time(s: SnapshotView): number {
  return s.StartTime ? new Date(s.StartTime).getTime() : Number.MAX_SAFE_INTEGER;
}

function defaultDescription(event: Request): string {
  const stackName = event.StackId.split('/')[1] ?? event.StackId;
  return `cdk-storage-snapshots: ${event.LogicalResourceId} in ${stackName}`.slice(0, 255);
}


