/* eslint-disable @typescript-eslint/no-require-imports -- each test loads a fresh copy of a client module */
/*
 * The handlers' SDK clients: created once per container, and the SDK's standard endpoint variables
 * honoured (so the handlers can be pointed at any AWS-compatible endpoint). A local HTTP server
 * records what reaches it.
 */
import * as http from 'http';
import { AddressInfo } from 'net';

const SERVICES = [
  { file: 'fsx', variable: 'AWS_ENDPOINT_URL_FSX', command: ['@aws-sdk/client-fsx', 'DescribeSnapshotsCommand', {}] },
  { file: 'ec2', variable: 'AWS_ENDPOINT_URL_EC2', command: ['@aws-sdk/client-ec2', 'DescribeSnapshotsCommand', {}] },
  { file: 'ebs', variable: 'AWS_ENDPOINT_URL_EBS', command: ['@aws-sdk/client-ebs', 'ListSnapshotBlocksCommand', { SnapshotId: 'snap-0123456789abcdef0' }] },
  { file: 'cloudformation', variable: 'AWS_ENDPOINT_URL_CLOUDFORMATION', command: ['@aws-sdk/client-cloudformation', 'DescribeStacksCommand', {}] },
  { file: 'dynamodb', variable: 'AWS_ENDPOINT_URL_DYNAMODB', command: ['@aws-sdk/client-dynamodb', 'GetItemCommand', { TableName: 'claims', Key: { Token: { S: 'css-1' } } }] },
] as const;

let server: http.Server;
let url: string;
let seen: string[] = [];

beforeAll(async () => {
  server = http.createServer((req, res) => {
    seen.push(`${req.method} ${req.url}`);
    req.resume();
    // A non-retryable error ends the call at once.
    res.writeHead(400, { 'content-type': 'application/json' }).end('{"__type":"ValidationException","message":"local"}');
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  url = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
});
afterAll(() => new Promise<void>((resolve) => server.close(() => resolve())));

const saved = { ...process.env };
beforeEach(() => {
  seen = [];
  Object.assign(process.env, { AWS_REGION: 'us-east-1', AWS_ACCESS_KEY_ID: 'AKIDEXAMPLE', AWS_SECRET_ACCESS_KEY: 'secret' });
});
afterEach(() => {
  process.env = { ...saved };
});

/** Sends one command with a freshly loaded client module; the error is expected (the server refuses). */
async function sendWithFreshClient(file: string, [pkg, name, input]: readonly [string, string, object]) {
  let client: any;
  let Command: any;
  jest.isolateModules(() => {
    client = require(`../../lambda/shared/clients/${file}`)[file]();
    Command = require(pkg)[name];
  });
  await client.send(new Command(input)).catch(() => undefined);
  return client;
}

describe.each(SERVICES)('$file client', ({ file, variable, command }) => {
  test(`honours ${variable}`, async () => {
    process.env[variable] = url;
    await sendWithFreshClient(file, command);
    expect(seen.length).toBeGreaterThanOrEqual(1);
  });

  test('honours AWS_ENDPOINT_URL', async () => {
    process.env.AWS_ENDPOINT_URL = url;
    await sendWithFreshClient(file, command);
    expect(seen.length).toBeGreaterThanOrEqual(1);
  });

  test('is created once per container', () => {
    jest.isolateModules(() => {
      const get = require(`../../lambda/shared/clients/${file}`)[file];
      expect(get()).toBe(get());
    });
  });
});

describe('timeouts: a silent request fails instead of hanging the invocation into its Lambda timeout', () => {
  /** The handler options a client's requests run with. */
  async function handlerOptions(client: any): Promise<{ socketTimeout?: number; connectionTimeout?: number }> {
    return (client.config.requestHandler as any).configProvider;
  }
  const clients: Array<[string, () => any]> = [
    ...(['fsx', 'ec2', 'ebs', 'cloudformation', 's3', 'dynamodb'] as const).map((file): [string, () => any] =>
      [file, () => require(`../../lambda/shared/clients/${file}`)[file]()]),
    ['ec2Create', () => require('../../lambda/shared/clients/ec2').ec2Create()],
    ['uploadEbs', () => require('../../lambda/ebs-direct-snapshot/clients').uploadEbs()],
    ['imageS3', () => require('../../lambda/ebs-direct-snapshot/clients').imageS3()],
  ];

  test.each(clients)('%s gives up after 30 s of silence and 5 s of connecting', async (_, make) => {
    let client: any;
    jest.isolateModules(() => {
      client = make();
    });
    await expect(handlerOptions(client)).resolves.toMatchObject({ socketTimeout: 30_000, connectionTimeout: 5_000 });
  });

  test('that idle timeout ends a silent request with a TimeoutError (requestTimeout alone would only log a warning)', async () => {
    const { CLIENT_CONFIG } = require('../../lambda/shared/clients/config');
    const { EC2Client, DescribeSnapshotsCommand } = require('@aws-sdk/client-ec2');
    const silent = http.createServer(() => undefined); // accepts the request, never answers
    await new Promise<void>((resolve) => silent.listen(0, '127.0.0.1', resolve));
    try {
      const client = new EC2Client({
        ...CLIENT_CONFIG,
        maxAttempts: 1,
        endpoint: `http://127.0.0.1:${(silent.address() as AddressInfo).port}`,
        // The same options with a short idle timeout, so that the test does not wait 30 s.
        requestHandler: { ...CLIENT_CONFIG.requestHandler, socketTimeout: 300 },
      });
      const started = Date.now();
      await expect(client.send(new DescribeSnapshotsCommand({}))).rejects.toMatchObject({ name: 'TimeoutError' });
      expect(Date.now() - started).toBeLessThan(5_000);
    } finally {
      silent.closeAllConnections();
      await new Promise<void>((resolve) => silent.close(() => resolve()));
    }
  });
});
