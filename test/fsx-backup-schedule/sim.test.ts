import { CreateBackupCommand, DescribeBackupsCommand } from '@aws-sdk/client-fsx';
import * as fc from 'fast-check';
import { handler, metrics, targetHash } from '../../lambda/fsx-backup-schedule';
import { MANAGED_BY, OWNERSHIP_TAG_KEYS } from '../../lambda/shared/ownership';
import type { FsxBackupTargetInput, FsxBackupTickInput } from '../../src/private/fsx-backup-contract';
import { EventBridgeDriver } from '../support/eventbridge-driver';
import { FaultRates } from '../support/faults';
import { Invariants, Violation } from '../support/invariants';
import {
  BERLIN_DST_DAYS, BERLIN_DST_TICKS, InvocationViews, RetainedRun, SCENARIO_STARTS, SCHEDULER_FAULTS, ScheduleDriver, SchedulerSpec, SpecRetention,
  addRunStats, driveSchedule, lateRetryOfFirstTick, lateRetryTests, lateTicks, onePerRetainedTick, overBerlinDstDays, propertyFails, replayTest,
  scenarioClock, schedulerSpecArb, skipsEveryLateTick, ticksAndTokens, tokenPerDelivery, withBrokenScheduler, withTamperedClient,
} from '../support/schedule-sim';
import { SchedulerDelivery, SchedulerDriver } from '../support/scheduler-driver';
import { SIM_RUNS, SIM_TIMEOUT_MS, checkScenarios, faultRatesArb } from '../support/sim-property';
import { SimWorld, SimWorldOptions } from '../support/sim-world';

const RUNS = SIM_RUNS;
jest.setTimeout(SIM_TIMEOUT_MS);

const STACK_ID = 'arn:aws:cloudformation:us-east-1:111111111111:stack/app/0e1a2b3c-0000-0000-0000-000000000000';
const HOUR = 3_600_000;
const DAY = 24 * HOUR;

const ZFS = 'fs-0000000000000000a';
const WINDOWS = 'fs-0000000000000000b';
const LUSTRE = 'fs-0000000000000000c';
const ONTAP = 'fs-0000000000000000d';
const ONTAP_VOL = 'fsvol-0000000000000000d';
const ONTAP_VOL2 = 'fsvol-0000000000000000e';
const MISSING = 'fs-0000000000000000f';

const TARGET_POOL: FsxBackupTargetInput[] = [
  { Kind: 'file-system', Id: ZFS },
  { Kind: 'file-system', Id: WINDOWS },
  { Kind: 'file-system', Id: LUSTRE },
  { Kind: 'volume', Id: ONTAP_VOL },
  { Kind: 'volume', Id: ONTAP_VOL2 },
];

// Metrics go to an in-memory tally instead of stdout.
const tally: Record<string, number> = {};
beforeAll(() => {
  jest.spyOn(metrics, 'addMetric').mockImplementation((name, _unit, value) => {
    tally[name] = (tally[name] ?? 0) + value;
    return metrics;
  });
  jest.spyOn(metrics, 'publishStoredMetrics').mockImplementation(() => {
    metrics.clearMetrics();
    metrics.clearDimensions();
    return metrics;
  });
});
afterAll(() => jest.restoreAllMocks());
const resetTally = () => Object.keys(tally).forEach((k) => delete tally[k]);

/** An account with every kind of target, and backups the schedule must never touch. */
function backupWorld(seed: number, faults: FaultRates = {}, extra: Partial<SimWorldOptions> = {}): SimWorld {
  // Backups take 1 to 20 minutes; a slow one 3 hours (past the next hourly tick).
  const world = new SimWorld({ seed, faults, durations: { minMs: 60_000, maxMs: 20 * 60_000, slowMs: 3 * HOUR }, ...extra });
  world.fsx.addFileSystem(ZFS, 'OPENZFS', { copyTagsToBackups: true, tags: [{ Key: 'costCenter', Value: '42' }, { Key: 'team', Value: 'fs' }] });
  world.fsx.addFileSystem(WINDOWS, 'WINDOWS');
  world.fsx.addFileSystem(LUSTRE, 'LUSTRE', { copyTagsToBackups: true, tags: [{ Key: 'app', Value: 'hpc' }] });
  world.fsx.addFileSystem(ONTAP, 'ONTAP');
  world.fsx.addVolume(ONTAP_VOL, ONTAP, 'ONTAP', { copyTagsToBackups: true, tags: [{ Key: 'volume', Value: 'data' }] });
  world.fsx.addVolume(ONTAP_VOL2, ONTAP, 'ONTAP');
  for (const t of TARGET_POOL) {
    const opts = t.Kind === 'volume' ? { volumeId: t.Id } : {};
    const fs = t.Kind === 'volume' ? ONTAP : t.Id;
    // A user's backup, AWS Backup's, and one tagged like ours by another stack: old, and new.
    world.fsx.seedBackup(fs, [{ Key: 'made-by', Value: 'user' }], 'AVAILABLE', { ...opts, ageMs: 40 * DAY });
    world.fsx.seedBackup(fs, [{ Key: 'aws:backup:source-resource', Value: t.Id }], 'AVAILABLE', { ...opts, ageMs: 2 * HOUR });
    world.fsx.seedBackup(fs, [
      { Key: OWNERSHIP_TAG_KEYS.managedBy, Value: MANAGED_BY },
      { Key: OWNERSHIP_TAG_KEYS.stackId, Value: 'arn:aws:cloudformation:us-east-1:111111111111:stack/other/1' },
      { Key: OWNERSHIP_TAG_KEYS.owner, Value: 'AppNightly00000000' },
    ], 'AVAILABLE', { ...opts, ageMs: 60 * DAY });
    // Backups FSx and AWS Backup made that carry this very schedule's ownership tags (copied from
    // one of ours): not user-initiated, so never the schedule's to prune.
    const likeOurs = [
      { Key: OWNERSHIP_TAG_KEYS.managedBy, Value: MANAGED_BY },
      { Key: OWNERSHIP_TAG_KEYS.stackId, Value: STACK_ID },
      { Key: OWNERSHIP_TAG_KEYS.owner, Value: 'AppNightly5A33CB59' },
      { Key: OWNERSHIP_TAG_KEYS.propsHash, Value: targetHash(t.Id) },
    ];
    world.fsx.seedBackup(fs, likeOurs, 'AVAILABLE', { ...opts, ageMs: 30 * DAY, type: 'AUTOMATIC' });
    world.fsx.seedBackup(fs, likeOurs, 'AVAILABLE', { ...opts, ageMs: 20 * DAY, type: 'AWS_BACKUP' });
  }
  return world;
}

