import { CloudFormationClient, DescribeStackResourceCommand, DescribeStacksCommand } from '@aws-sdk/client-cloudformation';
import {
  AttributeValue,
  DynamoDBClient,
  GetItemCommand,
  GetItemCommandInput,
  PutItemCommand,
  PutItemCommandInput,
  UpdateItemCommand,
  UpdateItemCommandInput,
} from '@aws-sdk/client-dynamodb';
import {
  CreateSnapshotCommand,
  CreateSnapshotCommandInput,
  CreateSnapshotsCommand,
  CreateSnapshotsCommandInput,
  DeleteSnapshotCommand,
  DescribeInstancesCommand,
  DescribeSnapshotsCommand,
  DescribeVolumesCommand,
  EC2Client,
  Snapshot,
} from '@aws-sdk/client-ec2';
import { mockClient } from 'aws-sdk-client-mock';
import 'aws-sdk-client-mock-jest';
import { DUPLICATE_METRIC, READ_LAG_WINDOW_MS, SKEW_MS, identityHash, isComplete, onEvent, snapshotIdsOf } from '../../lambda/ebs-snapshot';
import { clock } from '../../lambda/shared/clock';
import { logger } from '../../lambda/shared/logger';
import { OWNERSHIP_TAG_KEYS } from '../../lambda/shared/ownership';
import { requestToken } from '../../lambda/shared/token';
import type { EbsSnapshotOnDeployProperties } from '../../src/private/ebs-contract';
import { LOGICAL_ID, STACK_ID, cfnRequest, rejection } from '../fixtures/events';
import { ownershipTagsOf } from '../fixtures/ownership';
import { awsError } from '../support/aws-errors';

const ec2Mock = mockClient(EC2Client);
const cfnMock = mockClient(CloudFormationClient);
const ddbMock = mockClient(DynamoDBClient);
const realClock = { ...clock };

const TABLE = 'app-claims'; // test/setup-env.ts
const VOLUME = 'vol-0123456789abcdef0';
const VOLUME2 = 'vol-0123456789abcdef1';
const INSTANCE = 'i-0123456789abcdef0';
const T0 = new Date('2026-11-22T09:00:00Z');
/** When each test's first onEvent starts (an hour after T0, the snapshots' default StartTime). */
const START = T0.getTime() + 3_600_000;
const DELIVERY_TAG = 'cdk-storage-snapshots:delivery';
const REPLACES_TAG = 'cdk-storage-snapshots:replaces';
/** The claim's first hold, and the hold renewed right before each create call (claimed-create.ts, owner.ts). */
const FENCE_MS = 120_000;
const TTL_S = 7 * 24 * 3600;
const A = 'snap-0000000000000000a';
const B = 'snap-0000000000000000b';
const C = 'snap-0000000000000000c';
/** What a failure reason adds when a snapshot the request may have made stays (claimed-create.ts). */
const KEPT = ' (a snapshot this request may have made is kept: it carries the request\'s token, and a retry of the request adopts it)';
/** The failure a waiter whose time ran out records over the owner still at work. */
const WAITER_REASON = 'another delivery of this request was still taking its snapshot when this delivery\'s time ran out: the request fails, ' +
  'and that delivery deletes what it made once it sees the failure. Deploy again.';

type Props = EbsSnapshotOnDeployProperties & { ServiceToken: string };

function props(overrides: Partial<EbsSnapshotOnDeployProperties> = {}): Props {
  return {
    ServiceToken: 'arn:aws:lambda:us-east-1:111111111111:function:framework-onEvent',
    Source: 'volume',
    VolumeId: VOLUME,
    RemovalPolicy: 'retain',
    TimeoutSeconds: '1800',
    WaitForCompletion: 'false',
    ...overrides,
  };
}

function ours(p: Props, token: string, owner = LOGICAL_ID) {
  return ownershipTagsOf({ stackId: STACK_ID, owner, propsHash: identityHash(p), token });
}

/** Our tags for a snapshot that `delivery` made. */
function madeBy(p: Props, token: string, delivery: string) {
  return [...ours(p, token), { Key: DELIVERY_TAG, Value: delivery }];
}

function snap(id: string, state: string, tags: Snapshot['Tags'] = [], opts: { volumeId?: string; start?: Date } = {}): Snapshot {
  return { SnapshotId: id, VolumeId: opts.volumeId ?? VOLUME, State: state as any, StartTime: opts.start ?? T0, Tags: tags, Progress: '10%' };
}

/** CreateSnapshot of `volumeId` makes snapshot `id`, tagged as asked. */
function createsSnapshot(id: string, volumeId = VOLUME) {
  ec2Mock.on(CreateSnapshotCommand, { VolumeId: volumeId })
    .callsFake(async (input: CreateSnapshotCommandInput) => snap(id, 'pending', input.TagSpecifications![0].Tags, { volumeId }));
}

/** CreateSnapshots of INSTANCE makes one snapshot per entry, tagged as asked. */
function createsSnapshots(...made: Array<[id: string, volumeId: string]>) {
  ec2Mock.on(CreateSnapshotsCommand, { InstanceSpecification: { InstanceId: INSTANCE } }).callsFake(async (input: CreateSnapshotsCommandInput) => ({
    Snapshots: made.map(([id, volumeId]) => snap(id, 'pending', input.TagSpecifications![0].Tags, { volumeId })),
  }));
}

/** The tags the (first) create call put on what it made. */
function createdTags() {
  const call = ec2Mock.commandCalls(CreateSnapshotCommand)[0] ?? ec2Mock.commandCalls(CreateSnapshotsCommand)[0];
  return call.args[0].input.TagSpecifications![0].Tags!;
}

/** DescribeSnapshots by this request's token tag answers `answers` in turn (the last one from then on). */
function tokenLookups(token: string, ...answers: Snapshot[][]) {
  let stub = ec2Mock.on(DescribeSnapshotsCommand, { OwnerIds: ['self'], Filters: [{ Name: `tag:${OWNERSHIP_TAG_KEYS.token}`, Values: [token] }] });
  for (const a of answers.slice(0, -1)) stub = stub.resolvesOnce({ Snapshots: a });
  stub.resolves({ Snapshots: answers[answers.length - 1] });
}

/** DescribeVolumes by id: where each volume is attached. */
function devices(...attachments: Array<[volumeId: string, device: string]>) {
  ec2Mock.on(DescribeVolumesCommand, { VolumeIds: attachments.map(([v]) => v) }).resolves({
    Volumes: attachments.map(([VolumeId, Device]) => ({ VolumeId, Attachments: [{ InstanceId: INSTANCE, Device }] })),
  });
}

/** DescribeVolumes by attachment: the volumes attached to INSTANCE. */
function attached(...volumeIds: string[]) {
  ec2Mock.on(DescribeVolumesCommand, { Filters: [{ Name: 'attachment.instance-id', Values: [INSTANCE] }] })
    .resolves({ Volumes: volumeIds.map((VolumeId) => ({ VolumeId })) });
}

/** The status of this resource (DescribeStackResource): whether CloudFormation still waits for it. */
function resourceStatus(status: string) {
  cfnMock.on(DescribeStackResourceCommand, { StackName: STACK_ID, LogicalResourceId: LOGICAL_ID }).resolves({
    StackResourceDetail: { LogicalResourceId: LOGICAL_ID, ResourceType: 'Custom::EbsSnapshotOnDeploy', LastUpdatedTimestamp: new Date(START), ResourceStatus: status as any },
  });
}

/**
 * The stack's status: created a minute ago, or a day ago and last updated at `lastUpdated` (when its
 * current operation began). The resource is in progress with the stack's operation (UPDATE_IN_PROGRESS
 * in an update, CREATE_IN_PROGRESS otherwise); tests about the resource's own status set it after.
 */
function stackStatus(status: string, lastUpdated?: number) {
  resourceStatus(status.startsWith('UPDATE_') ? 'UPDATE_IN_PROGRESS' : 'CREATE_IN_PROGRESS');
  cfnMock.on(DescribeStacksCommand, { StackName: STACK_ID }).resolves({
    Stacks: [{
      StackName: 'app',
      StackStatus: status as any,
      CreationTime: new Date(lastUpdated === undefined ? START - 60_000 : START - 86_400_000),
      LastUpdatedTime: lastUpdated === undefined ? undefined : new Date(lastUpdated),
    }],
  });
}

function context(remainingMs = 5 * 60_000, awsRequestId = 'req-1') {
  return { awsRequestId, getRemainingTimeInMillis: () => remainingMs };
}

/** The error a promise rejects with (one that resolves fails the test). */
const deleted = () => ec2Mock.commandCalls(DeleteSnapshotCommand).map((c) => c.args[0].input.SnapshotId);

/*
 * The claim table: one item per token, behind PutItem, UpdateItem and GetItem. It applies what the
 * claim store sends (a PutItem that admits no live item; UpdateItems whose conditions are
 * `#name = :value` terms joined by AND, with SET, list_append and REMOVE), and, as DynamoDB does,
 * refuses an expression attribute name or value that is not used, or used but not given.
 */
type Item = Record<string, AttributeValue>;
const claims = new Map<string, Item>();

function conditionFailed(item: Item | undefined): Error {
  return Object.assign(awsError('ConditionalCheckFailedException', 'The conditional request failed'), { Item: item });
}

interface ExpressionInput {
  readonly TableName?: string;
  readonly ExpressionAttributeNames?: Record<string, string>;
  readonly ExpressionAttributeValues?: Item;
}

