import { Agent } from 'https';
import { EBSClient } from '@aws-sdk/client-ebs';
import { S3Client } from '@aws-sdk/client-s3';
import { MAX_CONCURRENCY, READ_AHEAD_CHUNKS } from './upload';
import { CLIENT_CONFIG, REQUEST_TIMEOUT_MS, once } from '../shared/clients/config';

/*
 * The upload's own clients: the shared ones keep the SDK's default of 50 sockets, and an upload
 * runs up to MAX_CONCURRENCY block writes and READ_AHEAD_CHUNKS ranged reads at once over
 * kept-alive connections. A request silent for 30 s fails (and is retried) rather than hanging the
 * invocation into its Lambda timeout, which would fail the deploy. Created once per container.
 */
export const uploadEbs = once(() => new EBSClient({
  ...CLIENT_CONFIG,
  requestHandler: {
    httpsAgent: new Agent({ keepAlive: true, maxSockets: MAX_CONCURRENCY + 8 }),
    connectionTimeout: 5_000,
    socketTimeout: REQUEST_TIMEOUT_MS,
  },
}));

export const imageS3 = once(() => new S3Client({
  ...CLIENT_CONFIG,
  requestHandler: {
    httpsAgent: new Agent({ keepAlive: true, maxSockets: READ_AHEAD_CHUNKS + 4 }),
    connectionTimeout: 5_000,
    socketTimeout: REQUEST_TIMEOUT_MS,
  },
}));