/** Between the hours of a run: a user copies one of the schedule's available backups, tags and all. */
function userCopies(world: SimWorld): void {
  const ids = world.fsx.ownBackupIds();
  if (ids.length === 0) return;
  world.fsx.copyBackup(ids[Math.floor(world.faults.next() * ids.length)], { copyTags: true, tags: [{ Key: 'copied-by', Value: 'user' }] });
}

interface ScheduleSpec {
  readonly name: string;
  readonly targets: FsxBackupTargetInput[];
  /** An EventBridge rule's rate (ignored on Scheduler). */
  readonly rateHours: number;
  /** On EventBridge Scheduler instead of a rule. */
  readonly scheduler?: SchedulerSpec;
  readonly keepLast?: number;
  readonly maxAgeDays?: number;
  readonly tags?: Record<string, string>;
  /** Duplicate deliveries carry a `time` this many seconds later at most (EventBridgeDriver option). */
  readonly timeShiftSeconds?: number;
}

type Handler = (event: FsxBackupTickInput) => Promise<unknown>;

/** One tick's input: the rule's input transformer, or the Scheduler target's input with its context attributes. */
function tickInput(s: ScheduleSpec, time: string, eventId: string): FsxBackupTickInput {
  return {
    ...(s.scheduler ? { Operation: 'FsxBackup' as const } : {}),
    Time: time,
    EventId: eventId,
    StackId: STACK_ID,
    Schedule: s.name,
    Targets: s.targets,
    Tags: s.tags,
    KeepLast: s.keepLast,
    MaxAgeSeconds: s.maxAgeDays === undefined ? undefined : s.maxAgeDays * 86_400,
  };
}

function driverFor(world: SimWorld, s: ScheduleSpec, fn: Handler = handler): ScheduleDriver {
  return driveSchedule(world, fn, {
    name: s.name,
    stackId: STACK_ID,
    scheduler: s.scheduler,
    rateMs: s.rateHours * HOUR,
    duplicateTimeShiftSeconds: s.timeShiftSeconds,
    input: (time, eventId) => tickInput(s, time, eventId),
  });
}

/** One schedule as `runSchedules` ran it, and the world each of its invocations found. */
interface BackupRun {
  readonly spec: ScheduleSpec;
  readonly driver: ScheduleDriver;
  readonly views: InvocationViews;
}

/**
 * What the world held of the schedules' backups at the start of each invocation: the live ones
 * (CREATING, TRANSFERRING, PENDING, AVAILABLE) by when each was created (what retention ranks
 * them by, and so what the stale rule judges), read from the fake, not from their tags.
 */
const backupViews = (world: SimWorld) => new InvocationViews(world, 'fsx-backup', (c) => world.fsx.backup(c.id)?.CreationTime?.getTime());

/** A spec's retention, as its input sends it; undefined when it keeps every backup. */
function retentionOfSpec(s: ScheduleSpec): SpecRetention | undefined {
  if (s.keepLast === undefined && s.maxAgeDays === undefined) return undefined;
  return { keepLast: s.keepLast, maxAgeSeconds: s.maxAgeDays && s.maxAgeDays * 86_400 };
}

/** A run as the per-tick invariant and the late-tick counts read it. */
const retained = ({ spec, driver, views }: BackupRun): RetainedRun => ({
  owner: spec.name, targets: spec.targets.map((t) => t.Id), deliveries: driver.deliveries, retention: retentionOfSpec(spec), views,
});

/**
 * The schedule's promises, beside the library-wide invariants: never two backups of a target for
 * one tick, and one for every tick that succeeded unless retention's window had already passed it
 * when its first delivery that succeeded started (judged from the world: `retentionPassedAtFirstSuccess`);
 * each tagged with its tick (`onePerRetainedTick`); pruning never deleted a backup that was not AVAILABLE or was the
 * newest available one of its owner and target.
 */
function scheduleViolations(world: SimWorld, runs: readonly BackupRun[]): Violation[] {
  const copies = world.copies().filter((c) => c.kind === 'fsx-backup' && !c.foreign && c.createdDuring?.kind === 'schedule');
  const out = onePerRetainedTick(copies, runs.map(retained), 'backups');
  for (const d of world.fsx.backupDeletes) {
    if (d.foreign) out.push({ invariant: 'only-ours-touched', detail: `deleted foreign backup ${d.backupId} of ${d.target}` });
    if (d.lifecycle !== 'AVAILABLE') out.push({ invariant: 'only-ours-touched', detail: `deleted ${d.backupId} while ${d.lifecycle}` });
    if (d.newestOfItsOwner) out.push({ invariant: 'only-ours-touched', detail: `deleted ${d.backupId}, the newest available backup of ${d.target}` });
  }
  return out;
}

