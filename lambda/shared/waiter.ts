/**
 * One place that maps each service's lifecycle states to what `isComplete` answers.
 * An unknown state is "not yet": a state AWS adds later must not fail a deploy by itself.
 */
export type Progress =
  | { readonly status: 'done' }
  | { readonly status: 'waiting'; readonly state: string }
  | { readonly status: 'failed'; readonly reason: string };

const DONE: Progress = { status: 'done' };
const waiting = (state: string): Progress => ({ status: 'waiting', state });
const failed = (reason: string): Progress => ({ status: 'failed', reason });

export interface FsxBackupView {
  readonly BackupId?: string;
  readonly Lifecycle?: string;
  readonly FailureDetails?: { readonly Message?: string };
}

/** FSx backup: CREATING, TRANSFERRING, PENDING, COPYING, AVAILABLE, FAILED, DELETED. */
export function fsxBackupProgress(id: string, backup: FsxBackupView | undefined): Progress {
  if (!backup) return failed(`FSx backup ${id} no longer exists`);
  switch (backup.Lifecycle) {
    case 'AVAILABLE':
      return DONE;
    case 'FAILED':
      return failed(`FSx backup ${id} FAILED: ${backup.FailureDetails?.Message ?? 'no reason given'}`);
    case 'DELETED':
      return failed(`FSx backup ${id} was DELETED before it became AVAILABLE`);
    default:
      return waiting(backup.Lifecycle ?? 'UNKNOWN');
  }
}

export interface FsxSnapshotView {
  readonly SnapshotId?: string;
  readonly Lifecycle?: string;
  readonly LifecycleTransitionReason?: { readonly Message?: string };
}

/**
 * FSx snapshot: PENDING, CREATING, AVAILABLE, DELETING. There is no FAILED state: a snapshot that
 * goes to DELETING, or vanishes, before AVAILABLE has failed.
 */
export function fsxSnapshotProgress(id: string, snapshot: FsxSnapshotView | undefined): Progress {
  if (!snapshot) return failed(`FSx snapshot ${id} no longer exists (it was deleted before it became AVAILABLE)`);
  switch (snapshot.Lifecycle) {
    case 'AVAILABLE':
      return DONE;
    case 'DELETING':
      return failed(
        `FSx snapshot ${id} is DELETING instead of becoming AVAILABLE: ${
          snapshot.LifecycleTransitionReason?.Message ?? 'no reason given'
        }`,
      );
    default:
      return waiting(snapshot.Lifecycle ?? 'UNKNOWN');
  }
}

export interface Ec2SnapshotView {
  readonly SnapshotId?: string;
  readonly State?: string;
  readonly StateMessage?: string;
  readonly Progress?: string;
}

/** EC2 snapshot: pending, completed, error, recoverable, recovering. */
export function ec2SnapshotProgress(id: string, snapshot: Ec2SnapshotView | undefined): Progress {
  if (!snapshot) return failed(`EBS snapshot ${id} no longer exists`);
  switch (snapshot.State) {
    case 'completed':
      return DONE;
    case 'error':
      return failed(`EBS snapshot ${id} is in state error: ${snapshot.StateMessage ?? 'no reason given'}`);
    default:
      // pending, recoverable, recovering: EBS is still working on it.
      return waiting(`${snapshot.State ?? 'unknown'}${snapshot.Progress ? ` ${snapshot.Progress}` : ''}`);
  }
}

/**
 * The instance's own timeout, enforced in `isComplete` from the start time `onEvent` returned:
 * the Provider's total timeout is shared by every instance in the stack.
 */
export function deadlineExceeded(startedAtMs: string | undefined, timeoutSeconds: string, nowMs: number): boolean {
  const started = Number(startedAtMs);
  const timeout = Number(timeoutSeconds);
  if (!Number.isFinite(started) || !Number.isFinite(timeout)) return false;
  return nowMs - started > timeout * 1000;
}
