import { DeleteItemCommand, DynamoDBClient, GetItemCommand, PutItemCommand, UpdateItemCommand } from '@aws-sdk/client-dynamodb';
import { rejection } from '../fixtures/events';
import { FakeDynamoDbOptions } from '../support/fake-dynamodb';
import { ScriptedFault } from '../support/faults';
import { SimWorld } from '../support/sim-world';

const TABLE = 'claims';
const ddb = new DynamoDBClient({ region: 'us-east-1' });
const HOUR = 3_600_000;

let world: SimWorld;
function newWorld(options: { seed?: number; dynamodb?: FakeDynamoDbOptions; scripted?: ScriptedFault[]; ttl?: boolean } = {}): SimWorld {
  world = new SimWorld({ seed: options.seed ?? 1, dynamodb: options.dynamodb, scripted: options.scripted });
  world.dynamodb.createTable(TABLE, 'Token', options.ttl === false ? undefined : 'ExpiresAt');
  return world;
}
afterEach(() => world?.dispose());

/** The ExpressionAttributeNames/Values an expression uses, out of a pool (unused placeholders are a ValidationException). */
function placeholders(expressions: string, names: Record<string, string>, values: Record<string, any>) {
  const used = (pool: Record<string, any>): Record<string, any> => Object.fromEntries(Object.entries(pool).filter(([k]) => new RegExp(`${k}\\b`).test(expressions)));
  const n = used(names);
  const v = used(values);
  return { ...(Object.keys(n).length ? { ExpressionAttributeNames: n } : {}), ...(Object.keys(v).length ? { ExpressionAttributeValues: v } : {}) };
}

const claimItem = (owner: string, extra: Record<string, any> = {}) => ({ Token: { S: 'tok' }, Owner: { S: owner }, Fence: { N: '10' }, State: { S: 'claimed' }, ...extra });

function claimPut(owner: string, extra: Record<string, any> = {}) {
  return new PutItemCommand({
    TableName: TABLE,
    Item: claimItem(owner),
    ConditionExpression: 'attribute_not_exists(#k)',
    ExpressionAttributeNames: { '#k': 'Token' },
    ...extra,
  });
}

const get = async (consistent = true) => (await ddb.send(new GetItemCommand({ TableName: TABLE, Key: { Token: { S: 'tok' } }, ConsistentRead: consistent }))).Item;

