import * as fc from 'fast-check';
import { Delivery, EventBridgeDriver } from './eventbridge-driver';
import { FaultRates } from './faults';
import { Violation } from './invariants';
import { InvocationResult, invokeScheduled } from './lambda-async';
import { SchedulerDelivery, SchedulerDriver, SchedulerDriverOptions } from './scheduler-driver';
import { SimClock } from './sim-clock';
import { CopyView, tagMap } from './sim-core';
import { faultRatesArb } from './sim-property';
import { SimWorld, SimWorldOptions } from './sim-world';
import * as stale from '../../lambda/schedule/stale';
import { fsx } from '../../lambda/shared/clients/fsx';
import { OWNERSHIP_TAG_KEYS } from '../../lambda/shared/ownership';
import { SCHEDULED_TICK_TAG_KEY } from '../../src/private/ownership-tags';

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

/** What a schedule's live copies (not DELETING, DELETED, FAILED or gone) of each target were when an invocation started: when each was created (epoch ms). */
export type TargetTicks = ReadonlyMap<string, readonly number[]>;

/**
 * The world as each invocation of the schedules' handler found it: at its start, when its
 * schedule's live copies of each target were created (`createdAt`: the fake's CreationTime of the
 * copy; undefined leaves a copy out), in the order of the invocations of each tick. Read from the
 * fakes, not from the handler, for invariants that judge what the handler decided.
 */
export class InvocationViews {
  private readonly views = new Map<string, TargetTicks[]>();

  constructor(
    private readonly world: SimWorld,
    private readonly kind: CopyView['kind'],
    private readonly createdAt: (copy: CopyView) => number | undefined,
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
      const t = this.createdAt(c);
      if (t !== undefined) view.set(c.target, [...(view.get(c.target) ?? []), t]);
    }
    const key = `${owner}|${tick}`;
    this.views.set(key, [...(this.views.get(key) ?? []), view]);
  }
}

/**
 * Whether retention's window has passed the tick at `tickMs` given when the schedule's live copies
 * of a target were created (what retention ranks them by): `keepLast` of them created after it, or
 * the latest created more than `maxAgeSeconds` after it (the copy retention would already have
 * deleted, whatever order the ticks ran in). Why, or undefined.
 */
export function retentionPassed(
  tickMs: number,
  liveCreated: readonly number[],
  retention: { readonly keepLast?: number; readonly maxAgeSeconds?: number },
): string | undefined {
  const later = liveCreated.filter((t) => t > tickMs);
  if (retention.keepLast !== undefined && later.length >= retention.keepLast) return `${later.length} copies made after the tick, keepLast ${retention.keepLast}`;
  const latest = later.reduce((max, t) => Math.max(max, t), -Infinity);
  if (retention.maxAgeSeconds !== undefined && latest - tickMs > retention.maxAgeSeconds * 1000) {
    return `${(latest - tickMs) / 1000} s before the latest copy was made, maxAge ${retention.maxAgeSeconds} s`;
  }
  return undefined;
}

/** The index among a tick's invocations (deliveries that reached the handler) of the first that succeeded; -1 if none did. */
export function firstSucceededInvocation(deliveries: readonly Delivery[], tick: string): number {
  return deliveries.filter((d) => d.tick === tick && (d as Partial<SchedulerDelivery>).invoked !== false).findIndex((d) => d.ok);
}

/** The minute (epoch ms) a tick's scheduled time falls in: the tick its copies are of. */
export function tickMinuteMs(tick: string): number {
  return Math.floor(Date.parse(tick) / 60_000) * 60_000;
}

/** A schedule's retention as its input sends it. */
export interface SpecRetention {
  readonly keepLast?: number;
  readonly maxAgeSeconds?: number;
}

/** One schedule's run with its retention and the world each of its invocations found: what judges the ticks retention passed. */
export interface RetainedRun {
  readonly owner: string;
  readonly targets: readonly string[];
  readonly deliveries: readonly Delivery[];
  /** Undefined when the schedule keeps every copy. */
  readonly retention?: SpecRetention;
  readonly views: InvocationViews;
}

/**
 * Why a tick that succeeded may have no copy of `target`: when its first delivery that succeeded
 * started, retention's window had already passed it (judged from the copies that then existed and
 * when they were made, and the run's keepLast and maxAge; not from what the handler said). The first
 * delivery that *succeeded*: one that failed before the target's copy was made (a kill, an error)
 * is retried, and the retry may find the window passed by then, and skip rightly.
 */
