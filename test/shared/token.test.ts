import { TOKEN_PATTERN, requestToken, stableHash, tickToken } from '../../lambda/shared/token';

const event = {
  StackId: 'arn:aws:cloudformation:us-east-1:111111111111:stack/app/0e1a2b3c-0000-0000-0000-000000000000',
  LogicalResourceId: 'BeforeRelease87E05027',
  RequestId: 'd5c3c5d4-5f4e-4a4b-9b0e-000000000001',
};

// The limits of every API a token is passed to.
const FSX_CLIENT_REQUEST_TOKEN = /^[A-Za-z0-9_.-]{1,63}$/;
const EBS_CLIENT_TOKEN = /^[\x20-\x7e]{1,64}$/;

describe('requestToken', () => {
  test('fits FSx ClientRequestToken and EBS ClientToken', () => {
    const token = requestToken(event);
    expect(token).toMatch(TOKEN_PATTERN);
    expect(token).toMatch(FSX_CLIENT_REQUEST_TOKEN);
    expect(token).toMatch(EBS_CLIENT_TOKEN);
  });

  test('the same request (a retry keeps its RequestId) gives the same token', () => {
    expect(requestToken({ ...event })).toBe(requestToken(event));
  });

  test.each([
    ['another request', { RequestId: 'd5c3c5d4-5f4e-4a4b-9b0e-000000000002' }],
    ['another resource', { LogicalResourceId: 'OtherSnapshot1234' }],
    ['another stack', { StackId: event.StackId.replace('/app/', '/app2/') }],
  ])('%s gives another token', (_, change) => {
    expect(requestToken({ ...event, ...change })).not.toBe(requestToken(event));
  });

  test('parts cannot be shifted between fields to collide', () => {
    const a = requestToken({ StackId: 'a', LogicalResourceId: 'bc', RequestId: 'd' });
    const b = requestToken({ StackId: 'ab', LogicalResourceId: 'c', RequestId: 'd' });
    expect(a).not.toBe(b);
  });

  test('refuses an empty identity part', () => {
    expect(() => requestToken({ ...event, RequestId: '' })).toThrow(/empty identity part/);
  });

  test('stays within the limits for identities of any length', () => {
    const long = 'x'.repeat(10_000);
    expect(requestToken({ StackId: long, LogicalResourceId: long, RequestId: long })).toMatch(FSX_CLIENT_REQUEST_TOKEN);
  });
});

describe('tickToken', () => {
  const tick = { scheduleId: `${event.StackId}/Nightly`, target: 'fs-0123456789abcdef0', scheduledTime: '2026-11-22T02:00:00Z' };

  test('a duplicate delivery of the same tick gives the same token', () => {
    expect(tickToken({ ...tick })).toBe(tickToken(tick));
    expect(tickToken(tick)).toMatch(FSX_CLIENT_REQUEST_TOKEN);
  });

  test.each([
    ['another tick', { scheduledTime: '2026-11-23T02:00:00Z' }],
    ['another target', { target: 'fs-0123456789abcdef1' }],
    ['another schedule', { scheduleId: `${event.StackId}/Hourly` }],
  ])('%s gives another token', (_, change) => {
    expect(tickToken({ ...tick, ...change })).not.toBe(tickToken(tick));
  });

  test('a tick token never equals a request token of the same parts', () => {
    expect(tickToken({ scheduleId: 'a', target: 'b', scheduledTime: 'c' })).not.toBe(
      requestToken({ StackId: 'a', LogicalResourceId: 'b', RequestId: 'c' }),
    );
  });
});

describe('stableHash', () => {
  test('ignores key order and undefined values', () => {
    expect(stableHash({ a: 1, b: 'x', c: undefined })).toBe(stableHash({ b: 'x', a: 1 }));
  });

  test('sees every value', () => {
    expect(stableHash({ a: 1, b: 'x' })).not.toBe(stableHash({ a: 1, b: 'y' }));
    expect(stableHash({ a: [1, 2] })).not.toBe(stableHash({ a: [2, 1] }));
  });
});
