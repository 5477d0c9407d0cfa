import { EC2Client } from '@aws-sdk/client-ec2';
import { CLIENT_CONFIG, once } from './config';

export const ec2 = once(() => new EC2Client(CLIENT_CONFIG));
/**
 * For EC2 CreateSnapshot and CreateSnapshots only: no SDK retries, because EC2 takes no client token
 * for them and a retried create may make a second snapshot. The handler decides about a retry
 * itself, after looking up what the first attempt may have made.
 */
export const ec2Create = once(() => new EC2Client({ ...CLIENT_CONFIG, maxAttempts: 1 }));