export function retentionPassedAtFirstSuccess(run: RetainedRun, tick: string, target: string): string | undefined {
  const view = run.views.at(run.owner, tick, firstSucceededInvocation(run.deliveries, tick));
  if (!run.retention || !view) return undefined;
  return retentionPassed(tickMinuteMs(tick), view.get(target) ?? [], run.retention);
}

/**
 * `onePerTick` for runs with retention: a tick that succeeded may have no copy of a target only
 * when retention's window had passed it at its first delivery that succeeded. And each copy
 * carries its nominal tick's minute in its tick tag (informational: a late retry is judged by when copies were made).
 */
export function onePerRetainedTick(copies: CopyView[], runs: readonly RetainedRun[], noun: string): Violation[] {
  const excused = runs.map((run) => ({ ...run, mayHaveNone: (tick: string, target: string) => retentionPassedAtFirstSuccess(run, tick, target) }));
  const out = onePerTick(copies, excused, noun);
  for (const c of copies) {
    const tick = c.createdDuring?.tick;
    const tagged = tagMap(c.tags)[SCHEDULED_TICK_TAG_KEY];
    const minute = tick && new Date(tickMinuteMs(tick)).toISOString().replace(/:00\.000Z$/, 'Z');
    if (tagged !== minute) out.push({ invariant: 'no-duplicates', detail: `${c.id} of ${c.target} (tick ${tick}) is tagged for tick ${tagged}` });
  }
  return out;
}

/**
 * The ticks that succeeded, per target, by what the world held when their first delivery that
 * succeeded started: `late` (a copy made after the tick's scheduled minute existed), of those `lateInWindow` (retention's
 * window had not passed them: their copy must be made) and `stale` (it had); and
 * `staleOnlyAfterFailure`: the window had not passed at the tick's first invocation but had by its
 * first that succeeded (what an invariant judged at the first invocation would wrongly hold
 * against a handler that skips such a retry), `…AndNone` of those without a copy.
 */
export function lateTicks(world: SimWorld, kind: CopyView['kind'], runs: readonly RetainedRun[]): Record<string, number> {
  const out: Record<string, number> = { late: 0, lateInWindow: 0, stale: 0, staleOnlyAfterFailure: 0, staleOnlyAfterFailureAndNone: 0 };
  const ours = world.copies().filter((c) => c.kind === kind && !c.foreign);
  for (const run of runs) {
    const retention = run.retention ?? {};
    for (const tick of new Set(run.deliveries.filter((d) => d.ok).map((d) => d.tick))) {
      const tickMs = tickMinuteMs(tick);
      const first = run.views.at(run.owner, tick, 0);
      const firstOk = run.views.at(run.owner, tick, firstSucceededInvocation(run.deliveries, tick));
      for (const target of new Set(run.targets)) {
        const live = firstOk?.get(target) ?? [];
        if (!live.some((t) => t > tickMs)) continue;
        out.late++;
        const passed = !!retentionPassed(tickMs, live, retention);
        out[passed ? 'stale' : 'lateInWindow']++;
        if (passed && !retentionPassed(tickMs, first?.get(target) ?? [], retention)) {
          out.staleOnlyAfterFailure++;
          const made = ours.some((c) => c.createdDuring?.owner === run.owner && c.createdDuring.tick === tick && c.target === target);
          if (!made) out.staleOnlyAfterFailureAndNone++;
        }
      }
    }
  }
  return out;
}

/**
 * BROKEN on purpose: the handler skipping every late tick, whatever its retention's limits:
 * whenever a live copy of its schedule made after the tick exists.
 */
