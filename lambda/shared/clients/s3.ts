import { S3Client } from '@aws-sdk/client-s3';
import { CLIENT_CONFIG, once } from './config';

export const s3 = once(() => new S3Client(CLIENT_CONFIG));
