import type { Owner } from '../shared/ownership';
import { stableHash, tickToken } from '../shared/token';

/*
 * What names one target of one tick, for every scheduled operation: the client token, the
 * ownership tags and the minute retention ages are measured from.
 */

/** What every tick's input says about its schedule. */
export interface ScheduleIdentity {
  readonly Time: string;
  readonly StackId: string;
  readonly Schedule: string;
}

/**
 * The scheduled time, rounded down to the minute: what the token is derived from and retention
 * ages are measured from. Deliveries of one tick whose `time` differs in its seconds share it,
 * and ticks (at least 15 minutes apart) never do.
 */
export function scheduledMinute(time: string): string {
  const minute = Math.floor(Date.parse(time) / 60_000) * 60_000;
  return new Date(minute).toISOString().replace(/:00\.000Z$/, 'Z');
}

/** The tag that says which target a copy is of (the props-hash tag of the contract). */
export function targetHash(target: string): string {
  return stableHash({ target });
}

/** The client token of one target of one tick: every delivery and retry of the tick gets the same. */
export function targetToken(event: ScheduleIdentity, target: string): string {
  return tickToken({ scheduleId: `${event.StackId}|${event.Schedule}`, target, scheduledTime: scheduledMinute(event.Time) });
}

/** Who owns the schedule's copies: its stack, and the schedule. */
export function scheduleOwner(event: ScheduleIdentity): Owner {
  return { stackId: event.StackId, owner: event.Schedule };
}
