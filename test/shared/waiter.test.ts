import { deadlineExceeded, ec2SnapshotProgress, fsxBackupProgress, fsxSnapshotProgress } from '../../lambda/shared/waiter';

describe('FSx backup lifecycle', () => {
  test.each(['CREATING', 'TRANSFERRING', 'PENDING', 'COPYING'])('%s is not done yet', (state) => {
    expect(fsxBackupProgress('backup-1', { Lifecycle: state })).toEqual({ status: 'waiting', state });
  });
  test('AVAILABLE is done', () => {
    expect(fsxBackupProgress('backup-1', { Lifecycle: 'AVAILABLE' })).toEqual({ status: 'done' });
  });
  test('FAILED fails with the service\'s own message', () => {
    expect(fsxBackupProgress('backup-1', { Lifecycle: 'FAILED', FailureDetails: { Message: 'disk full' } })).toEqual({
      status: 'failed',
      reason: 'FSx backup backup-1 FAILED: disk full',
    });
  });
  test('DELETED or vanished fails', () => {
    expect(fsxBackupProgress('backup-1', { Lifecycle: 'DELETED' }).status).toBe('failed');
    expect(fsxBackupProgress('backup-1', undefined)).toEqual({ status: 'failed', reason: 'FSx backup backup-1 no longer exists' });
  });
});

describe('FSx snapshot lifecycle (no FAILED state)', () => {
  test.each(['PENDING', 'CREATING'])('%s is not done yet', (state) => {
    expect(fsxSnapshotProgress('s', { Lifecycle: state })).toEqual({ status: 'waiting', state });
  });
  test('AVAILABLE is done', () => {
    expect(fsxSnapshotProgress('s', { Lifecycle: 'AVAILABLE' })).toEqual({ status: 'done' });
  });
  test('DELETING before AVAILABLE is a failure, with the transition reason', () => {
    const p = fsxSnapshotProgress('fsvolsnap-1', { Lifecycle: 'DELETING', LifecycleTransitionReason: { Message: 'volume out of space' } });
    expect(p).toEqual({ status: 'failed', reason: expect.stringMatching(/fsvolsnap-1 is DELETING.*volume out of space/) });
  });
  test('a vanished snapshot is a failure', () => {
    expect(fsxSnapshotProgress('fsvolsnap-1', undefined)).toEqual({ status: 'failed', reason: expect.stringMatching(/no longer exists/) });
  });
  test('a state AWS adds later is not a failure by itself', () => {
    expect(fsxSnapshotProgress('s', { Lifecycle: 'SOMETHING_NEW' }).status).toBe('waiting');
  });
});

describe('EC2 snapshot lifecycle', () => {
  test.each(['pending', 'recoverable', 'recovering'])('%s is not done yet', (state) => {
    expect(ec2SnapshotProgress('snap-1', { State: state }).status).toBe('waiting');
  });
  test('completed is done', () => {
    expect(ec2SnapshotProgress('snap-1', { State: 'completed' })).toEqual({ status: 'done' });
  });
  test('error fails with the state message', () => {
    expect(ec2SnapshotProgress('snap-1', { State: 'error', StateMessage: 'KMS key disabled' })).toEqual({
      status: 'failed',
      reason: 'EBS snapshot snap-1 is in state error: KMS key disabled',
    });
  });
  test('vanished fails', () => {
    expect(ec2SnapshotProgress('snap-1', undefined).status).toBe('failed');
  });
});

describe('deadlineExceeded', () => {
  test('counts from the start time onEvent returned', () => {
    expect(deadlineExceeded('1000', '60', 1000 + 60_000)).toBe(false);
    expect(deadlineExceeded('1000', '60', 1000 + 60_001)).toBe(true);
  });
  test('a missing start time never times out by itself (the Provider total timeout still bounds it)', () => {
    expect(deadlineExceeded(undefined, '60', Number.MAX_SAFE_INTEGER)).toBe(false);
  });
});
