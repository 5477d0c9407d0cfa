import { EC2Client } from '@aws-sdk/client-ec2';
import { CLIENT_CONFIG, once } from './config';

export const ec2 = once(() => new EC2Client(CLIENT_CONFIG));
