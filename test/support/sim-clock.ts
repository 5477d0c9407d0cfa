import { clock } from '../../lambda/shared/clock';

/**
 * Thrown into a handler from the moment its Lambda is killed (a timeout, or a kill injected after a
 * call succeeded). Every later SDK call and sleep of that invocation throws it too, so that nothing
 * a killed handler still tries to do reaches the fakes.
 */
export class LambdaKilled extends Error {
  constructor(reason: string) {
    super(`Lambda killed: ${reason}`);
    this.name = 'LambdaKilled';
  }
}

/* eslint-disable no-bitwise -- a PRNG is bit arithmetic */
/** A small seeded PRNG (mulberry32): every random choice of a run comes from a seed. */
export function seededRandom(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}
/* eslint-enable no-bitwise */

/**
 * Simulated time shared by the fakes, the drivers and the handlers. Time only moves when someone
 * sleeps or a driver advances it, so hours of deploy run in milliseconds. The simulation runs one
 * invocation at a time, so a sleep simply moves the clock forward.
 */
export class SimClock {
  private nowMs: number;
  /** When the running invocation's Lambda times out (epoch ms), if one is running. */
  private deadline: number | undefined;
  private killedBy: string | undefined;
  /** How far the running invocation's clock is off (ms). */
  private skewMs = 0;

  constructor(startMs = Date.UTC(2026, 10, 22, 10, 0, 0)) {
    this.nowMs = startMs;
  }

  public now(): number {
    return this.nowMs;
  }

  public date(): Date {
    return new Date(this.nowMs);
  }

  public advance(ms: number): void {
    if (ms < 0) throw new Error(`cannot go back in time (${ms} ms)`);
    this.nowMs += ms;
  }

  /** A sleep of the running invocation: it cannot outlive its Lambda's timeout. */
  public async sleep(ms: number): Promise<void> {
    this.checkAlive();
    if (this.deadline !== undefined && this.nowMs + ms > this.deadline) {
      this.nowMs = this.deadline;
      this.kill('the function timed out while sleeping');
    }
    this.nowMs += Math.max(0, ms);
  }

  /** The time the running invocation reads from its own clock: off by its skew. */
  public handlerNow(): number {
    return this.nowMs + this.skewMs;
  }

  /** Starts an invocation that may run for `timeoutMs` of simulated time, its clock off by `skewMs`. */
  public startInvocation(timeoutMs: number, skewMs = 0): void {
    this.deadline = this.nowMs + timeoutMs;
    this.killedBy = undefined;
    this.skewMs = skewMs;
  }

  /** Ends the invocation; tells whether (and why) it was killed. */
  public endInvocation(): string | undefined {
    const killed = this.killedBy ?? (this.deadline !== undefined && this.nowMs > this.deadline ? 'the function timed out' : undefined);
    this.deadline = undefined;
    this.killedBy = undefined;
    this.skewMs = 0;
    return killed;
  }

  /** Kills the running invocation: this and every later call of it throws LambdaKilled. */
  public kill(reason: string): never {
    this.killedBy ??= reason;
    throw new LambdaKilled(this.killedBy);
  }

  public get killed(): boolean {
    return this.killedBy !== undefined;
  }

  /** Called by every fake before it acts. */
  public checkAlive(): void {
    if (this.killedBy !== undefined) throw new LambdaKilled(this.killedBy);
    if (this.deadline !== undefined && this.nowMs > this.deadline) this.kill('the function timed out');
  }
}

const realClock = { now: clock.now, sleep: clock.sleep };
const realRandom = Math.random;

/**
 * Points the handlers' clock at `sim`, and Math.random (the retry jitter) at a seeded PRNG so that
 * a run is reproducible. Returns the function that puts both back.
 */
export function installSimClock(sim: SimClock, seed: number): () => void {
  clock.now = () => sim.handlerNow();
  clock.sleep = (ms: number) => sim.sleep(ms);
  Math.random = seededRandom(seed + 0x5eed);
  return () => {
    clock.now = realClock.now;
    clock.sleep = realClock.sleep;
    Math.random = realRandom;
  };
}
