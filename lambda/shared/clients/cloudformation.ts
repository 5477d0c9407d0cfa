import { CloudFormationClient } from '@aws-sdk/client-cloudformation';
import { CLIENT_CONFIG, once } from './config';

export const cloudformation = once(() => new CloudFormationClient(CLIENT_CONFIG));