describe('conditional writes', () => {
  test('of two puts with attribute_not_exists, exactly the first wins', async () => {
    newWorld();
    await ddb.send(claimPut('a'));
    const err = await rejection(ddb.send(claimPut('b')));
    expect(err.name).toBe('ConditionalCheckFailedException');
    expect(err.message).toBe('The conditional request failed');
    expect(err.$metadata.httpStatusCode).toBe(400);
    expect(err.Item).toBeUndefined();
    expect((await get())?.Owner).toEqual({ S: 'a' });
    expect(world.dynamodb.items(TABLE)).toEqual([{ Token: 'tok', Owner: 'a', Fence: 10, State: 'claimed' }]);
  });

  test('ReturnValuesOnConditionCheckFailure ALL_OLD puts the current item on the error', async () => {
    newWorld();
    await ddb.send(claimPut('a'));
    const err = await rejection(ddb.send(claimPut('b', { ReturnValuesOnConditionCheckFailure: 'ALL_OLD' })));
    expect(err.name).toBe('ConditionalCheckFailedException');
    expect(err.Item).toEqual(claimItem('a'));
    // On a missing item, a failed condition carries no Item.
    const missing = await rejection(ddb.send(new UpdateItemCommand({
      TableName: TABLE,
      Key: { Token: { S: 'other' } },
      UpdateExpression: 'SET Fence = :f',
      ConditionExpression: 'attribute_exists(Token)',
      ExpressionAttributeValues: { ':f': { N: '1' } },
      ReturnValuesOnConditionCheckFailure: 'ALL_OLD',
    })));
    expect(missing.name).toBe('ConditionalCheckFailedException');
    expect(missing.Item).toBeUndefined();
    expect(world.dynamodb.items(TABLE)).toHaveLength(1);
  });

  const NAMES = { '#o': 'Owner', '#f': 'Fence', '#s': 'State', '#m': 'Missing' };
  const VALUES = {
    ':a': { S: 'a' },
    ':b': { S: 'b' },
    ':nine': { N: '9' },
    ':ten': { N: '10' },
    ':eleven': { N: '11' },
    ':tenf': { N: '10.0' },
    ':claimed': { S: 'claimed' },
    ':other': { S: 'other' },
  };
  test.each([
    ['#o = :a AND #f = :ten', true],
    ['#o = :b AND #f = :ten', false],
    ['#o = :b OR #f = :ten', true],
    ['NOT #o = :b', true],
    ['NOT NOT #o = :b', false],
    // NOT binds tighter than OR: (NOT o=a) OR f=10.
    ['NOT #o = :a OR #f = :ten', true],
    // AND binds tighter than OR: (F AND T) OR T.
    ['#o = :b AND #f = :ten OR #s = :claimed', true],
    // T OR (T AND F), not (T OR T) AND F.
    ['#o = :a OR #f = :ten AND #s = :other', true],
    ['(#o = :a OR #f = :ten) AND #s = :other', false],
    ['NOT (#o = :a AND #f = :ten)', false],
    ['#f < :eleven', true],
    ['#f < :ten', false],
    ['#f <= :ten', true],
    ['#f > :nine', true],
    ['#f > :ten', false],
    ['#f >= :ten', true],
    ['#f <> :ten', false],
    ['#f <> :nine', true],
    ['#f = :tenf', true],
    [':nine < #f', true],
    ['#o = #o', true],
    ['#o = :ten', false],
    ['#o < :ten', false],
    ['Owner = :a and Fence = :ten', true],
    ['#m = :ten', false],
    ['#m < :ten', false],
    ['#m >= :ten', false],
    ['#m <> :ten', true],
    ['attribute_exists(#m)', false],
    ['attribute_not_exists(#m)', true],
    ['attribute_exists(#o) AND attribute_not_exists(#m)', true],
  ])('the condition %s is %s on the item', async (condition, holds) => {
    newWorld();
    world.dynamodb.seedItem(TABLE, claimItem('a'));
    const out = ddb.send(new UpdateItemCommand({
      TableName: TABLE,
      Key: { Token: { S: 'tok' } },
      UpdateExpression: 'SET Touched = :true',
      ConditionExpression: condition,
      ...placeholders(`${condition} :true`, NAMES, { ...VALUES, ':true': { BOOL: true } }),
    }));
    if (holds) await out;
    else expect((await rejection(out)).name).toBe('ConditionalCheckFailedException');
    expect(world.dynamodb.item(TABLE, 'tok')?.Touched).toBe(holds ? true : undefined);
  });

  test('numbers compare numerically, strings by their bytes', async () => {
    newWorld();
    world.dynamodb.seedItem(TABLE, { Token: { S: 'tok' }, N: { N: '9' }, S: { S: '9' } });
    const holds = async (condition: string, values: Record<string, any>) => {
      try {
        await ddb.send(new DeleteItemCommand({ TableName: TABLE, Key: { Token: { S: 'tok' } }, ConditionExpression: condition, ExpressionAttributeValues: values }));
        world.dynamodb.seedItem(TABLE, { Token: { S: 'tok' }, N: { N: '9' }, S: { S: '9' } });
        return true;
      } catch (err) {
        if ((err as Error).name !== 'ConditionalCheckFailedException') throw err;
        return false;
      }
    };
    expect(await holds('N < :v', { ':v': { N: '10' } })).toBe(true);
    expect(await holds('S < :v', { ':v': { S: '10' } })).toBe(false);
    expect(await holds('S > :v', { ':v': { S: '10' } })).toBe(true);
    expect(await holds('N > :v', { ':v': { N: '-100' } })).toBe(true);
    expect(await holds('N < :v', { ':v': { N: '9.5' } })).toBe(true);
    expect(await holds('N = :v', { ':v': { N: '9.00' } })).toBe(true);
    expect(await holds('N < :v', { ':v': { N: '12345678901234567890123' } })).toBe(true);
  });
});

