import { DescribeStacksCommand, CloudFormationClient } from '@aws-sdk/client-cloudformation';
import { CreateSnapshotCommand, DeleteSnapshotCommand, DescribeSnapshotsCommand, FSxClient, Snapshot } from '@aws-sdk/client-fsx';
import { mockClient } from 'aws-sdk-client-mock';
import 'aws-sdk-client-mock-jest';
import { identityHash, isComplete, onEvent } from '../../lambda/openzfs-snapshot';
import { clock } from '../../lambda/shared/clock';
import { requestToken } from '../../lambda/shared/token';
import { LOGICAL_ID, STACK_ID, VOLUME_ID, cfnRequest, zfsProps } from '../fixtures/events';
import { ownershipTagsOf } from '../fixtures/ownership';
import { awsError } from '../support/aws-errors';

const fsxMock = mockClient(FSxClient);
const cfnMock = mockClient(CloudFormationClient);
const realClock = { ...clock };

/** Tags as the handler makes them for a request with these properties. */
function ours(props: ReturnType<typeof zfsProps>, token: string, owner = LOGICAL_ID) {
  return ownershipTagsOf({ stackId: STACK_ID, owner, propsHash: identityHash(props), token });
}

function snapshot(id: string, lifecycle: string, tags: Snapshot['Tags'] = [], created = new Date('2026-11-22T10:00:00Z')): Snapshot {
  return {
    SnapshotId: id,
    VolumeId: VOLUME_ID,
    Lifecycle: lifecycle as any,
    Tags: tags,
    CreationTime: created,
    ResourceARN: `arn:aws:fsx:us-east-1:111111111111:snapshot/${VOLUME_ID}/${id}`,
    Name: `name-of-${id}`,
  };
}

function stackStatus(status: string) {
  cfnMock.on(DescribeStacksCommand).resolves({ Stacks: [{ StackName: 'app', StackStatus: status as any, CreationTime: new Date() }] });
}

beforeEach(() => {
  fsxMock.reset();
  cfnMock.reset();
  clock.sleep = async () => undefined; // retries back off in no time
  clock.now = () => 1_000_000;
});
afterAll(() => Object.assign(clock, realClock));

describe('Create', () => {
  test('CreateSnapshot with the name, user + ownership tags and the request token', async () => {
    const props = zfsProps({ Tags: '{"team":"data"}' });
    const event = cfnRequest('Create', props);
    const token = requestToken(event);
    fsxMock.on(CreateSnapshotCommand).resolves({ Snapshot: snapshot('fsvolsnap-0000000000000000a', 'CREATING') });

    const res = await onEvent(event);

    expect(fsxMock).toHaveReceivedCommandWith(CreateSnapshotCommand, {
      VolumeId: VOLUME_ID,
      Name: `before-release-${token.slice(4, 12)}`,
      ClientRequestToken: token,
      Tags: [{ Key: 'team', Value: 'data' }, ...ours(props, token)],
    });
    expect(res).toEqual({
      PhysicalResourceId: 'fsvolsnap-0000000000000000a',
      Data: expect.objectContaining({ SnapshotId: 'fsvolsnap-0000000000000000a', Origin: 'created', StartedAt: '1000000' }),
    });
  });

  test('a retry of the same request sends the same token and name', async () => {
    const event = cfnRequest('Create', zfsProps());
    fsxMock.on(CreateSnapshotCommand).resolves({ Snapshot: snapshot('fsvolsnap-0000000000000000a', 'CREATING') });
    await onEvent(event);
    await onEvent({ ...event });
    const calls = fsxMock.commandCalls(CreateSnapshotCommand).map((c) => c.args[0].input);
    expect(calls).toHaveLength(2);
    expect(calls[1]).toEqual(calls[0]);
  });

  test('throttling and 5xx are retried with the same token', async () => {
    fsxMock.on(CreateSnapshotCommand)
      .rejectsOnce(awsError('ThrottlingException', 'Rate exceeded'))
      .rejectsOnce(awsError('InternalServerError', 'oops', 500))
      .resolves({ Snapshot: snapshot('fsvolsnap-0000000000000000a', 'CREATING') });
    const res = await onEvent(cfnRequest('Create', zfsProps()));
    expect(res.PhysicalResourceId).toBe('fsvolsnap-0000000000000000a');
    const tokens = new Set(fsxMock.commandCalls(CreateSnapshotCommand).map((c) => c.args[0].input.ClientRequestToken));
    expect(fsxMock).toHaveReceivedCommandTimes(CreateSnapshotCommand, 3);
    expect(tokens.size).toBe(1);
  });

  test.each([
    ['IncompatibleParameterError', /IncompatibleParameterError: a snapshot was already requested with client token css-[0-9a-f]{40} and different parameters/],
    ['VolumeNotFound', /FSx volume fsvol-0123456789abcdef0 was not found \(VolumeNotFound\)/],
    ['ServiceLimitExceeded', /ServiceLimitExceeded: .*ask for a higher quota/],
    ['BadRequest', /^Creating an FSx snapshot of volume fsvol-0123456789abcdef0: BadRequest: the service said no$/],
  ])('%s is reported with a clear reason', async (code, reason) => {
    fsxMock.on(CreateSnapshotCommand).rejects(awsError(code, 'the service said no'));
    await expect(onEvent(cfnRequest('Create', zfsProps()))).rejects.toThrow(reason);
    expect(fsxMock).toHaveReceivedCommandTimes(CreateSnapshotCommand, 1);
  });
});

