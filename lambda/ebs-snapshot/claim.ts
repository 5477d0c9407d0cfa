import { AttributeValue, GetItemCommand, PutItemCommand, UpdateItemCommand } from '@aws-sdk/client-dynamodb';
import { CLAIM_TABLE_ENV as TABLE_ENV, CLAIM_TABLE_KEY as KEY, CLAIM_TABLE_TTL_ATTRIBUTE as TTL } from '../../src/private/ebs-contract';
import { dynamodb } from '../shared/clients/dynamodb';
import { clock } from '../shared/clock';
import { HandlerError, describeError, errorCode, isTransient, withRetries } from '../shared/errors';
import { logger } from '../shared/logger';

/*
 * One claim per request, in the stack's claim table (DynamoDB). EC2 CreateSnapshot(s) take no
 * client token, and one CloudFormation request can reach the handler more than once; a conditional
 * write decides which delivery creates (the owner), and every other delivery returns what the owner
 * recorded. The whole protocol, with its timeline, is in docs/design/ebs-claim.md.
 */

const NETWORK = new Set(['TimeoutError', 'ECONNRESET', 'ECONNREFUSED', 'ETIMEDOUT', 'EAI_AGAIN', 'EPIPE', 'NetworkingError']);

/** Claims are kept 7 days: longer than Lambda's 6-hour maximum event age, so a late duplicate still finds its request's claim. */
export const CLAIM_TTL_S = 7 * 24 * 3600;
/** How long a claim write keeps retrying throttling and 5xx before the request fails (and takes no snapshot). */
const CLAIM_CALL_BUDGET_MS = 20_000;

/** `claimed`: an owner is at work; `answered`, `failed`: the request's outcome, which every delivery returns. */
export type ClaimState = 'claimed' | 'answered' | 'failed';

/** One request's claim, as read from the table. */
export interface Claim {
  readonly token: string;
  readonly state: ClaimState;
  /** The delivery (one onEvent invocation) that owns it. */
  readonly owner: string;
  /** Until when (epoch ms, the owner's clock) the owner holds it; past it (and a skew margin) another delivery may take over. */
  readonly fence: number;
  /** Deliveries whose create may have acted (each recorded before its first create call), and whose snapshots may exist. */
  readonly creators: readonly string[];
  /** When the latest of those creates may have been sent (epoch ms). */
  readonly createSentAt?: number;
  /** The recorded answer (`answered`): the onEvent response, as JSON. */
  readonly answer?: string;
  /** The recorded failure reason (`failed`). */
  readonly reason?: string;
  /** When the answer or failure was recorded (epoch ms). */
  readonly recordedAt?: number;
  /** Epoch seconds after which the claim is expired, whether or not DynamoDB has removed it yet. */
  readonly expiresAt: number;
  /** When a retried deployment reopened a failure recorded in an earlier stack operation (epoch ms). */
  readonly reopenedAt?: number;
}

/** The outcome of a conditional write: whether this delivery's write holds, and the claim as it now is. */
export interface ClaimWrite {
  readonly won: boolean;
  readonly claim: Claim | undefined;
}

/** The claim of `token`, read strongly consistently; undefined if there is none or it has expired. */
export async function readClaim(token: string): Promise<Claim | undefined> {
  const out = await call('Reading the claim of this request', () =>
    dynamodb().send(new GetItemCommand({ TableName: tableName(), Key: { [KEY]: { S: token } }, ConsistentRead: true })));
  return live(parseClaim(out.Item));
}