async function runSchedules(world: SimWorld, specs: ScheduleSpec[], hours: number, fn: Handler = handler, between?: (world: SimWorld) => void) {
  const views = backupViews(world);
  // What each invocation found matters only to a schedule with retention (a tick of one without is never stale).
  const runs: BackupRun[] = specs.map((spec) => ({ spec, views, driver: driverFor(world, spec, retentionOfSpec(spec) ? views.wrap(fn) : fn) }));
  const start = world.clock.now();
  // Ticks at the start and every hour after, `hours` of them for an hourly schedule.
  for (let h = 1; h <= hours; h++) {
    for (const { driver } of runs) await driver.runUntil(start + h * HOUR - 1);
    between?.(world);
  }
  const inv = new Invariants(world);
  const violations = [...inv.atEnd(), ...scheduleViolations(world, runs)];
  return { runs, violations };
}

const nightly = (over: Partial<ScheduleSpec> = {}): ScheduleSpec => ({
  name: 'AppNightly5A33CB59',
  targets: [TARGET_POOL[0], TARGET_POOL[3]],
  rateHours: 1,
  keepLast: 3,
  tags: { costCenter: 'backup-budget' },
  ...over,
});

describe('scenarios', () => {
  test('hourly backups of a file system and an ONTAP volume: one per tick, three kept, foreign ones untouched', async () => {
    const world = backupWorld(1);
    try {
      const { runs, violations } = await runSchedules(world, [nightly()], 10);
      expect(violations).toEqual([]);
      expect(runs[0].driver.deliveries.every((d) => d.ok)).toBe(true);
      for (const target of [ZFS, ONTAP_VOL]) {
        const ours = world.copies().filter((c) => c.target === target && !c.foreign);
        expect(ours).toHaveLength(10);
        // Three kept (the last tick's one may still be CREATING, then four exist).
        expect(ours.filter((c) => c.exists).length).toBeGreaterThanOrEqual(3);
        expect(ours.filter((c) => c.exists).length).toBeLessThanOrEqual(4);
        expect(world.copies().filter((c) => c.target === target && c.foreign && c.exists)).toHaveLength(5);
      }
      // CopyTagsToBackups: the file system's tags are on its backups, the user's tag wins.
      const zfsBackup = world.copies().find((c) => c.target === ZFS && !c.foreign)!;
      expect(zfsBackup.tags).toEqual(expect.arrayContaining([{ Key: 'team', Value: 'fs' }, { Key: 'costCenter', Value: 'backup-budget' }]));
      expect(world.copies().find((c) => c.target === ONTAP_VOL && !c.foreign)!.tags).toContainEqual({ Key: 'volume', Value: 'data' });
      expect(tally.BackupsPruned).toBeGreaterThan(0);
    } finally {
      world.dispose();
    }
  });

  test('every tick delivered twice and every invocation retried: still one backup per target per tick', async () => {
    const world = backupWorld(2, { 'duplicate-tick': 1, 'async-retry': 1, 'lost-response': 0.3 });
    try {
      const { runs, violations } = await runSchedules(world, [nightly({ keepLast: 1 })], 6);
      expect(violations).toEqual([]);
      expect(runs[0].driver.deliveries.filter((d) => d.duplicate).length).toBeGreaterThanOrEqual(6);
      expect(runs[0].driver.deliveries.filter((d) => d.attempt > 0).length).toBeGreaterThanOrEqual(6);
      expect(world.copies().filter((c) => c.target === ZFS && !c.foreign)).toHaveLength(6);
    } finally {
      world.dispose();
    }
  });

  test('a missing file system fails its target only; the tick fails, Lambda retries it, the others get exactly one backup', async () => {
    const world = backupWorld(3);
    try {
      const spec = nightly({ targets: [TARGET_POOL[0], { Kind: 'file-system', Id: MISSING }], keepLast: 1 });
      const { runs, violations } = await runSchedules(world, [spec], 3);
      expect(violations).toEqual([]);
      const deliveries = runs[0].driver.deliveries;
      expect(deliveries.every((d) => !d.ok)).toBe(true);
      expect(deliveries.filter((d) => d.attempt === 2)).toHaveLength(3);
      expect(deliveries[0].reason).toMatch(/1 of 2 backups failed: Reading fs-0000000000000000f: FileSystemNotFound/);
      expect(world.copies().filter((c) => c.target === ZFS && !c.foreign)).toHaveLength(3);
      // ZFS is pruned all the same: retention skips only the target whose backup failed (the
      // missing one), so keepLast 1 leaves ZFS its newest (and one still CREATING at most).
      expect(world.copies().filter((c) => c.target === ZFS && !c.foreign && c.exists).length).toBeLessThanOrEqual(2);
    } finally {
      world.dispose();
    }
  });

  test('two schedules on the same targets prune only their own backups', async () => {
    const world = backupWorld(4, { 'duplicate-tick': 0.5 });
    try {
      const a = nightly({ name: 'AppHourly11111111', keepLast: 1 });
      const b = nightly({ name: 'AppDaily22222222', rateHours: 2, maxAgeDays: 1, keepLast: 2 });
      const { runs, violations } = await runSchedules(world, [a, b], 8);
      expect(violations).toEqual([]);
      const byOwner = (owner: string) => world.copies().filter((c) => c.target === ZFS && c.tags.some((t) => t.Value === owner));
      // Both fire on even hours, and FSx makes one backup of a file system at a time: one of the
      // two may meet BackupInProgress for longer than its retries (then its tick fails, and says so).
      expect(byOwner('AppHourly11111111').length).toBeGreaterThanOrEqual(6);
      expect(byOwner('AppDaily22222222').length).toBeGreaterThanOrEqual(3);
      expect(byOwner('AppDaily22222222').filter((c) => c.exists).length).toBeGreaterThanOrEqual(2);
      const failures = runs.flatMap((r) => r.driver.deliveries).filter((d) => !d.ok);
      expect(failures.every((d) => /BackupInProgress/.test(d.reason ?? ''))).toBe(true);
    } finally {
      world.dispose();
    }
  });

  test('a backup still in progress at the next tick is retried with backoff, then the tick fails', async () => {
    const world = backupWorld(5, {}, { scripted: [{ kind: 'slow-lifecycle', command: 'CreateBackupCommand' }] });
    try {
      const { runs, violations } = await runSchedules(world, [nightly({ targets: [TARGET_POOL[1]] })], 2);
      expect(violations).toEqual([]);
      const second = runs[0].driver.deliveries.filter((d) => d.tick !== runs[0].driver.deliveries[0].tick);
      expect(second.every((d) => !d.ok && /BackupInProgress/.test(d.reason ?? ''))).toBe(true);
    } finally {
      world.dispose();
    }
  });

  test('users copy the schedule\'s backups with their tags (CopyBackup): the copies are never pruned', async () => {
    const world = backupWorld(9, { 'duplicate-tick': 0.3 });
    try {
      const { violations } = await runSchedules(world, [nightly({ keepLast: 1 })], 8, undefined, userCopies);
      expect(violations).toEqual([]);
      const copies = world.copies().filter((c) => c.foreign && c.tags.some((t) => t.Key === 'copied-by'));
      expect(copies.length).toBeGreaterThanOrEqual(6);
      // They carry the schedule's ownership tags, and every one of them is still there.
      expect(copies.every((c) => c.exists && c.tags.some((t) => t.Key === OWNERSHIP_TAG_KEYS.owner && t.Value === 'AppNightly5A33CB59'))).toBe(true);
      // The schedule did prune its own.
      expect(world.fsx.backupDeletes.length).toBeGreaterThan(0);
    } finally {
      world.dispose();
    }
  });

  test('duplicate deliveries whose time differs in its seconds still make one backup per target per tick', async () => {
    const world = backupWorld(10, { 'duplicate-tick': 1 }, { durations: { minMs: 60_000, maxMs: 60_001, slowMs: 1 } });
    try {
      const { runs, violations } = await runSchedules(world, [nightly({ timeShiftSeconds: 45 })], 6);
      expect(violations).toEqual([]);
      const shifted = runs[0].driver.deliveries.filter((d) => d.duplicate && d.time !== d.tick);
      expect(shifted.length).toBeGreaterThanOrEqual(6);
      expect(world.copies().filter((c) => c.target === ZFS && !c.foreign)).toHaveLength(6);
    } finally {
      world.dispose();
    }
  });

  test('backups that fail after CreateBackup returned are each counted once in BackupsFailed, at the next backup of their target', async () => {
    const world = backupWorld(12, { 'failed-lifecycle': 0.5 });
    try {
      resetTally();
      const { runs, violations } = await runSchedules(world, [nightly({ targets: [TARGET_POOL[1]], keepLast: 2 })], 10);
      expect(violations).toEqual([]);
      expect(runs[0].driver.deliveries.every((d) => d.ok)).toBe(true);
      const ours = world.copies().filter((c) => c.target === WINDOWS && !c.foreign);
      expect(ours).toHaveLength(10);
      // Every failed backup but the last tick's has a later backup, which counted it.
      const failedBeforeLast = ours.slice(0, -1).filter((c) => c.state === 'FAILED').length;
      expect(failedBeforeLast).toBeGreaterThan(0);
      expect(tally.BackupsFailed).toBe(failedBeforeLast);
    } finally {
      world.dispose();
    }
  });

  test('a Lambda killed after CreateBackup: the retry finds the same backup', async () => {
    const world = backupWorld(6, {}, { scripted: [{ kind: 'kill-after-create', command: 'CreateBackupCommand' }] });
    try {
      const { runs, violations } = await runSchedules(world, [nightly({ targets: [TARGET_POOL[0]] })], 1);
      expect(violations).toEqual([]);
      expect(runs[0].driver.deliveries.map((d) => d.ok)).toEqual([false, true]);
      expect(world.copies().filter((c) => c.target === ZFS && !c.foreign)).toHaveLength(1);
    } finally {
      world.dispose();
    }
  });
});