describe('Update', () => {
  const current = 'fsvolsnap-0000000000000000a';

  test('nothing that forces a snapshot changed (tags, name prefix, removal policy, timeout): no new snapshot', async () => {
    fsxMock.on(DescribeSnapshotsCommand).resolves({ Snapshots: [snapshot(current, 'AVAILABLE')] });
    const changed = zfsProps({ Tags: '{"a":"b"}', SnapshotName: 'renamed', RemovalPolicy: 'destroy', TimeoutSeconds: '60' });
    const res = await onEvent(cfnRequest('Update', changed, {
      PhysicalResourceId: current, OldResourceProperties: zfsProps(),
    }));
    expect(fsxMock).not.toHaveReceivedCommand(CreateSnapshotCommand);
    expect(res).toEqual({ PhysicalResourceId: current, Data: expect.objectContaining({ SnapshotId: current, Origin: 'unchanged' }) });
  });

  test('a changed trigger takes a new snapshot (a new physical id)', async () => {
    stackStatus('UPDATE_IN_PROGRESS');
    fsxMock.on(CreateSnapshotCommand).resolves({ Snapshot: snapshot('fsvolsnap-0000000000000000b', 'CREATING') });
    const res = await onEvent(cfnRequest('Update', zfsProps({ Trigger: 'r2' }), {
      PhysicalResourceId: current, OldResourceProperties: zfsProps({ Trigger: 'r1' }),
    }));
    expect(res.PhysicalResourceId).toBe('fsvolsnap-0000000000000000b');
    expect(res.Data?.Origin).toBe('created');
  });

  test('a no-op update whose snapshot cannot be read fails with the reason (it is not a rollback)', async () => {
    stackStatus('UPDATE_IN_PROGRESS');
    fsxMock.on(DescribeSnapshotsCommand).rejects(awsError('AccessDenied', 'not allowed'));
    await expect(onEvent(cfnRequest('Update', zfsProps({ Tags: '{"a":"b"}' }), { PhysicalResourceId: current, OldResourceProperties: zfsProps() })))
      .rejects.toThrow(/^Reading FSx snapshot fsvolsnap-0000000000000000a: AccessDenied: not allowed$/);
  });

  test('a no-op rollback whose snapshot cannot be read still succeeds, with the id and the ARN', async () => {
    stackStatus('UPDATE_ROLLBACK_IN_PROGRESS');
    fsxMock.on(DescribeSnapshotsCommand).rejects(awsError('AccessDenied', 'not allowed'));
    const res = await onEvent(cfnRequest('Update', zfsProps(), { PhysicalResourceId: current, OldResourceProperties: zfsProps({ Tags: '{"a":"b"}' }) }));
    expect(res).toEqual({
      PhysicalResourceId: current,
      Data: expect.objectContaining({ SnapshotArn: `arn:aws:fsx:us-east-1:111111111111:snapshot/${VOLUME_ID}/${current}`, Origin: 'unchanged' }),
    });
  });

  test('a current snapshot made for exactly the new properties is kept without asking the stack status', async () => {
    const props = zfsProps({ Trigger: 'r1' });
    fsxMock.on(DescribeSnapshotsCommand).resolves({ Snapshots: [snapshot(current, 'AVAILABLE', ours(props, 'css-1'))] });
    const res = await onEvent(cfnRequest('Update', props, { PhysicalResourceId: current, OldResourceProperties: zfsProps({ Trigger: 'r2' }) }));
    expect(res.PhysicalResourceId).toBe(current);
    expect(fsxMock).not.toHaveReceivedCommand(CreateSnapshotCommand);
    expect(cfnMock).not.toHaveReceivedCommand(DescribeStacksCommand);
  });

  test('when the stack status cannot be read and nothing matches, the update still takes its snapshot', async () => {
    cfnMock.on(DescribeStacksCommand).rejects(awsError('AccessDenied', 'nope'));
    fsxMock.on(DescribeSnapshotsCommand).resolves({ Snapshots: [] });
    fsxMock.on(CreateSnapshotCommand).resolves({ Snapshot: snapshot('fsvolsnap-0000000000000000b', 'CREATING') });
    const res = await onEvent(cfnRequest('Update', zfsProps({ Trigger: 'r2' }), { PhysicalResourceId: current, OldResourceProperties: zfsProps({ Trigger: 'r1' }) }));
    expect(res.PhysicalResourceId).toBe('fsvolsnap-0000000000000000b');
  });

  test('a changed volume takes a new snapshot', async () => {
    stackStatus('UPDATE_IN_PROGRESS');
    fsxMock.on(CreateSnapshotCommand).resolves({ Snapshot: snapshot('fsvolsnap-0000000000000000b', 'CREATING') });
    await onEvent(cfnRequest('Update', zfsProps({ VolumeId: 'fsvol-0123456789abcdef1' }), {
      PhysicalResourceId: current, OldResourceProperties: zfsProps(),
    }));
    expect(fsxMock).toHaveReceivedCommandWith(CreateSnapshotCommand, { VolumeId: 'fsvol-0123456789abcdef1' });
  });

  test('a changed snapshotBefore hash takes a new snapshot', async () => {
    stackStatus('UPDATE_IN_PROGRESS');
    fsxMock.on(CreateSnapshotCommand).resolves({ Snapshot: snapshot('fsvolsnap-0000000000000000b', 'CREATING') });
    await onEvent(cfnRequest('Update', zfsProps({ SnapshotBeforeHash: 'h2' }), {
      PhysicalResourceId: current, OldResourceProperties: zfsProps({ SnapshotBeforeHash: 'h1' }),
    }));
    expect(fsxMock).toHaveReceivedCommandTimes(CreateSnapshotCommand, 1);
  });

  describe('rollback', () => {
    const rollbackTo = zfsProps({ Trigger: 'r1' });
    const event = () => cfnRequest('Update', rollbackTo, { PhysicalResourceId: 'fsvolsnap-0000000000000000b', OldResourceProperties: zfsProps({ Trigger: 'r2' }) });

    test('re-adopts the newest snapshot of ours made for the properties it returns to, and takes none', async () => {
      stackStatus('UPDATE_ROLLBACK_IN_PROGRESS');
      fsxMock.on(DescribeSnapshotsCommand).resolves({
        Snapshots: [
          snapshot('fsvolsnap-0000000000000000a', 'AVAILABLE', ours(rollbackTo, 'css-old'), new Date('2026-11-20T00:00:00Z')),
          snapshot('fsvolsnap-00000000000000000', 'AVAILABLE', ours(rollbackTo, 'css-older'), new Date('2026-11-10T00:00:00Z')),
          // ours, but made for other properties
          snapshot('fsvolsnap-0000000000000000c', 'AVAILABLE', ours(zfsProps({ Trigger: 'r3' }), 'css-x'), new Date('2026-11-21T00:00:00Z')),
        ],
      });
      const res = await onEvent(event());
      expect(fsxMock).not.toHaveReceivedCommand(CreateSnapshotCommand);
      expect(res).toEqual({ PhysicalResourceId: 'fsvolsnap-0000000000000000a', Data: expect.objectContaining({ Origin: 'adopted' }) });
    });

    test('never adopts a snapshot tagged by another resource or stack', async () => {
      stackStatus('UPDATE_ROLLBACK_IN_PROGRESS');
      const foreign = ours(rollbackTo, 'css-old', 'SomeoneElse').map((t) => t);
      fsxMock.on(DescribeSnapshotsCommand, { Filters: [{ Name: 'volume-id', Values: [VOLUME_ID] }] })
        .resolves({ Snapshots: [snapshot('fsvolsnap-0000000000000000f', 'AVAILABLE', foreign)] });
      fsxMock.on(DescribeSnapshotsCommand, { SnapshotIds: ['fsvolsnap-0000000000000000b'] })
        .resolves({ Snapshots: [snapshot('fsvolsnap-0000000000000000b', 'AVAILABLE')] });
      const res = await onEvent(event());
      expect(res.PhysicalResourceId).toBe('fsvolsnap-0000000000000000b');
      expect(res.Data?.Origin).toBe('unchanged');
      expect(fsxMock).not.toHaveReceivedCommand(CreateSnapshotCommand);
    });

    test('keeps the current snapshot when none matches, and does not fail', async () => {
      stackStatus('UPDATE_ROLLBACK_IN_PROGRESS');
      fsxMock.on(DescribeSnapshotsCommand).resolves({ Snapshots: [] });
      const res = await onEvent(event());
      expect(res.PhysicalResourceId).toBe('fsvolsnap-0000000000000000b');
      expect(fsxMock).not.toHaveReceivedCommand(CreateSnapshotCommand);
    });

    test('does not fail when the look-up itself fails', async () => {
      stackStatus('UPDATE_ROLLBACK_IN_PROGRESS');
      fsxMock.on(DescribeSnapshotsCommand).rejects(awsError('AccessDenied', 'nope'));
      const res = await onEvent(event());
      expect(res.PhysicalResourceId).toBe('fsvolsnap-0000000000000000b');
      expect(fsxMock).not.toHaveReceivedCommand(CreateSnapshotCommand);
    });

    test('when the stack status cannot be read, adopts a match if there is one', async () => {
      cfnMock.on(DescribeStacksCommand).rejects(awsError('AccessDenied', 'nope'));
      fsxMock.on(DescribeSnapshotsCommand).resolves({ Snapshots: [snapshot('fsvolsnap-0000000000000000a', 'AVAILABLE', ours(rollbackTo, 'css-old'))] });
      const res = await onEvent(event());
      expect(res.PhysicalResourceId).toBe('fsvolsnap-0000000000000000a');
      expect(fsxMock).not.toHaveReceivedCommand(CreateSnapshotCommand);
    });
  });
});

