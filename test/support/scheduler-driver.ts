import { Delivery } from './eventbridge-driver';
import { InvocationWorld, LAMBDA_RETRY_DELAYS_MS, invokeScheduled, lambdaRetries } from './lambda-async';
import { checkTimeZone, isoSeconds, parseScheduleExpression, scheduledTimes } from './scheduler-time';
import { ACCOUNT, REGION } from './sim-core';

export { scheduledTimes } from './scheduler-time';

/** The context attributes Scheduler substitutes into a target's input. */
export interface SchedulerContext {
  /** `<aws.scheduler.scheduled-time>`: the tick's scheduled time, which retries and a flexible window keep. */
  readonly scheduledTime: string;
  /** `<aws.scheduler.execution-id>`: new for every attempt Scheduler makes. */
  readonly executionId: string;
  /** `<aws.scheduler.attempt-number>`: 1 for the first attempt, one more per Scheduler retry. */
  readonly attemptNumber: number;
  /** `<aws.scheduler.schedule-arn>`. */
  readonly scheduleArn: string;
}

export interface SchedulerDriverOptions {
  /** `rate(15 minutes)`, `cron(30 2 * * ? *)` or `at(2026-03-29T02:30:00)`, in Scheduler's syntax. */
  readonly expression: string;
  /** The IANA time zone `cron()` and `at()` are read in. @default 'UTC' */
  readonly timeZone?: string;
  /** The flexible time window (minutes): a tick is delivered within it after its scheduled time. @default 0 (OFF) */
  readonly flexibleWindowMinutes?: number;
  /** The schedule's StartDate (epoch ms): no tick before it; a rate counts from it. @default the driver's creation */
  readonly start?: number;
  /** The schedule's EndDate (epoch ms): no tick at or after it. @default none */
  readonly end?: number;
  /** Scheduler's retry policy: how long it keeps trying to deliver a tick (60–86,400 s). @default 86400 */
  readonly maxEventAgeSeconds?: number;
  /** Scheduler's retry policy: retries of a failed delivery (0–185). @default 185 */
  readonly retryAttempts?: number;
  /** The target's input, rendered with the context attributes (see `fromTemplate`). */
  readonly input: (ctx: SchedulerContext) => unknown;
  /** The handler's Lambda timeout (ms). @default 15 minutes */
  readonly timeoutMs?: number;
  /** Lambda's async retries after a failed invocation (0–2). @default 2 */
  readonly maxRetries?: number;
  /** The stack and owner (ownership tag value) the handler acts for, for the invariants. */
  readonly stackId?: string;
  /** @default `scheduleName` */
  readonly owner?: string;
  /** The schedule's name, in its ARN. @default 'sim-schedule' */
  readonly scheduleName?: string;
  /**
   * BROKEN on purpose, for tests of the invariants: Scheduler passes the time of each delivery
   * attempt as `scheduledTime` instead of the tick's, so that flexible-window delays and retries
   * look like other ticks. @default false
   */
  readonly brokenScheduledTime?: boolean;
}

/** One attempt to deliver a tick: Scheduler's (which may fail before the handler runs) or Lambda's. */
export interface SchedulerDelivery extends Delivery {
  /** `time` is the `scheduledTime` the handler was given; `eventId` the execution id; `attempt` Lambda's (0–2). */
  readonly attemptNumber: number;
  /** Lambda ran the handler; false: Scheduler could not invoke the function (the `scheduler-retry` fault). */
  readonly invoked: boolean;
  /** Scheduler gave up on the tick after this attempt (its retry policy ran out): the dead-letter queue got it. */
  readonly deadLettered: boolean;
}

interface SchedulerAttempt {
  readonly kind: 'scheduler';
  readonly tickMs: number;
  readonly attemptNumber: number;
  readonly duplicate: boolean;
  /** When Scheduler first tried the tick: its retries stop `maxEventAgeSeconds` after. */
  readonly firstAt: number;
}

interface LambdaAttempt {
  readonly kind: 'lambda';
  readonly tickMs: number;
  readonly ctx: SchedulerContext;
  readonly payload: unknown;
  readonly attempt: number;
  readonly duplicate: boolean;
}

type Pending = (SchedulerAttempt | LambdaAttempt) & { readonly due: number; readonly seq: number };

/** Scheduler's backoff between delivery retries: AWS documents it as exponential, not its figures. */
const BACKOFF_BASE_MS = 30_000;
const BACKOFF_MAX_MS = 8 * 60_000;