/** How the invariant reports a tick that succeeded without a backup though retention's window had not passed it. */
const MISSING_BACKUP = /\[no-duplicates\] \S+ tick \S+ made 0 backups of \S+ \(the tick succeeded\)/;

/** The schedule's own backups of one target, foreign ones left out. */
const ourBackups = (world: SimWorld, target: string, owner = 'AppNightly5A33CB59') =>
  world.copies().filter((c) => c.kind === 'fsx-backup' && c.target === target && !c.foreign && c.createdDuring?.owner === owner);

const onScheduler = (scheduler: SchedulerSpec, over: Partial<ScheduleSpec> = {}): ScheduleSpec => nightly({ ...over, scheduler });

describe('scenarios on EventBridge Scheduler', () => {
  test('hourly in Europe/Berlin with a 30-minute window; deliveries fail at Scheduler, come twice and are retried by Lambda: one backup per target per tick', async () => {
    const world = backupWorld(21, { 'scheduler-retry': 0.5, 'duplicate-tick': 1, 'async-retry': 1, 'lost-response': 0.2 });
    try {
      const spec = onScheduler({ expression: 'cron(0 * * * ? *)', timeZone: 'Europe/Berlin', flexibleWindowMinutes: 30 }, { keepLast: 2 });
      const { runs, violations } = await runSchedules(world, [spec], 8);
      expect(violations).toEqual([]);
      const deliveries = runs[0].driver.deliveries as SchedulerDelivery[];
      expect(deliveries.filter((d) => !d.invoked).length).toBeGreaterThan(0);
      expect(deliveries.filter((d) => d.duplicate).length).toBeGreaterThan(0);
      expect(deliveries.filter((d) => d.attempt > 0).length).toBeGreaterThan(0);
      expect(deliveries.filter((d) => d.at - Date.parse(d.tick) > 60_000).length).toBeGreaterThan(0);
      expect(deliveries.every((d) => d.time === d.tick)).toBe(true);
      const succeeded = new Set(deliveries.filter((d) => d.ok).map((d) => d.tick));
      expect(succeeded.size).toBeGreaterThanOrEqual(7);
      for (const target of [ZFS, ONTAP_VOL]) {
        expect(ourBackups(world, target).map((c) => c.createdDuring!.tick).sort()).toEqual([...succeeded].sort());
      }
    } finally {
      world.dispose();
    }
  });

  test('02:30 in Europe/Berlin over both DST days (2026-03-29, 2026-10-25): the spring-forward tick skipped, the fall-back tick once, a token per tick', async () => {
    const world = backupWorld(22, { 'duplicate-tick': 1, 'scheduler-retry': 0.3, 'async-retry': 0.3 }, scenarioClock(BERLIN_DST_DAYS[0].from));
    try {
      const spec = onScheduler({ expression: 'cron(30 2 * * ? *)', timeZone: 'Europe/Berlin', flexibleWindowMinutes: 60 }, { targets: [TARGET_POOL[0]] });
      const { violations, deliveries } = await overBerlinDstDays(world, (hours) => runSchedules(world, [spec], hours));
      expect(violations).toEqual([]);
      const { ticks, tokens } = ticksAndTokens(ourBackups(world, ZFS));
      expect(ticks).toEqual(BERLIN_DST_TICKS);
      // Each tick was delivered more than once, and its deliveries' backups are one: its token's.
      expect(deliveries.filter((d) => d.duplicate).length).toBeGreaterThanOrEqual(6);
      expect(new Set(tokens).size).toBe(6);
      expect(tokens.every((t) => /^css-[0-9a-f]{40}$/.test(t))).toBe(true);
    } finally {
      world.dispose();
    }
  });

  test('Scheduler gives up on a tick (no retries left, the dead-letter queue gets it): no backup for it, one for every other tick', async () => {
    const world = backupWorld(23, { 'scheduler-retry': 0.4 });
    try {
      const { runs, violations } = await runSchedules(world, [onScheduler({ expression: 'rate(1 hour)', retryAttempts: 0 })], 10);
      expect(violations).toEqual([]);
      const lost = new Set((runs[0].driver.deliveries as SchedulerDelivery[]).filter((d) => d.deadLettered).map((d) => d.tick));
      expect(lost.size).toBeGreaterThan(0);
      const made = ourBackups(world, ZFS).map((c) => c.createdDuring!.tick!);
      expect(made.filter((t) => lost.has(t))).toEqual([]);
      expect(made.length + lost.size).toBe(10);
    } finally {
      world.dispose();
    }
  });

  test('a rule and a Scheduler schedule on the same targets, one function for both: each makes one backup per tick and prunes only its own', async () => {
    const world = backupWorld(25, { 'duplicate-tick': 0.5, 'scheduler-retry': 0.3 });
    try {
      const rule = nightly({ name: 'AppRule11111111', keepLast: 1 });
      const scheduled = onScheduler({ expression: 'cron(30 */2 * * ? *)', timeZone: 'Asia/Kolkata', flexibleWindowMinutes: 15 }, { name: 'AppSched22222222', keepLast: 2 });
      const { runs, violations } = await runSchedules(world, [rule, scheduled], 8);
      expect(violations).toEqual([]);
      // Kolkata is UTC+5:30: 30 */2 local is on the hour, every odd hour UTC.
      expect(new Set(runs[1].driver.deliveries.map((d) => d.tick.slice(11)))).toEqual(new Set(['11:00:00Z', '13:00:00Z', '15:00:00Z', '17:00:00Z']));
      // FSx makes one backup of a file system at a time: a tick may meet the other schedule's
      // backup in progress for longer than its retries (then it fails, and says so).
      expect(ourBackups(world, ZFS, 'AppSched22222222').length).toBeGreaterThanOrEqual(3);
      expect(ourBackups(world, ZFS, 'AppRule11111111').length).toBeGreaterThanOrEqual(6);
      const failures = runs.flatMap((r) => r.driver.deliveries).filter((d) => !d.ok && !/^Scheduler could not invoke/.test(d.reason ?? ''));
      expect(failures.every((d) => /BackupInProgress/.test(d.reason ?? ''))).toBe(true);
    } finally {
      world.dispose();
    }
  });
});

