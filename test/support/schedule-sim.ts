import * as fc from 'fast-check';
import { Delivery, EventBridgeDriver } from './eventbridge-driver';
import { FaultRates } from './faults';
import { Violation } from './invariants';
import { SchedulerDelivery, SchedulerDriver, SchedulerDriverOptions } from './scheduler-driver';
import { SimClock } from './sim-clock';
import { CopyView, tagMap } from './sim-core';
import { faultRatesArb } from './sim-property';
import { SimWorld, SimWorldOptions } from './sim-world';
import { fsx } from '../../lambda/shared/clients/fsx';
import { OWNERSHIP_TAG_KEYS } from '../../lambda/shared/ownership';

/*
 * What the simulations of the scheduled-copy constructs (FsxBackupSchedule,
 * OpenZfsSnapshotSchedule) share: a schedule on either engine, the one-copy-per-tick invariant,
 * and the broken variants that show the invariants can fail.
 */

/** What a schedule on EventBridge Scheduler sets. */
export type SchedulerSpec = Pick<SchedulerDriverOptions,
  'expression' | 'timeZone' | 'flexibleWindowMinutes' | 'retryAttempts' | 'maxEventAgeSeconds' | 'brokenScheduledTime'>;

/** Time zones of random schedules: UTC, a half-hour offset without DST, DST in the north and in the south (Lord Howe's shifts by half an hour). */
export const TIME_ZONES = ['UTC', 'Europe/Berlin', 'America/New_York', 'Asia/Kolkata', 'Australia/Lord_Howe'];

/**
 * When random scenarios start (their schedules are created): the simulated clock's own start, or
 * a few hours before a DST change of 2026 (Berlin's spring and fall, New York's spring, Lord
 * Howe's fall). See `scenarioClock`.
 */
export const SCENARIO_STARTS = [undefined, '2026-03-28T22:00:00Z', '2026-10-24T21:00:00Z', '2026-03-08T04:00:00Z', '2026-04-04T12:00:00Z'];

/**
 * Two windows of days around Berlin's DST changes of 2026 (the issue's): spring forward on
 * 2026-03-29 (02:00 -> 03:00), fall back on 2026-10-25 (03:00 -> 02:00). A world that runs them
 * starts at the first (`startMs`), and `startAt` moves it to each.
 */
export const BERLIN_DST_DAYS: ReadonlyArray<{ readonly from: string; readonly hours: number }> = [
  { from: '2026-03-27T12:00:00Z', hours: 108 },
  { from: '2026-10-23T12:00:00Z', hours: 84 },
];

/**
 * The ticks of `cron(30 2 * * ? *)` in Europe/Berlin over `BERLIN_DST_DAYS`: Scheduler skips
 * 02:30 on the spring-forward day (it does not exist) and runs it once on the fall-back day (the
 * first 02:30, CEST).
 */
export const BERLIN_DST_TICKS: readonly string[] = [
  '2026-03-28T01:30:00Z', // 02:30 CET
  // 2026-03-29: 02:00 -> 03:00, no 02:30
  '2026-03-30T00:30:00Z', // 02:30 CEST
  '2026-03-31T00:30:00Z',
  '2026-10-24T00:30:00Z',
  '2026-10-25T00:30:00Z', // 02:30 CEST; not again at 02:30 CET (01:30Z)
  '2026-10-26T01:30:00Z', // 02:30 CET
];

/** Scheduler settings for random schedules, with these expressions and flexible windows (minutes). */
export function schedulerSpecArb(expressions: string[], flexibleWindows: number[]): fc.Arbitrary<SchedulerSpec> {
  return fc.record({
    expression: fc.constantFrom(...expressions),
    timeZone: fc.constantFrom(...TIME_ZONES),
    flexibleWindowMinutes: fc.constantFrom(...flexibleWindows),
    retryAttempts: fc.constantFrom(185, 185, 3, 0),
    maxEventAgeSeconds: fc.constantFrom(86_400, 3_600, 60),
  });
}

type WithSchedules = { readonly schedules: ReadonlyArray<{ readonly scheduler?: SchedulerSpec }> };

/** The same scenarios with every Scheduler schedule BROKEN (`brokenScheduledTime`). */
export function withBrokenScheduler<S extends WithSchedules>(scenarios: fc.Arbitrary<S>): fc.Arbitrary<S> {
  return scenarios.map((s) => ({
    ...s,
    schedules: s.schedules.map((x) => (x.scheduler ? { ...x, scheduler: { ...x.scheduler, brokenScheduledTime: true } } : x)),
  }));
}

/**
 * The SimWorld option of a scenario's clock: it starts at the scenario's start (ISO 8601; the
 * simulated clock's own start if absent), `offsetSeconds` on: a rate counts from there, seconds
 * and all.
 */