/**
 * Plays EventBridge Scheduler and Lambda's asynchronous invocation around a scheduled handler.
 * Ticks fall on the expression's nominal times in its time zone (DST gaps skipped, a repeated
 * hour once); each is delivered within 60 s of it, or within the flexible window. Scheduler may
 * fail a delivery and retry it with backoff (`scheduler-retry`: new execution id, next attempt
 * number, the same scheduled time) within its retry policy, and may deliver a tick twice
 * (`duplicate-tick`); Lambda runs an accepted event and retries it, the same event, up to
 * `maxRetries` times (`async-retry` after a success too). Every attempt is an event on one
 * timeline, so a late retry of one tick can come after the next tick.
 */
export class SchedulerDriver {
  public readonly deliveries: SchedulerDelivery[] = [];
  public readonly scheduleArn: string;
  private readonly opts: Required<Omit<SchedulerDriverOptions, 'stackId' | 'end'>> & Pick<SchedulerDriverOptions, 'stackId' | 'end'>;
  private readonly queue: Pending[] = [];
  /** When the schedule was created (epoch ms): its first tick is at or after it. */
  private readonly createdAt: number;
  /** Ticks before this (epoch ms) are queued. */
  private cursor: number;
  private seq = 0;
  private executions = 0;

  constructor(
    private readonly world: InvocationWorld,
    private readonly handler: (event: any) => Promise<unknown>,
    options: SchedulerDriverOptions,
  ) {
    const name = options.scheduleName ?? 'sim-schedule';
    this.opts = {
      timeZone: 'UTC',
      flexibleWindowMinutes: 0,
      start: world.clock.now(),
      maxEventAgeSeconds: 86_400,
      retryAttempts: 185,
      timeoutMs: 15 * 60_000,
      maxRetries: 2,
      scheduleName: name,
      owner: name,
      brokenScheduledTime: false,
      ...options,
    };
    parseScheduleExpression(this.opts.expression);
    checkTimeZone(this.opts.timeZone);
    const { maxEventAgeSeconds: age, retryAttempts: retries, maxRetries, flexibleWindowMinutes: flex } = this.opts;
    if (age < 60 || age > 86_400) throw new Error(`maxEventAgeSeconds ${age} is outside Scheduler's 60–86400`);
    if (retries < 0 || retries > 185) throw new Error(`retryAttempts ${retries} is outside Scheduler's 0–185`);
    if (maxRetries < 0 || maxRetries > 2) throw new Error(`maxRetries ${maxRetries} is outside Lambda's 0–2`);
    if (flex < 0 || flex > 1440) throw new Error(`flexibleWindowMinutes ${flex} is outside Scheduler's 0 (OFF) or 1–1440`);
    this.scheduleArn = `arn:aws:scheduler:${REGION}:${ACCOUNT}:schedule/default/${name}`;
    this.createdAt = world.clock.now();
    this.cursor = this.createdAt;
  }

  /** The schedule's nominal ticks from the driver's creation up to `untilMs` (epoch ms). */
  public nominalTicks(untilMs: number): number[] {
    return this.ticksBetween(this.createdAt, untilMs);
  }

  /** Attempts not made yet (retries and late deliveries due after the last `runUntil`). */
  public get pending(): number {
    return this.queue.length;
  }

  /** Runs every tick scheduled up to `untilMs` (simulated epoch ms), and every attempt due by then. */
  public async runUntil(untilMs: number): Promise<void> {
    if (untilMs >= this.cursor) {
      for (const tickMs of this.ticksBetween(this.cursor, untilMs)) {
        // 60-second precision without a window; anywhere in the window with one.
        const windowMs = (this.opts.flexibleWindowMinutes || 1) * 60_000;
        const due = tickMs + Math.floor(this.world.faults.next() * windowMs);
        this.enqueue({ kind: 'scheduler', tickMs, attemptNumber: 1, duplicate: false, firstAt: due }, due);
      }
      this.cursor = untilMs + 1;
    }
    for (let next = this.queue[0]; next && next.due <= untilMs; next = this.queue[0]) {
      this.queue.shift();
      if (this.world.clock.now() < next.due) this.world.clock.advance(next.due - this.world.clock.now());
      if (next.kind === 'scheduler') await this.schedulerAttempt(next);
      else await this.lambdaAttempt(next);
    }
    if (this.world.clock.now() < untilMs) this.world.clock.advance(untilMs - this.world.clock.now());
  }