describe('FSx forgetting a client token (it does not document for how long it remembers one)', () => {
  /** How the invariants report a second backup of a tick. */
  const SECOND_BACKUP = /\[no-duplicates\] (?:\S+ tick \S+ made [2-9]\d* backups|[2-9]\d* copies for )/;

  /**
   * Hourly on Scheduler for three hours, FSx forgetting tokens after an hour; then a late Lambda
   * retry of the first tick, with its input (Lambda keeps retrying an event for up to 6 hours, and
   * Scheduler a tick for up to 24). FSx no longer knows the tick's token: nothing but the handler's
   * own look at the schedule's backups can stop a second backup of the tick.
   */
  async function lateRetry(keepLast: number, fn: Handler = handler) {
    const world = backupWorld(31, {}, { fsx: { tokenMemoryMs: HOUR } });
    try {
      const spec = onScheduler({ expression: 'rate(1 hour)' }, { targets: [TARGET_POOL[0]], keepLast });
      const { runs } = await runSchedules(world, [spec], 3);
      const retried = { owner: spec.name, stackId: STACK_ID, kind: 'fsx-backup' as const, target: ZFS, tokenMemoryMs: HOUR };
      const r = await lateRetryOfFirstTick(world, fn, runs[0].driver as SchedulerDriver, {
        ...retried, input: (time, eventId) => tickInput(spec, time, eventId), staleCount: () => tally.StaleTicksSkipped ?? 0,
      });
      return { ...r, violations: [...new Invariants(world).atEnd(), ...scheduleViolations(world, runs)] };
    } finally {
      world.dispose();
    }
  }

  lateRetryTests('backup', lateRetry);

  test('the same retry by a handler that does not look before asking (as before): FSx makes a second backup of the tick, and that is reported', async () => {
    const listsNothing = { after: (c: any, out: any) => c instanceof DescribeBackupsCommand && c.input.Filters && (out.Backups = []) };
    const blind = (e: FsxBackupTickInput) => withTamperedClient(listsNothing, () => handler(e));
    const r = await lateRetry(1, blind);
    expect(r.retryCreates).toEqual(['ok']);
    expect(r.ofFirstTick).toHaveLength(2);
    expect(r.violations.map((v) => `[${v.invariant}] ${v.detail}`).join('\n')).toMatch(SECOND_BACKUP);
  });
});

