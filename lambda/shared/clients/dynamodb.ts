import { DynamoDBClient } from '@aws-sdk/client-dynamodb';
import { CLIENT_CONFIG, once } from './config';

export const dynamodb = once(() => new DynamoDBClient(CLIENT_CONFIG));