  private ticksBetween(fromMs: number, untilMs: number): number[] {
    const to = this.opts.end === undefined ? untilMs : Math.min(untilMs, this.opts.end - 1);
    return scheduledTimes(this.opts.expression, this.opts.timeZone, fromMs, to, this.opts.start);
  }

  private async schedulerAttempt(a: SchedulerAttempt): Promise<void> {
    const now = this.world.clock.now();
    const ctx: SchedulerContext = {
      scheduledTime: isoSeconds(this.opts.brokenScheduledTime ? now : a.tickMs),
      executionId: (++this.executions).toString(16).padStart(16, '0'),
      attemptNumber: a.attemptNumber,
      scheduleArn: this.scheduleArn,
    };
    if (this.world.faults.chance('scheduler-retry')) {
      const retryAt = now + Math.floor(Math.min(BACKOFF_MAX_MS, BACKOFF_BASE_MS * 2 ** (a.attemptNumber - 1)) * (0.5 + this.world.faults.next() / 2));
      const retries = a.attemptNumber <= this.opts.retryAttempts && retryAt - a.firstAt <= this.opts.maxEventAgeSeconds * 1000;
      this.record(a, ctx, 0, {
        ok: false,
        reason: `Scheduler could not invoke the function (TooManyRequestsException): ${retries ? 'retried' : 'sent to the dead-letter queue'}`,
      }, false, !retries);
      if (retries) this.enqueue({ ...a, attemptNumber: a.attemptNumber + 1 }, retryAt);
      return;
    }
    // Lambda accepted the event: it runs now, and Scheduler may deliver the tick once more.
    if (!a.duplicate && this.world.faults.chance('duplicate-tick')) {
      this.enqueue({ ...a, duplicate: true }, now + Math.floor(this.world.faults.next() * 120_000));
    }
    await this.lambdaAttempt({ kind: 'lambda', tickMs: a.tickMs, ctx, payload: this.opts.input(ctx), attempt: 0, duplicate: a.duplicate });
  }

  private async lambdaAttempt(a: LambdaAttempt): Promise<void> {
    const tick = isoSeconds(a.tickMs);
    const result = await invokeScheduled(this.world, this.handler, a.payload, this.opts.timeoutMs, {
      owner: this.opts.owner,
      stackId: this.opts.stackId,
      requestKey: `${this.scheduleArn}@${tick}`,
      tick,
    });
    this.record(a, a.ctx, a.attempt, result, true, false);
    if (lambdaRetries(this.world, result, a.attempt, this.opts.maxRetries)) {
      this.enqueue({ ...a, attempt: a.attempt + 1 }, this.world.clock.now() + (LAMBDA_RETRY_DELAYS_MS[a.attempt] ?? 120_000));
    }
  }

  private record(
    a: { tickMs: number; duplicate: boolean },
    ctx: SchedulerContext,
    attempt: number,
    result: { ok: boolean; reason?: string },
    invoked: boolean,
    deadLettered: boolean,
  ): void {
    this.deliveries.push({
      tick: isoSeconds(a.tickMs),
      time: ctx.scheduledTime,
      eventId: ctx.executionId,
      at: this.world.clock.now(),
      attempt,
      duplicate: a.duplicate,
      attemptNumber: ctx.attemptNumber,
      invoked,
      deadLettered,
      ...result,
    });
  }

  /** Queues an attempt, in the order of when it is due (ties: first queued first). */
  private enqueue(p: SchedulerAttempt | LambdaAttempt, due: number): void {
    const item = { ...p, due, seq: ++this.seq } as Pending;
    let i = this.queue.length;
    while (i > 0 && this.queue[i - 1].due > due) i--;
    this.queue.splice(i, 0, item);
  }
}

/**
 * The target input of a schedule as the construct wrote it (a JSON template with
 * `<aws.scheduler.…>` keywords), rendered the way Scheduler does for one attempt.
 */
export function fromTemplate(template: string): (ctx: SchedulerContext) => unknown {
  return (ctx) => {
    const values: Record<string, string> = {
      'schedule-arn': ctx.scheduleArn,
      'scheduled-time': ctx.scheduledTime,
      'execution-id': ctx.executionId,
      'attempt-number': String(ctx.attemptNumber),
    };
    return JSON.parse(template.replace(/<aws\.scheduler\.([a-z-]+)>/g, (m, key: string) => values[key] ?? m));
  };
}