describe('late ticks inside and outside retention\'s window', () => {
  /** Hourly on Scheduler, deliveries failing at Scheduler often (retried with backoff for up to a day): ticks arrive after later ones. */
  const lateTicksSpec = (keepLast: number) => onScheduler({ expression: 'rate(1 hour)', flexibleWindowMinutes: 60 }, { targets: [TARGET_POOL[1]], keepLast });
  const lateWorld = () => backupWorld(41, { 'scheduler-retry': 0.75 }, { durations: { minMs: 60_000, maxMs: 10 * 60_000, slowMs: 1 } });

  test('a tick delivered after later ticks but inside the window gets its backup; one outside it is skipped; never two', async () => {
    const world = lateWorld();
    try {
      resetTally();
      const { runs, violations } = await runSchedules(world, [lateTicksSpec(2)], 24);
      expect(violations).toEqual([]);
      const late = lateTicks(world, 'fsx-backup', runs.map(retained));
      expect(late.lateInWindow).toBeGreaterThan(0);
      expect(late.stale).toBeGreaterThan(0);
      expect(tally.StaleTicksSkipped).toBe(late.stale);
    } finally {
      world.dispose();
    }
  });

  test('a handler that skips every late tick (whenever a later tick\'s backup exists) leaves ticks inside the window without one, and that is reported', async () => {
    const world = lateWorld();
    try {
      const { violations } = await runSchedules(world, [lateTicksSpec(2)], 24, skipsEveryLateTick(handler));
      expect(violations.map((v) => `[${v.invariant}] ${v.detail}`).join('\n')).toMatch(MISSING_BACKUP);
    } finally {
      world.dispose();
    }
  });
});

