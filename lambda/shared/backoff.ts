/** Exponential backoff with full jitter: a delay in [1, min(maxMs, baseMs · 2^(attempt-1))] ms. */
export function backoff(attempt: number, baseMs: number, maxMs: number): number {
  return Math.floor(Math.random() * Math.min(maxMs, baseMs * 2 ** (attempt - 1))) + 1;
}