/** Claims an unclaimed (or expired) request: the first delivery to write wins. A retry of a put whose response was lost finds its own owner id. */
export async function putClaim(token: string, delivery: string, fenceMs: number): Promise<ClaimWrite> {
  const now = clock.now();
  const expiresAt = Math.floor(now / 1000) + CLAIM_TTL_S;
  const mine: Claim = { token, state: 'claimed', owner: delivery, fence: now + fenceMs, creators: [], expiresAt };
  const put = await write('Claiming this request (no snapshot was taken)', (t) => ({ won: t?.owner === delivery && t.state === 'claimed', claim: t }), () => new PutItemCommand({
    TableName: tableName(),
    Item: {
      [KEY]: { S: token },
      State: { S: 'claimed' },
      Owner: { S: delivery },
      Fence: { N: String(mine.fence) },
      Creators: { L: [] },
      [TTL]: { N: String(expiresAt) },
    },
    ConditionExpression: 'attribute_not_exists(#k) OR #ttl < :nowS',
    ExpressionAttributeNames: { '#k': KEY, '#ttl': TTL },
    ExpressionAttributeValues: { ':nowS': { N: String(Math.floor(now / 1000)) } },
    ReturnValuesOnConditionCheckFailure: 'ALL_OLD',
  }));
  // PutItem returns no new item: what it wrote is `mine`.
  return put.won && !put.claim ? { won: true, claim: mine } : put;
}

/**
 * Extends the owner's fence (naming the fence it holds, so that a take-over in between makes it
 * fail) and, with `creating`, records this delivery as one whose create may act: called right
 * before every create call.
 */
export async function extendFence(claim: Claim, delivery: string, fenceMs: number, creating: boolean): Promise<ClaimWrite> {
  const now = clock.now();
  const fence = now + fenceMs;
  const addCreator = creating && !claim.creators.includes(delivery);
  const sets = ['#f = :fence', ...(creating ? ['#c = :now'] : []), ...(addCreator ? ['#cr = list_append(#cr, :me)'] : [])];
  return write('Extending the claim of this request', (t) => ({ won: t?.owner === delivery && t.state === 'claimed' && t.fence === fence, claim: t }),
    () => new UpdateItemCommand({
      TableName: tableName(),
      Key: { [KEY]: { S: claim.token } },
      UpdateExpression: `SET ${sets.join(', ')}`,
      ConditionExpression: '#o = :owner AND #f = :oldFence AND #s = :claimed',
      ExpressionAttributeNames: { '#o': 'Owner', '#f': 'Fence', '#s': 'State', ...(creating ? { '#c': 'CreateSentAt' } : {}), ...(addCreator ? { '#cr': 'Creators' } : {}) },
      ExpressionAttributeValues: {
        ':owner': { S: delivery },
        ':oldFence': { N: String(claim.fence) },
        ':claimed': { S: 'claimed' },
        ':fence': { N: String(fence) },
        ...(creating ? { ':now': { N: String(now) } } : {}),
        ...(addCreator ? { ':me': { L: [{ S: delivery }] } } : {}),
      },
      ReturnValues: 'ALL_NEW',
      ReturnValuesOnConditionCheckFailure: 'ALL_OLD',
    }));
}

/** Takes over a claim whose owner's fence has passed with no outcome recorded (naming the owner and fence seen). */
export async function takeOver(claim: Claim, delivery: string, fenceMs: number): Promise<ClaimWrite> {
  const fence = clock.now() + fenceMs;
  return write('Taking over the claim of this request', (t) => ({ won: t?.owner === delivery && t.state === 'claimed' && t.fence === fence, claim: t }),
    () => new UpdateItemCommand({
      TableName: tableName(),
      Key: { [KEY]: { S: claim.token } },
      UpdateExpression: 'SET #o = :me, #f = :fence',
      ConditionExpression: '#o = :owner AND #f = :oldFence AND #s = :claimed',
      ExpressionAttributeNames: { '#o': 'Owner', '#f': 'Fence', '#s': 'State' },
      ExpressionAttributeValues: {
        ':me': { S: delivery }, ':fence': { N: String(fence) }, ':owner': { S: claim.owner }, ':oldFence': { N: String(claim.fence) }, ':claimed': { S: 'claimed' },
      },
      ReturnValues: 'ALL_NEW',
      ReturnValuesOnConditionCheckFailure: 'ALL_OLD',
    }));
}

