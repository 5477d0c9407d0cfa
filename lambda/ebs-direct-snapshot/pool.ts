/**
 * How many block writes may be in flight: additive increase (one more after `limit` successes),
 * multiplicative decrease (halved on throttling, at most once per `cooldownMs`, so that one burst
 * of throttled answers to requests sent together counts once).
 */
export class AdaptiveLimit {
  public limit: number;
  public lowest: number;
  public throttled = 0;
  private credit = 0;
  private lastDecrease = -Infinity;

  constructor(
    initial: number,
    private readonly min: number,
    private readonly max: number,
    private readonly cooldownMs: number,
  ) {
    this.limit = Math.min(max, Math.max(min, initial));
    this.lowest = this.limit;
  }

  public success(): void {
    if (this.limit >= this.max) return;
    this.credit += 1 / this.limit;
    if (this.credit >= 1) {
      this.credit = 0;
      this.limit++;
    }
  }

  public throttle(now: number): void {
    this.throttled++;
    if (now - this.lastDecrease < this.cooldownMs) return;
    this.lastDecrease = now;
    this.credit = 0;
    this.limit = Math.max(this.min, Math.floor(this.limit / 2));
    this.lowest = Math.min(this.lowest, this.limit);
  }
}

/** Waits for a free slot: resolves when fewer than `limit()` tasks run. */
export class Slots {
  private running = 0;
  private readonly waiting: Array<() => void> = [];

  constructor(private readonly limit: () => number) {}

  public get inFlight(): number {
    return this.running;
  }

  public async acquire(): Promise<void> {
    while (this.running >= this.limit()) await new Promise<void>((resolve) => this.waiting.push(resolve));
    this.running++;
  }

  public release(): void {
    this.running--;
    // Wake everyone: each rechecks the (possibly changed) limit.
    for (const wake of this.waiting.splice(0)) wake();
  }
}