export function scenarioClock(start: string | undefined, offsetSeconds = 0): Pick<SimWorldOptions, 'startMs'> {
  return { startMs: (start === undefined ? new SimClock().now() : Date.parse(start)) + offsetSeconds * 1000 };
}

/** Moves the clock on to `start` (ISO 8601), the next window of a run over several (the clock never goes back). */
export function startAt(world: SimWorld, start: string): void {
  world.clock.advance(Date.parse(start) - world.clock.now());
}

/** What a run of schedules returns: the drivers' deliveries, and the invariants it broke. */
export interface ScheduleRunResult {
  readonly runs: ReadonlyArray<{ readonly driver: { readonly deliveries: readonly Delivery[] } }>;
  readonly violations: Violation[];
}

/**
 * Runs schedules over each of `BERLIN_DST_DAYS` in turn (`run` for so many hours; the world
 * started at the first, see `scenarioClock`): the violations and deliveries of both.
 */
export async function overBerlinDstDays(world: SimWorld, run: (hours: number) => Promise<ScheduleRunResult>) {
  const violations: Violation[] = [];
  const deliveries: Delivery[] = [];
  for (const { from, hours } of BERLIN_DST_DAYS) {
    startAt(world, from);
    const r = await run(hours);
    violations.push(...r.violations);
    deliveries.push(...r.runs.flatMap((x) => x.driver.deliveries));
  }
  return { violations, deliveries };
}

/** Copies in the order of the nominal ticks they were made for: their ids, ticks, and the client token tagged on each. */
export function ticksAndTokens(copies: readonly CopyView[]): { ids: string[]; ticks: string[]; tokens: string[] } {
  const sorted = [...copies].sort((a, b) => (a.createdDuring?.tick ?? '').localeCompare(b.createdDuring?.tick ?? ''));
  return {
    ids: sorted.map((c) => c.id),
    ticks: sorted.map((c) => c.createdDuring?.tick ?? ''),
    tokens: sorted.map((c) => tagMap(c.tags)[OWNERSHIP_TAG_KEYS.token]),
  };
}

/** Fault rates of scenarios on Scheduler (or on either engine): any call's, and the deliveries' (Scheduler's and Lambda's). */
export const SCHEDULER_FAULTS: fc.Arbitrary<FaultRates> = faultRatesArb({
  'duplicate-tick': fc.constantFrom(0, 0.2, 1),
  'async-retry': fc.constantFrom(0, 0.2, 1),
  'scheduler-retry': fc.constantFrom(0, 0.2, 0.6),
}, 0.01);

/**
 * A scheduled run's counts, added into a property's stats: one scenario, its deliveries, the
 * copies it deleted (`deletes`) and the faults injected.
 */
export function addRunStats(stats: Record<string, number>, world: SimWorld, runs: ScheduleRunResult['runs'], deletes: number): void {
  const add = (k: string, n: number) => (stats[k] = (stats[k] ?? 0) + n);
  add('scenarios', 1);
  for (const { driver } of runs) countDeliveries(stats, driver.deliveries);
  add('deletes', deletes);
  for (const [k, v] of Object.entries(world.faults.injected)) add(`fault:${k}`, v);
}

/** The SIM_REPLAY test (skipped without it): one scenario, a counterexample fast-check printed, with the calls it made. */
export function replayTest<S>(run: (scenario: S) => Promise<{ violations: Violation[]; world: SimWorld }>): void {
  const replay = process.env.SIM_REPLAY ? test : test.skip;
  replay('replay SIM_REPLAY', async () => {
    const { violations, world } = await run(JSON.parse(process.env.SIM_REPLAY!));
    // eslint-disable-next-line no-console
    console.log(JSON.stringify({ violations, log: world.core.log.map((c) => ({ ...c, input: undefined })) }, null, 1));
    expect(violations).toEqual([]);
  });
}

/** Adds what the schedules' deliveries came to into a property's stats. */
export function countDeliveries(stats: Record<string, number>, deliveries: readonly Delivery[]): void {
  const add = (k: string, n: number) => (stats[k] = (stats[k] ?? 0) + n);
  add('deliveries', deliveries.length);
  add('okDeliveries', deliveries.filter((d) => d.ok).length);
  add('deadLettered', deliveries.filter((d) => (d as Partial<SchedulerDelivery>).deadLettered).length);
  add('schedulerRetries', deliveries.filter((d) => (d as Partial<SchedulerDelivery>).invoked === false).length);
}

