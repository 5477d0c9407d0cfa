import { DescribeStackResourceCommand, DescribeStacksCommand } from '@aws-sdk/client-cloudformation';
import { cloudformation } from './clients/cloudformation';
import { withRetries } from './errors';
import { logger } from './logger';

/** The request the Provider framework passes to `onEvent` (ResponseURL is not ours to use). */
export interface OnEventRequest<P> {
  readonly RequestType: 'Create' | 'Update' | 'Delete';
  readonly RequestId: string;
  readonly StackId: string;
  readonly LogicalResourceId: string;
  readonly ResourceType: string;
  readonly PhysicalResourceId?: string;
  readonly ResourceProperties: P & { readonly ServiceToken: string };
  readonly OldResourceProperties?: P & { readonly ServiceToken: string };
}

export interface OnEventResponse<A> {
  readonly PhysicalResourceId: string;
  readonly Data?: A;
}

/** `isComplete` gets the same request on every poll, plus what `onEvent` returned. */
export type IsCompleteRequest<P, A> = OnEventRequest<P> & OnEventResponse<A>;

export interface IsCompleteResponse<A> {
  readonly IsComplete: boolean;
  readonly Data?: Partial<A>;
}

/**
 * Whether an Update is CloudFormation rolling back: a rollback Update is a new request (new
 * RequestId) with the old and new properties swapped, sent while the stack is
 * UPDATE_ROLLBACK_IN_PROGRESS. Read errors are retried; if the status still cannot be read the
 * caller is told `undefined` and must choose the answer that cannot fail a rollback.
 */
export async function isRollingBack(stackId: string): Promise<boolean | undefined> {
  // Long enough to outlast a throttling storm, short enough to leave the rest of the handler's 5 minutes to its other calls.
  const out = await readStack('the stack status', stackId, 120_000, () => cloudformation().send(new DescribeStacksCommand({ StackName: stackId })));
  return out && out.Stacks?.[0]?.StackStatus === 'UPDATE_ROLLBACK_IN_PROGRESS';
}

/** The stack's current status and when its current (or last) operation began: CreationTime, or LastUpdatedTime once it was updated. */
export interface StackOperation {
  readonly status: string;
  readonly startedAt: number;
}

/** The stack's current operation, or undefined if it cannot be read (read errors are retried first). */
export async function currentStackOperation(stackId: string): Promise<StackOperation | undefined> {
  const out = await readStack('the stack', stackId, 60_000, () => cloudformation().send(new DescribeStacksCommand({ StackName: stackId })));
  const stack = out?.Stacks?.[0];
  const at = stack?.LastUpdatedTime ?? stack?.CreationTime;
  if (!stack?.StackStatus || !at) return undefined;
  return { status: stack.StackStatus, startedAt: new Date(at).getTime() };
}

/**
 * The status of one resource of the stack (`CREATE_IN_PROGRESS` while CloudFormation waits for its
 * Create, `CREATE_FAILED` once it took a failure for it…), or undefined if it cannot be read.
 */
export async function resourceStatus(stackId: string, logicalId: string): Promise<string | undefined> {
  const out = await readStack('the resource\'s status', stackId, 60_000,
    () => cloudformation().send(new DescribeStackResourceCommand({ StackName: stackId, LogicalResourceId: logicalId })));
  return out?.StackResourceDetail?.ResourceStatus;
}

/** A read of the stack, retried (throttling, 5xx) for `budgetMs`; undefined, and logged, if it still fails. */
async function readStack<T>(what: string, stackId: string, budgetMs: number, read: () => Promise<T>): Promise<T | undefined> {
  try {
    return await withRetries(read, { budgetMs });
  } catch (err) {
    logger.warn(`could not read ${what}`, { stackId, error: err as Error });
    return undefined;
  }
}