/** Reopens a failure recorded in an earlier stack operation (a retried deployment re-sends the RequestId): this delivery owns it. */
export async function reopen(claim: Claim, delivery: string, fenceMs: number): Promise<ClaimWrite> {
  const fence = clock.now() + fenceMs;
  return write('Reopening the claim of this request', (t) => ({ won: t?.owner === delivery && t.state === 'claimed' && t.fence === fence, claim: t }),
    () => new UpdateItemCommand({
      TableName: tableName(),
      Key: { [KEY]: { S: claim.token } },
      // ReopenedAt: a failing delivery of the earlier operation leaves this claim alone (see lastWord).
      UpdateExpression: 'SET #s = :claimed, #o = :me, #f = :fence, #ro = :now REMOVE #r, #at',
      ConditionExpression: '#s = :failed AND #at = :recordedAt',
      ExpressionAttributeNames: { '#s': 'State', '#o': 'Owner', '#f': 'Fence', '#r': 'Reason', '#at': 'RecordedAt', '#ro': 'ReopenedAt' },
      ExpressionAttributeValues: {
        ':claimed': { S: 'claimed' },
        ':failed': { S: 'failed' },
        ':me': { S: delivery },
        ':fence': { N: String(fence) },
        ':recordedAt': { N: String(claim.recordedAt ?? 0) },
        ':now': { N: String(clock.now()) },
      },
      ReturnValues: 'ALL_NEW',
      ReturnValuesOnConditionCheckFailure: 'ALL_OLD',
    }));
}

/** Records the request's answer, if this delivery still owns the claim. */
export async function recordAnswer(claim: Claim, delivery: string, answer: string): Promise<ClaimWrite> {
  return write('Recording the answer of this request', (t) => ({ won: t?.state === 'answered' && t.owner === delivery && t.answer === answer, claim: t }),
    () => new UpdateItemCommand({
      TableName: tableName(),
      Key: { [KEY]: { S: claim.token } },
      UpdateExpression: 'SET #s = :answered, #a = :answer, #at = :now',
      ConditionExpression: '#o = :me AND #s = :claimed',
      ExpressionAttributeNames: { '#s': 'State', '#a': 'Answer', '#at': 'RecordedAt', '#o': 'Owner' },
      ExpressionAttributeValues: {
        ':answered': { S: 'answered' }, ':answer': { S: answer }, ':now': { N: String(clock.now()) }, ':me': { S: delivery }, ':claimed': { S: 'claimed' },
      },
      ReturnValues: 'ALL_NEW',
      ReturnValuesOnConditionCheckFailure: 'ALL_OLD',
    }));
}

/**
 * Records the request's failure. The owner (`owner` set) records it only while it owns the claim;
 * a waiter whose time is up (`owner` unset) records it over any owner that has not answered yet,
 * so that an owner still at work fails the same way instead of answering after CloudFormation
 * took the waiter's failure (it leaves `Creators` as they are: the owner may be adding itself). The
 * owner also records `creators`, the deliveries whose snapshots may still exist.
 */
export async function recordFailure(
  claim: Claim, reason: string, owner?: { readonly delivery: string; readonly creators: readonly string[] },
): Promise<ClaimWrite> {
  const now = clock.now();
  return write('Recording the failure of this request', (t) => ({ won: t?.state === 'failed' && t.recordedAt === now && t.reason === reason, claim: t }),
    () => new UpdateItemCommand({
      TableName: tableName(),
      Key: { [KEY]: { S: claim.token } },
      UpdateExpression: `SET #s = :failed, #r = :reason, #at = :now${owner ? ', #cr = :creators' : ''}`,
      ConditionExpression: owner ? '#o = :me AND #s = :claimed' : '#s = :claimed',
      ExpressionAttributeNames: { '#s': 'State', '#r': 'Reason', '#at': 'RecordedAt', ...(owner ? { '#o': 'Owner', '#cr': 'Creators' } : {}) },
      ExpressionAttributeValues: {
        ':failed': { S: 'failed' },
        ':reason': { S: reason },
        ':now': { N: String(now) },
        ':claimed': { S: 'claimed' },
        ...(owner ? { ':me': { S: owner.delivery }, ':creators': { L: owner.creators.map((c) => ({ S: c })) } } : {}),
      },
      ReturnValues: 'ALL_NEW',
      ReturnValuesOnConditionCheckFailure: 'ALL_OLD',
    }));
}

