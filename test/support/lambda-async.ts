import { SimWorld } from './sim-world';

/** What a scheduled invocation needs of the world: its clock, fault plan and call log. */
export type InvocationWorld = Pick<SimWorld, 'clock' | 'faults' | 'core'>;

/** Who a scheduled invocation acts for, as the fakes record it on every call. */
export interface ScheduledCaller {
  /** The owner (ownership tag value) the handler acts for. */
  readonly owner: string;
  readonly stackId?: string;
  /** One distinct tick of one schedule: `<schedule>@<tick>`. */
  readonly requestKey: string;
  /** The tick's nominal scheduled time (ISO 8601, seconds), whatever the handler was told. */
  readonly tick: string;
}

export interface InvocationResult {
  readonly ok: boolean;
  readonly reason?: string;
}

/** Lambda waits about a minute before the first retry of a failed asynchronous invocation, then two. */
export const LAMBDA_RETRY_DELAYS_MS: readonly number[] = [60_000, 120_000];

/**
 * One invocation of a scheduled handler by Lambda: the payload as JSON (what Lambda passes), the
 * function's timeout, and the caller context the fakes log. A handler that throws, or a Lambda
 * killed or timed out, fails the invocation.
 */
export async function invokeScheduled(
  world: InvocationWorld,
  handler: (event: any) => Promise<unknown>,
  payload: unknown,
  timeoutMs: number,
  caller: ScheduledCaller,
): Promise<InvocationResult> {
  world.core.context = { kind: 'schedule', ...caller };
  world.clock.startInvocation(timeoutMs);
  let out: InvocationResult;
  try {
    await handler(JSON.parse(JSON.stringify(payload)));
    out = { ok: true };
  } catch (err) {
    out = { ok: false, reason: (err as Error)?.message ?? String(err) };
  }
  const killed = world.clock.endInvocation();
  world.core.context = undefined;
  return killed ? { ok: false, reason: `killed: ${killed}` } : out;
}

/**
 * Whether Lambda runs the same event again after attempt `attempt` (0 = the first): after a
 * failure while retries remain, and, with the `async-retry` fault, after a success too (the
 * runtime crashed after the handler returned).
 */
export function lambdaRetries(world: InvocationWorld, result: InvocationResult, attempt: number, maxRetries: number): boolean {
  return attempt < maxRetries && (!result.ok || world.faults.chance('async-retry'));
}
