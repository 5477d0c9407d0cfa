import { FSxClient } from '@aws-sdk/client-fsx';
import { CLIENT_CONFIG, once } from './config';

export const fsx = once(() => new FSxClient(CLIENT_CONFIG));