describe('Delete', () => {
  const id = 'fsvolsnap-0000000000000000a';
  const del = (props = zfsProps({ RemovalPolicy: 'destroy' })) => cfnRequest('Delete', props, { PhysicalResourceId: id });

  test('RETAIN keeps the snapshot and calls nothing', async () => {
    const res = await onEvent(del(zfsProps()));
    expect(res).toEqual({ PhysicalResourceId: id });
    expect(fsxMock.calls()).toHaveLength(0);
  });

  test('DESTROY deletes a snapshot this resource made', async () => {
    fsxMock.on(DescribeSnapshotsCommand).resolves({ Snapshots: [snapshot(id, 'AVAILABLE', ours(zfsProps(), 'css-1'))] });
    fsxMock.on(DeleteSnapshotCommand).resolves({});
    await onEvent(del());
    expect(fsxMock).toHaveReceivedCommandWith(DeleteSnapshotCommand, { SnapshotId: id });
  });

  test('DESTROY never deletes a snapshot without this resource\'s ownership tags', async () => {
    fsxMock.on(DescribeSnapshotsCommand).resolves({ Snapshots: [snapshot(id, 'AVAILABLE', ours(zfsProps(), 'css-1', 'OtherResource'))] });
    const res = await onEvent(del());
    expect(res).toEqual({ PhysicalResourceId: id });
    expect(fsxMock).not.toHaveReceivedCommand(DeleteSnapshotCommand);
  });

  test('a snapshot that is already gone is success', async () => {
    fsxMock.on(DescribeSnapshotsCommand).rejects(awsError('SnapshotNotFound', 'gone'));
    await expect(onEvent(del())).resolves.toEqual({ PhysicalResourceId: id });
    expect(fsxMock).not.toHaveReceivedCommand(DeleteSnapshotCommand);
  });

  test('a snapshot that goes away between the look-up and the delete is success', async () => {
    fsxMock.on(DescribeSnapshotsCommand).resolves({ Snapshots: [snapshot(id, 'AVAILABLE', ours(zfsProps(), 'css-1'))] });
    fsxMock.on(DeleteSnapshotCommand).rejects(awsError('SnapshotNotFound', 'gone'));
    await expect(onEvent(del())).resolves.toEqual({ PhysicalResourceId: id });
  });

  test('a physical id that is not a snapshot (nothing was made) is success', async () => {
    await expect(onEvent(cfnRequest('Delete', zfsProps({ RemovalPolicy: 'destroy' }), { PhysicalResourceId: 'request-7' })))
      .resolves.toEqual({ PhysicalResourceId: 'request-7' });
    expect(fsxMock.calls()).toHaveLength(0);
  });

  test('a delete that fails is reported with the service\'s reason', async () => {
    fsxMock.on(DescribeSnapshotsCommand).resolves({ Snapshots: [snapshot(id, 'AVAILABLE', ours(zfsProps(), 'css-1'))] });
    fsxMock.on(DeleteSnapshotCommand).rejects(awsError('BadRequest', 'snapshot has dependent clones'));
    await expect(onEvent(del())).rejects.toThrow(/^Deleting FSx snapshot fsvolsnap-0000000000000000a: BadRequest: snapshot has dependent clones$/);
  });
});

