import { budgetUntil } from '../shared/budget';
import { errorCode, isTransient, withRetries } from '../shared/errors';
import { logger } from '../shared/logger';

/*
 * FSx calls of a scheduled tick, for every scheduled operation: retried longer than a custom
 * resource's, and spread over the targets a few at a time.
 */

/** How long one FSx call keeps retrying throttling, 5xx and BackupInProgress (a tick has 15 minutes, not a custom resource's 5). */
const FSX_CALL_BUDGET_MS = 5 * 60_000;
/** How many targets are worked on at once (FSx request rates are not published: stay modest). */
export const CONCURRENCY = 5;

/** One FSx call, retried (throttling, 5xx; `retryable` says what else) within FSX_CALL_BUDGET_MS and the invocation's deadline. */
export function retrying<T>(what: string, fn: () => Promise<T>, deadline: number, retryable: (err: unknown) => boolean = isTransient): Promise<T> {
  return withRetries(fn, {
    budgetMs: budgetUntil(deadline, FSX_CALL_BUDGET_MS),
    retryable,
    onRetry: (err, attempt, delayMs) => logger.debug(`retrying ${what}`, { attempt, delayMs, error: errorCode(err) }),
  });
}

export function isNotFound(err: unknown): boolean {
  return ['FileSystemNotFound', 'VolumeNotFound'].includes(errorCode(err));
}

export function chunks<T>(items: T[], size: number): T[][] {
  const out: T[][] = [];
  for (let i = 0; i < items.length; i += size) out.push(items.slice(i, i + size));
  return out;
}

/** `fn` over `items`, at most `limit` at a time, results in the order of `items`. */
export async function mapLimit<T, R>(items: T[], limit: number, fn: (item: T) => Promise<R>): Promise<R[]> {
  const out: R[] = new Array(items.length);
  let next = 0;
  const worker = async () => {
    while (next < items.length) {
      const i = next++;
      out[i] = await fn(items[i]);
    }
  };
  await Promise.all(Array.from({ length: Math.min(limit, items.length) }, worker));
  return out;
}
