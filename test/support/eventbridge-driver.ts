import { LAMBDA_RETRY_DELAYS_MS, invokeScheduled, lambdaRetries } from './lambda-async';
import { isoSeconds } from './scheduler-time';
import { ACCOUNT, REGION } from './sim-core';
import { SimWorld } from './sim-world';

/** The event EventBridge (rules or Scheduler's EventBridge-compatible target) passes on a schedule. */
export interface ScheduledEvent {
  readonly 'version': '0';
  readonly 'id': string;
  readonly 'detail-type': 'Scheduled Event';
  readonly 'source': 'aws.events';
  readonly 'account': string;
  /** The scheduled time of the tick (ISO 8601, seconds precision), not when it was delivered. */
  readonly 'time': string;
  readonly 'region': string;
  readonly 'resources': string[];
  readonly 'detail': Record<string, unknown>;
}

export interface EventBridgeDriverOptions {
  /** The schedule's identity as the handler's owner (its stack id and construct path, say). */
  readonly scheduleId: string;
  /** The rule or schedule ARN, passed in `resources`. */
  readonly scheduleArn?: string;
  /** Time between ticks (ms). */
  readonly rateMs: number;
  readonly detail?: Record<string, unknown>;
  /** The scheduled handler's Lambda timeout (ms). @default 15 minutes */
  readonly timeoutMs?: number;
  /** Lambda async retries after a failed invocation (Lambda allows 0–2). @default 2 */
  readonly maxRetries?: number;
  /** Delay before each retry (ms); Lambda waits about 1 minute, then 2. */
  readonly retryDelaysMs?: readonly number[];
  /**
   * A duplicate delivery's `time` is later than the tick's by 1 to this many seconds (at most
   * 59): the handler must not derive its token from the exact string. @default 0 (the same `time`)
   */
  readonly duplicateTimeShiftSeconds?: number;
  /**
   * The rule target's input transformer: what the handler receives instead of the event.
   * @default the event itself
   */
  readonly input?: (event: ScheduledEvent) => unknown;
  /**
   * The stack and owner (ownership tag value) the handler acts for, so that the invariants can
   * check its deletes against them. @default none: only foreign deletes are caught
   */
  readonly stackId?: string;
  readonly owner?: string;
}

/** One delivery of a tick to the handler. */
export interface Delivery {
  /** The scheduled time of the tick (whole seconds): what identifies the tick. */
  readonly tick: string;
  /** The event's `time` as delivered (a duplicate's may be shifted by seconds). */
  readonly time: string;
  readonly eventId: string;
  readonly at: number;
  readonly attempt: number;
  readonly duplicate: boolean;
  readonly ok: boolean;
  readonly reason?: string;
}

/**
 * Plays EventBridge and Lambda's asynchronous invocation around a scheduled handler: ticks at the
 * scheduled times, at-least-once delivery (a tick can arrive twice, with a different event id and,
 * with `duplicateTimeShiftSeconds`, a `time` some seconds later), and up to two retries of a
 * failed invocation (same event).
 */
export class EventBridgeDriver {
  public readonly deliveries: Delivery[] = [];
  private readonly opts: Required<Omit<EventBridgeDriverOptions, 'stackId' | 'owner'>> & Pick<EventBridgeDriverOptions, 'stackId' | 'owner'>;
  private nextTick: number;
  private events = 0;

  constructor(
    private readonly world: SimWorld,
    private readonly handler: (event: any) => Promise<unknown>,
    options: EventBridgeDriverOptions,
  ) {
    this.opts = {
      scheduleArn: `arn:aws:events:${REGION}:${ACCOUNT}:rule/${options.scheduleId.replace(/[^A-Za-z0-9-_.]/g, '-')}`,
      detail: {},
      timeoutMs: 15 * 60_000,
      maxRetries: 2,
      retryDelaysMs: LAMBDA_RETRY_DELAYS_MS,
      duplicateTimeShiftSeconds: 0,
      input: (event) => event,
      ...options,
    };
    // Schedules fire on whole multiples of their rate.
    this.nextTick = Math.ceil(world.clock.now() / options.rateMs) * options.rateMs;
  }

  /** Runs every tick scheduled up to `untilMs` (simulated epoch ms). */
  public async runUntil(untilMs: number): Promise<void> {
    while (this.nextTick <= untilMs) {
      const tick = this.nextTick;
      this.nextTick += this.opts.rateMs;
      if (this.world.clock.now() < tick) this.world.clock.advance(tick - this.world.clock.now());
      // EventBridge delivers within about a minute of the scheduled time.
      this.world.clock.advance(Math.floor(this.world.faults.next() * 30_000));
      await this.deliver(tick, false);
      if (this.world.faults.chance('duplicate-tick')) {
        this.world.clock.advance(Math.floor(this.world.faults.next() * 120_000));
        await this.deliver(tick, true);
      }
    }
    if (this.world.clock.now() < untilMs) this.world.clock.advance(untilMs - this.world.clock.now());
  }

  /** Runs `count` ticks from now. */
  public async runTicks(count: number): Promise<void> {
    await this.runUntil(this.nextTick + (count - 1) * this.opts.rateMs);
  }

  private async deliver(tickMs: number, duplicate: boolean): Promise<void> {
    const tick = isoSeconds(tickMs);
    const maxShift = Math.min(59, this.opts.duplicateTimeShiftSeconds);
    const shift = duplicate && maxShift > 0 ? 1 + Math.floor(this.world.faults.next() * maxShift) : 0;
    const time = isoSeconds(tickMs + shift * 1000);
    const event: ScheduledEvent = {
      'version': '0',
      'id': `sim-event-${++this.events}`,
      'detail-type': 'Scheduled Event',
      'source': 'aws.events',
      'account': ACCOUNT,
      time,
      'region': REGION,
      'resources': [this.opts.scheduleArn],
      'detail': this.opts.detail,
    };
    const caller = { owner: this.opts.owner ?? this.opts.scheduleId, stackId: this.opts.stackId, requestKey: `${this.opts.scheduleId}@${tick}`, tick };
    for (let attempt = 0; attempt <= this.opts.maxRetries; attempt++) {
      if (attempt > 0) this.world.clock.advance(this.opts.retryDelaysMs[attempt - 1] ?? 120_000);
      const result = await invokeScheduled(this.world, this.handler, this.opts.input(event), this.opts.timeoutMs, caller);
      this.deliveries.push({ tick, time, eventId: event.id, at: this.world.clock.now(), attempt, duplicate, ...result });
      if (!lambdaRetries(this.world, result, attempt, this.opts.maxRetries)) break;
    }
  }
}
