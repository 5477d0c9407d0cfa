import { SQSClient } from '@aws-sdk/client-sqs';
import { CLIENT_CONFIG, once } from './config';

export const sqs = once(() => new SQSClient(CLIENT_CONFIG));