describe('the invariants catch a broken handler', () => {
  test('a handler that ignores the tick token (a token, and a token tag, of its own per delivery) makes duplicates, and they are reported', async () => {
    const world = backupWorld(7, { 'duplicate-tick': 1 }, { durations: { minMs: 60_000, maxMs: 60_001, slowMs: 1 } });
    try {
      const { violations } = await runSchedules(world, [nightly({ targets: [TARGET_POOL[1]] })], 4, tokenPerDelivery(handler, CreateBackupCommand));
      expect(violations.filter((v) => v.invariant === 'no-duplicates').length).toBeGreaterThan(0);
    } finally {
      world.dispose();
    }
  });

  test('a handler that prunes without the ownership check deletes foreign backups, and that is reported', async () => {
    const world = backupWorld(8);
    try {
      const spec = nightly({ keepLast: 1 });
      // The handler is made to see every backup as carrying this schedule's tags: what it would
      // do if it did not check them.
      const forge = (b: any) => {
        const target = b.Volume?.VolumeId ?? b.FileSystem?.FileSystemId;
        const forged: Record<string, string> = {
          [OWNERSHIP_TAG_KEYS.managedBy]: MANAGED_BY,
          [OWNERSHIP_TAG_KEYS.stackId]: STACK_ID,
          [OWNERSHIP_TAG_KEYS.owner]: spec.name,
          [OWNERSHIP_TAG_KEYS.propsHash]: targetHash(target),
        };
        b.Tags = [...(b.Tags ?? []).filter((t: any) => !(t.Key in forged)), ...Object.entries(forged).map(([Key, Value]) => ({ Key, Value }))];
      };
      const { violations } = await withTamperedClient(
        { after: (c, out) => c instanceof DescribeBackupsCommand && (out.Backups ?? []).forEach(forge) },
        () => runSchedules(world, [spec], 4),
      );
      expect(violations.filter((v) => v.invariant === 'only-ours-touched').length).toBeGreaterThan(0);
    } finally {
      world.dispose();
    }
  });

  test('a Scheduler that passes the delivery time as the scheduled time: window delays and retries look like new ticks, and the duplicates are reported', async () => {
    const spec = onScheduler({ expression: 'rate(1 hour)', flexibleWindowMinutes: 30, brokenScheduledTime: true }, { targets: [TARGET_POOL[1]] });
    const outcome = async (s: ScheduleSpec) => {
      const world = backupWorld(24, { 'scheduler-retry': 0.3, 'duplicate-tick': 1 }, { durations: { minMs: 60_000, maxMs: 60_001, slowMs: 1 } });
      try {
        return (await runSchedules(world, [s], 6)).violations;
      } finally {
        world.dispose();
      }
    };
    expect((await outcome(spec)).filter((v) => v.invariant === 'no-duplicates').length).toBeGreaterThan(0);
    // The same run with Scheduler as it is keeps every invariant.
    expect(await outcome({ ...spec, scheduler: { ...spec.scheduler!, brokenScheduledTime: false } })).toEqual([]);
  });

  test('a handler that sends a token of its own per delivery fails the Scheduler property', async () => {
    const message = await propertyFails(schedulerScenarioArb, (sc) => runScenario(sc, undefined, tokenPerDelivery(handler, CreateBackupCommand)));
    expect(message).toMatch(/\[no-duplicates\]/);
  });

  test('a handler that skips every late tick, whatever its retention, fails the Scheduler property: ticks inside the window left without a backup', async () => {
    expect(await propertyFails(schedulerScenarioArb, (sc) => runScenario(sc, undefined, skipsEveryLateTick(handler)))).toMatch(MISSING_BACKUP);
  });

  test('a Scheduler that passes the delivery time as the scheduled time fails the Scheduler property', async () => {
    const message = await propertyFails(withBrokenScheduler(schedulerScenarioArb), (sc) => runScenario(sc));
    expect(message).toMatch(/\[no-duplicates\]/);
  });
});

const faultsArb = faultRatesArb({
  'duplicate-tick': fc.constantFrom(0, 0.2, 1),
  'async-retry': fc.constantFrom(0, 0.2, 1),
}, 0.01);

const scheduleArb = (name: string): fc.Arbitrary<ScheduleSpec> => fc.record({
  name: fc.constant(name),
  targets: fc.subarray([...TARGET_POOL, { Kind: 'file-system' as const, Id: MISSING }], { minLength: 1, maxLength: 4 }),
  rateHours: fc.constantFrom(1, 1, 2, 24),
  keepLast: fc.option(fc.integer({ min: 1, max: 3 }), { nil: undefined }),
  maxAgeDays: fc.option(fc.integer({ min: 1, max: 2 }), { nil: undefined }),
  tags: fc.constantFrom(undefined, { team: 'ops' }),
  timeShiftSeconds: fc.constantFrom(0, 0, 30, 59),
});

const scenarioArb = fc.record({
  seed: fc.integer({ min: 1, max: 2 ** 31 - 1 }),
  faults: faultsArb,
  schedules: fc.oneof(
    fc.tuple(scheduleArb('AppNightly5A33CB59')),
    fc.tuple(scheduleArb('AppNightly5A33CB59'), scheduleArb('AppHourlyC0FFEE00')),
  ),
  hours: fc.integer({ min: 1, max: 8 }),
  userCopies: fc.boolean(),
});

interface Scenario {
  readonly seed: number;
  readonly faults: FaultRates;
  readonly schedules: readonly ScheduleSpec[];
  readonly hours: number;
  readonly userCopies: boolean;
  /** When the schedules are created (ISO 8601); the simulated clock's start if absent. */
  readonly startAt?: string;
  /** Seconds after `startAt`: a rate counts from its creation, seconds and all. */
  readonly offsetSeconds?: number;
}

/** Scheduler's side of a schedule: expressions at most hourly (FsxBackupSchedule's rule). */
const fsxSchedulerArb = schedulerSpecArb(
  ['rate(1 hour)', 'rate(2 hours)', 'cron(0 * * * ? *)', 'cron(30 */2 * * ? *)', 'cron(0 2 * * ? *)', 'cron(30 1-3 * * ? *)', 'cron(0 8-18 ? * MON-FRI *)'],
  [0, 0, 15, 60],
);

const onSchedulerArb = (name: string) => fc.tuple(scheduleArb(name), fsxSchedulerArb).map(([spec, scheduler]) => ({ ...spec, scheduler }));

const schedulerScenarioArb: fc.Arbitrary<Scenario> = fc.record({
  seed: fc.integer({ min: 1, max: 2 ** 31 - 1 }),
  faults: SCHEDULER_FAULTS,
  schedules: fc.oneof(
    fc.tuple(onSchedulerArb('AppNightly5A33CB59')),
    fc.tuple(onSchedulerArb('AppNightly5A33CB59'), onSchedulerArb('AppHourlyC0FFEE00')),
    // The stack's one function serves a rule and a Scheduler schedule alike.
    fc.tuple(onSchedulerArb('AppNightly5A33CB59'), scheduleArb('AppHourlyC0FFEE00')),
  ),
  hours: fc.integer({ min: 2, max: 10 }),
  userCopies: fc.boolean(),
  startAt: fc.constantFrom(...SCENARIO_STARTS),
  offsetSeconds: fc.integer({ min: 0, max: 3599 }),
});