/**
 * Records that a request answered earlier failed after all (its snapshot ended in `error`, or was
 * not completed in time, and was deleted): a retried deployment that re-sends its RequestId then
 * reopens it instead of returning an answer that names deleted snapshots.
 */
export async function recordLateFailure(token: string, reason: string): Promise<void> {
  await write('Recording the failure of this request', (t) => ({ won: t?.state === 'failed', claim: t }), () => new UpdateItemCommand({
    TableName: tableName(),
    Key: { [KEY]: { S: token } },
    UpdateExpression: 'SET #s = :failed, #r = :reason, #at = :now',
    ConditionExpression: '#s = :answered',
    ExpressionAttributeNames: { '#s': 'State', '#r': 'Reason', '#at': 'RecordedAt' },
    ExpressionAttributeValues: { ':failed': { S: 'failed' }, ':answered': { S: 'answered' }, ':reason': { S: reason }, ':now': { N: String(clock.now()) } },
    ReturnValuesOnConditionCheckFailure: 'ALL_OLD',
  }));
}

/**
 * Records the failure of a request nobody claimed (this delivery failed before its own claim
 * could be written): later deliveries in the same stack operation fail the same way instead of
 * creating after CloudFormation took this failure.
 */
export async function recordUnclaimedFailure(token: string, reason: string): Promise<ClaimWrite> {
  const now = clock.now();
  return write('Recording the failure of this request', (t) => ({ won: false, claim: t }), () => new PutItemCommand({
    TableName: tableName(),
    Item: {
      [KEY]: { S: token },
      State: { S: 'failed' },
      Owner: { S: '' },
      Fence: { N: '0' },
      Creators: { L: [] },
      Reason: { S: reason },
      RecordedAt: { N: String(now) },
      [TTL]: { N: String(Math.floor(now / 1000) + CLAIM_TTL_S) },
    },
    ConditionExpression: 'attribute_not_exists(#k) OR #ttl < :nowS',
    ExpressionAttributeNames: { '#k': KEY, '#ttl': TTL },
    ExpressionAttributeValues: { ':nowS': { N: String(Math.floor(now / 1000)) } },
    ReturnValuesOnConditionCheckFailure: 'ALL_OLD',
  }));
}

/**
 * Replaces the creators of a failed claim (those whose snapshots may still exist), if it is still
 * the same failure with the same creators: a delivery drops itself before it deletes what it made
 * (a retried deployment that reopens the claim then never adopts what is being deleted), and puts
 * itself back if the delete failed. Tells whether it was replaced.
 */
export async function setCreators(claim: Claim, from: readonly string[], to: readonly string[]): Promise<boolean> {
  if (from.length === to.length && from.every((c, i) => c === to[i])) return true;
  const list = (creators: readonly string[]) => ({ L: creators.map((c) => ({ S: c })) });
  const same = (t: Claim | undefined) => t?.state === 'failed' && t.recordedAt === claim.recordedAt && t.creators.join() === to.join();
  const w = await write('Updating the claim of this request', (t) => ({ won: same(t), claim: t }), () => new UpdateItemCommand({
    TableName: tableName(),
    Key: { [KEY]: { S: claim.token } },
    UpdateExpression: 'SET #cr = :to',
    ConditionExpression: '#s = :failed AND #at = :recordedAt AND #cr = :from',
    ExpressionAttributeNames: { '#s': 'State', '#cr': 'Creators', '#at': 'RecordedAt' },
    ExpressionAttributeValues: { ':to': list(to), ':from': list(from), ':failed': { S: 'failed' }, ':recordedAt': { N: String(claim.recordedAt ?? 0) } },
    ReturnValuesOnConditionCheckFailure: 'ALL_OLD',
  }));
  return w.won;
}

