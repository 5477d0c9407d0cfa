import { StartSnapshotCommand } from '@aws-sdk/client-ebs';
import { HeadObjectCommand } from '@aws-sdk/client-s3';
import { imageS3, uploadEbs } from './clients';
import type { EbsSnapshotFromImageAttributes, EbsSnapshotFromImageProperties } from '../../src/private/ebs-direct-contract';
import { CALL_BUDGET_MS } from '../shared/budget';
import { clock } from '../shared/clock';
import { HandlerError, errorCode, errorMessage, step, withRetries } from '../shared/errors';
import type { OnEventRequest, OnEventResponse } from '../shared/events';
import { logger } from '../shared/logger';
import { ownershipTags, parseUserTags, requestOwner, withOwnershipTags } from '../shared/ownership';
import { requestToken } from '../shared/token';

/*
 * A Create (or an Update that replaces): the image is checked, and the snapshot started. The upload
 * is isComplete's (slice.ts).
 */

type Props = EbsSnapshotFromImageProperties;
type Request = OnEventRequest<Props>;
type Response = OnEventResponse<EbsSnapshotFromImageAttributes>;

/** StartSnapshot `Timeout`: EBS cancels the snapshot when nothing is written (or it is not completed) for this long. */
const SNAPSHOT_TIMEOUT_MINUTES = 60;
export const GIB = 1024 ** 3;

export async function create(event: Request, identityHash: (props: Props) => string): Promise<Response> {
  const props = event.ResourceProperties;
  const image = await step(`Reading the image s3://${props.ImageBucket}/${props.ImageKey}`, () => headImage(props));
  const volumeSize = props.VolumeSize ? Number(props.VolumeSize) : Math.max(1, Math.ceil(image.size / GIB));
  checkImage(props, image.size, volumeSize);
  const token = requestToken(event);
  const tags = withOwnershipTags(parseUserTags(props.Tags), ownershipTags(requestOwner(event), identityHash(props), token));
  const out = await step('Starting an EBS snapshot (StartSnapshot)', async () => {
    try {
      return await withRetries(
        () =>
          uploadEbs().send(
            new StartSnapshotCommand({
              VolumeSize: volumeSize,
              ParentSnapshotId: props.ParentSnapshotId,
              Encrypted: props.Encrypted === 'true' ? true : undefined,
              KmsKeyArn: props.KmsKeyArn,
              Description: props.Description,
              Tags: tags,
              Timeout: SNAPSHOT_TIMEOUT_MINUTES,
              ClientToken: token,
            }),
          ),
        { budgetMs: CALL_BUDGET_MS, onRetry: (err, attempt) => logger.warn('retrying StartSnapshot', { attempt, error: errorCode(err) }) },
      );
    } catch (err) {
      throw explainStartError(err, props, token);
    }
  });
  if (!out.SnapshotId) throw new HandlerError('EBS StartSnapshot returned no snapshot id');
  logger.info('snapshot started', { snapshotId: out.SnapshotId, volumeSize, imageBytes: image.size, token });
  return {
    PhysicalResourceId: out.SnapshotId,
    Data: {
      SnapshotId: out.SnapshotId,
      VolumeSize: String(out.VolumeSize ?? volumeSize),
      BlockCount: '',
      ImageSizeBytes: String(image.size),
      ImageETag: image.etag,
      StartedAt: String(clock.now()),
      Origin: 'created',
    },
  };
}

async function headImage(props: Props): Promise<{ size: number; etag: string }> {
  try {
    const out = await withRetries(() => imageS3().send(new HeadObjectCommand({ Bucket: props.ImageBucket, Key: props.ImageKey })), {
      budgetMs: CALL_BUDGET_MS,
    });
    return { size: out.ContentLength ?? 0, etag: out.ETag ?? '' };
  } catch (err) {
    const code = errorCode(err);
    if (code === 'NotFound' || code === 'NoSuchKey' || code === 'Forbidden' || code === 'AccessDenied') {
      throw new HandlerError(
        `The image s3://${props.ImageBucket}/${props.ImageKey} cannot be read (${code}): it does not exist, or the handler may not read it`,
      );
    }
    throw err;
  }
}

/** What only deploy time knows (an S3 object's size) checked as synth checks a local file. */
function checkImage(props: Props, size: number, volumeSize: number): void {
  const where = `s3://${props.ImageBucket}/${props.ImageKey}`;
  if (size === 0) throw new HandlerError(`The image ${where} is empty`);
  if (size % 512 !== 0) throw new HandlerError(`The image ${where} is ${size} bytes, not a multiple of 512 bytes (a disk image is whole sectors)`);
  if (props.ImageSizeBytes && Number(props.ImageSizeBytes) !== size) {
    throw new HandlerError(`The image ${where} is ${size} bytes, but it was ${props.ImageSizeBytes} bytes at synth`);
  }
  if (!Number.isInteger(volumeSize) || volumeSize < 1 || volumeSize > 65_536) {
    throw new HandlerError(`The volume size ${volumeSize} GiB is not between 1 and 65,536 GiB`);
  }
  if (size > volumeSize * GIB) {
    throw new HandlerError(`The image ${where} is ${size} bytes, larger than the volume size of ${volumeSize} GiB`);
  }
}

function explainStartError(err: unknown, props: Props, token: string): unknown {
  switch (errorCode(err)) {
    case 'ConflictException':
      return new HandlerError(
        `EBS refused StartSnapshot: ConflictException: a snapshot was already started with client token ${token} and different ` +
          'parameters. This happens only if the same request was replayed with changed properties; deploy again to make a new request.',
      );
    case 'ResourceNotFoundException':
      return new HandlerError(`EBS refused StartSnapshot: ${errorMessage(err)} (parent snapshot ${props.ParentSnapshotId ?? 'none'})`);
    case 'ServiceQuotaExceededException':
      return new HandlerError(`EBS refused StartSnapshot: ServiceQuotaExceededException: ${errorMessage(err)}. Wait for uploads in progress to finish, or ask for a higher quota.`);
    case 'AccessDeniedException':
      return new HandlerError(`EBS refused StartSnapshot: AccessDeniedException: ${errorMessage(err)}${props.KmsKeyArn ? ` (can the handler use the KMS key ${props.KmsKeyArn}?)` : ''}`);
    default:
      return err;
  }
}