async function runScenario(s: Scenario, stats?: Record<string, number>, fn?: Handler) {
  const world = backupWorld(s.seed, s.faults, scenarioClock(s.startAt, s.offsetSeconds));
  try {
    const { runs, violations } = await runSchedules(world, [...s.schedules], s.hours, fn, s.userCopies ? userCopies : undefined);
    if (stats) {
      addRunStats(stats, world, runs, world.fsx.backupDeletes.length);
      for (const [k, n] of Object.entries(lateTicks(world, 'fsx-backup', runs.map(retained)))) stats[k] = (stats[k] ?? 0) + n;
    }
    return { violations, world, runs };
  } finally {
    world.dispose();
  }
}

describe('property: random schedules, targets, retention and faults', () => {
  replayTest(runScenario);

  test(`${RUNS} scenarios keep every invariant`, async () => {
    const stats = await checkScenarios(scenarioArb, runScenario, 20261122);
    expect(stats.scenarios).toBeGreaterThanOrEqual(RUNS);
    // The runs exercised what they are meant to: ticks that succeed, and pruning.
    expect(stats.okDeliveries).toBeGreaterThan(0);
    expect(stats.deletes).toBeGreaterThan(0);
  });

  test(`${RUNS} scenarios on EventBridge Scheduler (time zones, DST days, flexible windows, Scheduler's retries) keep every invariant`, async () => {
    const stats = await checkScenarios(schedulerScenarioArb, runScenario, 20260329);
    expect(stats.scenarios).toBeGreaterThanOrEqual(RUNS);
    expect(stats.okDeliveries).toBeGreaterThan(0);
    expect(stats.deletes).toBeGreaterThan(0);
    expect(stats.schedulerRetries).toBeGreaterThan(0);
    if (RUNS >= 100) expect(stats.deadLettered).toBeGreaterThan(0);
    if (RUNS >= 1000) {
      // Ticks that came after later ticks' backups (Scheduler's retries, flexible windows), inside
      // retention's window (made) and outside it (skipped): about 2 and 0.5 in 100 scenarios.
      expect(stats.lateInWindow).toBeGreaterThan(0);
      expect(stats.stale).toBeGreaterThan(0);
    }
  });
});

describe('cost of one tick of 50 targets', () => {
  /** 50 OpenZFS file systems (copying tags) with 3 earlier backups each, keepLast 2; one tick measured. */
  async function measure(throttle: number) {
    const world = new SimWorld({ seed: 11, fsx: { pageSize: 50 }, durations: { minMs: 60_000, maxMs: 20 * 60_000, slowMs: 1 } });
    try {
      const targets: FsxBackupTargetInput[] = Array.from({ length: 50 }, (_, i) => ({ Kind: 'file-system', Id: `fs-${(0x100 + i).toString(16).padStart(17, '0')}` }));
      for (const t of targets) world.fsx.addFileSystem(t.Id, 'OPENZFS', { copyTagsToBackups: true, tags: [{ Key: 'team', Value: 'data' }] });
      const spec = nightly({ targets, keepLast: 2 });
      const handlerMs: number[] = [];
      const views = backupViews(world);
      const driver = driverFor(world, spec, views.wrap(async (e: FsxBackupTickInput) => {
        const begun = world.clock.now();
        try {
          return await handler(e);
        } finally {
          handlerMs.push(world.clock.now() - begun);
        }
      })) as EventBridgeDriver;
      await driver.runTicks(3);
      world.clock.advance(HOUR);
      const before = { ...world.core.callCounts };
      (world.faults as any).rates.throttle = throttle;
      const wall = Date.now();
      await driver.runTicks(1);
      const last = driver.deliveries.at(-1)!;
      const calls: Record<string, number> = {};
      for (const [k, v] of Object.entries(world.core.callCounts)) if (v - (before[k] ?? 0) > 0) calls[k.replace(/^fsx:|Command$/g, '')] = v - (before[k] ?? 0);
      const violations = [...new Invariants(world).atEnd(), ...scheduleViolations(world, [{ spec, driver, views }])];
      return {
        ok: last.ok,
        calls,
        total: Object.values(calls).reduce((a, b) => a + b, 0),
        simulatedMs: handlerMs.at(-1)!,
        wallMs: Date.now() - wall,
        violations,
        throttled: world.faults.injected.throttle ?? 0,
      };
    } finally {
      world.dispose();
    }
  }

  test('API calls and time, without and with throttling (30% of calls throttled)', async () => {
    const calm = await measure(0);
    const stormy = await measure(0.3);
    if (process.env.SIM_STATS) {
      // eslint-disable-next-line no-console
      console.log(JSON.stringify({ calm, stormy }, null, 1));
    }
    expect(calm.violations).toEqual([]);
    expect(stormy.violations).toEqual([]);
    expect(calm.ok && stormy.ok).toBe(true);
    // Without throttling: 1 describe, 50 creates, 3 listings of 20 targets (4 backups each, pages of
    // 50: 2 + 2 + 1 calls), 50 deletes (the oldest of the 3 available ones of each target).
    expect(calm.calls).toEqual({ DescribeFileSystems: 1, CreateBackup: 50, DescribeBackups: 5, DeleteBackup: 50 });
    expect(stormy.total).toBeGreaterThan(calm.total);
    expect(stormy.throttled).toBeGreaterThan(0);
  });
});