describe('isComplete', () => {
  const id = 'fsvolsnap-0000000000000000a';
  function polled(origin: string, startedAt = 1_000_000, props = zfsProps()) {
    const event = cfnRequest('Create', props);
    return { ...event, PhysicalResourceId: id, Data: { SnapshotId: id, Origin: origin, StartedAt: String(startedAt) } };
  }

  test.each(['adopted', 'unchanged'])('%s snapshots are not waited for', async (origin) => {
    await expect(isComplete(polled(origin))).resolves.toEqual({ IsComplete: true });
    expect(fsxMock.calls()).toHaveLength(0);
  });

  test('CREATING is not complete', async () => {
    fsxMock.on(DescribeSnapshotsCommand).resolves({ Snapshots: [snapshot(id, 'CREATING')] });
    await expect(isComplete(polled('created'))).resolves.toEqual({ IsComplete: false });
  });

  test('AVAILABLE is complete, with the creation time', async () => {
    fsxMock.on(DescribeSnapshotsCommand).resolves({ Snapshots: [snapshot(id, 'AVAILABLE')] });
    await expect(isComplete(polled('created'))).resolves.toEqual({ IsComplete: true, Data: { CreationTime: '2026-11-22T10:00:00.000Z' } });
  });

  test('DELETING fails the deploy with the service\'s reason', async () => {
    fsxMock.on(DescribeSnapshotsCommand).resolves({
      Snapshots: [{ ...snapshot(id, 'DELETING'), LifecycleTransitionReason: { Message: 'Insufficient capacity' } }],
    });
    await expect(isComplete(polled('created'))).rejects.toThrow(/fsvolsnap-0000000000000000a is DELETING instead of becoming AVAILABLE: Insufficient capacity/);
    expect(fsxMock).not.toHaveReceivedCommand(DeleteSnapshotCommand);
  });

  test('a vanished snapshot fails the deploy', async () => {
    fsxMock.on(DescribeSnapshotsCommand).rejects(awsError('SnapshotNotFound', 'gone'));
    await expect(isComplete(polled('created'))).rejects.toThrow(/no longer exists/);
  });

  test('past the instance timeout, the snapshot this request made is deleted and the deploy fails', async () => {
    const event = polled('created', 1_000_000, zfsProps({ TimeoutSeconds: '60' }));
    fsxMock.on(DescribeSnapshotsCommand).resolves({ Snapshots: [snapshot(id, 'CREATING', ours(zfsProps({ TimeoutSeconds: '60' }), requestToken(event)))] });
    fsxMock.on(DeleteSnapshotCommand).resolves({});
    clock.now = () => 1_000_000 + 61_000;
    await expect(isComplete(event)).rejects.toThrow(/was not AVAILABLE within the timeout of 60 seconds \(still CREATING\)/);
    expect(fsxMock).toHaveReceivedCommandWith(DeleteSnapshotCommand, { SnapshotId: id });
  });

  test('past the timeout, a snapshot another request made is not deleted', async () => {
    const event = polled('created', 1_000_000, zfsProps({ TimeoutSeconds: '60' }));
    fsxMock.on(DescribeSnapshotsCommand).resolves({ Snapshots: [snapshot(id, 'CREATING', ours(zfsProps(), 'css-another-request'))] });
    clock.now = () => 1_000_000 + 61_000;
    await expect(isComplete(event)).rejects.toThrow(/timeout/);
    expect(fsxMock).not.toHaveReceivedCommand(DeleteSnapshotCommand);
  });

  test('within the timeout it keeps waiting', async () => {
    fsxMock.on(DescribeSnapshotsCommand).resolves({ Snapshots: [snapshot(id, 'CREATING')] });
    clock.now = () => 1_000_000 + 1_799_000;
    await expect(isComplete(polled('created'))).resolves.toEqual({ IsComplete: false });
  });
});