describe('update expressions', () => {
  const update = (expression: string, extra: Record<string, any> = {}) => ddb.send(new UpdateItemCommand({
    TableName: TABLE, Key: { Token: { S: 'tok' } }, UpdateExpression: expression, ReturnValues: 'ALL_NEW', ...extra,
  }));

  test('if_not_exists, list_append, arithmetic and REMOVE, on an item UpdateItem creates', async () => {
    newWorld();
    const values = { ':zero': { N: '0' }, ':one': { N: '1' }, ':empty': { L: [] }, ':me': { L: [{ S: 'a' }] } };
    const first = await update('SET #n = if_not_exists(#n, :zero) + :one, #cr = list_append(if_not_exists(#cr, :empty), :me)', {
      ExpressionAttributeNames: { '#n': 'Count', '#cr': 'Creators' }, ExpressionAttributeValues: values,
    });
    expect(first.Attributes).toEqual({ Token: { S: 'tok' }, Count: { N: '1' }, Creators: { L: [{ S: 'a' }] } });
    const second = await update('SET #n = if_not_exists(#n, :zero) + :one, #cr = list_append(:me, #cr)', {
      ExpressionAttributeNames: { '#n': 'Count', '#cr': 'Creators' }, ExpressionAttributeValues: { ':zero': { N: '0' }, ':one': { N: '1' }, ':me': { L: [{ S: 'b' }] } },
    });
    expect(second.Attributes).toEqual({ Token: { S: 'tok' }, Count: { N: '2' }, Creators: { L: [{ S: 'b' }, { S: 'a' }] } });
    // REMOVE before SET, keywords in any case; the right-hand sides see the item before the update.
    const third = await update('remove Creators set Count = Count - :two, Was = Count', { ExpressionAttributeValues: { ':two': { N: '2' } } });
    expect(third.Attributes).toEqual({ Token: { S: 'tok' }, Count: { N: '0' }, Was: { N: '2' } });
    const fourth = await update('SET Count = Count + :half REMOVE Was', { ExpressionAttributeValues: { ':half': { N: '0.5' } } });
    expect(fourth.Attributes).toEqual({ Token: { S: 'tok' }, Count: { N: '0.5' } });
    expect(world.dynamodb.item(TABLE, 'tok')).toEqual({ Token: 'tok', Count: 0.5 });
  });

  test('ReturnValues ALL_OLD, UPDATED_OLD, UPDATED_NEW and NONE', async () => {
    newWorld();
    world.dynamodb.seedItem(TABLE, claimItem('a'));
    const values = { ':b': { S: 'b' } };
    expect((await update('SET Owner = :b', { ExpressionAttributeValues: values, ReturnValues: 'ALL_OLD' })).Attributes).toEqual(claimItem('a'));
    expect((await update('SET Owner = :b', { ExpressionAttributeValues: values, ReturnValues: 'UPDATED_OLD' })).Attributes).toEqual({ Owner: { S: 'b' } });
    expect((await update('REMOVE Fence', { ReturnValues: 'UPDATED_OLD' })).Attributes).toEqual({ Fence: { N: '10' } });
    expect((await update('SET Owner = :c', { ExpressionAttributeValues: { ':c': { S: 'c' } }, ReturnValues: 'UPDATED_NEW' })).Attributes).toEqual({ Owner: { S: 'c' } });
    expect((await update('REMOVE State', { ReturnValues: 'NONE' })).Attributes).toBeUndefined();
    expect(world.dynamodb.item(TABLE, 'tok')).toEqual({ Token: 'tok', Owner: 'c' });
  });

  test.each([
    ['list_append of a missing attribute', 'SET L = list_append(L, :l)', { ':l': { L: [] } }, /does not exist in the item/],
    ['list_append of a non-list', 'SET L = list_append(Owner, :l)', { ':l': { L: [] } }, /Incorrect operand type.*list_append/],
    ['+ of a string', 'SET F = Owner + :one', { ':one': { N: '1' } }, /Incorrect operand type.*\+/],
    ['a missing path on the right', 'SET F = Nope', undefined, /does not exist in the item/],
    ['an undefined value placeholder', 'SET F = :nope', { ':one': { N: '1' } }, /attribute value used in expression is not defined/],
    ['an unused value placeholder', 'SET F = :one', { ':one': { N: '1' }, ':two': { N: '2' } }, /unused in expressions: keys: \{:two\}/],
    ['an undefined name placeholder', 'SET #nope = :one', { ':one': { N: '1' } }, /attribute name used in the document path is not defined/],
    ['the same path twice', 'SET F = :one REMOVE F', { ':one': { N: '1' } }, /overlap/],
    ['the key', 'SET Token = :t', { ':t': { S: 'x' } }, /part of the key/],
    ['two SET sections', 'SET F = :one SET G = :one', { ':one': { N: '1' } }, /only be used once/],
    ['a syntax error', 'SET F = = :one', { ':one': { N: '1' } }, /Syntax error/],
    ['a chain of +', 'SET F = :one + :one + :one', { ':one': { N: '1' } }, /Syntax error/],
    ['a stray character', 'SET F = :one;', { ':one': { N: '1' } }, /Syntax error/],
    ['an unknown function', 'SET F = nope(:one)', { ':one': { N: '1' } }, /Invalid function name/],
    ['an empty expression', '  ', undefined, /can not be empty/],
  ])('%s is a ValidationException', async (_what, expression, values, message) => {
    newWorld();
    world.dynamodb.seedItem(TABLE, claimItem('a'));
    const err = await rejection(update(expression, values ? { ExpressionAttributeValues: values } : {}));
    expect(err.name).toBe('ValidationException');
    expect(err.$metadata.httpStatusCode).toBe(400);
    expect(err.message).toMatch(message);
    expect(world.dynamodb.history(TABLE, 'tok')).toHaveLength(1);
  });

  test('conditions and keys are validated too', async () => {
    newWorld();
    const put = (input: Record<string, any>) => rejection(ddb.send(new PutItemCommand({ TableName: TABLE, Item: claimItem('a'), ...input })));
    expect((await put({ ConditionExpression: 'attribute_not_exists(#k)' })).message).toMatch(/not defined; attribute name: #k/);
    expect((await put({ ConditionExpression: 'attribute_not_exists(Token)', ExpressionAttributeNames: { '#k': 'Token' } })).message).toMatch(/unused/);
    expect((await put({ ConditionExpression: 'attribute_not_exists(Token) AND' })).message).toMatch(/Syntax error/);
    expect((await put({ ConditionExpression: '(attribute_not_exists(Token)' })).message).toMatch(/Syntax error/);
    expect((await put({ ConditionExpression: 'Fence' })).message).toMatch(/Syntax error/);
    expect((await put({ Item: { Owner: { S: 'a' } } })).message).toMatch(/Missing the key Token/);
    expect((await put({ Item: { Token: { N: '1' } } })).message).toMatch(/Type mismatch for key Token/);
    expect((await put({ Item: { Token: { S: '' } } })).message).toMatch(/empty string/);
    expect((await put({ Item: { Token: { S: 'x' }, F: { N: 'ten' } } })).message).toMatch(/cannot be converted into a number/);
    expect((await put({ ReturnValues: 'ALL_NEW' })).name).toBe('ValidationException');
    expect((await put({ Item: { Token: { S: 'x' }, Big: { S: 'x'.repeat(401 * 1024) } } })).message).toMatch(/maximum allowed size/);
    const badKey = await rejection(ddb.send(new GetItemCommand({ TableName: TABLE, Key: { Token: { S: 'x' }, Owner: { S: 'a' } } })));
    expect(badKey.name).toBe('ValidationException');
    expect(badKey.message).toMatch(/key element does not match the schema/);
    expect(world.dynamodb.items(TABLE)).toEqual([]);
  });
});

describe('read consistency', () => {
  /** Writes v1, then v2 300 ms later, and reads 100 ms after that: a stale read may see v2, v1 or nothing. */
  async function readMany(consistent: boolean, reads = 300): Promise<Record<string, number>> {
    await ddb.send(new PutItemCommand({ TableName: TABLE, Item: claimItem('v1') }));
    world.clock.advance(300);
    await ddb.send(new PutItemCommand({ TableName: TABLE, Item: claimItem('v2') }));
    world.clock.advance(100);
    const seen: Record<string, number> = {};
    for (let i = 0; i < reads; i++) {
      const owner = (await get(consistent))?.Owner?.S ?? 'none';
      seen[owner] = (seen[owner] ?? 0) + 1;
    }
    return seen;
  }

  test('without ConsistentRead, a read may return an older version, or none', async () => {
    newWorld();
    const seen = await readMany(false);
    expect(seen.v2).toBeGreaterThan(150);
    expect(seen.v1).toBeGreaterThan(10);
    expect(seen.none).toBeGreaterThan(10);
  });

  test('with ConsistentRead, always the latest', async () => {
    newWorld();
    expect(await readMany(true)).toEqual({ v2: 300 });
  });

  test('staleReadRate 0 and maxStaleMs bound the staleness', async () => {
    newWorld({ dynamodb: { staleReadRate: 0 } });
    expect(await readMany(false)).toEqual({ v2: 300 });
    newWorld({ dynamodb: { staleReadRate: 1, maxStaleMs: 200 } });
    const seen = await readMany(false);
    expect(seen.none).toBeUndefined();
    expect(seen.v1).toBeGreaterThan(100);
    expect(seen.v2).toBeGreaterThan(100);
  });

  test('writes check their conditions against the latest version', async () => {
    newWorld({ dynamodb: { staleReadRate: 1 } });
    await ddb.send(claimPut('a'));
    for (let i = 0; i < 20; i++) expect((await rejection(ddb.send(claimPut('b')))).name).toBe('ConditionalCheckFailedException');
  });
});

describe('TTL', () => {
  test('an expired item is still read (and seen by conditions) until its deletion lag has passed, then it is gone', async () => {
    const lags: number[] = [];
    for (const seed of [1, 2, 3, 4]) {
      newWorld({ seed, dynamodb: { maxTtlDeleteLagMs: 10 * HOUR } });
      const expiry = world.clock.now() + 60_000;
      await ddb.send(claimPut('a', { Item: claimItem('a', { ExpiresAt: { N: String(expiry / 1000) } }) }));
      world.clock.advance(60_001);
      expect((await get())?.Owner).toEqual({ S: 'a' });
      expect((await rejection(ddb.send(claimPut('b')))).name).toBe('ConditionalCheckFailedException');
      let steps = 0;
      while ((await get()) !== undefined && steps < 100) {
        world.clock.advance(HOUR / 4);
        steps++;
      }
      expect(steps).toBeLessThanOrEqual(40);
      expect(world.dynamodb.items(TABLE)).toEqual([]);
      const last = world.dynamodb.history(TABLE, 'tok').at(-1)!;
      expect(last).toMatchObject({ item: undefined, ttlDeleted: true, seq: undefined });
      expect(last.at).toBeGreaterThanOrEqual(expiry);
      expect(last.at).toBeLessThanOrEqual(expiry + 10 * HOUR);
      lags.push(last.at - expiry);
      // Once deleted, the request can be claimed again.
      await ddb.send(claimPut('b'));
      world.dispose();
    }
    expect(new Set(lags).size).toBe(4);
    expect(Math.max(...lags)).toBeGreaterThan(HOUR);
  });

  test('with no TTL attribute on the table, or a TTL that is no number, the item stays', async () => {
    newWorld({ ttl: false, dynamodb: { maxTtlDeleteLagMs: 0 } });
    await ddb.send(new PutItemCommand({ TableName: TABLE, Item: claimItem('a', { ExpiresAt: { N: '1' } }) }));
    world.clock.advance(100 * HOUR);
    expect(await get()).toBeDefined();
    world.dispose();
    newWorld({ dynamodb: { maxTtlDeleteLagMs: 0 } });
    await ddb.send(new PutItemCommand({ TableName: TABLE, Item: claimItem('a', { ExpiresAt: { S: '1' } }) }));
    world.clock.advance(100 * HOUR);
    expect(await get()).toBeDefined();
    await ddb.send(new PutItemCommand({ TableName: TABLE, Item: claimItem('a', { ExpiresAt: { N: String(world.clock.now() / 1000 - 1) } }) }));
    expect(await get()).toBeUndefined();
  });
});

describe('tables', () => {
  test('a deleted (or unknown) table answers ResourceNotFoundException to every call', async () => {
    newWorld();
    await ddb.send(claimPut('a'));
    world.dynamodb.deleteTable(TABLE);
    const key = { Token: { S: 'tok' } };
    for (const command of [
      new GetItemCommand({ TableName: TABLE, Key: key, ConsistentRead: true }),
      claimPut('b'),
      new UpdateItemCommand({ TableName: TABLE, Key: key, UpdateExpression: 'REMOVE Owner' }),
      new DeleteItemCommand({ TableName: TABLE, Key: key }),
      new GetItemCommand({ TableName: 'nope', Key: key }),
    ]) {
      const err = await rejection(ddb.send(command as GetItemCommand));
      expect(err.name).toBe('ResourceNotFoundException');
      expect(err.message).toBe('Requested resource not found');
      expect(err.$metadata.httpStatusCode).toBe(400);
    }
    // Its history stays for the invariants.
    expect(world.dynamodb.history(TABLE, 'tok')).toHaveLength(1);
  });

  test('DeleteItem deletes, conditionally, and returns ALL_OLD', async () => {
    newWorld();
    await ddb.send(claimPut('a'));
    const del = (owner: string) => ddb.send(new DeleteItemCommand({
      TableName: TABLE, Key: { Token: { S: 'tok' } }, ConditionExpression: 'Owner = :o', ExpressionAttributeValues: { ':o': { S: owner } }, ReturnValues: 'ALL_OLD',
    }));
    expect((await rejection(del('b'))).name).toBe('ConditionalCheckFailedException');
    expect((await del('a')).Attributes).toEqual(claimItem('a'));
    expect(await get()).toBeUndefined();
  });
});

describe('faults', () => {
  test('a scripted throttle, 5xx or network error refuses the call before it acts', async () => {
    newWorld({
      scripted: [
        { kind: 'throttle', service: 'dynamodb' },
        { kind: 'server-error', service: 'dynamodb', command: 'PutItemCommand' },
        { kind: 'network', service: 'dynamodb', command: 'PutItemCommand' },
      ],
    });
    const throttled = await rejection(ddb.send(claimPut('a')));
    expect(throttled.name).toBe('ThrottlingException');
    expect(throttled.$metadata.httpStatusCode).toBe(400);
    const failed = await rejection(ddb.send(claimPut('a')));
    expect(failed.name).toBe('InternalServerError');
    expect(failed.$metadata.httpStatusCode).toBe(500);
    expect((await rejection(ddb.send(claimPut('a')))).code).toBe('ECONNRESET');
    expect(world.dynamodb.history(TABLE, 'tok')).toEqual([]);
    await ddb.send(claimPut('a'));
    expect(world.core.log.map((r) => r.outcome)).toEqual(['fault:ThrottlingException', 'fault:InternalServerError', 'fault:ECONNRESET', 'ok']);
    expect(world.faults.injected).toEqual({ 'throttle': 1, 'server-error': 1, 'network': 1 });
  });

  test('a lost response: the put acted, and its retry meets its own write', async () => {
    newWorld({ scripted: [{ kind: 'lost-response', service: 'dynamodb' }] });
    const lost = await rejection(ddb.send(claimPut('a', { ReturnValuesOnConditionCheckFailure: 'ALL_OLD' })));
    expect(lost.code).toBe('ECONNRESET');
    expect(world.dynamodb.item(TABLE, 'tok')?.Owner).toBe('a');
    const retry = await rejection(ddb.send(claimPut('a', { ReturnValuesOnConditionCheckFailure: 'ALL_OLD' })));
    expect(retry.name).toBe('ConditionalCheckFailedException');
    expect(retry.Item.Owner).toEqual({ S: 'a' });
    expect(world.core.log.map((r) => [r.command, r.outcome, r.resourceId])).toEqual([
      ['PutItemCommand', 'ok+lost-response', 'claims/tok'],
      ['PutItemCommand', 'ConditionalCheckFailedException', undefined],
    ]);
  });

  test('a hung response: the update acted, and the caller times out after 30 s', async () => {
    newWorld({ scripted: [{ kind: 'hung-response', service: 'dynamodb', command: 'UpdateItemCommand' }] });
    await ddb.send(claimPut('a'));
    const start = world.clock.now();
    const err = await rejection(ddb.send(new UpdateItemCommand({
      TableName: TABLE, Key: { Token: { S: 'tok' } }, UpdateExpression: 'SET Owner = :b', ExpressionAttributeValues: { ':b': { S: 'b' } },
    })));
    expect(err.name).toBe('TimeoutError');
    expect(world.clock.now() - start).toBe(30_000);
    expect(world.dynamodb.item(TABLE, 'tok')?.Owner).toBe('b');
  });

  test('reads are not logged as mutating calls, and are never lost after acting', async () => {
    newWorld({ scripted: [{ kind: 'lost-response', service: 'dynamodb' }] });
    world.dynamodb.seedItem(TABLE, claimItem('a'));
    expect(await get()).toEqual(claimItem('a'));
    expect(world.core.log).toEqual([]);
    expect(world.core.callCounts['dynamodb:GetItemCommand']).toBe(1);
  });
});

describe('history', () => {
  test('every version, by the call that wrote it; failed conditions write none; itemBefore a call', async () => {
    newWorld();
    await ddb.send(claimPut('a'));
    world.clock.advance(1_000);
    const takeOver = (from: string, to: string) => ddb.send(new UpdateItemCommand({
      TableName: TABLE,
      Key: { Token: { S: 'tok' } },
      UpdateExpression: 'SET #o = :to',
      ConditionExpression: '#o = :from',
      ExpressionAttributeNames: { '#o': 'Owner' },
      ExpressionAttributeValues: { ':to': { S: to }, ':from': { S: from } },
    }));
    await rejection(takeOver('x', 'b'));
    world.clock.advance(1_000);
    await takeOver('a', 'b');
    await ddb.send(new DeleteItemCommand({ TableName: TABLE, Key: { Token: { S: 'tok' } } }));
    const seqs = world.core.log.map((r) => r.seq);
    expect(world.core.log.map((r) => r.command)).toEqual(['PutItemCommand', 'UpdateItemCommand', 'UpdateItemCommand', 'DeleteItemCommand']);
    const t0 = world.core.log[0].at;
    expect(world.dynamodb.history(TABLE, 'tok')).toEqual([
      { seq: seqs[0], at: t0, item: { Token: 'tok', Owner: 'a', Fence: 10, State: 'claimed' } },
      { seq: seqs[2], at: t0 + 2_000, item: { Token: 'tok', Owner: 'b', Fence: 10, State: 'claimed' } },
      { seq: seqs[3], at: t0 + 2_000, item: undefined },
    ]);
    expect(world.dynamodb.itemBefore(TABLE, 'tok', seqs[0])).toBeUndefined();
    expect(world.dynamodb.itemBefore(TABLE, 'tok', seqs[1])?.Owner).toBe('a');
    expect(world.dynamodb.itemBefore(TABLE, 'tok', seqs[2])?.Owner).toBe('a');
    expect(world.dynamodb.itemBefore(TABLE, 'tok', seqs[3])?.Owner).toBe('b');
    expect(world.dynamodb.history(TABLE, 'other')).toEqual([]);
  });

  test('itemBefore a call that came after a TTL deletion sees no item', async () => {
    newWorld({ dynamodb: { maxTtlDeleteLagMs: HOUR } });
    const expiry = world.clock.now() + 1_000;
    await ddb.send(claimPut('a', { Item: claimItem('a', { ExpiresAt: { N: String(expiry / 1000) } }) }));
    world.clock.advance(2 * HOUR);
    await ddb.send(claimPut('b'));
    const [first, second] = world.core.log.map((r) => r.seq);
    expect(world.dynamodb.itemBefore(TABLE, 'tok', second)).toBeUndefined();
    expect(world.dynamodb.history(TABLE, 'tok').map((v) => [v.seq, v.item?.Owner, v.ttlDeleted])).toEqual([
      [first, 'a', undefined], [undefined, undefined, true], [second, 'b', undefined],
    ]);
  });
});

describe('rewriteInput', () => {
  test('a handler that forgets its condition: both puts win', async () => {
    newWorld({
      dynamodb: {
        rewriteInput: (command, input) => (command === 'PutItemCommand'
          ? { ...input, ConditionExpression: undefined, ExpressionAttributeNames: undefined }
          : input),
      },
    });
    await ddb.send(claimPut('a'));
    await ddb.send(claimPut('b'));
    expect(world.dynamodb.item(TABLE, 'tok')?.Owner).toBe('b');
    // The log holds the input as the fake processed it.
    expect((world.core.log[1].input as any).ConditionExpression).toBeUndefined();
  });

  test('a handler that forgets ConsistentRead reads stale items', async () => {
    newWorld({ dynamodb: { rewriteInput: (command, input) => (command === 'GetItemCommand' ? { ...input, ConsistentRead: false } : input) } });
    await ddb.send(claimPut('a'));
    world.clock.advance(500);
    const owners = new Set<string | undefined>();
    for (let i = 0; i < 50; i++) owners.add((await get(true))?.Owner?.S);
    expect(owners).toEqual(new Set(['a', undefined]));
  });

  test('the caller\'s input is not changed by the rewrite', async () => {
    const strip = (_command: string, input: any) => Object.assign(input, { ConditionExpression: undefined, ExpressionAttributeNames: undefined });
    newWorld({ dynamodb: { rewriteInput: strip } });
    const put = claimPut('a');
    await ddb.send(put);
    expect(put.input.ConditionExpression).toBe('attribute_not_exists(#k)');
  });
});