export function skipsEveryLateTick<E>(fn: (event: E) => Promise<unknown>): (event: E) => Promise<unknown> {
  return async (event) => {
    const spy = jest.spyOn(stale, 'staleReason').mockImplementation((created, tickMs) => (created.some((t) => t > tickMs) ? 'a copy made after the tick exists' : undefined));
    try {
      return await fn(event);
    } finally {
      spy.mockRestore();
    }
  };
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
 * of its own too (the handler finds the tick's copy by its token tag before asking), and a name
 * of its own where the request names its copy (CreateSnapshot: FSx refuses a second snapshot of
 * one name on a volume).
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
      c.input.Tags = c.input.Tags?.map((t) => (t.Key === OWNERSHIP_TAG_KEYS.token ? { ...t, Value: token } : t));
      if (c.input.Name !== undefined) c.input.Name = `${c.input.Name}-${delivery}`;
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

/** What a late retry of a schedule's first tick found, and did (`lateRetryOfFirstTick`). */
export interface LateRetry {
  readonly late: InvocationResult;
  /** The first tick's copy was still there when the retry came. */
  readonly originalExisted: boolean;
  /** The retry came after FSx forgot the tick's token (`tokenMemoryMs` after the tick). */
  readonly tokenForgotten: boolean;
  /** The retry's create calls, and what FSx answered them. */
  readonly retryCreates: string[];
  /** How many targets the retry counted as stale ticks. */
  readonly retrySkipped: number;
  /** The copies of the first tick after the retry. */
  readonly ofFirstTick: CopyView[];
}

/** What a late retry of a schedule's first tick is of: the schedule, and the target whose copies are looked at. */
export interface LateRetryOf {
  readonly owner: string;
  readonly stackId: string;
  readonly input: (time: string, eventId: string) => unknown;
  readonly kind: 'fsx-backup' | 'fsx-snapshot';
  readonly target: string;
  /** How long the fake FSx remembers a token. */
  readonly tokenMemoryMs: number;
  /** The StaleTicksSkipped metric so far. */
  readonly staleCount: () => number;
}

/**
 * After a run on Scheduler (`driver`), a late Lambda retry of its first tick with the tick's input
 * (Lambda keeps retrying an event for up to 6 hours, and Scheduler a tick for up to 24).
 */
export async function lateRetryOfFirstTick(
  world: SimWorld,
  fn: (event: any) => Promise<unknown>,
  driver: SchedulerDriver,
  of: LateRetryOf,
): Promise<LateRetry> {
  const first = driver.deliveries[0];
  const copiesOfFirstTick = () => world.copies().filter((c) =>
    c.kind === of.kind && !c.foreign && c.target === of.target && c.createdDuring?.owner === of.owner && c.createdDuring.tick === first.tick);
  const create = of.kind === 'fsx-backup' ? 'CreateBackupCommand' : 'CreateSnapshotCommand';
  const [original] = copiesOfFirstTick();
  const callsBefore = world.core.log.length;
  const skippedBefore = of.staleCount();
  const late = await invokeScheduled(world, fn, of.input(first.time, first.eventId), 15 * 60_000, {
    owner: of.owner,
    stackId: of.stackId,
    requestKey: `${driver.scheduleArn}@${first.tick}`,
    tick: first.tick,
  });
  return {
    late,
    originalExisted: original.exists,
    tokenForgotten: world.clock.now() - Date.parse(first.tick) > of.tokenMemoryMs,
    retryCreates: world.core.log.slice(callsBefore).filter((c) => c.command === create).map((c) => c.outcome),
    retrySkipped: of.staleCount() - skippedBefore,
    ofFirstTick: copiesOfFirstTick(),
  };
}

/** A late retry (`lateRetryOfFirstTick`) and the invariants after it. */
export type CheckedLateRetry = LateRetry & { readonly violations: Violation[] };

/**
 * The tests of a late retry after FSx forgot the tick's token (it does not document for how long
 * it remembers one), for a construct whose copies are `noun`s: `lateRetry(keepLast)` runs a
 * schedule keeping so many, then retries its first tick late (`lateRetryOfFirstTick`).
 */
export function lateRetryTests(noun: string, lateRetry: (keepLast: number) => Promise<CheckedLateRetry>): void {
  test(`the first tick's ${noun} still there (keepLast 20): the handler finds it by its token tag in the listing and does not ask FSx again, still one ${noun}`, async () => {
    const r = await lateRetry(20);
    expect(r).toMatchObject({ tokenForgotten: true, originalExisted: true, retryCreates: [], retrySkipped: 0, late: { ok: true } });
    expect(r.ofFirstTick).toHaveLength(1);
    expect(r.violations).toEqual([]);
  });

  // With the token forgotten and the tick's copy pruned, FSx would take the retry's create as a
  // new request: a second copy of the tick, holding later data. The handler makes none: keepLast
  // (1) copies made after the tick's scheduled time exist, so retention would already have deleted the tick's.
  test(`the first tick's ${noun} pruned (keepLast 1) and its token forgotten: the late retry makes no second ${noun} of the tick; it is skipped as stale, and succeeds`, async () => {
    const r = await lateRetry(1);
    expect(r).toMatchObject({ tokenForgotten: true, originalExisted: false, retryCreates: [], retrySkipped: 1, late: { ok: true } });
    expect(r.ofFirstTick).toHaveLength(1);
    expect(r.violations).toEqual([]);
  });
}
