import { Snapshot } from '@aws-sdk/client-ec2';
import { decodeCursor } from './cursor';
import { cursorOf, uploadSlice } from './slice';
import { findAdoptable, mayDiscard, readCurrent } from './snapshot';
import { GIB, create } from './start';
import type { CopyOrigin } from '../../src/private/contract';
import {
  EBS_BLOCK_BYTES, type EbsSnapshotFromImageAttributes, type EbsSnapshotFromImageProperties, UPLOAD_CURSOR_TAG_KEY,
} from '../../src/private/ebs-direct-contract';
import { clock } from '../shared/clock';
import { EC2_SNAPSHOTS } from '../shared/ec2-snapshots';
import type { OnEventRequest, OnEventResponse } from '../shared/events';
import { copyLifecycle } from '../shared/lifecycle';
import { tagValue } from '../shared/ownership';
import { stableHash } from '../shared/token';
import { ec2SnapshotProgress } from '../shared/waiter';

export type { InvocationContext } from '../shared/context';
export { DEFAULT_SLICE_MS, RESERVE_MS } from './slice';

type Props = EbsSnapshotFromImageProperties;
type Attributes = EbsSnapshotFromImageAttributes;

/** What differs for snapshots from disk images; the lifecycle (lambda/shared/lifecycle.ts) does the rest. */
const lifecycle = copyLifecycle<Props, Attributes, Snapshot>({
  store: EC2_SNAPSHOTS,
  identityHash,
  create: (event) => create(event, identityHash),
  findAdoptable,
  respond,
  // Tags, description, removal policy or timeout changed: they apply to the next snapshot. Only
  // the properties' hash decides, so the current snapshot is read only to answer with it.
  readCurrentFirst: false,
  readCurrent,
  known: (_event, id) => ({ SnapshotId: id }),
  unreadableKeptSuffix: '; its volume size and block count are not known, so the update cannot keep it',
  // Not visible yet is not a failure here: EC2 reads lag behind StartSnapshot.
  progress: (id, snapshot) => (snapshot ? ec2SnapshotProgress(id, snapshot) : undefined),
  progressLog: (snapshot) => {
    const cursor = cursorOf(snapshot);
    return { state: snapshot?.State ?? 'not visible yet', next: cursor.next, changed: cursor.changed, phase: cursor.phase };
  },
  doneData: (snapshot) => ({ BlockCount: String(cursorOf(snapshot).changed) }),
  timeoutReason: (event, snapshot) => {
    const cursor = cursorOf(snapshot);
    return `EBS snapshot ${event.PhysicalResourceId} was not completed within the timeout of ${event.ResourceProperties.TimeoutSeconds} seconds ` +
      `(${cursor.next} of ${Math.ceil(Number(event.Data?.ImageSizeBytes) / EBS_BLOCK_BYTES)} blocks written or skipped` +
      `${cursor.phase === 'completing' ? ', CompleteSnapshot sent' : ''}); it has been deleted so that no half-written snapshot is left behind`;
  },
  work: uploadSlice,
  mayDiscard,
});

export const onEvent = lifecycle.onEvent;
export const isComplete = lifecycle.isComplete;

function respond(event: OnEventRequest<Props>, snapshot: Snapshot, origin: CopyOrigin): OnEventResponse<Attributes> {
  const id = snapshot.SnapshotId!;
  const cursor = decodeCursor(tagValue(snapshot.Tags, UPLOAD_CURSOR_TAG_KEY));
  const props = event.ResourceProperties;
  // What the properties tell when the snapshot could not be read: the size create would have chosen.
  const fromProps = props.VolumeSize ?? (props.ImageSizeBytes ? String(Math.max(1, Math.ceil(Number(props.ImageSizeBytes) / GIB))) : '');
  return {
    PhysicalResourceId: id,
    Data: {
      SnapshotId: id,
      VolumeSize: String(snapshot.VolumeSize ?? fromProps),
      BlockCount: cursor ? String(cursor.changed) : '',
      ImageSizeBytes: event.ResourceProperties.ImageSizeBytes ?? '',
      ImageETag: '',
      StartedAt: String(clock.now()),
      Origin: origin,
    },
  };
}

/**
 * The properties that force a new snapshot: the image, the volume size, the encryption, the
 * parent and the trigger. Tags, description, removal policy and timeout do not.
 */
export function identityHash(props: Props): string {
  return stableHash({
    ImageBucket: props.ImageBucket,
    ImageKey: props.ImageKey,
    VolumeSize: props.VolumeSize,
    Encrypted: props.Encrypted,
    KmsKeyArn: props.KmsKeyArn,
    ParentSnapshotId: props.ParentSnapshotId,
    Trigger: props.Trigger,
  });
}