/**
 * One conditional write, retried on throttling, 5xx and network errors. A refused condition is no
 * error: `judge` decides from the item as it is whether this delivery's write holds anyway (a
 * retry of a write whose response was lost meets its own result).
 */
async function write(
  what: string,
  judge: (current: Claim | undefined) => ClaimWrite,
  command: () => PutItemCommand | UpdateItemCommand,
): Promise<ClaimWrite> {
  try {
    const out = await call(what, () => dynamodb().send(command() as UpdateItemCommand));
    const written = parseClaim((out as { Attributes?: Record<string, AttributeValue> }).Attributes);
    return { won: true, claim: written };
  } catch (err) {
    if (errorCode(err) !== 'ConditionalCheckFailedException') throw err;
    const current = parseClaim((err as { Item?: Record<string, AttributeValue> }).Item);
    const outcome = judge(current);
    logger.info('claim write refused', { what, won: outcome.won, state: current?.state, owner: current?.owner });
    return outcome;
  }
}

/** A call to the claim table; throttling and 5xx are retried, then fail the request with a clear reason (no snapshot is taken). */
async function call<T>(what: string, fn: () => Promise<T>): Promise<T> {
  try {
    return await withRetries(fn, { budgetMs: CLAIM_CALL_BUDGET_MS });
  } catch (err) {
    if (errorCode(err) === 'ConditionalCheckFailedException') throw err;
    logger.error('the claim table refused a call', { what, error: err as Error });
    if (errorCode(err) === 'ResourceNotFoundException') {
      throw new HandlerError(`${what}: the claim table ${tableName()} does not exist (it is deleted with the stack)`);
    }
    // A network error from a handler in a VPC is most often a missing route to DynamoDB.
    const hint = NETWORK.has(errorCode(err)) ? ' Handlers in a VPC need a route to DynamoDB (a gateway endpoint).' : '';
    throw new HandlerError(
      `${describeError(`${what} (DynamoDB table ${tableName()})`, err).replace(/\.+$/, '')}.${hint} Deploy again.`,
      isTransient(err),
    );
  }
}

function tableName(): string {
  const name = process.env[TABLE_ENV];
  if (!name) throw new HandlerError(`the handler has no ${TABLE_ENV} (the stack's claim table): no snapshot was taken`);
  return name;
}

/** A claim past its expiry counts as none: DynamoDB removes expired items lazily. */
function live(claim: Claim | undefined): Claim | undefined {
  return claim && claim.expiresAt * 1000 > clock.now() ? claim : undefined;
}

function parseClaim(item: Record<string, AttributeValue> | undefined): Claim | undefined {
  if (!item?.[KEY]?.S) return undefined;
  const num = (name: string) => (item[name]?.N !== undefined ? Number(item[name].N) : undefined);
  return {
    token: item[KEY].S,
    state: (item.State?.S ?? 'claimed') as ClaimState,
    owner: item.Owner?.S ?? '',
    fence: num('Fence') ?? 0,
    creators: (item.Creators?.L ?? []).map((v) => v.S).filter((v): v is string => !!v),
    createSentAt: num('CreateSentAt'),
    answer: item.Answer?.S,
    reason: item.Reason?.S,
    recordedAt: num('RecordedAt'),
    expiresAt: num(TTL) ?? 0,
    reopenedAt: num('ReopenedAt'),
  };
}
