import { FaultPlan, FaultRates, ScriptedFault } from './faults';
import { SchedulerContext, SchedulerDriver, SchedulerDriverOptions, fromTemplate, scheduledTimes } from './scheduler-driver';
import { instantsOf, parseScheduleExpression, wallTimeAt } from './scheduler-time';
import { SimClock } from './sim-clock';
import { SimCore } from './sim-core';

const MINUTE = 60_000;
const HOUR = 60 * MINUTE;
const DAY = 24 * HOUR;
const utc = (iso: string) => Date.parse(iso);
const isos = (ms: number[]) => ms.map((t) => new Date(t).toISOString().replace('.000', ''));

describe('scheduledTimes', () => {
  describe('cron(30 2 * * ? *) in Europe/Berlin', () => {
    const daily = (from: string, to: string) => isos(scheduledTimes('cron(30 2 * * ? *)', 'Europe/Berlin', utc(from), utc(to)));

    test('spring forward (2026-03-29, 02:00 -> 03:00): 02:30 does not exist, the tick is skipped', () => {
      expect(daily('2026-03-27T00:00:00Z', '2026-03-31T00:00:00Z')).toEqual([
        '2026-03-27T01:30:00Z', // CET, UTC+1
        '2026-03-28T01:30:00Z',
        '2026-03-30T00:30:00Z', // CEST, UTC+2
      ]);
    });

    test('fall back (2026-10-25, 03:00 -> 02:00): 02:30 happens twice, the tick runs once (the first)', () => {
      expect(daily('2026-10-23T00:00:00Z', '2026-10-27T00:00:00Z')).toEqual([
        '2026-10-23T00:30:00Z', // CEST
        '2026-10-24T00:30:00Z',
        '2026-10-25T00:30:00Z', // 02:30 CEST; not again at 01:30Z (02:30 CET)
        '2026-10-26T01:30:00Z', // CET
      ]);
    });

    test('a year of days: one tick a day but the spring-forward day', () => {
      const ticks = scheduledTimes('cron(30 2 * * ? *)', 'Europe/Berlin', utc('2026-01-01T00:00:00Z'), utc('2026-12-31T23:59:59Z'));
      expect(ticks).toHaveLength(364);
      for (const t of ticks) expect(wallTimeAt(t, 'Europe/Berlin')).toMatchObject({ hour: 2, minute: 30, second: 0 });
    });
  });

  test('an hourly cron on the fall-back day runs the repeated hour once', () => {
    const ticks = isos(scheduledTimes('cron(0 * * * ? *)', 'Europe/Berlin', utc('2026-10-24T22:00:00Z'), utc('2026-10-25T03:00:00Z')));
    // 00:00 .. 02:00 CEST, then 03:00 and 04:00 CET: 02:00 CET (01:00Z) is the repeat.
    expect(ticks).toEqual(['2026-10-24T22:00:00Z', '2026-10-24T23:00:00Z', '2026-10-25T00:00:00Z', '2026-10-25T02:00:00Z', '2026-10-25T03:00:00Z']);
  });

  test('a half-hour DST shift (Australia/Lord_Howe): the gap skipped, the repeat once', () => {
    // DST ends 2026-04-05 at 02:00 (+11) -> 01:30 (+10:30); starts 2026-10-04 at 02:00 -> 02:30.
    expect(isos(scheduledTimes('cron(45 1 5 4 ? 2026)', 'Australia/Lord_Howe', utc('2026-04-01T00:00:00Z'), utc('2026-04-10T00:00:00Z'))))
      .toEqual(['2026-04-04T14:45:00Z']);
    expect(scheduledTimes('cron(15 2 4 10 ? 2026)', 'Australia/Lord_Howe', utc('2026-10-01T00:00:00Z'), utc('2026-10-10T00:00:00Z'))).toEqual([]);
    expect(instantsOf({ year: 2026, month: 4, day: 5, hour: 1, minute: 45, second: 0 }, 'Australia/Lord_Howe')).toHaveLength(2);
  });

  test('rate(1 hour) counts real time across the DST change: 60 minutes apart in UTC', () => {
    const start = utc('2026-03-28T22:10:00Z');
    const ticks = scheduledTimes('rate(1 hour)', 'Europe/Berlin', start, utc('2026-03-29T04:00:00Z'), start);
    expect(ticks).toHaveLength(6);
    expect(ticks.slice(1).map((t, i) => t - ticks[i])).toEqual([HOUR, HOUR, HOUR, HOUR, HOUR]);
    // The wall clock jumps from 01:10 to 03:10 CEST; the schedule does not care.
    expect(ticks.map((t) => wallTimeAt(t, 'Europe/Berlin').hour)).toEqual([23, 0, 1, 3, 4, 5]);
  });

  test('rate() counts from the start, whatever window is asked for', () => {
    const start = utc('2026-05-01T10:00:17Z');
    expect(isos(scheduledTimes('rate(15 minutes)', 'UTC', utc('2026-05-01T10:20:00Z'), utc('2026-05-01T11:00:00Z'), start)))
      .toEqual(['2026-05-01T10:30:17Z', '2026-05-01T10:45:17Z']);
    expect(scheduledTimes('rate(2 days)', 'UTC', start, start + 5 * DAY, start).map((t) => (t - start) / DAY)).toEqual([0, 2, 4]);
  });

  test('at() runs once, at that wall-clock time in the time zone', () => {
    const at = (tz: string, from = '2026-01-01T00:00:00Z', to = '2027-01-01T00:00:00Z') =>
      isos(scheduledTimes('at(2026-06-01T09:00:00)', tz, utc(from), utc(to)));
    expect(at('America/New_York')).toEqual(['2026-06-01T13:00:00Z']);
    expect(at('UTC')).toEqual(['2026-06-01T09:00:00Z']);
    expect(at('UTC', '2026-06-01T09:00:01Z')).toEqual([]);
    // In the spring-forward gap the time does not exist.
    expect(scheduledTimes('at(2026-03-29T02:30:00)', 'Europe/Berlin', 0, utc('2027-01-01T00:00:00Z'))).toEqual([]);
  });

  test('start bounds the ticks', () => {
    const ticks = scheduledTimes('cron(0 12 * * ? *)', 'UTC', utc('2026-05-01T00:00:00Z'), utc('2026-05-05T00:00:00Z'), utc('2026-05-03T12:00:00Z'));
    expect(isos(ticks)).toEqual(['2026-05-03T12:00:00Z', '2026-05-04T12:00:00Z']);
  });

  test('cron steps, ranges, lists and names', () => {
    const from = utc('2026-06-01T00:00:00Z'); // a Monday
    const list = (expr: string, days = 7) => isos(scheduledTimes(expr, 'UTC', from, from + days * DAY - 1));
    expect(list('cron(0/20 9 * * ? *)', 1)).toEqual(['2026-06-01T09:00:00Z', '2026-06-01T09:20:00Z', '2026-06-01T09:40:00Z']);
    expect(list('cron(*/30 9-10 * * ? *)', 1)).toEqual(['2026-06-01T09:00:00Z', '2026-06-01T09:30:00Z', '2026-06-01T10:00:00Z', '2026-06-01T10:30:00Z']);
    expect(list('cron(5 8,20 ? * MON,WED *)')).toEqual(['2026-06-01T08:05:00Z', '2026-06-01T20:05:00Z', '2026-06-03T08:05:00Z', '2026-06-03T20:05:00Z']);
    expect(list('cron(0 6 ? * TUE-THU *)')).toEqual(['2026-06-02T06:00:00Z', '2026-06-03T06:00:00Z', '2026-06-04T06:00:00Z']);
    expect(list('cron(0 6 ? * 1 *)')).toEqual(['2026-06-07T06:00:00Z']); // 1 = SUN
    expect(list('cron(0 0 1,15 JUN-JUL ? 2026)', 60)).toEqual(['2026-06-01T00:00:00Z', '2026-06-15T00:00:00Z', '2026-07-01T00:00:00Z', '2026-07-15T00:00:00Z']);
    expect(list('cron(0 0 1 * ? 2027)', 60)).toEqual([]);
    expect(list('cron(0 12 1-31/10 * ? *)', 30)).toEqual(['2026-06-01T12:00:00Z', '2026-06-11T12:00:00Z', '2026-06-21T12:00:00Z']);
  });

  test.each([
    ['cron(0 12 * * * *)', /exactly one of day-of-month and day-of-week/],
    ['cron(0 12 ? * ? *)', /exactly one of day-of-month and day-of-week/],
    ['cron(0 12 L * ? *)', /L, W or #/],
    ['cron(0 12 15W * ? *)', /L, W or #/],
    ['cron(0 12 ? * 2#1 *)', /L, W or #/],
    ['cron(60 12 * * ? *)', /minutes '60' is not in 0–59/],
    ['cron(0 12 * FOO ? *)', /month 'FOO'/],
    ['cron(0 12-10 * * ? *)', /runs backwards/],
    ['cron(0 12 * * ?)', /6 fields/],
    ['rate(0 hours)', /positive/],
    ['rate(1 week)', /positive whole number of minutes, hours or days/],
    ['at(2026-02-30T00:00:00)', /not a date and time/],
    ['every hour', /not a Scheduler expression/],
  ])('%s is refused', (expr, error) => {
    expect(() => parseScheduleExpression(expr)).toThrow(error);
  });

  test('an unknown time zone is refused', () => {
    expect(() => scheduledTimes('rate(1 hour)', 'Europe/Atlantis', 0, HOUR)).toThrow(/unknown time zone 'Europe\/Atlantis'/);
  });

  test('fast enough for a thousand scenarios: a year of 15-minute ticks in Berlin', () => {
    const started = Date.now();
    const ticks = scheduledTimes('cron(0/15 * * * ? *)', 'Europe/Berlin', utc('2026-01-01T00:00:00Z'), utc('2026-12-31T23:59:59Z'));
    // 365 days of 96, less the 4 of the skipped hour; the repeated hour's 4 run once.
    expect(ticks).toHaveLength(365 * 96 - 4);
    expect(Date.now() - started).toBeLessThan(3_000);
  });
});

/** Just what the driver needs: a clock, a fault plan, a call log (no AWS fakes). */
function miniWorld(startIso: string, faults: FaultRates = {}, scripted: ScriptedFault[] = [], seed = 1) {
  const clock = new SimClock(utc(startIso));
  const plan = new FaultPlan(seed, faults, scripted);
  return { clock, faults: plan, core: new SimCore(clock, plan) };
}

interface Seen {
  readonly at: number;
  readonly input: { Time: string; Execution: string; Attempt: number };
  readonly tick: string;
}

function recording(world: ReturnType<typeof miniWorld>, options: Omit<SchedulerDriverOptions, 'input'>, fail?: (seen: Seen) => boolean) {
  const seen: Seen[] = [];
  const driver = new SchedulerDriver(world, async (input) => {
    const s = { at: world.clock.now(), input, tick: world.core.context!.tick! };
    seen.push(s);
    if (fail?.(s)) throw new Error('handler failed');
  }, {
    ...options,
    input: (ctx: SchedulerContext) => ({ Time: ctx.scheduledTime, Execution: ctx.executionId, Attempt: ctx.attemptNumber }),
  });
  return { driver, seen };
}

describe('SchedulerDriver', () => {
  test('Berlin 02:30 across both DST days: one tick a day, none on 2026-03-29, one on 2026-10-25, each within 60 s', async () => {
    for (const [start, end, expected] of [
      ['2026-03-27T12:00:00Z', '2026-03-31T00:00:00Z', ['2026-03-28T01:30:00Z', '2026-03-30T00:30:00Z']],
      ['2026-10-23T12:00:00Z', '2026-10-27T00:00:00Z', ['2026-10-24T00:30:00Z', '2026-10-25T00:30:00Z', '2026-10-26T01:30:00Z']],
    ] as const) {
      const world = miniWorld(start);
      const { driver, seen } = recording(world, { expression: 'cron(30 2 * * ? *)', timeZone: 'Europe/Berlin' });
      await driver.runUntil(utc(end));
      expect(seen.map((s) => s.input.Time)).toEqual(expected);
      expect(seen.map((s) => s.tick)).toEqual(expected);
      for (const s of seen) expect(s.at - utc(s.input.Time)).toBeLessThan(MINUTE);
      expect(driver.nominalTicks(utc(end))).toEqual(expected.map(utc));
      expect(world.clock.now()).toBe(utc(end));
    }
  });

  test('a flexible window delays each delivery within it; the scheduled time stays the tick\'s', async () => {
    const world = miniWorld('2026-05-01T00:00:00Z');
    const { driver, seen } = recording(world, { expression: 'rate(1 hour)', flexibleWindowMinutes: 30 });
    await driver.runUntil(utc('2026-05-02T00:00:00Z'));
    // The tick at the end is delivered within the window after it.
    expect(seen).toHaveLength(24);
    expect(driver.pending).toBe(1);
    await driver.runUntil(utc('2026-05-02T00:30:00Z'));
    expect(seen).toHaveLength(25);
    const delays = seen.map((s) => s.at - utc(s.input.Time));
    for (const d of delays) expect(d).toBeGreaterThanOrEqual(0);
    for (const d of delays) expect(d).toBeLessThan(30 * MINUTE);
    expect(Math.max(...delays)).toBeGreaterThan(MINUTE);
    expect(seen.every((s) => s.input.Time === s.tick)).toBe(true);
  });

  test('Scheduler retries a failed delivery: new execution id, next attempt number, same scheduled time', async () => {
    const world = miniWorld('2026-05-01T00:00:00Z', { 'scheduler-retry': 0.6 }, [], 3);
    const { driver, seen } = recording(world, { expression: 'cron(0 * * * ? *)', flexibleWindowMinutes: 15 });
    await driver.runUntil(utc('2026-05-01T13:00:00Z'));
    const failed = driver.deliveries.filter((d) => !d.invoked && d.tick <= '2026-05-01T12:00:00Z');
    expect(failed.length).toBeGreaterThan(3);
    for (const f of failed) {
      const next = driver.deliveries.find((d) => d.tick === f.tick && d.attemptNumber === f.attemptNumber + 1)!;
      expect(next).toBeDefined();
      expect(next.time).toBe(f.time);
      expect(next.time).toBe(f.tick);
      expect(next.eventId).not.toBe(f.eventId);
      expect(next.at).toBeGreaterThan(f.at);
    }
    // Every tick got through once (the retry policy allows 185 retries in 24 h).
    expect(seen.map((s) => s.tick).filter((t) => t <= '2026-05-01T12:00:00Z')).toEqual(isos(driver.nominalTicks(utc('2026-05-01T12:00:00Z'))));
    expect(seen.filter((s) => s.input.Attempt > 1).length).toBeGreaterThan(0);
    expect(new Set(seen.map((s) => s.input.Execution)).size).toBe(seen.length);
  });

  test('the retry policy ends a delivery in the dead-letter queue: retryAttempts, then maxEventAgeSeconds', async () => {
    const world = miniWorld('2026-05-01T00:00:00Z', { 'scheduler-retry': 1 });
    const { driver, seen } = recording(world, { expression: 'at(2026-05-01T06:00:00)', retryAttempts: 3 });
    await driver.runUntil(utc('2026-05-02T00:00:00Z'));
    expect(seen).toEqual([]);
    expect(driver.deliveries.map((d) => [d.attemptNumber, d.deadLettered])).toEqual([[1, false], [2, false], [3, false], [4, true]]);
    expect(driver.deliveries.every((d) => d.time === '2026-05-01T06:00:00Z')).toBe(true);

    const aged = miniWorld('2026-05-01T00:00:00Z', { 'scheduler-retry': 1 });
    const short = recording(aged, { expression: 'at(2026-05-01T06:00:00)', maxEventAgeSeconds: 600 });
    await short.driver.runUntil(utc('2026-05-02T00:00:00Z'));
    const last = short.driver.deliveries.at(-1)!;
    expect(last.deadLettered).toBe(true);
    expect(short.driver.deliveries.length).toBeLessThan(10);
    expect(short.driver.deliveries.every((d) => d.at - short.driver.deliveries[0].at <= 600_000)).toBe(true);
  });

  test('at-least-once: a duplicate delivery of a tick has another execution id and the same scheduled time', async () => {
    const world = miniWorld('2026-05-01T00:00:00Z', { 'duplicate-tick': 1 });
    const { driver, seen } = recording(world, { expression: 'rate(6 hours)' });
    await driver.runUntil(utc('2026-05-01T23:00:00Z'));
    expect(seen).toHaveLength(8);
    for (const tick of new Set(seen.map((s) => s.tick))) {
      const of = seen.filter((s) => s.tick === tick);
      expect(of.map((s) => s.input.Time)).toEqual([tick, tick]);
      expect(of[0].input.Execution).not.toBe(of[1].input.Execution);
    }
    expect(driver.deliveries.filter((d) => d.duplicate)).toHaveLength(4);
  });

  test('Lambda retries a failed invocation twice, the same event, about 1 and 2 minutes later', async () => {
    const world = miniWorld('2026-05-01T00:00:00Z');
    const { driver, seen } = recording(world, { expression: 'at(2026-05-01T06:00:00)' }, () => true);
    await driver.runUntil(utc('2026-05-01T07:00:00Z'));
    expect(seen).toHaveLength(3);
    expect(new Set(seen.map((s) => JSON.stringify(s.input))).size).toBe(1);
    expect([seen[1].at - seen[0].at, seen[2].at - seen[1].at]).toEqual([MINUTE, 2 * MINUTE]);
    expect(driver.deliveries.map((d) => [d.attempt, d.ok, d.reason])).toEqual([0, 1, 2].map((a) => [a, false, 'handler failed']));
  });

  test('async-retry reruns a successful invocation; maxRetries 0 turns Lambda\'s retries off', async () => {
    const retried = recording(miniWorld('2026-05-01T00:00:00Z', { 'async-retry': 1 }), { expression: 'at(2026-05-01T05:00:00)' });
    await retried.driver.runUntil(utc('2026-05-01T05:30:00Z'));
    expect(retried.driver.deliveries.map((d) => [d.attempt, d.ok])).toEqual([[0, true], [1, true], [2, true]]);
    const off = recording(miniWorld('2026-05-01T00:00:00Z'), { expression: 'at(2026-05-01T05:00:00)', maxRetries: 0 }, () => true);
    await off.driver.runUntil(utc('2026-05-01T07:00:00Z'));
    expect(off.seen).toHaveLength(1);
  });

  test('start and end bound the schedule; a later delivery of one tick can come after the next tick', async () => {
    const world = miniWorld('2026-05-01T00:00:00Z', { 'scheduler-retry': 0.8 }, [], 11);
    const { driver, seen } = recording(world, {
      expression: 'rate(15 minutes)',
      start: utc('2026-05-01T01:00:00Z'),
      end: utc('2026-05-01T05:00:00Z'),
      flexibleWindowMinutes: 10,
    });
    await driver.runUntil(utc('2026-05-01T08:00:00Z'));
    const ticks = [...new Set(seen.map((s) => s.tick))];
    expect(ticks[0]).toBe('2026-05-01T01:00:00Z');
    expect(ticks.every((t) => t < '2026-05-01T05:00:00Z')).toBe(true);
    expect(driver.nominalTicks(utc('2026-05-01T08:00:00Z'))).toHaveLength(16);
    const order = seen.map((s) => s.tick);
    expect(order).not.toEqual([...order].sort());
    expect(driver.pending).toBe(0);
  });

  test('BROKEN variant: the delivery time as the scheduled time, so delays and retries look like other ticks', async () => {
    const world = miniWorld('2026-05-01T00:00:00Z', { 'scheduler-retry': 0.5 });
    const { driver } = recording(world, { expression: 'rate(1 hour)', flexibleWindowMinutes: 30, brokenScheduledTime: true });
    await driver.runUntil(utc('2026-05-01T12:00:00Z'));
    const wrong = driver.deliveries.filter((d) => d.time !== d.tick);
    expect(wrong.length).toBeGreaterThan(6);
    // Two attempts of one tick are told different scheduled times.
    const retried = driver.deliveries.find((d) => d.attemptNumber === 2)!;
    const first = driver.deliveries.find((d) => d.tick === retried.tick && d.attemptNumber === 1)!;
    expect(retried.time).not.toBe(first.time);
  });

  test('fromTemplate renders the context attributes as Scheduler does', () => {
    const render = fromTemplate('{"Time":"<aws.scheduler.scheduled-time>","Id":"<aws.scheduler.execution-id>","N":<aws.scheduler.attempt-number>,"Arn":"<aws.scheduler.schedule-arn>","X":"<aws.scheduler.other>"}');
    expect(render({ scheduledTime: '2026-03-29T00:30:00Z', executionId: 'abc', attemptNumber: 2, scheduleArn: 'arn:s' }))
      .toEqual({ Time: '2026-03-29T00:30:00Z', Id: 'abc', N: 2, Arn: 'arn:s', X: '<aws.scheduler.other>' });
  });

  test.each([
    [{ maxEventAgeSeconds: 30 }, /maxEventAgeSeconds 30/],
    [{ retryAttempts: 186 }, /retryAttempts 186/],
    [{ maxRetries: 3 }, /maxRetries 3/],
    [{ flexibleWindowMinutes: 1441 }, /flexibleWindowMinutes 1441/],
    [{ timeZone: 'Mars/Olympus' }, /unknown time zone/],
    [{ expression: 'cron(0 12 * * * *)' }, /day-of-week/],
  ])('refuses %j', (over, error) => {
    expect(() => recording(miniWorld('2026-05-01T00:00:00Z'), { expression: 'rate(1 hour)', ...over })).toThrow(error);
  });
});