/** One schedule as a simulation drives it: on Scheduler, or on an EventBridge rule. */
export interface DrivenSchedule {
  /** The schedule's id in its stack: the owner tag of its copies. */
  readonly name: string;
  readonly stackId: string;
  /** On Scheduler, with these settings; on a rule without. */
  readonly scheduler?: SchedulerSpec;
  /** The rule's rate (ms). */
  readonly rateMs?: number;
  /** The rule's duplicate deliveries carry a `time` up to this many seconds late. */
  readonly duplicateTimeShiftSeconds?: number;
  /** The tick's input from its scheduled time and its event (or execution) id. */
  readonly input: (time: string, eventId: string) => unknown;
}

export type ScheduleDriver = EventBridgeDriver | SchedulerDriver;

export function driveSchedule(world: SimWorld, handler: (event: any) => Promise<unknown>, s: DrivenSchedule): ScheduleDriver {
  if (s.scheduler) {
    return new SchedulerDriver(world, handler, {
      ...s.scheduler,
      scheduleName: s.name,
      stackId: s.stackId,
      owner: s.name,
      input: (ctx) => s.input(ctx.scheduledTime, ctx.executionId),
    });
  }
  if (!s.rateMs) throw new Error(`schedule ${s.name} has neither a rule's rate nor Scheduler settings`);
  return new EventBridgeDriver(world, handler, {
    scheduleId: `${s.stackId}|${s.name}`,
    stackId: s.stackId,
    owner: s.name,
    rateMs: s.rateMs,
    duplicateTimeShiftSeconds: s.duplicateTimeShiftSeconds,
    input: (event) => s.input(event.time, event.id),
  });
}

/** One schedule's run, as the per-tick invariant reads it. */
export interface ScheduleRun {
  readonly owner: string;
  readonly targets: readonly string[];
  readonly deliveries: readonly Delivery[];
  /**
   * Why a tick that succeeded may have no copy of a target (undefined: it must have one), judged
   * from the world, not from what the handler said. @default it must always have one
   */
  readonly mayHaveNone?: (tick: string, target: string) => string | undefined;
}

/**
 * Never two copies of one target for one tick, and exactly one for every tick that succeeded
 * (unless the run's `mayHaveNone` says why not). Ticks are the nominal ones the drivers delivered
 * (the call context), whatever the handler was told. `copies`: the schedules' copies of one kind.
 */
export function onePerTick(copies: CopyView[], runs: readonly ScheduleRun[], noun: string): Violation[] {
  const out: Violation[] = [];
  const made = new Map<string, CopyView[]>();
  for (const c of copies) {
    const key = `${c.createdDuring?.owner}|${c.createdDuring?.tick}|${c.target}`;
    made.set(key, [...(made.get(key) ?? []), c]);
  }
  for (const run of runs) {
    const succeeded = new Set(run.deliveries.filter((d) => d.ok).map((d) => d.tick));
    for (const tick of new Set(run.deliveries.map((d) => d.tick))) {
      for (const target of new Set(run.targets)) {
        const ofTick = made.get(`${run.owner}|${tick}|${target}`) ?? [];
        const excused = ofTick.length === 0 && succeeded.has(tick) ? run.mayHaveNone?.(tick, target) : undefined;
        if (ofTick.length > 1 || (succeeded.has(tick) && ofTick.length !== 1 && !excused)) {
          const ids = ofTick.map((c) => c.id).join(', ');
          out.push({
            invariant: 'no-duplicates',
            detail: `${run.owner} tick ${tick} made ${ofTick.length} ${noun} of ${target}${ids ? ` (${ids})` : ''}${succeeded.has(tick) ? ' (the tick succeeded)' : ''}`,
          });
        }
      }
    }
  }
  return out;
}

/** What a schedule's live copies (not DELETING, not gone) of each target were when an invocation started: the ticks their names carry (epoch ms). */
export type TargetTicks = ReadonlyMap<string, readonly number[]>;

/**
 * The world as each invocation of the schedules' handler found it: at its start, the ticks of its
 * schedule's live copies of each target (`tickOf`: from the copy's name, say; undefined leaves a
 * copy out), in the order of the invocations of each tick. Read from the fakes, not from the
 * handler, for invariants that judge what the handler decided.
 */
export class InvocationViews {
  private readonly views = new Map<string, TargetTicks[]>();

  constructor(
    private readonly world: SimWorld,
    private readonly kind: CopyView['kind'],
    private readonly tickOf: (copy: CopyView) => number | undefined,
  ) {}

  /** The handler, recording the world at the start of each invocation. */
  public wrap<E>(handler: (event: E) => Promise<unknown>): (event: E) => Promise<unknown> {
    return (event) => {
      const ctx = this.world.core.context;
      if (ctx?.kind === 'schedule' && ctx.owner && ctx.tick) this.record(ctx.owner, ctx.tick);
      return handler(event);
    };
  }

  /** The world at the start of the `i`-th invocation (from 0) of the owner's tick. */
  public at(owner: string, tick: string, i: number): TargetTicks | undefined {
    return this.views.get(`${owner}|${tick}`)?.[i];
  }

