import { EBSClient } from '@aws-sdk/client-ebs';
import { CLIENT_CONFIG, once } from './config';

export const ebs = once(() => new EBSClient(CLIENT_CONFIG));
