import { clock } from './clock';

/** How long one AWS call of a custom-resource handler keeps retrying throttling and 5xx before it gives up. */
export const CALL_BUDGET_MS = 60_000;

/** What is left before `deadline` (epoch ms), at most `maxMs` and never negative: the budget of a call that must end by then. */
export function budgetUntil(deadline: number, maxMs = Number.POSITIVE_INFINITY): number {
  return Math.max(0, Math.min(maxMs, deadline - clock.now()));
}