  private record(owner: string, tick: string): void {
    const view = new Map<string, number[]>();
    for (const c of this.world.copies()) {
      if (c.kind !== this.kind || c.foreign || !c.exists || c.createdDuring?.owner !== owner) continue;
      const t = this.tickOf(c);
      if (t !== undefined) view.set(c.target, [...(view.get(c.target) ?? []), t]);
    }
    const key = `${owner}|${tick}`;
    this.views.set(key, [...(this.views.get(key) ?? []), view]);
  }
}

/**
 * Whether retention's window has passed the tick at `tickMs` given the ticks of the schedule's
 * live copies of a target: `keepLast` of them later, or the latest more than `maxAgeSeconds`
 * after it (the copy retention would already have deleted). Why, or undefined.
 */
export function retentionPassed(
  tickMs: number,
  liveTicks: readonly number[],
  retention: { readonly keepLast?: number; readonly maxAgeSeconds?: number },
): string | undefined {
  const later = liveTicks.filter((t) => t > tickMs);
  if (retention.keepLast !== undefined && later.length >= retention.keepLast) return `${later.length} copies of later ticks, keepLast ${retention.keepLast}`;
  const latest = later.reduce((max, t) => Math.max(max, t), -Infinity);
  if (retention.maxAgeSeconds !== undefined && latest - tickMs > retention.maxAgeSeconds * 1000) {
    return `${(latest - tickMs) / 1000} s before the latest copy's tick, maxAge ${retention.maxAgeSeconds} s`;
  }
  return undefined;
}

/** The index among a tick's invocations (deliveries that reached the handler) of the first that succeeded; -1 if none did. */
export function firstSucceededInvocation(deliveries: readonly Delivery[], tick: string): number {
  return deliveries.filter((d) => d.tick === tick && (d as Partial<SchedulerDelivery>).invoked !== false).findIndex((d) => d.ok);
}

/** Every FSx call through `before`, every response through `after`. */
export interface Hooks {
  readonly before?: (command: any) => void;
  readonly after?: (command: any, out: any) => void;
}

/** Runs `fn` with the handlers' FSx client tampered with by `hooks`. */
export async function withTamperedClient<T>(hooks: Hooks, fn: () => Promise<T>): Promise<T> {
  const client = fsx();
  const original = client.send;
  (client as any).send = async function (this: unknown, command: any, ...rest: unknown[]) {
    hooks.before?.(command);
    const out = await (original as any).call(this, command, ...rest);
    hooks.after?.(command, out);
    return out;
  };
  try {
    return await fn();
  } finally {
    (client as any).send = original;
  }
}

/**
 * BROKEN on purpose: the handler with a client token of its own for every delivery of a tick in
 * its `command` requests, as if it ignored the tick's; and, as such a handler would, a token tag
 * and a name of its own too where the request names its copy (CreateSnapshot): FSx refuses a
 * second snapshot of one name on a volume, and the handler finds the tick's snapshot by its token
 * tag before asking.
 */
export function tokenPerDelivery<E>(
  fn: (event: E) => Promise<unknown>,
  command: abstract new (...args: any[]) => { input: { ClientRequestToken?: string; Name?: string; Tags?: Array<{ Key?: string; Value?: string }> } },
): (event: E) => Promise<unknown> {
  let deliveries = 0;
  return (event) => {
    const delivery = ++deliveries;
    const rewrite = (c: unknown) => {
      if (!(c instanceof command)) return;
      const token = `${c.input.ClientRequestToken}-${delivery}`;
      c.input.ClientRequestToken = token;
      if (c.input.Name !== undefined) {
        c.input.Name = `${c.input.Name}-${delivery}`;
        c.input.Tags = c.input.Tags?.map((t) => (t.Key === OWNERSHIP_TAG_KEYS.token ? { ...t, Value: token } : t));
      }
    };
    return withTamperedClient({ before: rewrite }, () => fn(event));
  };
}

/**
 * Runs scenarios (with something broken) as the property does, until one breaks an invariant:
 * returns what was broken. Throws if none of `numRuns` does: the invariants would prove nothing.
 */
export async function propertyFails<S>(
  scenarios: fc.Arbitrary<S>,
  run: (s: S) => Promise<{ violations: Violation[] }>,
  numRuns = 300,
): Promise<string> {
  const out = await fc.check(fc.asyncProperty(scenarios, async (s) => {
    const { violations } = await run(s);
    if (violations.length) throw new Error(violations.slice(0, 10).map((v) => `[${v.invariant}] ${v.detail}`).join('\n'));
  }), { numRuns, seed: 16, endOnFailure: true });
  if (!out.failed) throw new Error(`${out.numRuns} scenarios with the broken variant kept every invariant`);
  return String((out.errorInstance as Error | undefined)?.message);
}
