import * as fc from 'fast-check';
import { FaultRates } from './faults';
import { Violation } from './invariants';

/**
 * What every simulator property run shares: how many scenarios and which seed (from the
 * environment), the fault rates it draws from, and the run itself.
 *
 * - `SIM_RUNS=<n>`: scenarios per construct (default 1,000; 100,000 for a soak).
 * - `SIM_SEED=<n>` replays a run; `SIM_SEED=random` explores new ones (use it for soaks). The
 *   default run is reproducible: a fixed fast-check seed.
 * - `SIM_NO_SHRINK=1` stops at the first counterexample without shrinking it.
 * - `SIM_STATS=1` prints what the runs did (statuses, faults injected, calls).
 */
export const SIM_RUNS = Number(process.env.SIM_RUNS ?? 1000);

export function simSeed(defaultSeed: number): number | undefined {
  return process.env.SIM_SEED === 'random' ? undefined : Number(process.env.SIM_SEED ?? defaultSeed);
}

/** A jest timeout that grows with the number of scenarios. */
export const SIM_TIMEOUT_MS = Math.max(60_000, SIM_RUNS * 100);

const rare = fc.constantFrom(0, 0, 0.02, 0.1);

/**
 * Fault rates for the faults every construct's handlers meet (throttling, 5xx, network errors,
 * lost and hung responses, kills after a create, slow and failed lifecycles), plus `extra` for the
 * construct's own delivery faults (duplicate deliveries and framework retries, or duplicate ticks
 * and Lambda async retries).
 */
export function faultRatesArb(extra: { [K in keyof FaultRates]?: fc.Arbitrary<number> }, hung = 0.02): fc.Arbitrary<FaultRates> {
  return fc.record({
    'throttle': fc.constantFrom(0, 0.05, 0.3),
    'server-error': rare,
    'network': rare,
    'lost-response': rare,
    'hung-response': fc.constantFrom(0, 0, 0, hung),
    'kill-after-create': rare,
    'slow-lifecycle': rare,
    'failed-lifecycle': rare,
    ...extra,
  } as Record<string, fc.Arbitrary<number>>) as fc.Arbitrary<FaultRates>;
}

/**
 * Runs `SIM_RUNS` scenarios drawn from `scenarios`; fails with the first violations of the
 * smallest counterexample fast-check finds. Returns the stats the scenarios added up.
 */
export async function checkScenarios<S>(
  scenarios: fc.Arbitrary<S>,
  run: (scenario: S, stats: Record<string, number>) => Promise<{ violations: Violation[] }>,
  defaultSeed: number,
): Promise<Record<string, number>> {
  const stats: Record<string, number> = {};
  const started = Date.now();
  await fc.assert(
    fc.asyncProperty(scenarios, async (s) => {
      const { violations } = await run(s, stats);
      if (violations.length) throw new Error(violations.slice(0, 10).map((v) => `[${v.invariant}] ${v.detail}`).join('\n'));
    }),
    { numRuns: SIM_RUNS, seed: simSeed(defaultSeed), endOnFailure: !!process.env.SIM_NO_SHRINK },
  );
  if (process.env.SIM_STATS) {
    // eslint-disable-next-line no-console
    console.log(`${SIM_RUNS} scenarios in ${Date.now() - started} ms`, stats);
  }
  return stats;
}