function checkExpressions(input: ExpressionInput, text: string) {
  if (input.TableName !== TABLE) throw awsError('ResourceNotFoundException', 'Requested resource not found');
  const given = [...Object.keys(input.ExpressionAttributeNames ?? {}), ...Object.keys(input.ExpressionAttributeValues ?? {})];
  const used: string[] = text.match(/[#:][A-Za-z0-9_]+/g) ?? [];
  const wrong = [...given.filter((k) => !used.includes(k)), ...used.filter((k) => !given.includes(k))];
  if (wrong.length > 0) throw awsError('ValidationException', `expression attribute names or values unused or not given: ${wrong.join(', ')}`);
}

const table = {
  put(input: PutItemCommandInput) {
    checkExpressions(input, input.ConditionExpression ?? '');
    if (input.ConditionExpression !== 'attribute_not_exists(#k) OR #ttl < :nowS') throw awsError('ValidationException', 'not the claim condition');
    const token = input.Item!.Token.S!;
    const old = claims.get(token);
    if (old && !(Number(old.ExpiresAt.N) < Number(input.ExpressionAttributeValues![':nowS'].N))) throw conditionFailed(old);
    claims.set(token, input.Item!);
    return {};
  },
  update(input: UpdateItemCommandInput) {
    checkExpressions(input, `${input.UpdateExpression} ${input.ConditionExpression}`);
    const names = input.ExpressionAttributeNames!;
    const values = input.ExpressionAttributeValues!;
    const token = input.Key!.Token.S!;
    const old = claims.get(token);
    const holds = input.ConditionExpression!.split(' AND ').every((term) => {
      const m = /^(#\w+) = (:\w+)$/.exec(term);
      if (!m) throw awsError('ValidationException', `unexpected condition ${term}`);
      return old !== undefined && JSON.stringify(old[names[m[1]]]) === JSON.stringify(values[m[2]]);
    });
    if (!holds) throw conditionFailed(old);
    const item: Item = { ...old };
    const [sets, removes] = input.UpdateExpression!.replace(/^SET /, '').split(' REMOVE ');
    for (const set of sets.split(/, (?=#)/)) {
      const m = /^(#\w+) = (?:(:\w+)|list_append\((#\w+), (:\w+)\))$/.exec(set);
      if (!m) throw awsError('ValidationException', `unexpected update ${set}`);
      item[names[m[1]]] = m[2] ? values[m[2]] : { L: [...(item[names[m[3]]]?.L ?? []), ...values[m[4]].L!] };
    }
    for (const name of removes?.split(', ') ?? []) delete item[names[name]];
    claims.set(token, item);
    return input.ReturnValues === 'ALL_NEW' ? { Attributes: item } : {};
  },
  get(input: GetItemCommandInput) {
    checkExpressions(input, '');
    return { Item: claims.get(input.Key!.Token.S!) };
  },
};

interface ClaimFields {
  readonly state: 'claimed' | 'answered' | 'failed';
  readonly owner: string;
  readonly fence?: number;
  readonly creators?: string[];
  readonly createSentAt?: number;
  readonly answer?: string;
  readonly reason?: string;
  readonly recordedAt?: number;
  /** Epoch seconds. @default a week after START */
  readonly expiresAt?: number;
}

function claimItem(token: string, c: ClaimFields): Item {
  return {
    Token: { S: token },
    State: { S: c.state },
    Owner: { S: c.owner },
    Fence: { N: String(c.fence ?? START) },
    Creators: { L: (c.creators ?? []).map((S) => ({ S })) },
    ExpiresAt: { N: String(c.expiresAt ?? Math.floor(START / 1000) + TTL_S) },
    ...(c.createSentAt === undefined ? {} : { CreateSentAt: { N: String(c.createSentAt) } }),
    ...(c.answer === undefined ? {} : { Answer: { S: c.answer } }),
    ...(c.reason === undefined ? {} : { Reason: { S: c.reason } }),
    ...(c.recordedAt === undefined ? {} : { RecordedAt: { N: String(c.recordedAt) } }),
  };
}

/** Puts the claim another delivery left for this request's token into the table. */
function seed(event: { StackId: string; LogicalResourceId: string; RequestId: string }, c: ClaimFields): string {
  const token = requestToken(event);
  claims.set(token, claimItem(token, c));
  return token;
}

/** The claim of a request as the table holds it (N as numbers, L as arrays). */
function claimOf(token: string): Record<string, unknown> | undefined {
  const item = claims.get(token);
  return item && Object.fromEntries(Object.entries(item).map(([k, v]) => [k, v.S ?? (v.N === undefined ? v.L?.map((e) => e.S) : Number(v.N))]));
}

/**
 * The claim is taken over by another delivery right before this one records its answer, and that
 * delivery has answered `answer` by the time this one reads the claim again.
 */
function takenOverThenAnswered(token: string, answer: unknown) {
  ddbMock.on(UpdateItemCommand).callsFake((input: UpdateItemCommandInput) => {
    if (updateKind(input) === 'answer') claims.set(token, { ...claims.get(token)!, Owner: { S: 'req-2.taker' }, Fence: { N: String(now + FENCE_MS) } });
    return table.update(input);
  });
  ddbMock.on(GetItemCommand).callsFake((input: GetItemCommandInput) => {
    claims.set(token, { ...claims.get(token)!, State: { S: 'answered' }, Answer: { S: JSON.stringify(answer) } });
    return table.get(input);
  });
}

/** The delivery id this run claimed with (the Owner of its first PutItem). */
function deliveryOf(): string {
  return ddbMock.commandCalls(PutItemCommand)[0].args[0].input.Item!.Owner.S!;
}

/** Every call to EC2, CloudFormation and DynamoDB in the order sent; an UpdateItem says what it writes. */
function sequence(): string[] {
  const calls = [...ddbMock.calls(), ...ec2Mock.calls(), ...cfnMock.calls()];
  calls.sort((a, b) => (a.calledBefore(b) ? -1 : 1));
  return calls.map((c) => {
    const command = c.args[0] as { constructor: { name: string }; input: any };
    const name = command.constructor.name.replace(/Command$/, '');
    return name === 'UpdateItem' ? `UpdateItem:${updateKind(command.input)}` : name;
  });
}

function updateKind(input: UpdateItemCommandInput): string {
  const values = input.ExpressionAttributeValues ?? {};
  const set = input.UpdateExpression ?? '';
  // isComplete's record of a failure after the answer (its condition names the answered state).
  if (values[':answered'] && values[':reason']) return 'late-failure';
  if (values[':answered']) return 'answer';
  if (values[':reason']) return 'failure';
  if (set.startsWith('SET #o = :me')) return 'take-over';
  if (set.startsWith('SET #s = :claimed')) return 'reopen';
  if (set.startsWith('SET #cr = :to')) return 'creators';
  if (set.startsWith('SET #f = :fence')) return 'fence';
  throw new Error(`an UpdateItem of no known kind: ${set}`);
}

/** The inputs of the UpdateItems of one kind, in order. */
function updates(kind: string): UpdateItemCommandInput[] {
  return ddbMock.commandCalls(UpdateItemCommand).map((c) => c.args[0].input).filter((input) => updateKind(input) === kind);
}

let now = START;
beforeEach(() => {
  ec2Mock.reset();
  cfnMock.reset();
  ddbMock.reset();
  claims.clear();
  ddbMock.on(PutItemCommand).callsFake(table.put);
  ddbMock.on(UpdateItemCommand).callsFake(table.update);
  ddbMock.on(GetItemCommand).callsFake(table.get);
  // Being created (tests about the stack's status set their own).
  stackStatus('CREATE_IN_PROGRESS');
  now = START;
  clock.now = () => now;
  clock.sleep = async (ms) => {
    now += ms;
  };
});
afterAll(() => Object.assign(clock, realClock));

describe('The claim', () => {
  test('a fault-free Create: PutItem claims, UpdateItem extends the fence and records the creator right before CreateSnapshot, then the answer is recorded', async () => {
    const p = props();
    const event = cfnRequest('Create', p);
    const token = requestToken(event);
    createsSnapshot(A);

    const res = await onEvent(event, context());

    const delivery = deliveryOf();
    expect(delivery).toMatch(/^req-1\.[0-9a-z]+$/);
    // The owner checks that the stack still goes forward, then holds the claim as a creator right before the create.
    expect(sequence()).toEqual(['PutItem', 'DescribeStacks', 'DescribeStackResource', 'UpdateItem:fence', 'CreateSnapshot', 'UpdateItem:answer']);
    expect(ddbMock).toHaveReceivedCommandWith(PutItemCommand, {
      TableName: TABLE,
      Item: {
        Token: { S: token },
        State: { S: 'claimed' },
        Owner: { S: delivery },
        Fence: { N: String(START + FENCE_MS) },
        Creators: { L: [] },
        ExpiresAt: { N: String(START / 1000 + TTL_S) },
      },
      ConditionExpression: 'attribute_not_exists(#k) OR #ttl < :nowS',
      ExpressionAttributeNames: { '#k': 'Token', '#ttl': 'ExpiresAt' },
      ExpressionAttributeValues: { ':nowS': { N: String(START / 1000) } },
      ReturnValuesOnConditionCheckFailure: 'ALL_OLD',
    });
    expect(ddbMock.commandCalls(PutItemCommand)[0].args[0].input).not.toHaveProperty('ConsistentRead');
    expect(ddbMock).toHaveReceivedNthSpecificCommandWith(1, UpdateItemCommand, {
      TableName: TABLE,
      Key: { Token: { S: token } },
      UpdateExpression: 'SET #f = :fence, #c = :now, #cr = list_append(#cr, :me)',
      ConditionExpression: '#o = :owner AND #f = :oldFence AND #s = :claimed',
      ExpressionAttributeNames: { '#o': 'Owner', '#f': 'Fence', '#s': 'State', '#c': 'CreateSentAt', '#cr': 'Creators' },
      ExpressionAttributeValues: {
        ':owner': { S: delivery },
        ':oldFence': { N: String(START + FENCE_MS) },
        ':claimed': { S: 'claimed' },
        ':fence': { N: String(START + FENCE_MS) },
        ':now': { N: String(START) },
        ':me': { L: [{ S: delivery }] },
      },
    });
    expect(ec2Mock).toHaveReceivedCommandWith(CreateSnapshotCommand, {
      VolumeId: VOLUME,
      TagSpecifications: [{ ResourceType: 'snapshot', Tags: madeBy(p, token, delivery) }],
    });
    expect(ddbMock).toHaveReceivedNthSpecificCommandWith(2, UpdateItemCommand, {
      Key: { Token: { S: token } },
      UpdateExpression: 'SET #s = :answered, #a = :answer, #at = :now',
      ConditionExpression: '#o = :me AND #s = :claimed',
      ExpressionAttributeValues: expect.objectContaining({ ':answer': { S: JSON.stringify(res) }, ':me': { S: delivery } }),
    });
    expect(claimOf(token)).toEqual({
      Token: token,
      State: 'answered',
      Owner: delivery,
      Fence: START + FENCE_MS,
      Creators: [delivery],
      CreateSentAt: START,
      Answer: JSON.stringify(res),
      RecordedAt: START,
      ExpiresAt: START / 1000 + TTL_S,
    });
    expect(res).toEqual({
      PhysicalResourceId: A,
      Data: { SnapshotId: A, SnapshotIds: A, VolumeIds: VOLUME, StartTime: T0.toISOString(), SourceFound: 'true', StartedAt: String(START), Origin: 'created' },
    });
  });

  test('a second delivery that finds the claim answered returns the recorded answer verbatim and calls neither EC2 nor CloudFormation', async () => {
    const event = cfnRequest('Create', props());
    // Whatever was recorded is returned as it is, device attributes and start time included.
    const recorded = {
      PhysicalResourceId: `${B}=/dev/xvda`,
      Data: { 'SnapshotId': B, 'SnapshotIds': B, 'VolumeIds': VOLUME, 'StartTime': T0.toISOString(), 'SourceFound': 'true', 'StartedAt': '1795338000000', 'Origin': 'created', 'Device:/dev/xvda': B },
    };
    ddbMock.on(PutItemCommand).rejectsOnce(conditionFailed(claimItem(requestToken(event), {
      state: 'answered', owner: 'req-0.first', answer: JSON.stringify(recorded), recordedAt: START - 1_000,
    })));
    await expect(onEvent(event, context())).resolves.toStrictEqual(recorded);
    expect(ddbMock.calls()).toHaveLength(1);
    expect(ec2Mock.calls()).toHaveLength(0);
    expect(cfnMock.calls()).toHaveLength(0);
  });

  test('two deliveries of one request, one after the other: the second answers exactly what the first did, with one create', async () => {
    const event = cfnRequest('Create', props());
    createsSnapshot(A);
    const first = await onEvent(event, context(300_000, 'req-1'));
    now += 30_000;
    const second = await onEvent(event, context(300_000, 'req-2'));
    expect(second).toStrictEqual(first);
    expect(ec2Mock).toHaveReceivedCommandTimes(CreateSnapshotCommand, 1);
    expect(claimOf(requestToken(event))).toMatchObject({ State: 'answered', Owner: deliveryOf() });
  });

  test('a lost PutItem response: the retry meets a claim naming this delivery and takes it for its own', async () => {
    const event = cfnRequest('Create', props());
    createsSnapshot(A);
    ddbMock.on(PutItemCommand)
      .callsFakeOnce((input: PutItemCommandInput) => {
        table.put(input); // it acted, but the response never came
        throw awsError('ECONNRESET', 'socket hang up', 0);
      })
      .callsFake(table.put);
    const res = await onEvent(event, context());
    expect(ddbMock).toHaveReceivedCommandTimes(PutItemCommand, 2);
    expect(ec2Mock).toHaveReceivedCommandTimes(CreateSnapshotCommand, 1);
    expect(res).toMatchObject({ PhysicalResourceId: A, Data: { Origin: 'created' } });
    expect(claimOf(requestToken(event))).toMatchObject({ State: 'answered', Owner: deliveryOf(), Answer: JSON.stringify(res) });
    expect(ddbMock).not.toHaveReceivedCommand(GetItemCommand);
  });

  test.each(['fence', 'answer'])('a lost UpdateItem response (%s): the retry meets its own write and goes on, with one create', async (kind) => {
    const event = cfnRequest('Create', props());
    createsSnapshot(A);
    let lost = false;
    ddbMock.on(UpdateItemCommand).callsFake((input: UpdateItemCommandInput) => {
      const out = table.update(input);
      if (updateKind(input) === kind && !lost) {
        lost = true;
        throw awsError('ECONNRESET', 'socket hang up', 0);
      }
      return out;
    });
    const res = await onEvent(event, context());
    expect(updates(kind)).toHaveLength(2);
    expect(ec2Mock).toHaveReceivedCommandTimes(CreateSnapshotCommand, 1);
    expect(res).toMatchObject({ PhysicalResourceId: A });
    expect(claimOf(requestToken(event))).toMatchObject({ State: 'answered', Owner: deliveryOf(), Answer: JSON.stringify(res) });
  });

  test('a claim another delivery holds, its fence not passed, is waited for with consistent reads until it is answered', async () => {
    const event = cfnRequest('Create', props());
    const token = seed(event, { state: 'claimed', owner: 'req-0.owner', fence: START + 30_000, creators: ['req-0.owner'], createSentAt: START - 1_000 });
    const recorded = { PhysicalResourceId: B, Data: { SnapshotId: B, Origin: 'created' } };
    let reads = 0;
    ddbMock.on(GetItemCommand).callsFake((input: GetItemCommandInput) => {
      // The owner records its answer before the third read.
      if (++reads === 3) claims.set(token, claimItem(token, { state: 'answered', owner: 'req-0.owner', answer: JSON.stringify(recorded), recordedAt: now }));
      return table.get(input);
    });

    await expect(onEvent(event, context())).resolves.toStrictEqual(recorded);

    expect(ddbMock).toHaveReceivedCommandTimes(GetItemCommand, 3);
    for (const call of ddbMock.commandCalls(GetItemCommand)) {
      expect(call.args[0].input).toEqual({ TableName: TABLE, Key: { Token: { S: token } }, ConsistentRead: true });
    }
    expect(now - START).toBe(3 * 2_000); // polled every 2 s
    expect(ec2Mock.calls()).toHaveLength(0);
    expect(ddbMock).not.toHaveReceivedCommand(UpdateItemCommand);
  });

  test('a waiter whose time runs out records a failure over the owner (so that the owner fails too) and fails with it', async () => {
    const event = cfnRequest('Create', props());
    const token = seed(event, { state: 'claimed', owner: 'req-0.owner', fence: START + 100_000, creators: ['req-0.owner'], createSentAt: START });
    // 40 s left: 10 s to wait after the 30 s kept at the end.
    const err = await rejection(onEvent(event, context(40_000)));
    const reason = WAITER_REASON;
    expect(err).toMatchObject({ message: reason, transient: true });
    expect(now - START).toBeLessThanOrEqual(10_000);
    expect(updates('failure')).toEqual([expect.objectContaining({
      ConditionExpression: '#s = :claimed',
      ExpressionAttributeValues: { ':failed': { S: 'failed' }, ':reason': { S: reason }, ':now': { N: String(now) }, ':claimed': { S: 'claimed' } },
    })]);
    // The owner and the deliveries that may have created stay as they were.
    expect(claimOf(token)).toMatchObject({ State: 'failed', Reason: reason, Owner: 'req-0.owner', Creators: ['req-0.owner'], RecordedAt: now });
    expect(ec2Mock.calls()).toHaveLength(0);
  });

  test('a taker whose stack started rolling back while it created (the owner it replaced failed since) deletes what it made and fails', async () => {
    const event = cfnRequest('Create', props());
    const token = seed(event, { state: 'claimed', owner: 'req-0.gone', fence: START - SKEW_MS - 1 });
    cfnMock.on(DescribeStacksCommand, { StackName: STACK_ID })
      .resolvesOnce({ Stacks: [{ StackName: 'app', StackStatus: 'CREATE_IN_PROGRESS', CreationTime: new Date(START - 60_000) }] })
      .resolves({ Stacks: [{ StackName: 'app', StackStatus: 'ROLLBACK_IN_PROGRESS', CreationTime: new Date(START - 60_000) }] });
    createsSnapshot(A);
    ec2Mock.on(DeleteSnapshotCommand, { SnapshotId: A }).resolves({});
    await expect(onEvent(event, context())).rejects.toThrow(/the stack is ROLLBACK_IN_PROGRESS: CloudFormation has taken this request's outcome from another delivery/);
    expect(deleted()).toEqual([A]);
    expect(claimOf(token)).toMatchObject({ State: 'failed', Creators: [] });
  });

  test('a claim whose fence has passed is taken over (naming the old owner and fence); with no creators the taker creates at once', async () => {
    const p = props();
    const event = cfnRequest('Create', p);
    const oldFence = START - SKEW_MS - 1;
    const token = seed(event, { state: 'claimed', owner: 'req-0.gone', fence: oldFence });
    stackStatus('CREATE_IN_PROGRESS');
    createsSnapshot(A);

    const res = await onEvent(event, context());

    const delivery = deliveryOf();
    // Before it creates, the taker checks that the stack still goes forward.
    expect(sequence()).toEqual([
      'PutItem', 'UpdateItem:take-over', 'DescribeStacks', 'DescribeStackResource', 'UpdateItem:fence', 'CreateSnapshot', 'DescribeStacks', 'DescribeStackResource', 'UpdateItem:answer',
    ]);
    expect(updates('take-over')).toEqual([expect.objectContaining({
      UpdateExpression: 'SET #o = :me, #f = :fence',
      ConditionExpression: '#o = :owner AND #f = :oldFence AND #s = :claimed',
      ExpressionAttributeValues: {
        ':me': { S: delivery }, ':fence': { N: String(START + FENCE_MS) }, ':owner': { S: 'req-0.gone' }, ':oldFence': { N: String(oldFence) }, ':claimed': { S: 'claimed' },
      },
    })]);
    expect(now).toBe(START); // no waiting: nobody may have created
    expect(ec2Mock).toHaveReceivedCommandWith(CreateSnapshotCommand, { TagSpecifications: [{ ResourceType: 'snapshot', Tags: madeBy(p, token, delivery) }] });
    expect(res).toMatchObject({ PhysicalResourceId: A, Data: { Origin: 'created', StartedAt: String(START) } });
    expect(claimOf(token)).toMatchObject({ State: 'answered', Owner: delivery, Creators: [delivery], Answer: JSON.stringify(res) });
  });

  test('the owner\'s fence is honoured for SKEW_MS more before anyone takes over', async () => {
    const event = cfnRequest('Create', props());
    seed(event, { state: 'claimed', owner: 'req-0.gone', fence: START - 5_000 });
    stackStatus('CREATE_IN_PROGRESS');
    createsSnapshot(A);
    let takenOverAt: number | undefined;
    ddbMock.on(UpdateItemCommand).callsFake((input: UpdateItemCommandInput) => {
      if (updateKind(input) === 'take-over') takenOverAt ??= now;
      return table.update(input);
    });
    await onEvent(event, context());
    expect(takenOverAt).toBeGreaterThan(START - 5_000 + SKEW_MS);
    expect(takenOverAt).toBeLessThan(START - 5_000 + SKEW_MS + 2_000);
    expect(ddbMock.commandCalls(GetItemCommand).length).toBeGreaterThanOrEqual(2);
    expect(ec2Mock).toHaveReceivedCommandTimes(CreateSnapshotCommand, 1);
  });

  test('a taker whose earlier owner may have created adopts what it made, found by its delivery tag, and creates nothing', async () => {
    const p = props();
    const event = cfnRequest('Create', p);
    const token = seed(event, { state: 'claimed', owner: 'req-0.gone', fence: START - 60_000, creators: ['req-0.gone'], createSentAt: START - 120_000 });
    const theirs = snap(A, 'pending', madeBy(p, token, 'req-0.gone'));
    // Carries the request's token but no creator's delivery tag: not what the earlier owner made.
    const stranger = snap(C, 'pending', madeBy(p, token, 'req-9.stranger'), { start: new Date(T0.getTime() - 1_000) });
    tokenLookups(token, [stranger, theirs]);

    const res = await onEvent(event, context());

    expect(sequence()).toEqual(['PutItem', 'UpdateItem:take-over', 'UpdateItem:fence', 'DescribeSnapshots', 'DescribeStacks', 'DescribeStackResource', 'UpdateItem:answer']);
    // Holding while it watches, but not as a creator.
    expect(updates('fence')).toEqual([expect.objectContaining({ UpdateExpression: 'SET #f = :fence' })]);
    expect(ec2Mock).toHaveReceivedCommandWith(DescribeSnapshotsCommand, { OwnerIds: ['self'], Filters: [{ Name: `tag:${OWNERSHIP_TAG_KEYS.token}`, Values: [token] }] });
    expect(ec2Mock).not.toHaveReceivedCommand(CreateSnapshotCommand);
    expect(ec2Mock).not.toHaveReceivedCommand(DeleteSnapshotCommand);
    expect(res).toMatchObject({ PhysicalResourceId: A, Data: { SnapshotId: A, Origin: 'created' } });
    expect(claimOf(token)).toMatchObject({ State: 'answered', Owner: deliveryOf(), Creators: ['req-0.gone'], Answer: JSON.stringify(res) });
  });

  test('a taker watches for what the earlier owner may have made until the read-lag window has passed, then creates', async () => {
    const p = props();
    const event = cfnRequest('Create', p);
    const createSentAt = START - READ_LAG_WINDOW_MS + 20_000;
    const token = seed(event, { state: 'claimed', owner: 'req-0.gone', fence: START - 60_000, creators: ['req-0.gone'], createSentAt });
    tokenLookups(token, []);
    stackStatus('UPDATE_IN_PROGRESS', START - 600_000);
    createsSnapshot(A);

    const res = await onEvent(event, context());

    expect(res).toMatchObject({ PhysicalResourceId: A, Data: { Origin: 'created' } });
    expect(now).toBeGreaterThanOrEqual(createSentAt + READ_LAG_WINDOW_MS + SKEW_MS);
    const calls = sequence();
    expect(calls.filter((c) => c === 'DescribeSnapshots').length).toBeGreaterThanOrEqual(3);
    expect(calls.slice(-7)).toEqual(['DescribeStacks', 'DescribeStackResource', 'UpdateItem:fence', 'CreateSnapshot', 'DescribeStacks', 'DescribeStackResource', 'UpdateItem:answer']);
    expect(claimOf(token)).toMatchObject({ State: 'answered', Creators: ['req-0.gone', deliveryOf()] });
  });

  test('a taker without the time to watch the whole window fails clearly, creating nothing and recording nothing', async () => {
    const event = cfnRequest('Create', props());
    const token = seed(event, { state: 'claimed', owner: 'req-0.gone', fence: START - 60_000, creators: ['req-0.gone'], createSentAt: START - 10_000 });
    tokenLookups(token, []);
    await expect(onEvent(event, context(120_000))).rejects.toMatchObject({
      message: expect.stringMatching(/^an earlier delivery of this request stopped after it may have created a snapshot, .*no second snapshot was taken\. Deploy again/),
      transient: true,
    });
    expect(ec2Mock).not.toHaveReceivedCommand(CreateSnapshotCommand);
    expect(ec2Mock).not.toHaveReceivedCommand(DeleteSnapshotCommand);
    // Still claimed (by the taker) with the earlier creator: a later delivery watches again.
    expect(claimOf(token)).toMatchObject({ State: 'claimed', Owner: deliveryOf(), Creators: ['req-0.gone'] });
  });

  test('a taker whose earlier owners both created keeps the oldest snapshot per volume and deletes the other', async () => {
    const p = props();
    const event = cfnRequest('Create', p);
    const token = seed(event, { state: 'claimed', owner: 'req-1.gone', fence: START - 60_000, creators: ['req-0.gone', 'req-1.gone'], createSentAt: START - 120_000 });
    const first = snap(A, 'pending', madeBy(p, token, 'req-0.gone'), { start: new Date(T0.getTime() - 60_000) });
    const second = snap(B, 'pending', madeBy(p, token, 'req-1.gone'));
    tokenLookups(token, [second, first]);
    ec2Mock.on(DeleteSnapshotCommand, { SnapshotId: B }).resolves({});
    const res = await onEvent(event, context());
    expect(res.PhysicalResourceId).toBe(A);
    expect(deleted()).toEqual([B]);
    expect(ec2Mock).not.toHaveReceivedCommand(CreateSnapshotCommand);
  });

  test('a taker that finds what the earlier owner made in error fails, deletes it, and records the failure', async () => {
    const p = props();
    const event = cfnRequest('Create', p);
    const token = seed(event, { state: 'claimed', owner: 'req-0.gone', fence: START - 60_000, creators: ['req-0.gone'], createSentAt: START - 120_000 });
    tokenLookups(token, [{ ...snap(A, 'error', madeBy(p, token, 'req-0.gone')), StateMessage: 'internal' }]);
    ec2Mock.on(DeleteSnapshotCommand, { SnapshotId: A }).resolves({});
    await expect(onEvent(event, context())).rejects.toThrow(/^EBS snapshot snap-0000000000000000a failed: internal; the snapshots this request made have been deleted$/);
    expect(deleted()).toEqual([A]);
    expect(ec2Mock).not.toHaveReceivedCommand(CreateSnapshotCommand);
    expect(claimOf(token)).toMatchObject({ State: 'failed', Creators: [] });
  });

  test('a taker that fails before it could look for what the earlier owner made keeps that owner among the creators', async () => {
    const event = cfnRequest('Create', props());
    const token = seed(event, { state: 'claimed', owner: 'req-0.gone', fence: START - 60_000, creators: ['req-0.gone'], createSentAt: START - 10_000 });
    ec2Mock.on(DescribeSnapshotsCommand).rejects(awsError('UnauthorizedOperation', 'not allowed', 403));
    await expect(onEvent(event, context())).rejects.toThrow(/^Reading the snapshots of this request: UnauthorizedOperation: not allowed$/);
    expect(claimOf(token)).toMatchObject({ State: 'failed', Creators: ['req-0.gone'] });
  });

  test.each(['UPDATE_ROLLBACK_IN_PROGRESS', 'ROLLBACK_IN_PROGRESS', 'UPDATE_COMPLETE'])(
    'a taker creates nothing once the stack no longer goes forward (%s): CloudFormation took another delivery\'s outcome', async (status) => {
      const event = cfnRequest('Create', props());
      const token = seed(event, { state: 'claimed', owner: 'req-0.gone', fence: START - 60_000 });
      stackStatus(status, START - 30_000);
      const reason = `the stack is ${status}: CloudFormation has taken this request's outcome from another delivery, so no snapshot was taken`;
      await expect(onEvent(event, context())).rejects.toMatchObject({ message: reason });
      expect(ec2Mock.calls()).toHaveLength(0);
      expect(claimOf(token)).toMatchObject({ State: 'failed', Reason: reason, Owner: deliveryOf() });
    });

  test('a fence extension that lands late (a slow write) is extended again before the create', async () => {
    const event = cfnRequest('Create', props());
    createsSnapshot(A);
    let slow = 1;
    ddbMock.on(UpdateItemCommand).callsFake((input: UpdateItemCommandInput) => {
      if (updateKind(input) === 'fence' && slow-- > 0) now += 70_000; // less than half of the 120 s fence is left when it lands
      return table.update(input);
    });
    await onEvent(event, context());
    expect(sequence()).toEqual(['PutItem', 'DescribeStacks', 'DescribeStackResource', 'UpdateItem:fence', 'UpdateItem:fence', 'CreateSnapshot', 'UpdateItem:answer']);
    expect(claimOf(requestToken(event))).toMatchObject({ State: 'answered', Fence: START + 70_000 + FENCE_MS });
  });

  test('a fence that cannot be extended in time in three tries fails the request without creating', async () => {
    const event = cfnRequest('Create', props());
    ddbMock.on(UpdateItemCommand).callsFake((input: UpdateItemCommandInput) => {
      if (updateKind(input) === 'fence') now += 70_000;
      return table.update(input);
    });
    await expect(onEvent(event, context())).rejects.toMatchObject({
      message: 'the claim of this request could not be held (its table answered too slowly); deploy again', transient: true,
    });
    expect(ec2Mock).not.toHaveReceivedCommand(CreateSnapshotCommand);
    // The failure is recorded for every delivery; the create was never sent, so this delivery is no creator.
    expect(sequence()).toEqual(['PutItem', 'DescribeStacks', 'DescribeStackResource', 'UpdateItem:fence', 'UpdateItem:fence', 'UpdateItem:fence', 'UpdateItem:failure', 'GetItem']);
    expect(claimOf(requestToken(event))).toMatchObject({
      State: 'failed', Owner: deliveryOf(), Reason: 'the claim of this request could not be held (its table answered too slowly); deploy again', Creators: [],
    });
    expect(ec2Mock).not.toHaveReceivedCommand(DeleteSnapshotCommand);
  });

  test('a waiter whose reads of the claim fail records its failure over the owner still at work, so that both fail alike', async () => {
    const event = cfnRequest('Create', props());
    const token = seed(event, { state: 'claimed', owner: 'req-0.owner', fence: START + 100_000, creators: ['req-0.owner'], createSentAt: START });
    // Throttled for 25 s: the waiter's read gives up (20 s of retries), the last look before failing gets through.
    ddbMock.on(GetItemCommand).callsFake((input: GetItemCommandInput) => {
      if (now < START + 25_000) throw awsError('ThrottlingException', 'Rate of requests exceeds the allowed throughput');
      return table.get(input);
    });
    // Retry delays without jitter, so that which read gets through does not depend on chance.
    const random = jest.spyOn(Math, 'random').mockReturnValue(0.5);
    const err = await rejection(onEvent(event, context())).finally(() => random.mockRestore());
    // Throttling is no network error: no VPC hint.
    expect(err.message).toBe('Reading the claim of this request (DynamoDB table app-claims): ThrottlingException: Rate of requests exceeds the allowed throughput. Deploy again.');
    expect(updates('failure')).toEqual([expect.objectContaining({ ConditionExpression: '#s = :claimed' })]);
    expect(claimOf(token)).toMatchObject({ State: 'failed', Reason: err.message, Owner: 'req-0.owner', Creators: ['req-0.owner'] });
    expect(ec2Mock.calls()).toHaveLength(0);
  });

  test('an owner whose record acted but whose response never came answers what the claim holds, keeping its snapshot', async () => {
    const event = cfnRequest('Create', props());
    createsSnapshot(A);
    let answers = 0;
    ddbMock.on(UpdateItemCommand).callsFake((input: UpdateItemCommandInput) => {
      if (updateKind(input) !== 'answer') return table.update(input);
      if (++answers === 1) table.update(input); // it acted; then the network to DynamoDB failed for a while
      throw awsError('ECONNRESET', 'socket hang up', 0);
    });
    const res = await onEvent(event, context());
    expect(answers).toBeGreaterThan(1);
    expect(res).toMatchObject({ PhysicalResourceId: A, Data: { Origin: 'created' } });
    expect(JSON.stringify(res)).toBe(claimOf(requestToken(event))!.Answer);
    expect(ec2Mock).not.toHaveReceivedCommand(DeleteSnapshotCommand);
    expect(sequence().slice(-1)).toEqual(['GetItem']);
  });

  test('the first owner creates nothing once the stack no longer goes forward, and records why', async () => {
    const event = cfnRequest('Create', props());
    stackStatus('ROLLBACK_IN_PROGRESS');
    const reason = 'the stack is ROLLBACK_IN_PROGRESS: CloudFormation has taken this request\'s outcome from another delivery, so no snapshot was taken';
    await expect(onEvent(event, context())).rejects.toMatchObject({ message: reason });
    expect(ec2Mock.calls()).toHaveLength(0);
    expect(claimOf(requestToken(event))).toMatchObject({ State: 'failed', Reason: reason, Creators: [] });
  });

  test('the first owner creates when the stack status cannot be read; a taker does not', async () => {
    cfnMock.on(DescribeStacksCommand).rejects(awsError('AccessDenied', 'not authorized', 403));
    createsSnapshot(A);
    await expect(onEvent(cfnRequest('Create', props()), context())).resolves.toMatchObject({ PhysicalResourceId: A });

    ec2Mock.resetHistory();
    const event = cfnRequest('Create', props());
    seed(event, { state: 'claimed', owner: 'req-0.gone', fence: START - 60_000 });
    await expect(onEvent(event, context())).rejects.toThrow(/^the stack's status could not be read: .*so no snapshot was taken$/);
    expect(ec2Mock).not.toHaveReceivedCommand(CreateSnapshotCommand);
  });

  test('a claim past its expiry counts as none: the delivery claims the request afresh', async () => {
    const event = cfnRequest('Create', props());
    const token = seed(event, { state: 'answered', owner: 'req-0.old', answer: '{"PhysicalResourceId":"snap-0000000000000000f"}', expiresAt: START / 1000 - 1 });
    createsSnapshot(A);
    const res = await onEvent(event, context());
    expect(res.PhysicalResourceId).toBe(A);
    expect(claimOf(token)).toMatchObject({ State: 'answered', Owner: deliveryOf(), Answer: JSON.stringify(res) });
  });

  test('a waiter whose time runs out just as the owner answers returns that answer', async () => {
    const event = cfnRequest('Create', props());
    const token = seed(event, { state: 'claimed', owner: 'req-0.owner', fence: START + 100_000, creators: ['req-0.owner'], createSentAt: START });
    const recorded = { PhysicalResourceId: B, Data: { SnapshotId: B, Origin: 'created' } };
    ddbMock.on(UpdateItemCommand).callsFake((input: UpdateItemCommandInput) => {
      // The owner's record lands just before the waiter's failure.
      if (updateKind(input) === 'failure') claims.set(token, { ...claims.get(token)!, State: { S: 'answered' }, Answer: { S: JSON.stringify(recorded) } });
      return table.update(input);
    });
    await expect(onEvent(event, context(40_000))).resolves.toStrictEqual(recorded);
    expect(updates('failure')).toHaveLength(1);
    expect(claimOf(token)).toMatchObject({ State: 'answered' });
  });

  test('two deliveries taking over at once: the one that loses waits for the other\'s answer', async () => {
    const event = cfnRequest('Create', props());
    const token = seed(event, { state: 'claimed', owner: 'req-0.gone', fence: START - 60_000 });
    const recorded = { PhysicalResourceId: B, Data: { SnapshotId: B, Origin: 'created' } };
    ddbMock.on(UpdateItemCommand).callsFake((input: UpdateItemCommandInput) => {
      if (updateKind(input) === 'take-over') claims.set(token, { ...claims.get(token)!, Owner: { S: 'req-3.other' }, Fence: { N: String(now + FENCE_MS) } });
      return table.update(input);
    });
    ddbMock.on(GetItemCommand).callsFake((input: GetItemCommandInput) => {
      claims.set(token, { ...claims.get(token)!, State: { S: 'answered' }, Answer: { S: JSON.stringify(recorded) } });
      return table.get(input);
    });
    await expect(onEvent(event, context())).resolves.toStrictEqual(recorded);
    expect(ec2Mock.calls()).toHaveLength(0);
  });

  test('a delivery that fails before its claim could be written records the failure, so that later deliveries fail alike', async () => {
    const event = cfnRequest('Create', props());
    const token = requestToken(event);
    // The claim put stays throttled; the table works again for the failure record.
    ddbMock.on(PutItemCommand).callsFake((input: PutItemCommandInput) => {
      if (input.Item!.State.S === 'claimed') throw awsError('ThrottlingException', 'Rate of requests exceeds the allowed throughput');
      return table.put(input);
    });
    const err = await rejection(onEvent(event, context()));
    expect(err.message).toMatch(/^Claiming this request \(no snapshot was taken\) \(DynamoDB table app-claims\): ThrottlingException/);
    expect(ec2Mock.calls()).toHaveLength(0);
    expect(claimOf(token)).toMatchObject({ State: 'failed', Owner: '', Reason: err.message, Creators: [] });

    ddbMock.on(PutItemCommand).callsFake(table.put);
    createsSnapshot(A);
    await expect(onEvent(event, context(300_000, 'req-2'))).rejects.toMatchObject({ message: err.message });
    expect(ec2Mock.calls()).toHaveLength(0);
  });

  const FAILED = 'EC2 could not find volume vol-0123456789abcdef0 (InvalidVolume.NotFound): does it exist in this account and region?';

  test.each([
    ['in the same operation', 'UPDATE_IN_PROGRESS', START - 600_000],
    ['less than SKEW_MS before the operation began', 'UPDATE_IN_PROGRESS', START - 60_000 + SKEW_MS],
    ['before a rollback began (a rollback never retries)', 'UPDATE_ROLLBACK_IN_PROGRESS', START - 30_000],
    ['before a cleanup began', 'UPDATE_COMPLETE_CLEANUP_IN_PROGRESS', START - 30_000],
    ['while the stack is not in progress', 'UPDATE_COMPLETE', START - 30_000],
  ])('a failure recorded %s fails the duplicate with the same reason, creating nothing', async (_, status, lastUpdated) => {
    const event = cfnRequest('Create', props());
    const token = seed(event, { state: 'failed', owner: 'req-0.first', reason: FAILED, recordedAt: START - 60_000 });
    stackStatus(status, lastUpdated);
    await expect(onEvent(event, context())).rejects.toMatchObject({ message: FAILED });
    expect(cfnMock).toHaveReceivedCommandWith(DescribeStacksCommand, { StackName: STACK_ID });
    expect(ec2Mock.calls()).toHaveLength(0);
    expect(ddbMock).not.toHaveReceivedCommand(UpdateItemCommand);
    expect(claimOf(token)).toMatchObject({ State: 'failed', Reason: FAILED });
  });

  test('a recorded failure stays final when the stack cannot be read', async () => {
    const event = cfnRequest('Create', props());
    seed(event, { state: 'failed', owner: 'req-0.first', reason: FAILED, recordedAt: START - 3_600_000 });
    cfnMock.on(DescribeStacksCommand).rejects(awsError('AccessDenied', 'not authorized', 403));
    await expect(onEvent(event, context())).rejects.toMatchObject({ message: FAILED });
    expect(ec2Mock.calls()).toHaveLength(0);
  });

  test('a failure recorded before the stack\'s current (forward) operation began reopens: this delivery owns the request and creates', async () => {
    const p = props();
    const event = cfnRequest('Create', p);
    const recordedAt = START - 3_600_000;
    const token = seed(event, { state: 'failed', owner: 'req-0.first', reason: FAILED, recordedAt });
    stackStatus('UPDATE_IN_PROGRESS', START - 60_000);
    createsSnapshot(A);

    const res = await onEvent(event, context());

    const delivery = deliveryOf();
    expect(sequence()).toEqual([
      'PutItem', 'DescribeStacks', 'UpdateItem:reopen', 'DescribeStacks', 'DescribeStackResource', 'UpdateItem:fence', 'CreateSnapshot', 'DescribeStacks', 'DescribeStackResource', 'UpdateItem:answer',
    ]);
    expect(updates('reopen')).toEqual([expect.objectContaining({
      UpdateExpression: 'SET #s = :claimed, #o = :me, #f = :fence, #ro = :now REMOVE #r, #at',
      ConditionExpression: '#s = :failed AND #at = :recordedAt',
      ExpressionAttributeValues: {
        ':claimed': { S: 'claimed' },
        ':failed': { S: 'failed' },
        ':me': { S: delivery },
        ':fence': { N: String(START + FENCE_MS) },
        ':recordedAt': { N: String(recordedAt) },
        ':now': { N: String(START) },
      },
    })]);
    expect(res).toMatchObject({ PhysicalResourceId: A, Data: { Origin: 'created' } });
    const claim = claimOf(token);
    expect(claim).toMatchObject({ State: 'answered', Owner: delivery, Answer: JSON.stringify(res) });
    expect(claim).not.toHaveProperty('Reason');
  });

  test('a missing claim table fails at once with a clear reason, and no snapshot is taken', async () => {
    const event = cfnRequest('Create', props());
    ddbMock.on(PutItemCommand).rejects(awsError('ResourceNotFoundException', 'Requested resource not found'));
    ddbMock.on(GetItemCommand).rejects(awsError('ResourceNotFoundException', 'Requested resource not found'));
    await expect(onEvent(event, context())).rejects.toMatchObject({
      message: 'Claiming this request (no snapshot was taken): the claim table app-claims does not exist (it is deleted with the stack)',
    });
    expect(ddbMock).toHaveReceivedCommandTimes(PutItemCommand, 1);
    expect(ddbMock).toHaveReceivedCommandTimes(GetItemCommand, 1); // the last look before failing
    expect(ec2Mock.calls()).toHaveLength(0);
  });

  test('a throttled claim table is retried for 20 s, then fails with a clear, transient reason; no snapshot is taken', async () => {
    const event = cfnRequest('Create', props());
    ddbMock.on(PutItemCommand).rejects(awsError('ThrottlingException', 'Rate of requests exceeds the allowed throughput'));
    ddbMock.on(GetItemCommand).rejects(awsError('ThrottlingException', 'Rate of requests exceeds the allowed throughput'));
    await expect(onEvent(event, context())).rejects.toMatchObject({
      message: 'Claiming this request (no snapshot was taken) (DynamoDB table app-claims): ThrottlingException: Rate of requests exceeds the allowed throughput. Deploy again.',
      transient: true,
    });
    expect(ddbMock.commandCalls(PutItemCommand).length).toBeGreaterThan(1);
    // 20 s of retries for the claim, and as many for the last look at it before failing.
    expect(now - START).toBeLessThanOrEqual(40_000);
    expect(ec2Mock.calls()).toHaveLength(0);
  });

  test('a handler without CLAIM_TABLE_NAME fails clearly and takes no snapshot', async () => {
    const saved = process.env.CLAIM_TABLE_NAME;
    delete process.env.CLAIM_TABLE_NAME;
    try {
      await expect(onEvent(cfnRequest('Create', props()), context())).rejects.toThrow(/^the handler has no CLAIM_TABLE_NAME \(the stack's claim table\): no snapshot was taken$/);
    } finally {
      process.env.CLAIM_TABLE_NAME = saved;
    }
    expect(ddbMock.calls()).toHaveLength(0);
    expect(ec2Mock.calls()).toHaveLength(0);
  });

  test('an owner whose record finds the claim failed by a waiter deletes what it made and fails with the waiter\'s reason', async () => {
    const event = cfnRequest('Create', props());
    const token = requestToken(event);
    const waiterReason = WAITER_REASON;
    createsSnapshot(A);
    ec2Mock.on(DeleteSnapshotCommand, { SnapshotId: A }).resolves({});
    stackStatus('UPDATE_IN_PROGRESS', START - 600_000);
    ddbMock.on(UpdateItemCommand).callsFake((input: UpdateItemCommandInput) => {
      if (updateKind(input) === 'answer') {
        // A waiter whose time ran out recorded its failure just before.
        claims.set(token, { ...claims.get(token)!, State: { S: 'failed' }, Reason: { S: waiterReason }, RecordedAt: { N: String(now) } });
      }
      return table.update(input);
    });

    await expect(onEvent(event, context())).rejects.toMatchObject({ message: waiterReason });

    // It drops itself from the creators (on condition the claim is still that failure) before it deletes.
    expect(sequence()).toEqual([
      'PutItem', 'DescribeStacks', 'DescribeStackResource', 'UpdateItem:fence', 'CreateSnapshot', 'UpdateItem:answer', 'UpdateItem:creators', 'DeleteSnapshot', 'DescribeStacks', 'GetItem',
    ]);
    expect(updates('creators')).toEqual([expect.objectContaining({
      UpdateExpression: 'SET #cr = :to',
      ConditionExpression: '#s = :failed AND #at = :recordedAt AND #cr = :from',
      ExpressionAttributeValues: {
        ':from': { L: [{ S: deliveryOf() }] }, ':to': { L: [] }, ':failed': { S: 'failed' }, ':recordedAt': { N: String(claimOf(token)!.RecordedAt) },
      },
    })]);
    expect(deleted()).toEqual([A]);
    // Deleted, so no longer one whose snapshots may exist.
    expect(claimOf(token)).toMatchObject({ State: 'failed', Reason: waiterReason, Creators: [] });
  });

  test('an owner whose record finds the claim taken over keeps what it made (the taker adopts it) and answers the taker\'s answer', async () => {
    const event = cfnRequest('Create', props());
    const token = requestToken(event);
    createsSnapshot(A);
    const takers = { PhysicalResourceId: A, Data: { SnapshotId: A, Origin: 'created', StartedAt: String(START + 1) } };
    // Its fence passed while it was stalled: another delivery took over just before.
    takenOverThenAnswered(token, takers);

    await expect(onEvent(event, context())).resolves.toStrictEqual(takers);
    expect(ec2Mock).not.toHaveReceivedCommand(DeleteSnapshotCommand);
    expect(ec2Mock).toHaveReceivedCommandTimes(CreateSnapshotCommand, 1);
  });

  test('an owner that fails before its create records the failure, with no creators left', async () => {
    const event = cfnRequest('Create', props());
    ec2Mock.on(CreateSnapshotCommand).rejects(awsError('InvalidVolume.NotFound', 'The volume \'vol-0123456789abcdef0\' does not exist.'));
    await expect(onEvent(event, context())).rejects.toMatchObject({ message: FAILED, transient: false });
    // The failure is recorded at once (nothing to delete); a last look at the claim before failing finds it so.
    expect(sequence()).toEqual(['PutItem', 'DescribeStacks', 'DescribeStackResource', 'UpdateItem:fence', 'CreateSnapshot', 'UpdateItem:failure', 'GetItem']);
    // This delivery's refused create made nothing: it drops out of the creators with the failure.
    expect(updates('failure')).toEqual([expect.objectContaining({
      ConditionExpression: '#o = :me AND #s = :claimed',
      ExpressionAttributeValues: expect.objectContaining({ ':me': { S: deliveryOf() }, ':creators': { L: [] }, ':reason': { S: FAILED } }),
    })]);
    expect(claimOf(requestToken(event))).toMatchObject({ State: 'failed', Reason: FAILED, Owner: deliveryOf(), Creators: [] });
    expect(ec2Mock).not.toHaveReceivedCommand(DeleteSnapshotCommand);
  });

  test('an owner whose create was refused leaves no creators: a retry soon after, in a later forward operation, creates at once', async () => {
    const event = cfnRequest('Create', props());
    const token = requestToken(event);
    let creates = 0;
    ec2Mock.on(CreateSnapshotCommand).callsFake(async (input: CreateSnapshotCommandInput) => {
      if (++creates === 1) throw awsError('InvalidVolume.NotFound', 'The volume \'vol-0123456789abcdef0\' does not exist.');
      return snap(A, 'pending', input.TagSpecifications![0].Tags);
    });
    await expect(onEvent(event, context())).rejects.toMatchObject({ message: FAILED });
    expect(claimOf(token)).toMatchObject({ State: 'failed', Creators: [] }); // fails: [this delivery]

    now = START + 60_000;
    stackStatus('UPDATE_IN_PROGRESS', START + 30_000);
    tokenLookups(token, []);
    await expect(onEvent(event, context(300_000, 'req-2'))).resolves.toMatchObject({ PhysicalResourceId: A, Data: { Origin: 'created' } });
    expect(now - START - 60_000).toBeLessThan(READ_LAG_WINDOW_MS / 10);
  });

  test('a late delivery of a forward Update, while the stack rolls back, answers what its claim says (not as a rollback)', async () => {
    const old = props({ Trigger: 'r1' });
    const event = cfnRequest('Update', props({ Trigger: 'r2' }), { PhysicalResourceId: A, OldResourceProperties: old });
    const recorded = { PhysicalResourceId: B, Data: { SnapshotId: B, Origin: 'created' } };
    seed(event, { state: 'answered', owner: 'req-0.first', answer: JSON.stringify(recorded), recordedAt: START - 1_000 });
    stackStatus('UPDATE_ROLLBACK_IN_PROGRESS', START - 60_000);
    await expect(onEvent(event, context())).resolves.toStrictEqual(recorded);
    expect(ec2Mock.calls()).toHaveLength(0);
  });

  test('a rollback, a Delete and a successful isComplete never write to the claim table (only a failure isComplete meets is recorded)', async () => {
    const p = props({ Trigger: 'r1' });
    stackStatus('UPDATE_ROLLBACK_IN_PROGRESS', START - 60_000);
    ec2Mock.on(DescribeSnapshotsCommand, { SnapshotIds: [A] }).resolves({ Snapshots: [snap(A, 'completed', ours(p, 't'))] });
    ec2Mock.on(DescribeSnapshotsCommand, { OwnerIds: ['self'] }).resolves({ Snapshots: [] });
    await onEvent(cfnRequest('Update', p, { PhysicalResourceId: A, OldResourceProperties: props({ Trigger: 'r2' }) }), context());
    await onEvent(cfnRequest('Delete', p, { PhysicalResourceId: A }), context());
    await isComplete(cfnRequest('Create', p, { PhysicalResourceId: A, Data: { Origin: 'created', StartedAt: String(START) } }));
    // A rollback reads whether its request has a claim (a late delivery of a forward one), and writes nothing.
    expect(ddbMock.calls().map((c) => c.args[0].constructor.name).filter((n) => n !== 'GetItemCommand')).toEqual([]);
  });
});

describe('Create from a volume', () => {
  test('CreateSnapshot with user, ownership and delivery tags and a default description; StartedAt is when onEvent began', async () => {
    const p = props({ Tags: '{"team":"data"}' });
    const event = cfnRequest('Create', p);
    const token = requestToken(event);
    createsSnapshot(A);
    const res = await onEvent(event, context());
    expect(ec2Mock).toHaveReceivedCommandTimes(CreateSnapshotCommand, 1);
    expect(ec2Mock).toHaveReceivedCommandWith(CreateSnapshotCommand, {
      VolumeId: VOLUME,
      Description: `cdk-storage-snapshots: ${LOGICAL_ID} in app`,
      TagSpecifications: [{ ResourceType: 'snapshot', Tags: [{ Key: 'team', Value: 'data' }, ...madeBy(p, token, deliveryOf())] }],
    });
    expect(ec2Mock).not.toHaveReceivedCommand(DescribeSnapshotsCommand); // nothing to watch: the create answered
    expect(res.Data).toMatchObject({ StartedAt: String(START), Origin: 'created' });
  });

  test('without a Lambda context the delivery id is the start time in base 36 and a random part', async () => {
    createsSnapshot(A);
    await onEvent(cfnRequest('Create', props()));
    expect(deliveryOf()).toMatch(new RegExp(`^${START.toString(36)}\\.[0-9a-z]+$`));
    expect(createdTags()).toContainEqual({ Key: DELIVERY_TAG, Value: deliveryOf() });
  });

  test('a user tag cannot forge our ownership or delivery tags', async () => {
    const p = props({ Tags: JSON.stringify({ [OWNERSHIP_TAG_KEYS.owner]: 'Forged', [DELIVERY_TAG]: 'forged' }) });
    const event = cfnRequest('Create', p);
    createsSnapshot(A);
    await onEvent(event, context());
    expect(createdTags()).toEqual(madeBy(p, requestToken(event), deliveryOf()));
  });

  test('the description and Outpost are passed on', async () => {
    const p = props({ Description: 'before release 42', OutpostArn: 'arn:aws:outposts:us-east-1:111111111111:outpost/op-0123456789abcdef0' });
    createsSnapshot(A);
    await onEvent(cfnRequest('Create', p), context());
    expect(ec2Mock).toHaveReceivedCommandWith(CreateSnapshotCommand, { Description: 'before release 42', OutpostArn: p.OutpostArn });
  });

  test.each(['SnapshotCreationPerVolumeRateExceeded', 'ConcurrentSnapshotLimitExceeded', 'RequestLimitExceeded'])('%s is retried with backoff, the fence extended before each attempt', async (code) => {
    const event = cfnRequest('Create', props());
    let calls = 0;
    ec2Mock.on(CreateSnapshotCommand).callsFake(async (input: CreateSnapshotCommandInput) => {
      if (++calls === 1) throw awsError(code);
      return snap(A, 'pending', input.TagSpecifications![0].Tags);
    });
    const res = await onEvent(event, context());
    expect(ec2Mock).toHaveReceivedCommandTimes(CreateSnapshotCommand, 2);
    expect(now).toBeGreaterThan(START); // it waited before trying again
    expect(sequence()).toEqual(['PutItem', 'DescribeStacks', 'DescribeStackResource', 'UpdateItem:fence', 'CreateSnapshot', 'UpdateItem:fence', 'CreateSnapshot', 'UpdateItem:answer']);
    expect(res.PhysicalResourceId).toBe(A);
    expect(claimOf(requestToken(event))).toMatchObject({ State: 'answered', Creators: [deliveryOf()] });
  });

  test.each([
    ['SnapshotCreationPerVolumeRateExceeded', /^EC2 kept refusing a snapshot of volume vol-0123456789abcdef0 for 225 seconds: SnapshotCreationPerVolumeRateExceeded \(snapshots of one volume must be at least 15 seconds apart\)/],
    ['ConcurrentSnapshotLimitExceeded', /^EC2 kept refusing a snapshot of volume vol-0123456789abcdef0 for 225 seconds: ConcurrentSnapshotLimitExceeded \(at most 5 pending snapshots/],
  ])('%s past the time budget fails with a clear reason, recorded for every delivery', async (code, reason) => {
    const event = cfnRequest('Create', props());
    ec2Mock.on(CreateSnapshotCommand).rejects(awsError(code));
    await expect(onEvent(event)).rejects.toThrow(reason);
    expect(ec2Mock.commandCalls(CreateSnapshotCommand).length).toBeGreaterThanOrEqual(2);
    expect(now - START).toBeLessThanOrEqual(225_000);
    expect(claimOf(requestToken(event))).toMatchObject({ State: 'failed', Reason: expect.stringMatching(reason) });
  });

  test('a missing volume fails at once with a clear reason', async () => {
    const event = cfnRequest('Create', props());
    ec2Mock.on(CreateSnapshotCommand).rejects(awsError('InvalidVolume.NotFound', "The volume 'vol-0123456789abcdef0' does not exist."));
    await expect(onEvent(event, context())).rejects.toThrow(
      /^EC2 could not find volume vol-0123456789abcdef0 \(InvalidVolume.NotFound\): does it exist in this account and region\?$/,
    );
    expect(ec2Mock).toHaveReceivedCommandTimes(CreateSnapshotCommand, 1);
    expect(ec2Mock).not.toHaveReceivedCommand(DeleteSnapshotCommand);
  });

  test.each([0, 50_000, 90_000])('a lost CreateSnapshot response whose snapshot shows in reads after %d ms: adopted by its delivery tag, never sent again', async (lagMs) => {
    const p = props();
    const event = cfnRequest('Create', p);
    const token = requestToken(event);
    let made: Snapshot | undefined;
    let createdAt = 0;
    ec2Mock.on(CreateSnapshotCommand).callsFake(async (input: CreateSnapshotCommandInput) => {
      made = snap(A, 'pending', input.TagSpecifications![0].Tags);
      createdAt = now;
      throw awsError('ECONNRESET', 'socket hang up', 0);
    });
    // A snapshot with the request's token made by another delivery: not what this create made.
    const other = snap(C, 'pending', madeBy(p, token, 'req-9.other'), { start: new Date(T0.getTime() - 1_000) });
    ec2Mock.on(DescribeSnapshotsCommand, { OwnerIds: ['self'], Filters: [{ Name: `tag:${OWNERSHIP_TAG_KEYS.token}`, Values: [token] }] })
      .callsFake(async () => ({ Snapshots: made && now - createdAt >= lagMs ? [other, made] : [other] }));

    const res = await onEvent(event, context());

    expect(ec2Mock).toHaveReceivedCommandTimes(CreateSnapshotCommand, 1);
    expect(res).toMatchObject({ PhysicalResourceId: A, Data: { Origin: 'created' } });
    expect(ec2Mock).not.toHaveReceivedCommand(DeleteSnapshotCommand);
    // Every read held the claim first (a fence extension that records no create).
    expect(updates('fence').slice(1).every((u) => u.UpdateExpression === 'SET #f = :fence')).toBe(true);
    expect(claimOf(token)).toMatchObject({ State: 'answered', Answer: JSON.stringify(res) });
  });

  test('after a lost response the create is never sent again: reads are watched until the time is up, then a clear failure that records nothing', async () => {
    const event = cfnRequest('Create', props());
    const token = requestToken(event);
    tokenLookups(token, []); // what the lost create made never shows
    ec2Mock.on(CreateSnapshotCommand).rejects(awsError('ECONNRESET', 'socket hang up', 0));
    await expect(onEvent(event)).rejects.toMatchObject({
      message: expect.stringMatching(
        /^EC2 CreateSnapshot on volume vol-0123456789abcdef0 may have acted \(socket hang up\), and no snapshot of this request showed in reads within \d+ seconds\. It was not sent again/),
      transient: true,
    });
    expect(ec2Mock).toHaveReceivedCommandTimes(CreateSnapshotCommand, 1);
    expect(ec2Mock).not.toHaveReceivedCommand(DeleteSnapshotCommand);
    expect(now - START).toBeGreaterThan(150_000); // it kept looking for most of its budget (225 s)
    expect(now - START).toBeLessThanOrEqual(5 * 60_000 - 30_000); // and answered inside onEvent's 5 minutes
    // Still claimed, with this delivery as a creator: a take-over watches for what it made.
    expect(claimOf(token)).toMatchObject({ State: 'claimed', Owner: deliveryOf(), Creators: [deliveryOf()] });
    expect(ddbMock).not.toHaveReceivedCommandWith(UpdateItemCommand, { ExpressionAttributeValues: expect.objectContaining({ ':failed': { S: 'failed' } }) });
  });

  test('the time budget follows the Lambda context: less time left, an earlier clear failure', async () => {
    const event = cfnRequest('Create', props());
    tokenLookups(requestToken(event), []);
    ec2Mock.on(CreateSnapshotCommand).rejects(awsError('ECONNRESET', 'socket hang up', 0));
    await expect(onEvent(event, context(150_000))).rejects.toThrow(/may have acted/);
    // 150 s left: 30 s kept at the end and 45 s for the answer leave 75 s to create and watch.
    expect(now - START).toBeLessThanOrEqual(75_000);
    expect(now - START).toBeGreaterThan(30_000);
  });
});

describe('Create from an instance', () => {
  const p = props({ Source: 'instance', VolumeId: undefined, InstanceId: INSTANCE });

  test('CreateSnapshots; ids ordered by device; one Device:<name> attribute per snapshot', async () => {
    const event = cfnRequest('Create', p);
    const token = requestToken(event);
    createsSnapshots([B, VOLUME2], [C, VOLUME]);
    devices([VOLUME2, '/dev/sdf'], [VOLUME, '/dev/xvda']);

    const res = await onEvent(event, context());

    expect(ec2Mock).toHaveReceivedCommandWith(CreateSnapshotsCommand, {
      InstanceSpecification: { InstanceId: INSTANCE },
      TagSpecifications: [{ ResourceType: 'snapshot', Tags: madeBy(p, token, deliveryOf()) }],
    });
    // The physical id keeps each snapshot's device (a rollback needs no read of the volumes).
    expect(res.PhysicalResourceId).toBe(`${B}=/dev/sdf,${C}=/dev/xvda`);
    expect(res.Data).toEqual({
      'SnapshotId': B,
      'SnapshotIds': `${B},${C}`,
      'VolumeIds': `${VOLUME2},${VOLUME}`,
      'StartTime': T0.toISOString(),
      'SourceFound': 'true',
      'StartedAt': String(START),
      'Origin': 'created',
      'Device:/dev/sdf': B,
      'Device:/dev/xvda': C,
    });
    expect(sequence()).toEqual(['PutItem', 'DescribeStacks', 'DescribeStackResource', 'UpdateItem:fence', 'CreateSnapshots', 'DescribeVolumes', 'UpdateItem:answer']);
  });

  test('a device snapshotIdOfDevice() names is not attached: the owner deletes what it made and records the failure', async () => {
    const q = { ...p, Devices: '/dev/sdz' };
    const event = cfnRequest('Create', q);
    createsSnapshots([B, VOLUME]);
    devices([VOLUME, '/dev/xvda']);
    ec2Mock.on(DeleteSnapshotCommand, { SnapshotId: B }).resolves({});

    await expect(onEvent(event, context())).rejects.toThrow(
      /^snapshotIdOfDevice\(\) names \/dev\/sdz, but the instance has no volume attached there \(attached: \/dev\/xvda\); the snapshots this request made have been deleted/);

    expect(deleted()).toEqual([B]);
    // Recorded first (with this delivery among the creators), dropped from the creators, then deleted.
    expect(sequence()).toEqual([
      'PutItem', 'DescribeStacks', 'DescribeStackResource', 'UpdateItem:fence', 'CreateSnapshots', 'DescribeVolumes', 'UpdateItem:failure', 'UpdateItem:creators', 'DeleteSnapshot', 'GetItem',
    ]);
    expect(updates('failure')).toEqual([expect.objectContaining({ ExpressionAttributeValues: expect.objectContaining({ ':creators': { L: [{ S: deliveryOf() }] } }) })]);
    // The recorded reason is the failure itself, without what became of the snapshots.
    expect(claimOf(requestToken(event))).toMatchObject({
      State: 'failed', Owner: deliveryOf(), Creators: [], Reason: 'snapshotIdOfDevice() names /dev/sdz, but the instance has no volume attached there (attached: /dev/xvda)',
    });
  });

  test('the reason of a missing device says once that the snapshots were deleted', async () => {
    const event = cfnRequest('Create', { ...p, Devices: '/dev/sdz' });
    createsSnapshots([B, VOLUME]);
    devices([VOLUME, '/dev/xvda']);
    ec2Mock.on(DeleteSnapshotCommand, { SnapshotId: B }).resolves({});
    const err = await rejection(onEvent(event, context()));
    expect(err.message.match(/have been deleted/g)).toHaveLength(1);
  });

  test('the reason of a missing device whose snapshots could not be deleted does not say they were deleted', async () => {
    const event = cfnRequest('Create', { ...p, Devices: '/dev/sdz' });
    createsSnapshots([B, VOLUME]);
    devices([VOLUME, '/dev/xvda']);
    ec2Mock.on(DeleteSnapshotCommand).rejects(awsError('UnauthorizedOperation', 'no', 403));
    const err = await rejection(onEvent(event, context()));
    expect(err.message).toBe(`snapshotIdOfDevice() names /dev/sdz, but the instance has no volume attached there (attached: /dev/xvda); some could not be deleted${KEPT}`);
    expect(err.message).not.toMatch(/have been deleted/);
  });

  test('a clean-up that fails keeps the snapshot (tagged), records the failure, and keeps this delivery among the creators', async () => {
    const event = cfnRequest('Create', { ...p, Devices: '/dev/sdz' });
    createsSnapshots([B, VOLUME]);
    devices([VOLUME, '/dev/xvda']);
    ec2Mock.on(DeleteSnapshotCommand).rejects(awsError('UnauthorizedOperation', 'no', 403));
    await expect(onEvent(event, context())).rejects.toThrow(`; some could not be deleted${KEPT}`);
    expect(deleted()).toEqual([B]);
    expect(claimOf(requestToken(event))).toMatchObject({ State: 'failed', Creators: [deliveryOf()] });
  });

  test('devices that cannot be read (every delivery would fail alike): the owner deletes what it made and records the failure', async () => {
    const event = cfnRequest('Create', p);
    createsSnapshots([B, VOLUME]);
    ec2Mock.on(DescribeVolumesCommand, { VolumeIds: [VOLUME] }).rejects(awsError('UnauthorizedOperation', 'not allowed', 403));
    ec2Mock.on(DeleteSnapshotCommand).resolves({});
    await expect(onEvent(event, context())).rejects.toThrow(/^Reading the devices of the snapshotted volumes: UnauthorizedOperation: not allowed; the snapshots this request made have been deleted$/);
    expect(deleted()).toEqual([B]);
    expect(claimOf(requestToken(event))).toMatchObject({ State: 'failed', Reason: expect.stringMatching(/^Reading the devices/) });
  });

  test('a lost CreateSnapshots response waits until a snapshot of every attached volume shows, and sends nothing again', async () => {
    const event = cfnRequest('Create', p);
    const token = requestToken(event);
    let tags: CreateSnapshotsCommandInput['TagSpecifications'];
    ec2Mock.on(CreateSnapshotsCommand).callsFake(async (input: CreateSnapshotsCommandInput) => {
      tags = input.TagSpecifications;
      throw awsError('ECONNRESET', 'socket hang up', 0);
    });
    attached(VOLUME, VOLUME2);
    devices([VOLUME, '/dev/xvda'], [VOLUME2, '/dev/sdf']);
    let reads = 0;
    ec2Mock.on(DescribeSnapshotsCommand, { OwnerIds: ['self'], Filters: [{ Name: `tag:${OWNERSHIP_TAG_KEYS.token}`, Values: [token] }] }).callsFake(async () => {
      const a = snap(B, 'pending', tags![0].Tags, { volumeId: VOLUME });
      const b = snap(C, 'pending', tags![0].Tags, { volumeId: VOLUME2 });
      return { Snapshots: ++reads < 3 ? [a] : [a, b] };
    });
    const res = await onEvent(event, context());
    expect(ec2Mock).toHaveReceivedCommandTimes(CreateSnapshotsCommand, 1);
    expect(reads).toBe(3);
    expect(res.PhysicalResourceId).toBe(`${C}=/dev/sdf,${B}=/dev/xvda`);
  });

  test('CreateSnapshots returning nothing is a clear failure, recorded', async () => {
    const event = cfnRequest('Create', p);
    ec2Mock.on(CreateSnapshotsCommand).resolves({ Snapshots: [] });
    await expect(onEvent(event, context())).rejects.toThrow(/^EC2 CreateSnapshots on i-0123456789abcdef0 returned no snapshots \(no volume attached\?\)$/);
    expect(ec2Mock).toHaveReceivedCommandTimes(CreateSnapshotsCommand, 1);
    expect(claimOf(requestToken(event))).toMatchObject({ State: 'failed', Reason: expect.stringMatching(/returned no snapshots/) });
  });
});

describe('Create from a source found by its CloudFormation tags', () => {
  const lookupFilters = (logicalId: string) => [
    { Name: 'tag:aws:cloudformation:stack-id', Values: [STACK_ID] },
    { Name: 'tag:aws:cloudformation:logical-id', Values: [logicalId] },
  ];

  test('the first deploy, before the instance exists: no snapshot, and that answer is recorded like any other', async () => {
    const p = props({ Source: 'instance', VolumeId: undefined, SourceLogicalId: 'Instance1234' });
    const event = cfnRequest('Create', p);
    ec2Mock.on(DescribeInstancesCommand).resolves({ Reservations: [] });

    const res = await onEvent(event, context());

    expect(ec2Mock).toHaveReceivedCommandWith(DescribeInstancesCommand, {
      Filters: [...lookupFilters('Instance1234'), { Name: 'instance-state-name', Values: ['pending', 'running', 'stopping', 'stopped'] }],
    });
    expect(ec2Mock).not.toHaveReceivedCommand(CreateSnapshotsCommand);
    expect(res.PhysicalResourceId).toMatch(/^no-snapshot-[0-9a-f]{16}$/);
    expect(res.Data).toEqual({ SnapshotId: '', SnapshotIds: '', VolumeIds: '', StartTime: '', SourceFound: 'false', StartedAt: '', Origin: 'unchanged' });
    expect(snapshotIdsOf(res.PhysicalResourceId)).toEqual([]);
    // No create: no fence extension, no creator.
    expect(sequence()).toEqual(['PutItem', 'DescribeInstances', 'UpdateItem:answer']);
    expect(claimOf(requestToken(event))).toMatchObject({ State: 'answered', Creators: [], Answer: JSON.stringify(res) });
  });

  test('an instance that exists: the newest one with that logical id is snapshotted', async () => {
    const p = props({ Source: 'instance', VolumeId: undefined, SourceLogicalId: 'Instance1234' });
    ec2Mock.on(DescribeInstancesCommand).resolves({
      Reservations: [{ Instances: [{ InstanceId: 'i-00000000000000001', LaunchTime: T0 }, { InstanceId: INSTANCE, LaunchTime: new Date(T0.getTime() + 1000) }] }],
    });
    createsSnapshots([B, VOLUME]);
    devices([VOLUME, '/dev/xvda']);
    await onEvent(cfnRequest('Create', p), context());
    expect(ec2Mock).toHaveReceivedCommandTimes(CreateSnapshotsCommand, 1);
    expect(sequence()).toEqual(['PutItem', 'DescribeInstances', 'DescribeStacks', 'DescribeStackResource', 'UpdateItem:fence', 'CreateSnapshots', 'DescribeVolumes', 'UpdateItem:answer']);
  });

  test('a volume is found with DescribeVolumes and the same tags', async () => {
    const p = props({ VolumeId: undefined, SourceLogicalId: 'Data1234' });
    ec2Mock.on(DescribeVolumesCommand, { Filters: lookupFilters('Data1234') }).resolves({
      Volumes: [{ VolumeId: VOLUME, State: 'deleting' }, { VolumeId: VOLUME2, State: 'in-use' }],
    });
    createsSnapshot(B, VOLUME2);
    const res = await onEvent(cfnRequest('Create', p), context());
    expect(ec2Mock).toHaveReceivedCommandTimes(CreateSnapshotCommand, 1);
    expect(ec2Mock).toHaveReceivedCommandWith(CreateSnapshotCommand, { VolumeId: VOLUME2 });
    expect(res.PhysicalResourceId).toBe(B);
  });

  test('a volume not there yet: no snapshot', async () => {
    ec2Mock.on(DescribeVolumesCommand).resolves({ Volumes: [] });
    const res = await onEvent(cfnRequest('Create', props({ VolumeId: undefined, SourceLogicalId: 'Data1234' })), context());
    expect(res.Data).toMatchObject({ SourceFound: 'false', StartedAt: '' });
    expect(ec2Mock).not.toHaveReceivedCommand(CreateSnapshotCommand);
  });

  test('Devices without a snapshot: every requested Device attribute is answered, empty', async () => {
    const p = props({ Source: 'instance', VolumeId: undefined, SourceLogicalId: 'Instance1234', Devices: '/dev/xvda,/dev/sdf' });
    ec2Mock.on(DescribeInstancesCommand).resolves({ Reservations: [] });
    const res = await onEvent(cfnRequest('Create', p), context());
    expect(res.PhysicalResourceId).toMatch(/^no-snapshot-/);
    expect(res.Data).toMatchObject({ 'SourceFound': 'false', 'Device:/dev/xvda': '', 'Device:/dev/sdf': '' });
    expect(Object.keys(res.Data!).filter((k) => k.startsWith('Device:')).sort()).toEqual(['Device:/dev/sdf', 'Device:/dev/xvda']);
  });

  test('properties naming no source are refused clearly (and the refusal recorded)', async () => {
    const event = cfnRequest('Create', props({ VolumeId: undefined }));
    await expect(onEvent(event, context())).rejects.toThrow(/^the resource names no volume to snapshot$/);
    expect(ec2Mock.calls()).toHaveLength(0);
    expect(claimOf(requestToken(event))).toMatchObject({ State: 'failed', Reason: 'the resource names no volume to snapshot' });
  });
});

describe('Update', () => {
  const CURRENT = A;

  test('a change that forces no new snapshot (description, tags, policy) keeps the current one; the owner records that answer', async () => {
    const old = props({ Description: 'a' });
    const p = props({ Description: 'b', RemovalPolicy: 'destroy' });
    const event = cfnRequest('Update', p, { PhysicalResourceId: CURRENT, OldResourceProperties: old });
    stackStatus('UPDATE_IN_PROGRESS', START - 60_000);
    ec2Mock.on(DescribeSnapshotsCommand, { SnapshotIds: [CURRENT] }).resolves({ Snapshots: [snap(CURRENT, 'completed', ours(old, 't'))] });
    const res = await onEvent(event, context());
    expect(ec2Mock).not.toHaveReceivedCommand(CreateSnapshotCommand);
    expect(res).toEqual({
      PhysicalResourceId: CURRENT,
      Data: { SnapshotId: CURRENT, SnapshotIds: CURRENT, VolumeIds: VOLUME, StartTime: T0.toISOString(), SourceFound: 'true', StartedAt: '', Origin: 'unchanged' },
    });
    // Decided under the claim (no creator: nothing was created).
    expect(sequence()).toEqual(['DescribeStacks', 'PutItem', 'DescribeSnapshots', 'UpdateItem:answer']);
    expect(claimOf(requestToken(event))).toMatchObject({ State: 'answered', Creators: [], Answer: JSON.stringify(res) });
  });

  test('a second delivery of an Update returns what its owner decided, verbatim, reading no snapshot', async () => {
    const old = props({ Description: 'a' });
    const p = props({ Description: 'b' });
    const event = cfnRequest('Update', p, { PhysicalResourceId: CURRENT, OldResourceProperties: old });
    stackStatus('UPDATE_IN_PROGRESS', START - 60_000);
    ec2Mock.on(DescribeSnapshotsCommand, { SnapshotIds: [CURRENT] }).resolves({ Snapshots: [snap(CURRENT, 'completed', ours(old, 't'))] });
    const first = await onEvent(event, context(300_000, 'req-1'));
    ec2Mock.resetHistory();
    const second = await onEvent(event, context(300_000, 'req-2'));
    expect(second).toStrictEqual(first);
    expect(ec2Mock.calls()).toHaveLength(0);
  });

  test('an Update that keeps its snapshots fails with the claim table\'s reason when the table cannot be used (its rollback needs none)', async () => {
    const old = props({ Description: 'a' });
    const p = props({ Description: 'b' });
    stackStatus('UPDATE_IN_PROGRESS', START - 60_000);
    ec2Mock.on(DescribeSnapshotsCommand, { SnapshotIds: [CURRENT] }).resolves({ Snapshots: [snap(CURRENT, 'completed', ours(old, 't'))] });
    ddbMock.on(PutItemCommand).rejects(awsError('ResourceNotFoundException', 'Requested resource not found'));
    ddbMock.on(GetItemCommand).rejects(awsError('ResourceNotFoundException', 'Requested resource not found'));
    await expect(onEvent(cfnRequest('Update', p, { PhysicalResourceId: CURRENT, OldResourceProperties: old }), context()))
      .rejects.toThrow(/^Claiming this request \(no snapshot was taken\): the claim table app-claims does not exist/);
  });

  test('an Update that keeps its snapshots and cannot record its answer fails without claiming to have kept any', async () => {
    const old = props({ Description: 'a' });
    const p = props({ Description: 'b' });
    stackStatus('UPDATE_IN_PROGRESS', START - 60_000);
    ec2Mock.on(DescribeSnapshotsCommand, { SnapshotIds: [CURRENT] }).resolves({ Snapshots: [snap(CURRENT, 'completed', ours(old, 't'))] });
    ddbMock.on(UpdateItemCommand).rejects(awsError('ThrottlingException', 'Rate of requests exceeds the allowed throughput'));
    const err = await rejection(onEvent(cfnRequest('Update', p, { PhysicalResourceId: CURRENT, OldResourceProperties: old }), context()));
    expect(err.message).toBe('Recording the answer of this request (DynamoDB table app-claims): ThrottlingException: Rate of requests exceeds the allowed throughput. Deploy again.');
    expect(err.message).not.toMatch(/were kept|\.\./);
  });

  test('every delivery of an Update gives the same answer when the claim put failed: the failure, recorded for the others', async () => {
    const old = props({ Description: 'a' });
    const p = props({ Description: 'b' });
    const event = cfnRequest('Update', p, { PhysicalResourceId: CURRENT, OldResourceProperties: old });
    stackStatus('UPDATE_IN_PROGRESS', START - 60_000);
    ec2Mock.on(DescribeSnapshotsCommand, { SnapshotIds: [CURRENT] }).resolves({ Snapshots: [snap(CURRENT, 'completed', ours(old, 't'))] });
    ddbMock.on(PutItemCommand).callsFake((input: PutItemCommandInput) => {
      if (input.Item!.State.S === 'claimed') throw awsError('ThrottlingException', 'Rate of requests exceeds the allowed throughput');
      return table.put(input);
    });
    const first = await rejection(onEvent(event, context(300_000, 'req-1')));
    ddbMock.on(PutItemCommand).callsFake(table.put);
    const second = await rejection(onEvent(event, context(300_000, 'req-2')));
    expect(second.message).toBe(first.message);
  });

  test('an Update that would take a snapshot fails with the claim table\'s reason, and takes none', async () => {
    const event = cfnRequest('Update', props({ Trigger: 'r2' }), { PhysicalResourceId: CURRENT, OldResourceProperties: props({ Trigger: 'r1' }) });
    stackStatus('UPDATE_IN_PROGRESS', START - 60_000);
    ec2Mock.on(DescribeSnapshotsCommand, { SnapshotIds: [CURRENT] }).resolves({ Snapshots: [snap(CURRENT, 'completed', ours(props({ Trigger: 'r1' }), 't'))] });
    ddbMock.on(PutItemCommand).rejects(awsError('ResourceNotFoundException', 'Requested resource not found'));
    ddbMock.on(GetItemCommand).rejects(awsError('ResourceNotFoundException', 'Requested resource not found'));
    await expect(onEvent(event, context())).rejects.toThrow(/^Claiming this request \(no snapshot was taken\): the claim table app-claims does not exist/);
    expect(ec2Mock).not.toHaveReceivedCommand(CreateSnapshotCommand);
  });

  test('a rollback right after the update that made the current snapshot reads again until it shows, then returns via its replaces tag', async () => {
    const back = props({ Trigger: 'r1' });
    const tried = props({ Trigger: 'r2' });
    stackStatus('UPDATE_ROLLBACK_IN_PROGRESS', START - 60_000);
    // The snapshot the update made moments ago is not in reads yet: its tags say what it replaced.
    ec2Mock.on(DescribeSnapshotsCommand, { SnapshotIds: [B] })
      .resolvesOnce({ Snapshots: [] })
      .resolvesOnce({ Snapshots: [] })
      .resolves({ Snapshots: [snap(B, 'pending', [...ours(tried, 'tb'), { Key: REPLACES_TAG, Value: CURRENT }])] });
    ec2Mock.on(DescribeSnapshotsCommand, { SnapshotIds: [CURRENT] }).resolves({ Snapshots: [snap(CURRENT, 'completed', ours(back, 'ta'))] });
    const res = await onEvent(cfnRequest('Update', back, { PhysicalResourceId: B, OldResourceProperties: tried }), context());
    expect(res).toMatchObject({ PhysicalResourceId: CURRENT, Data: { Origin: 'adopted', VolumeIds: VOLUME } });
    expect(now - START).toBe(5_000);
    expect(ec2Mock).not.toHaveReceivedCommand(CreateSnapshotCommand);
    // A rollback reads whether its request has a claim (a late delivery of a forward one), and writes nothing.
    expect(ddbMock.calls().map((c) => c.args[0].constructor.name).filter((n) => n !== 'GetItemCommand')).toEqual([]);
  });

  test('a current snapshot EBS failed (not waited for) is replaced by the next update, through the claim', async () => {
    const old = props({ Description: 'a' });
    const p = props({ Description: 'b' });
    const event = cfnRequest('Update', p, { PhysicalResourceId: CURRENT, OldResourceProperties: old });
    stackStatus('UPDATE_IN_PROGRESS', START - 60_000);
    ec2Mock.on(DescribeSnapshotsCommand, { SnapshotIds: [CURRENT] }).resolves({ Snapshots: [snap(CURRENT, 'error', ours(old, 't'))] });
    createsSnapshot(B);
    const res = await onEvent(event, context());
    expect(res).toMatchObject({ PhysicalResourceId: B, Data: { Origin: 'created', StartedAt: String(START) } });
    expect(claimOf(requestToken(event))).toMatchObject({ State: 'answered', Answer: JSON.stringify(res) });
  });

  test('a new trigger takes a new snapshot that names the set it replaces (a new physical id: CloudFormation deletes the old one by policy)', async () => {
    const old = props({ Trigger: 'r1' });
    const p = props({ Trigger: 'r2' });
    const event = cfnRequest('Update', p, { PhysicalResourceId: CURRENT, OldResourceProperties: old });
    stackStatus('UPDATE_IN_PROGRESS', START - 60_000);
    ec2Mock.on(DescribeSnapshotsCommand, { SnapshotIds: [CURRENT] }).resolves({ Snapshots: [snap(CURRENT, 'completed', ours(old, 't'))] });
    createsSnapshot(B);
    const res = await onEvent(event, context());
    expect(res).toMatchObject({ PhysicalResourceId: B, Data: { Origin: 'created' } });
    expect(createdTags()).toEqual([...madeBy(p, requestToken(event), deliveryOf()), { Key: REPLACES_TAG, Value: CURRENT }]);
    expect(sequence()).toEqual(['DescribeStacks', 'PutItem', 'DescribeSnapshots', 'DescribeStacks', 'DescribeStacks', 'DescribeStackResource', 'UpdateItem:fence', 'CreateSnapshot', 'UpdateItem:answer']);
  });

  test('a rollback adopts the newest snapshot the old properties made and takes none', async () => {
    const tried = props({ Trigger: 'r2' });
    const back = props({ Trigger: 'r1' });
    stackStatus('UPDATE_ROLLBACK_IN_PROGRESS', START - 60_000);
    ec2Mock.on(DescribeSnapshotsCommand, { SnapshotIds: [B] }).resolves({ Snapshots: [snap(B, 'pending', ours(tried, 'tb'))] });
    ec2Mock.on(DescribeSnapshotsCommand, { OwnerIds: ['self'] }).resolves({
      Snapshots: [
        snap('snap-00000000000000001', 'completed', ours(back, 'old-token'), { start: new Date(T0.getTime() - 100_000) }),
        snap(CURRENT, 'completed', ours(back, 'token-a')),
        snap('snap-0000000000000000e', 'error', ours(back, 'token-e'), { start: new Date(T0.getTime() + 5000) }),
        // A newer set with one snapshot EBS failed is no point in time to return to.
        snap('snap-0000000000000000f', 'completed', ours(back, 'token-f'), { start: new Date(T0.getTime() + 9000), volumeId: VOLUME2 }),
        snap('snap-00000000000000010', 'error', ours(back, 'token-f'), { start: new Date(T0.getTime() + 9000) }),
      ],
    });
    const res = await onEvent(cfnRequest('Update', back, { PhysicalResourceId: B, OldResourceProperties: tried }), context());
    expect(ec2Mock).toHaveReceivedCommandWith(DescribeSnapshotsCommand, {
      OwnerIds: ['self'],
      Filters: [{ Name: `tag:${OWNERSHIP_TAG_KEYS.owner}`, Values: [LOGICAL_ID] }, { Name: `tag:${OWNERSHIP_TAG_KEYS.propsHash}`, Values: [identityHash(back)] }],
    });
    expect(ec2Mock).not.toHaveReceivedCommand(CreateSnapshotCommand);
    expect(res).toMatchObject({ PhysicalResourceId: CURRENT, Data: { Origin: 'adopted', StartedAt: '' } });
    // A rollback reads whether its request has a claim (a late delivery of a forward one), and writes nothing.
    expect(ddbMock.calls().map((c) => c.args[0].constructor.name).filter((n) => n !== 'GetItemCommand')).toEqual([]);
  });

  test('a rollback with nothing to adopt keeps the current snapshot', async () => {
    stackStatus('UPDATE_ROLLBACK_IN_PROGRESS', START - 60_000);
    ec2Mock.on(DescribeSnapshotsCommand).resolves({ Snapshots: [] });
    const res = await onEvent(cfnRequest('Update', props({ Trigger: 'r1' }), { PhysicalResourceId: CURRENT, OldResourceProperties: props({ Trigger: 'r2' }) }), context());
    expect(ec2Mock).not.toHaveReceivedCommand(CreateSnapshotCommand);
    expect(res).toMatchObject({ PhysicalResourceId: CURRENT, Data: { Origin: 'unchanged', StartedAt: '' } });
    // A rollback reads whether its request has a claim (a late delivery of a forward one), and writes nothing.
    expect(ddbMock.calls().map((c) => c.args[0].constructor.name).filter((n) => n !== 'GetItemCommand')).toEqual([]);
  });

  test('a rollback whose reads all fail still answers with the current ids', async () => {
    stackStatus('UPDATE_ROLLBACK_IN_PROGRESS', START - 60_000);
    ec2Mock.on(DescribeSnapshotsCommand).rejects(awsError('UnauthorizedOperation', 'no', 403));
    const res = await onEvent(cfnRequest('Update', props({ Trigger: 'r1' }), { PhysicalResourceId: CURRENT, OldResourceProperties: props({ Trigger: 'r2' }) }), context());
    expect(res).toMatchObject({ PhysicalResourceId: CURRENT, Data: { SnapshotId: CURRENT, Origin: 'unchanged' } });
  });

  test('a rollback of an instance source answers without the Device attributes when the devices cannot be read', async () => {
    stackStatus('UPDATE_ROLLBACK_IN_PROGRESS', START - 60_000);
    const back = props({ Source: 'instance', VolumeId: undefined, InstanceId: INSTANCE, Trigger: 'r1' });
    ec2Mock.on(DescribeSnapshotsCommand).resolves({ Snapshots: [] });
    ec2Mock.on(DescribeSnapshotsCommand, { SnapshotIds: [CURRENT] }).resolves({ Snapshots: [snap(CURRENT, 'completed', ours({ ...back, Trigger: 'r2' }, 't'))] });
    ec2Mock.on(DescribeVolumesCommand).rejects(awsError('UnauthorizedOperation', 'no', 403));
    const res = await onEvent(cfnRequest('Update', back, { PhysicalResourceId: CURRENT, OldResourceProperties: { ...back, Trigger: 'r2' } }), context());
    expect(res).toMatchObject({ PhysicalResourceId: CURRENT, Data: { SnapshotIds: CURRENT, Origin: 'unchanged' } });
    expect(Object.keys(res.Data!).filter((k) => k.startsWith('Device:'))).toEqual([]);
  });

  test('an update whose current snapshot cannot be read fails with the reason', async () => {
    stackStatus('UPDATE_IN_PROGRESS', START - 60_000);
    ec2Mock.on(DescribeSnapshotsCommand).rejects(awsError('UnauthorizedOperation', 'no', 403));
    await expect(onEvent(cfnRequest('Update', props({ Description: 'b' }), { PhysicalResourceId: CURRENT, OldResourceProperties: props() }), context()))
      .rejects.toThrow(/^Reading EBS snapshots snap-0000000000000000a: UnauthorizedOperation: no$/);
    expect(ec2Mock).not.toHaveReceivedCommand(CreateSnapshotCommand);
    expect(updates('failure')).toHaveLength(1); // every delivery of it fails alike
  });

  test('status unreadable and nothing to adopt: a new snapshot (an update must not skip it)', async () => {
    cfnMock.on(DescribeStacksCommand).rejects(awsError('AccessDenied', 'no', 403));
    const p = props({ Trigger: 'r2' });
    const event = cfnRequest('Update', p, { PhysicalResourceId: CURRENT, OldResourceProperties: props({ Trigger: 'r1' }) });
    ec2Mock.on(DescribeSnapshotsCommand, { SnapshotIds: [CURRENT] }).resolves({ Snapshots: [] });
    ec2Mock.on(DescribeSnapshotsCommand, { OwnerIds: ['self'] }).resolves({ Snapshots: [] });
    createsSnapshot(B);
    const res = await onEvent(event, context());
    expect(res).toMatchObject({ PhysicalResourceId: B, Data: { Origin: 'created' } });
    expect(ec2Mock).toHaveReceivedCommandTimes(CreateSnapshotCommand, 1);
  });

  test('a resource that took no snapshot keeps answering so while nothing changes', async () => {
    const p = props({ VolumeId: undefined, SourceLogicalId: 'Data1234', Description: 'b' });
    const event = cfnRequest('Update', p, { PhysicalResourceId: 'no-snapshot-0123456789abcdef', OldResourceProperties: { ...p, Description: 'a' } });
    stackStatus('UPDATE_IN_PROGRESS', START - 60_000);
    const res = await onEvent(event, context());
    expect(res).toMatchObject({ PhysicalResourceId: 'no-snapshot-0123456789abcdef', Data: { SourceFound: 'false', StartedAt: '' } });
    expect(ec2Mock.calls()).toHaveLength(0);
    expect(claimOf(requestToken(event))).toMatchObject({ State: 'answered', Answer: JSON.stringify(res) });
  });
});

describe('Rollbacks, Devices and unknown stack status', () => {
  const at = (ms: number) => new Date(T0.getTime() + ms);
  const inst = (trigger: string) => props({ Source: 'instance', VolumeId: undefined, InstanceId: INSTANCE, Trigger: trigger, Devices: '/dev/sdf,/dev/xvda' });

  test('a rollback returns via the replaces tag to the exact old set, not to a newer RETAINed set of the same owner and properties', async () => {
    stackStatus('UPDATE_ROLLBACK_IN_PROGRESS', START - 60_000);
    const back = inst('r1');
    const tried = inst('r2');
    const oldSet = 'snap-000000000000000a1=/dev/sdf,snap-000000000000000a2=/dev/xvda';
    const current = 'snap-000000000000000b1=/dev/sdf,snap-000000000000000b2=/dev/xvda';
    ec2Mock.on(DescribeSnapshotsCommand, { SnapshotIds: ['snap-000000000000000b1', 'snap-000000000000000b2'] }).resolves({
      Snapshots: [
        snap('snap-000000000000000b1', 'pending', [...ours(tried, 'token-b'), { Key: REPLACES_TAG, Value: oldSet }], { volumeId: VOLUME2, start: at(60_000) }),
        snap('snap-000000000000000b2', 'pending', [...ours(tried, 'token-b'), { Key: REPLACES_TAG, Value: oldSet }], { start: at(60_000) }),
      ],
    });
    ec2Mock.on(DescribeSnapshotsCommand, { SnapshotIds: ['snap-000000000000000a1', 'snap-000000000000000a2'] }).resolves({
      Snapshots: [
        snap('snap-000000000000000a1', 'completed', ours(back, 'token-a'), { volumeId: VOLUME2 }),
        snap('snap-000000000000000a2', 'completed', ours(back, 'token-a')),
      ],
    });
    // A newer set made for the same properties (an earlier deploy of r1, kept by RETAIN): the newest by time, but not the one replaced.
    ec2Mock.on(DescribeSnapshotsCommand, { OwnerIds: ['self'] }).resolves({
      Snapshots: [
        snap('snap-000000000000000c1', 'completed', ours(back, 'token-c'), { volumeId: VOLUME2, start: at(30_000) }),
        snap('snap-000000000000000c2', 'completed', ours(back, 'token-c'), { start: at(30_000) }),
        snap('snap-000000000000000a1', 'completed', ours(back, 'token-a'), { volumeId: VOLUME2 }),
        snap('snap-000000000000000a2', 'completed', ours(back, 'token-a')),
      ],
    });
    const res = await onEvent(cfnRequest('Update', back, { PhysicalResourceId: current, OldResourceProperties: tried }), context());
    expect(res).toEqual({
      PhysicalResourceId: oldSet,
      Data: expect.objectContaining({
        'SnapshotIds': 'snap-000000000000000a1,snap-000000000000000a2',
        'Device:/dev/sdf': 'snap-000000000000000a1',
        'Device:/dev/xvda': 'snap-000000000000000a2',
        'Origin': 'adopted',
        'StartedAt': '',
      }),
    });
    expect(ec2Mock).not.toHaveReceivedCommand(CreateSnapshotsCommand);
    expect(ec2Mock).not.toHaveReceivedCommand(CreateSnapshotCommand);
    expect(ec2Mock).not.toHaveReceivedCommand(DeleteSnapshotCommand);
  });

  test('Devices without a snapshot: a rollback keeping a resource that took none answers every Device attribute, empty', async () => {
    stackStatus('UPDATE_ROLLBACK_IN_PROGRESS', START - 60_000);
    const back = props({ Source: 'instance', VolumeId: undefined, SourceLogicalId: 'Instance1234', SnapshotBeforeHash: 'h1', Devices: '/dev/xvda,/dev/sdf' });
    const tried = { ...back, SnapshotBeforeHash: 'h2' };
    ec2Mock.on(DescribeSnapshotsCommand).resolves({ Snapshots: [] });
    const res = await onEvent(cfnRequest('Update', back, { PhysicalResourceId: 'no-snapshot-0123456789abcdef', OldResourceProperties: tried }), context());
    expect(res).toEqual({
      PhysicalResourceId: 'no-snapshot-0123456789abcdef',
      Data: expect.objectContaining({ 'SnapshotIds': '', 'Device:/dev/xvda': '', 'Device:/dev/sdf': '' }),
    });
    expect(ec2Mock).not.toHaveReceivedCommand(CreateSnapshotsCommand);
  });

  test('Devices on a rollback keeping the current set: a device the set has no snapshot of is answered empty', async () => {
    stackStatus('UPDATE_ROLLBACK_IN_PROGRESS', START - 60_000);
    const back = props({ Source: 'instance', VolumeId: undefined, InstanceId: INSTANCE, Trigger: 'r1', Devices: '/dev/xvda,/dev/sdf' });
    const tried = { ...back, Trigger: 'r2' };
    ec2Mock.on(DescribeSnapshotsCommand).resolves({ Snapshots: [] });
    const res = await onEvent(cfnRequest('Update', back, { PhysicalResourceId: `${A}=/dev/xvda`, OldResourceProperties: tried }), context());
    expect(res.Data).toMatchObject({ 'Device:/dev/xvda': A, 'Device:/dev/sdf': '', 'Origin': 'unchanged' });
    expect(ec2Mock).not.toHaveReceivedCommand(CreateSnapshotsCommand);
  });

  test('an update whose stack status cannot be read keeps the current set made for the old properties, and never creates', async () => {
    cfnMock.on(DescribeStacksCommand).rejects(awsError('Throttling', 'Rate exceeded', 400));
    const old = inst('r1');
    const p = inst('r2');
    const current = 'snap-000000000000000a1=/dev/sdf,snap-000000000000000a2=/dev/xvda';
    ec2Mock.on(DescribeSnapshotsCommand, { SnapshotIds: ['snap-000000000000000a1', 'snap-000000000000000a2'] }).resolves({
      Snapshots: [
        snap('snap-000000000000000a1', 'completed', ours(old, 'token-a'), { volumeId: VOLUME2 }),
        snap('snap-000000000000000a2', 'completed', ours(old, 'token-a')),
      ],
    });
    ec2Mock.on(DescribeSnapshotsCommand, { OwnerIds: ['self'] }).resolves({ Snapshots: [] });
    const res = await onEvent(cfnRequest('Update', p, { PhysicalResourceId: current, OldResourceProperties: old }), context());
    expect(res).toEqual({
      PhysicalResourceId: current,
      Data: expect.objectContaining({ 'SnapshotIds': 'snap-000000000000000a1,snap-000000000000000a2', 'Device:/dev/sdf': 'snap-000000000000000a1', 'Origin': 'unchanged' }),
    });
    expect(cfnMock).toHaveReceivedCommand(DescribeStacksCommand);
    expect(ec2Mock).not.toHaveReceivedCommand(CreateSnapshotsCommand);
    expect(ec2Mock).not.toHaveReceivedCommand(CreateSnapshotCommand);
    // Not known to be a rollback: decided under the claim.
    expect(updates('answer')).toHaveLength(1);
  });
});

describe('Delete', () => {
  test('retain keeps the snapshots and reads nothing', async () => {
    const res = await onEvent(cfnRequest('Delete', props(), { PhysicalResourceId: A }), context());
    expect(res).toEqual({ PhysicalResourceId: A });
    expect(ec2Mock.calls()).toHaveLength(0);
  });

  test('destroy deletes each snapshot of ours, skips one not ours and one already gone, and sweeps nothing else', async () => {
    const p = props({ RemovalPolicy: 'destroy' });
    ec2Mock.on(DescribeSnapshotsCommand, { SnapshotIds: ['snap-00000000000000001'] }).resolves({ Snapshots: [snap('snap-00000000000000001', 'completed', ours(p, 't'))] });
    ec2Mock.on(DescribeSnapshotsCommand, { SnapshotIds: ['snap-00000000000000002'] }).resolves({ Snapshots: [snap('snap-00000000000000002', 'completed', ours(p, 't', 'Other'))] });
    ec2Mock.on(DescribeSnapshotsCommand, { SnapshotIds: ['snap-00000000000000003'] }).rejects(awsError('InvalidSnapshot.NotFound'));
    ec2Mock.on(DeleteSnapshotCommand).resolves({});
    const physicalId = 'snap-00000000000000001,snap-00000000000000002,snap-00000000000000003';
    const res = await onEvent(cfnRequest('Delete', p, { PhysicalResourceId: physicalId }), context());
    expect(res).toEqual({ PhysicalResourceId: physicalId });
    expect(deleted()).toEqual(['snap-00000000000000001']);
    // Only reads by id: no look-up by token (no sweep).
    expect(ec2Mock.commandCalls(DescribeSnapshotsCommand).every((c) => c.args[0].input.SnapshotIds && !c.args[0].input.Filters)).toBe(true);
  });

  test('destroy: a snapshot made moments ago, not in reads yet, is deleted once it shows', async () => {
    const p = props({ RemovalPolicy: 'destroy' });
    // Not found in the first read (and in the read of each id that follows it), found 5 s later.
    ec2Mock.on(DescribeSnapshotsCommand, { SnapshotIds: [A] })
      .rejectsOnce(awsError('InvalidSnapshot.NotFound'))
      .rejectsOnce(awsError('InvalidSnapshot.NotFound'))
      .resolves({ Snapshots: [snap(A, 'pending', ours(p, 't'))] });
    ec2Mock.on(DeleteSnapshotCommand).resolves({});
    await onEvent(cfnRequest('Delete', p, { PhysicalResourceId: A }), context());
    expect(deleted()).toEqual([A]);
    expect(now - START).toBe(5_000);
  });

  test('destroy: a snapshot that never shows in reads is taken for deleted after two minutes, and the Delete succeeds', async () => {
    const p = props({ RemovalPolicy: 'destroy' });
    ec2Mock.on(DescribeSnapshotsCommand, { SnapshotIds: [A] }).rejects(awsError('InvalidSnapshot.NotFound'));
    await expect(onEvent(cfnRequest('Delete', p, { PhysicalResourceId: A }), context())).resolves.toEqual({ PhysicalResourceId: A });
    expect(ec2Mock).not.toHaveReceivedCommand(DeleteSnapshotCommand);
    expect(now - START).toBeGreaterThan(110_000);
    expect(now - START).toBeLessThanOrEqual(120_000);
  });

  test('a delete racing another (NotFound on delete) succeeds', async () => {
    const p = props({ RemovalPolicy: 'destroy' });
    ec2Mock.on(DescribeSnapshotsCommand).resolves({ Snapshots: [snap(A, 'completed', ours(p, 't'))] });
    ec2Mock.on(DeleteSnapshotCommand).rejects(awsError('InvalidSnapshot.NotFound'));
    await expect(onEvent(cfnRequest('Delete', p, { PhysicalResourceId: A }), context())).resolves.toEqual({ PhysicalResourceId: A });
  });

  test('a failed delete fails with the reason', async () => {
    const p = props({ RemovalPolicy: 'destroy' });
    ec2Mock.on(DescribeSnapshotsCommand).resolves({ Snapshots: [snap(A, 'completed', ours(p, 't'))] });
    ec2Mock.on(DeleteSnapshotCommand).rejects(awsError('InvalidSnapshot.InUse', 'used by ami-1'));
    await expect(onEvent(cfnRequest('Delete', p, { PhysicalResourceId: A }), context()))
      .rejects.toThrow(/^Deleting EBS snapshot snap-0000000000000000a: InvalidSnapshot.InUse: used by ami-1$/);
  });

  test('a resource that took no snapshot (or whose Create failed) deletes nothing', async () => {
    await onEvent(cfnRequest('Delete', props({ RemovalPolicy: 'destroy' }), { PhysicalResourceId: 'no-snapshot-0123456789abcdef' }), context());
    await onEvent(cfnRequest('Delete', props({ RemovalPolicy: 'destroy' }), { PhysicalResourceId: 'AWSCDK::CustomResourceProviderFramework::CREATE_FAILED' }), context());
    expect(ec2Mock.calls()).toHaveLength(0);
  });
});

describe('isComplete', () => {
  function polled(p: Props, data: Record<string, string> = {}, type: 'Create' | 'Update' | 'Delete' = 'Create') {
    return cfnRequest(type, p, { PhysicalResourceId: A, Data: { Origin: 'created', StartedAt: String(START), ...data } });
  }
  /** DescribeSnapshots by id answers `states` in turn; look-ups by token find the request's snapshots answered so far (none). */
  function byId(...states: Snapshot[][]) {
    let stub = ec2Mock.on(DescribeSnapshotsCommand, { SnapshotIds: [A] });
    for (const s of states.slice(0, -1)) stub = stub.resolvesOnce({ Snapshots: s });
    stub.resolves({ Snapshots: states[states.length - 1] });
  }

  test('without waitForCompletion, done at once (the point in time is fixed): only the duplicate check reads', async () => {
    const p = props();
    const event = polled(p);
    tokenLookups(requestToken(event), [snap(A, 'pending', ours(p, requestToken(event)))]);
    await expect(isComplete(event)).resolves.toEqual({ IsComplete: true });
    expect(ec2Mock).toHaveReceivedCommandTimes(DescribeSnapshotsCommand, 1);
    expect(ec2Mock).not.toHaveReceivedCommand(DeleteSnapshotCommand);
  });

  test('deletes, adopted and unchanged snapshots, and no snapshot at all are not waited for', async () => {
    const p = props({ WaitForCompletion: 'true' });
    await expect(isComplete(polled(p, {}, 'Delete'))).resolves.toEqual({ IsComplete: true });
    await expect(isComplete(polled(p, { Origin: 'adopted' }))).resolves.toEqual({ IsComplete: true });
    await expect(isComplete(polled(p, { Origin: 'unchanged' }))).resolves.toEqual({ IsComplete: true });
    await expect(isComplete({ ...polled(p), PhysicalResourceId: 'no-snapshot-0123456789abcdef' })).resolves.toEqual({ IsComplete: true });
    expect(ec2Mock.calls()).toHaveLength(0);
  });

  test('waits while pending, done when completed', async () => {
    const p = props({ WaitForCompletion: 'true' });
    const event = polled(p);
    byId([snap(A, 'pending')], [snap(A, 'completed')]);
    tokenLookups(requestToken(event), []);
    await expect(isComplete(event)).resolves.toEqual({ IsComplete: false });
    await expect(isComplete(event)).resolves.toEqual({ IsComplete: true });
    expect(ddbMock.calls()).toHaveLength(0);
  });

  test('a snapshot not visible yet right after the create is waited for, not failed', async () => {
    ec2Mock.on(DescribeSnapshotsCommand).rejects(awsError('InvalidSnapshot.NotFound'));
    now = START + 60_000;
    await expect(isComplete(polled(props({ WaitForCompletion: 'true' })))).resolves.toEqual({ IsComplete: false });
  });

  test('a snapshot gone long after the create fails the deploy', async () => {
    now = START + 10 * 60_000;
    ec2Mock.on(DescribeSnapshotsCommand).rejects(awsError('InvalidSnapshot.NotFound'));
    await expect(isComplete(polled(props({ WaitForCompletion: 'true' })))).rejects.toThrow(/^EBS snapshot snap-0000000000000000a no longer exists; the snapshots of this request have been deleted$/);
  });

  test('error fails the deploy with the state message and deletes the snapshots of this request', async () => {
    const p = props({ WaitForCompletion: 'true' });
    const event = polled(p);
    byId([{ ...snap(A, 'error', ours(p, requestToken(event))), StateMessage: 'internal error' }]);
    ec2Mock.on(DeleteSnapshotCommand).resolves({});
    await expect(isComplete(event)).rejects.toThrow(/^EBS snapshot snap-0000000000000000a is in state error: internal error; the snapshots of this request have been deleted$/);
    expect(deleted()).toEqual([A]);
    // Its one write to the claim table: the failure, over the answer (none here: refused, and no error).
    expect(ddbMock.calls().map((c) => updateKind(c.args[0].input as UpdateItemCommandInput))).toEqual(['late-failure']);
  });

  test('reads that stay throttled are tried again at the next poll, until the timeout', async () => {
    const p = props({ WaitForCompletion: 'true', TimeoutSeconds: '1800' });
    const event = polled(p);
    ec2Mock.on(DescribeSnapshotsCommand).rejects(awsError('RequestLimitExceeded', 'Rate exceeded', 503));
    await expect(isComplete(event)).resolves.toEqual({ IsComplete: false });
    now = START + 1_801_000;
    await expect(isComplete(event)).rejects.toMatchObject({ message: 'Reading EBS snapshots snap-0000000000000000a: RequestLimitExceeded: Rate exceeded', transient: true });
    expect(ec2Mock).not.toHaveReceivedCommand(DeleteSnapshotCommand);
  });

  test('a read refused outright fails with the reason, deleting nothing', async () => {
    ec2Mock.on(DescribeSnapshotsCommand).rejects(awsError('UnauthorizedOperation', 'not allowed', 403));
    await expect(isComplete(polled(props({ WaitForCompletion: 'true' })))).rejects.toMatchObject({
      message: 'Reading EBS snapshots snap-0000000000000000a: UnauthorizedOperation: not allowed', transient: false,
    });
    expect(ec2Mock).not.toHaveReceivedCommand(DeleteSnapshotCommand);
  });

  test('a set with a snapshot in error waits for the rest to show, then deletes the whole set', async () => {
    const p = props({ WaitForCompletion: 'true' });
    const event = { ...polled(p), PhysicalResourceId: `${A},${B}` };
    const token = requestToken(event);
    const failed = { ...snap(A, 'error', ours(p, token)), StateMessage: 'internal' };
    const rest = snap(B, 'pending', ours(p, token), { volumeId: VOLUME2 });
    ec2Mock.on(DescribeSnapshotsCommand, { SnapshotIds: [A, B] }).rejectsOnce(awsError('InvalidSnapshot.NotFound')).resolves({ Snapshots: [failed, rest] });
    ec2Mock.on(DescribeSnapshotsCommand, { SnapshotIds: [A] }).resolves({ Snapshots: [failed] });
    ec2Mock.on(DescribeSnapshotsCommand, { SnapshotIds: [B] }).rejects(awsError('InvalidSnapshot.NotFound'));
    ec2Mock.on(DeleteSnapshotCommand).resolves({});
    now = START + 60_000;
    await expect(isComplete(event)).resolves.toEqual({ IsComplete: false });
    expect(ec2Mock).not.toHaveReceivedCommand(DeleteSnapshotCommand);
    now += 30_000;
    await expect(isComplete(event)).rejects.toThrow(/^EBS snapshot snap-0000000000000000a is in state error: internal; the snapshots of this request have been deleted$/);
    expect(deleted().sort()).toEqual([A, B]);
  });

  test('past the timeout: deletes the snapshot of this request and fails with advice', async () => {
    const p = props({ WaitForCompletion: 'true', TimeoutSeconds: '600' });
    const event = polled(p);
    now = START + 601_000;
    byId([snap(A, 'pending', ours(p, requestToken(event)))]);
    ec2Mock.on(DeleteSnapshotCommand).resolves({});
    await expect(isComplete(event)).rejects.toThrow(/not completed within the timeout of 600 seconds \(still snap-0000000000000000a pending 10%\).*set waitForCompletion to false/);
    expect(deleted()).toEqual([A]);
  });

  test('a snapshot that cannot be deleted after a failure stays (tagged) and the reason is still the failure', async () => {
    const p = props({ WaitForCompletion: 'true' });
    const event = polled(p);
    byId([{ ...snap(A, 'error', ours(p, requestToken(event))), StateMessage: 'internal error' }]);
    ec2Mock.on(DeleteSnapshotCommand).rejects(awsError('UnauthorizedOperation', 'no', 403));
    await expect(isComplete(event)).rejects.toThrow(/is in state error: internal error/);
    expect(deleted()).toEqual([A]);
  });

  test('a failure never deletes a snapshot of another request', async () => {
    const p = props({ WaitForCompletion: 'true' });
    byId([{ ...snap(A, 'error', ours(p, 'css-0000000000000000000000000000000000000002')), StateMessage: 'x' }]);
    await expect(isComplete(polled(p))).rejects.toThrow(/state error/);
    expect(ec2Mock).not.toHaveReceivedCommand(DeleteSnapshotCommand);
  });

  describe('the read-only duplicate check', () => {
    /** Runs `fn` capturing stdout: the EMF lines it wrote, parsed. */
    async function emfOf(fn: () => Promise<unknown>): Promise<any[]> {
      const write = jest.spyOn(process.stdout, 'write').mockImplementation(() => true);
      try {
        await fn();
        return write.mock.calls.map(([line]) => String(line)).filter((l) => l.includes('"_aws"')).map((l) => JSON.parse(l));
      } finally {
        write.mockRestore();
      }
    }

    test.each(['false', 'true'] as const)('a second snapshot of the request (waitForCompletion %s) is logged and counted, never deleted, never failing', async (wait) => {
      const p = props({ WaitForCompletion: wait });
      const event = polled(p);
      const token = requestToken(event);
      const answered = snap(A, 'completed', madeBy(p, token, 'req-1.owner'));
      const second = snap(B, 'pending', madeBy(p, token, 'req-2.late'), { start: new Date(T0.getTime() + 1_000) });
      // Carries the token but not our owner tag: not counted.
      const notOurs = snap(C, 'pending', ours(p, token, 'SomeoneElse'));
      byId([answered]);
      tokenLookups(token, [answered, second, notOurs]);
      const error = jest.spyOn(logger, 'error');
      try {
        let result: unknown;
        const emf = await emfOf(async () => {
          result = await isComplete(event);
        });
        expect(result).toEqual({ IsComplete: true });
        expect(emf).toHaveLength(1);
        expect(emf[0]).toMatchObject({ [DUPLICATE_METRIC]: 1 });
        expect(emf[0]._aws.CloudWatchMetrics).toEqual([expect.objectContaining({ Namespace: 'CdkStorageSnapshots', Metrics: [expect.objectContaining({ Name: DUPLICATE_METRIC })] })]);
        expect(error).toHaveBeenCalledWith(expect.stringMatching(/a second snapshot of this request exists/), { answered: [A], duplicates: [B] });
      } finally {
        error.mockRestore();
      }
      expect(ec2Mock).not.toHaveReceivedCommand(DeleteSnapshotCommand);
      expect(ec2Mock).toHaveReceivedCommandWith(DescribeSnapshotsCommand, { OwnerIds: ['self'], Filters: [{ Name: `tag:${OWNERSHIP_TAG_KEYS.token}`, Values: [token] }] });
    });

    test('only the snapshots answered (the usual case): nothing logged or counted', async () => {
      const p = props();
      const event = polled(p);
      tokenLookups(requestToken(event), [snap(A, 'pending', ours(p, requestToken(event)))]);
      const error = jest.spyOn(logger, 'error');
      try {
        const emf = await emfOf(async () => expect(isComplete(event)).resolves.toEqual({ IsComplete: true }));
        expect(emf).toEqual([]);
        expect(error).not.toHaveBeenCalled();
      } finally {
        error.mockRestore();
      }
    });

    test('a check that cannot read only warns: the request completes', async () => {
      const event = polled(props());
      ec2Mock.on(DescribeSnapshotsCommand).rejects(awsError('UnauthorizedOperation', 'no', 403));
      const warn = jest.spyOn(logger, 'warn');
      try {
        await expect(isComplete(event)).resolves.toEqual({ IsComplete: true });
        expect(warn).toHaveBeenCalledWith('could not check for a second snapshot of this request', expect.anything());
      } finally {
        warn.mockRestore();
      }
      expect(ec2Mock).not.toHaveReceivedCommand(DeleteSnapshotCommand);
    });

    test('no check while still waiting', async () => {
      const p = props({ WaitForCompletion: 'true' });
      byId([snap(A, 'pending')]);
      await expect(isComplete(polled(p))).resolves.toEqual({ IsComplete: false });
      expect(ec2Mock).toHaveReceivedCommandTimes(DescribeSnapshotsCommand, 1);
    });
  });
});

describe('A failure, the clean-up, and the claim', () => {
  const inst = props({ Source: 'instance', VolumeId: undefined, InstanceId: INSTANCE });
  /** An instance snapshot whose Devices name one not attached: the owner makes B, then fails. */
  const MISSING_DEVICE = 'snapshotIdOfDevice() names /dev/sdz, but the instance has no volume attached there (attached: /dev/xvda)';
  function failsAfterCreate() {
    const event = cfnRequest('Create', { ...inst, Devices: '/dev/sdz' });
    createsSnapshots([B, VOLUME]);
    devices([VOLUME, '/dev/xvda']);
    return event;
  }

  test('a failing owner records the failure before its first DeleteSnapshot: what it deletes is no longer the claim of a request at work', async () => {
    const event = failsAfterCreate();
    const token = requestToken(event);
    let claimWhileDeleting: Record<string, unknown> | undefined;
    ec2Mock.on(DeleteSnapshotCommand).callsFake(async () => {
      claimWhileDeleting = claimOf(token);
      return {};
    });
    await expect(onEvent(event, context())).rejects.toMatchObject({ message: `${MISSING_DEVICE}; the snapshots this request made have been deleted` });
    const calls = sequence();
    expect(calls.indexOf('UpdateItem:failure')).toBeGreaterThan(-1);
    expect(calls.indexOf('UpdateItem:failure')).toBeLessThan(calls.indexOf('DeleteSnapshot'));
    // By the first delete the failure is in the table (and this delivery no longer a creator).
    expect(claimWhileDeleting).toMatchObject({ State: 'failed', Reason: MISSING_DEVICE, Owner: deliveryOf(), Creators: [] });
    expect(deleted()).toEqual([B]);
  });

  test('a failing owner whose failure cannot be recorded deletes nothing and says its snapshot is kept (a delivery that takes over adopts it)', async () => {
    const event = failsAfterCreate();
    ddbMock.on(UpdateItemCommand).callsFake((input: UpdateItemCommandInput) => {
      if (updateKind(input) === 'failure') throw awsError('AccessDeniedException', 'not authorized');
      return table.update(input);
    });
    await expect(onEvent(event, context())).rejects.toMatchObject({ message: `${MISSING_DEVICE}${KEPT}`, transient: false });
    expect(ec2Mock).not.toHaveReceivedCommand(DeleteSnapshotCommand);
    // Still this delivery's claim, with it among the creators: a take-over after its fence finds B.
    expect(claimOf(requestToken(event))).toMatchObject({ State: 'claimed', Owner: deliveryOf(), Creators: [deliveryOf()] });
  });

  test('a delete that fails puts the creators back: this delivery is dropped while it deletes, and listed again after', async () => {
    const event = failsAfterCreate();
    const token = requestToken(event);
    let creatorsWhileDeleting: unknown;
    ec2Mock.on(DeleteSnapshotCommand).callsFake(async () => {
      creatorsWhileDeleting = claimOf(token)!.Creators;
      throw awsError('UnauthorizedOperation', 'no', 403);
    });
    await expect(onEvent(event, context())).rejects.toMatchObject({ message: `${MISSING_DEVICE}; some could not be deleted${KEPT}` });
    expect(creatorsWhileDeleting).toEqual([]);
    expect(sequence().slice(-5)).toEqual(['UpdateItem:failure', 'UpdateItem:creators', 'DeleteSnapshot', 'UpdateItem:creators', 'GetItem']);
    expect(updates('creators').map((u) => [u.ExpressionAttributeValues![':from'], u.ExpressionAttributeValues![':to']])).toEqual([
      [{ L: [{ S: deliveryOf() }] }, { L: [] }],
      [{ L: [] }, { L: [{ S: deliveryOf() }] }],
    ]);
    // A retried deployment that reopens the claim watches for (and adopts) what is kept.
    expect(claimOf(token)).toMatchObject({ State: 'failed', Reason: MISSING_DEVICE, Creators: [deliveryOf()] });
  });

  test('a taker whose delete of an earlier owner\'s snapshot fails puts that owner back among the creators', async () => {
    const event = cfnRequest('Create', props());
    const token = seed(event, { state: 'claimed', owner: 'req-0.gone', fence: START - 60_000, creators: ['req-0.gone'], createSentAt: START - 120_000 });
    tokenLookups(token, [{ ...snap(A, 'error', madeBy(props(), token, 'req-0.gone')), StateMessage: 'internal' }]);
    ec2Mock.on(DeleteSnapshotCommand).rejects(awsError('UnauthorizedOperation', 'no', 403));
    await expect(onEvent(event, context())).rejects.toMatchObject({ message: `EBS snapshot ${A} failed: internal; some could not be deleted${KEPT}` });
    expect(deleted()).toEqual([A]);
    expect(updates('creators').map((u) => u.ExpressionAttributeValues![':to'])).toEqual([{ L: [] }, { L: [{ S: 'req-0.gone' }] }]);
    expect(claimOf(token)).toMatchObject({ State: 'failed', Owner: deliveryOf(), Creators: ['req-0.gone'] });
  });

  test.each([
    ['reopened by a retried deployment', (item: Item): Item => {
      const { Reason: _r, RecordedAt: _at, ...rest } = item;
      return { ...rest, State: { S: 'claimed' }, Owner: { S: 'req-9.retry' }, Fence: { N: String(now + FENCE_MS) } };
    }],
    ['reopened, and failed again since', (item: Item): Item => ({
      ...item, RecordedAt: { N: String(now + 1_000) }, Reason: { S: 'the retry failed' }, Creators: { L: [...item.Creators.L!, { S: 'req-9.retry' }] },
    })],
  ])('a claim %s before this delivery drops itself from its creators: nothing is deleted, and the reason says the snapshot is kept', async (_, change) => {
    const event = failsAfterCreate();
    const token = requestToken(event);
    let changed: Item | undefined;
    ddbMock.on(UpdateItemCommand).callsFake((input: UpdateItemCommandInput) => {
      if (updateKind(input) === 'creators' && !changed) {
        changed = change(claims.get(token)!);
        claims.set(token, changed);
      }
      return table.update(input);
    });
    await expect(onEvent(event, context())).rejects.toMatchObject({ message: `${MISSING_DEVICE}; some could not be deleted${KEPT}` });
    expect(ec2Mock).not.toHaveReceivedCommand(DeleteSnapshotCommand);
    // One refused attempt, nothing put back: this delivery stays among the creators (the retry adopts B).
    expect(updates('creators')).toHaveLength(1);
    expect(claimOf(token)!.Creators).toContain(deliveryOf());
    if (changed!.State.S === 'failed') expect(claims.get(token)).toEqual(changed);
  });

  test('a claim reopened by a retried deployment is left to the retry: the earlier operation\'s failing owner does not fail it again', async () => {
    const event = failsAfterCreate();
    const token = requestToken(event);
    let reopened: Item | undefined;
    ddbMock.on(UpdateItemCommand).callsFake((input: UpdateItemCommandInput) => {
      if (updateKind(input) === 'creators' && !reopened) {
        const { Reason: _r, RecordedAt: _at, ...rest } = claims.get(token)!;
        // As the retried deployment's reopen writes it (its operation began after this delivery did).
        reopened = { ...rest, State: { S: 'claimed' }, Owner: { S: 'req-9.retry' }, Fence: { N: String(now + FENCE_MS) }, ReopenedAt: { N: String(now + 60_000) } };
        claims.set(token, reopened);
      }
      return table.update(input);
    });
    await expect(onEvent(event, context())).rejects.toMatchObject({ message: `${MISSING_DEVICE}; some could not be deleted${KEPT}` });
    expect(ec2Mock).not.toHaveReceivedCommand(DeleteSnapshotCommand);
    // Only its own failure record: none over the retry's owner.
    expect(updates('failure')).toHaveLength(1);
    expect(claims.get(token)).toEqual(reopened);
  });

  test('an owner whose claim a waiter failed, and which cannot delete, keeps its snapshot among the creators and says so', async () => {
    const event = cfnRequest('Create', props());
    const token = requestToken(event);
    createsSnapshot(A);
    ec2Mock.on(DeleteSnapshotCommand).rejects(awsError('UnauthorizedOperation', 'no', 403));
    ddbMock.on(UpdateItemCommand).callsFake((input: UpdateItemCommandInput) => {
      if (updateKind(input) === 'answer') claims.set(token, { ...claims.get(token)!, State: { S: 'failed' }, Reason: { S: WAITER_REASON }, RecordedAt: { N: String(now) } });
      return table.update(input);
    });
    await expect(onEvent(event, context())).rejects.toMatchObject({ message: `${WAITER_REASON}${KEPT}`, transient: true });
    expect(deleted()).toEqual([A]);
    expect(claimOf(token)).toMatchObject({ State: 'failed', Reason: WAITER_REASON, Creators: [deliveryOf()] });
  });

  test('a former owner whose claim was taken over, then answered with a snapshot of the taker\'s, deletes its own snapshot the answer does not name', async () => {
    const event = cfnRequest('Create', props());
    const token = requestToken(event);
    createsSnapshot(A);
    ec2Mock.on(DeleteSnapshotCommand).resolves({});
    const takers = { PhysicalResourceId: B, Data: { SnapshotId: B, Origin: 'created', StartedAt: String(START + 1) } };
    takenOverThenAnswered(token, takers);
    await expect(onEvent(event, context())).resolves.toStrictEqual(takers);
    expect(deleted()).toEqual([A]);
    expect(sequence().slice(-3)).toEqual(['UpdateItem:answer', 'GetItem', 'DeleteSnapshot']);
  });

  test('a former owner whose claim was taken over, then failed by the taker, deletes what it made and fails with the taker\'s reason', async () => {
    const event = cfnRequest('Create', props());
    const token = requestToken(event);
    createsSnapshot(A);
    ec2Mock.on(DeleteSnapshotCommand).resolves({});
    ddbMock.on(UpdateItemCommand).callsFake((input: UpdateItemCommandInput) => {
      if (updateKind(input) === 'answer') claims.set(token, { ...claims.get(token)!, Owner: { S: 'req-2.taker' }, Fence: { N: String(now + FENCE_MS) } });
      return table.update(input);
    });
    let reads = 0;
    ddbMock.on(GetItemCommand).callsFake((input: GetItemCommandInput) => {
      if (++reads === 1) claims.set(token, { ...claims.get(token)!, State: { S: 'failed' }, Reason: { S: 'the taker failed' }, RecordedAt: { N: String(now) } });
      return table.get(input);
    });
    await expect(onEvent(event, context())).rejects.toMatchObject({ message: 'the taker failed' });
    expect(deleted()).toEqual([A]);
    expect(sequence().indexOf('UpdateItem:creators')).toBeLessThan(sequence().indexOf('DeleteSnapshot'));
    expect(claimOf(token)).toMatchObject({ State: 'failed', Reason: 'the taker failed', Owner: 'req-2.taker', Creators: [] });
  });

  test('a taker that finds, after the read-lag window, a set that does not cover the instance\'s volumes fails and deletes that set', async () => {
    const event = cfnRequest('Create', inst);
    const createSentAt = START - READ_LAG_WINDOW_MS - SKEW_MS - 1_000;
    const token = seed(event, { state: 'claimed', owner: 'req-0.gone', fence: START - 60_000, creators: ['req-0.gone'], createSentAt });
    attached(VOLUME, VOLUME2);
    // Only the snapshot of one of the two volumes (a partial CreateSnapshots, or one whose other half is gone).
    tokenLookups(token, [snap(B, 'pending', madeBy(inst, token, 'req-0.gone'), { volumeId: VOLUME })]);
    ec2Mock.on(DeleteSnapshotCommand).resolves({});
    const reason = `the snapshots an earlier delivery of this request made (${B}) do not cover the attached volumes ${VOLUME2}`;
    await expect(onEvent(event, context())).rejects.toMatchObject({ message: `${reason}; the snapshots this request made have been deleted`, transient: false });
    expect(ec2Mock).not.toHaveReceivedCommand(CreateSnapshotsCommand);
    expect(deleted()).toEqual([B]);
    expect(sequence()).toEqual([
      'PutItem', 'UpdateItem:take-over', 'DescribeVolumes', 'UpdateItem:fence', 'DescribeSnapshots', 'UpdateItem:failure', 'UpdateItem:creators', 'DeleteSnapshot', 'GetItem',
    ]);
    expect(claimOf(token)).toMatchObject({ State: 'failed', Reason: reason, Owner: deliveryOf(), Creators: [] });
  });

  test('a taker that finds a partial set within the read-lag window keeps watching, and adopts the whole set once it shows', async () => {
    const event = cfnRequest('Create', inst);
    const token = seed(event, { state: 'claimed', owner: 'req-0.gone', fence: START - 60_000, creators: ['req-0.gone'], createSentAt: START - 120_000 });
    attached(VOLUME, VOLUME2);
    devices([VOLUME, '/dev/xvda'], [VOLUME2, '/dev/sdf']);
    const one = snap(B, 'pending', madeBy(inst, token, 'req-0.gone'), { volumeId: VOLUME });
    const other = snap(C, 'pending', madeBy(inst, token, 'req-0.gone'), { volumeId: VOLUME2 });
    tokenLookups(token, [one], [one, other]);
    const res = await onEvent(event, context());
    expect(res.PhysicalResourceId).toBe(`${C}=/dev/sdf,${B}=/dev/xvda`);
    expect(ec2Mock).not.toHaveReceivedCommand(DeleteSnapshotCommand);
    expect(ec2Mock).not.toHaveReceivedCommand(CreateSnapshotsCommand);
  });

  test.each([
    ['ECONNRESET', 'socket hang up', true],
    ['TimeoutError', 'Connection timed out after 5000 ms', true],
    ['ThrottlingException', 'Rate of requests exceeds the allowed throughput', false],
    ['AccessDeniedException', 'not authorized to perform dynamodb:PutItem', false],
  ])('a claim table error %s says that a handler in a VPC needs a route to DynamoDB: %s', async (code, message, hint) => {
    const event = cfnRequest('Create', props());
    ddbMock.on(PutItemCommand).rejects(awsError(code, message, 0));
    ddbMock.on(GetItemCommand).rejects(awsError(code, message, 0));
    const err = await rejection(onEvent(event, context()));
    const vpc = hint ? ' Handlers in a VPC need a route to DynamoDB (a gateway endpoint).' : '';
    expect(err.message).toBe(`Claiming this request (no snapshot was taken) (DynamoDB table app-claims): ${code}: ${message}.${vpc} Deploy again.`);
    expect(ec2Mock.calls()).toHaveLength(0);
  });
});

describe('isComplete and the claim', () => {
  const p = props({ WaitForCompletion: 'true' });

  /** A Create answered by a first delivery (snapshot A), and the request isComplete polls. */
  async function answered() {
    const event = cfnRequest('Create', p);
    createsSnapshot(A);
    const res = await onEvent(event, context(300_000, 'req-1'));
    return { event, token: requestToken(event), res, polled: { ...event, ...res } };
  }

  test('a snapshot in error is recorded in the claim as the request\'s failure; a retry in a later forward operation reopens it and takes a new snapshot', async () => {
    const { event, token, res, polled } = await answered();
    const first = deliveryOf();
    ec2Mock.on(DescribeSnapshotsCommand, { SnapshotIds: [A] }).resolves({ Snapshots: [{ ...snap(A, 'error', madeBy(p, token, first)), StateMessage: 'internal error' }] });
    ec2Mock.on(DeleteSnapshotCommand).resolves({});
    now = START + 60_000;
    const err = await rejection(isComplete(polled));
    expect(err.message).toBe(`EBS snapshot ${A} is in state error: internal error; the snapshots of this request have been deleted`);
    expect(deleted()).toEqual([A]);
    expect(updates('late-failure')).toEqual([expect.objectContaining({
      UpdateExpression: 'SET #s = :failed, #r = :reason, #at = :now',
      ConditionExpression: '#s = :answered',
      ExpressionAttributeValues: { ':failed': { S: 'failed' }, ':answered': { S: 'answered' }, ':reason': { S: err.message }, ':now': { N: String(now) } },
    })]);
    expect(claimOf(token)).toMatchObject({ State: 'failed', Reason: err.message, RecordedAt: now, Owner: first, Creators: [first] });

    // The deployment is retried an hour later: CloudFormation re-sends the same RequestId.
    now = START + 3_600_000;
    stackStatus('UPDATE_IN_PROGRESS', now - 60_000);
    tokenLookups(token, []); // A is gone
    createsSnapshot(B);
    const retried = await onEvent(event, context(300_000, 'req-2'));
    expect(retried.PhysicalResourceId).toBe(B);
    expect(retried).not.toEqual(res);
    expect(updates('reopen')).toHaveLength(1);
    expect(claimOf(token)).toMatchObject({ State: 'answered', Answer: JSON.stringify(retried) });
    expect(claimOf(token)!.Owner).not.toBe(first);
  });

  test('a snapshot not completed within the timeout is recorded in the claim as the request\'s failure', async () => {
    const { token, polled } = await answered();
    ec2Mock.on(DescribeSnapshotsCommand, { SnapshotIds: [A] }).resolves({ Snapshots: [snap(A, 'pending', madeBy(p, token, deliveryOf()))] });
    ec2Mock.on(DeleteSnapshotCommand).resolves({});
    now = START + 1_801_000;
    const err = await rejection(isComplete(polled));
    expect(err.message).toMatch(/^EBS snapshots were not completed within the timeout of 1800 seconds/);
    expect(deleted()).toEqual([A]);
    expect(claimOf(token)).toMatchObject({ State: 'failed', Reason: err.message, RecordedAt: now });
  });

  test('a claim table that cannot record the late failure is logged: the failure stands, with its own reason', async () => {
    const { token, polled } = await answered();
    ec2Mock.on(DescribeSnapshotsCommand, { SnapshotIds: [A] }).resolves({ Snapshots: [{ ...snap(A, 'error', madeBy(p, token, deliveryOf())), StateMessage: 'internal error' }] });
    ec2Mock.on(DeleteSnapshotCommand).resolves({});
    ddbMock.on(UpdateItemCommand).rejects(awsError('AccessDeniedException', 'not authorized'));
    const error = jest.spyOn(logger, 'error');
    try {
      await expect(isComplete(polled)).rejects.toMatchObject({ message: `EBS snapshot ${A} is in state error: internal error; the snapshots of this request have been deleted` });
      expect(error).toHaveBeenCalledWith('could not record the failure of this request', expect.anything());
    } finally {
      error.mockRestore();
    }
    expect(deleted()).toEqual([A]);
    expect(claimOf(token)).toMatchObject({ State: 'answered' });
  });

  test('a successful isComplete (and one still waiting) writes nothing to the claim table', async () => {
    const { token, polled } = await answered();
    const tags = madeBy(p, token, deliveryOf());
    ddbMock.resetHistory();
    ec2Mock.on(DescribeSnapshotsCommand, { SnapshotIds: [A] })
      .resolvesOnce({ Snapshots: [snap(A, 'pending', tags)] })
      .resolves({ Snapshots: [snap(A, 'completed', tags)] });
    tokenLookups(token, [snap(A, 'completed', tags)]);
    await expect(isComplete(polled)).resolves.toEqual({ IsComplete: false });
    await expect(isComplete(polled)).resolves.toEqual({ IsComplete: true });
    expect(ddbMock.calls()).toHaveLength(0);
    expect(claimOf(token)).toMatchObject({ State: 'answered' });
  });
});
