import { Duration, TimeZone, Token } from 'aws-cdk-lib';
import * as events from 'aws-cdk-lib/aws-events';
import { IConstruct } from 'constructs';
import { invalid } from './validation';
import type { SchedulerSchedule } from '../scheduled-copy';

/** How often a scheduled copy may run, and why, for the error. */
export interface Cadence {
  /** The shortest time between two ticks, in minutes (at most 60). */
  readonly minMinutes: number;
  /** Why, in words, for the error. */
  readonly reason: string;
}

/**
 * Checks a rule's expression: a `rate` or a `cron` that fires at most once per `cadence`.
 * EventBridge rules take nothing else: `at(...)` is EventBridge Scheduler's, and a rule refuses it
 * at deploy.
 */
export function validateRuleSchedule(scope: IConstruct, schedule: events.Schedule, cadence: Cadence): void {
  const expression = schedule.expressionString;
  if (Token.isUnresolved(expression)) return;
  if (/^at\(.*\)$/.test(expression)) {
    invalid(scope, 'schedule', 'EventBridge rules take only rate(...) and cron(...) expressions; for at(...) give `scheduler` (EventBridge Scheduler)', expression);
  }
  validateCadence(scope, 'schedule', expression, cadence);
}


/** Checks a Scheduler schedule: its expression, time zone, window, dates and retry policy. */
export function validateSchedulerSchedule(scope: IConstruct, schedule: SchedulerSchedule, cadence: Cadence): void {
  const expression = schedule.expression.expressionString;
  let interval: number | undefined;
  const at = /^at\((\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2})\)$/.exec(expression);
  if (at) {
    const parsed = new Date(`${at[1]}Z`);
    if (Number.isNaN(parsed.getTime()) || parsed.toISOString().slice(0, 19) !== at[1]) {
      invalid(scope, 'scheduler.expression', 'is not a valid date and time in at(yyyy-mm-ddThh:mm:ss)', expression);
    }
  } else if (!Token.isUnresolved(expression)) {
    interval = validateCadence(scope, 'scheduler.expression', expression, cadence);
  }
  const zone = schedule.expression.timeZone?.timezoneName;
  const zoneProblem = zone === undefined || Token.isUnresolved(zone) ? undefined : timeZoneProblem(zone);
  if (zoneProblem) invalid(scope, 'scheduler.expression', zoneProblem, zone);
  const window = schedule.flexibleTimeWindow;
  if (window !== undefined && !Token.isUnresolved(window.toSeconds())) {
    const seconds = window.toSeconds();
    if (seconds % 60 !== 0 || seconds < 60 || seconds > Duration.hours(24).toSeconds()) {
      invalid(scope, 'scheduler.flexibleTimeWindow', `must be whole minutes from 1 minute to 24 hours, not ${window.toHumanString()}`);
    }
    // A window as long as the interval lets a tick arrive after the next one: retention would then
    // have passed it (keepLast), and the tick would make no copy.
    if (interval !== undefined && seconds / 60 >= interval) {
      invalid(scope, 'scheduler.flexibleTimeWindow', `must be shorter than the schedule's shortest interval (${interval} minutes), so that ` +
        `ticks arrive in order; ${window.toHumanString()} is not`);
    }
  }
  const age = schedule.maxEventAge;
  if (age !== undefined && !Token.isUnresolved(age.toSeconds()) && (age.toSeconds() < 60 || age.toSeconds() > Duration.hours(24).toSeconds())) {
    invalid(scope, 'scheduler.maxEventAge', `must be from 1 minute to 24 hours (Scheduler's limits), not ${age.toHumanString()}`);
  }
  const retries = schedule.retryAttempts;
  if (retries !== undefined && !Token.isUnresolved(retries) && (!Number.isInteger(retries) || retries < 0 || retries > 185)) {
    invalid(scope, 'scheduler.retryAttempts', 'must be a whole number from 0 to 185 (Scheduler\'s limits)', retries);
  }
  for (const [prop, date] of [['start', schedule.start], ['end', schedule.end]] as const) {
    if (date && Number.isNaN(date.getTime())) invalid(scope, `scheduler.${prop}`, 'is not a valid date');
  }
  if (schedule.start && schedule.end && schedule.start.getTime() >= schedule.end.getTime()) {
    invalid(scope, 'scheduler.end', `must be after start (${schedule.start.toISOString()})`, schedule.end.toISOString());
  }
}

/**
 * What is wrong with `zone` as an IANA time zone, if anything: unknown to this Node's time zone
 * data (ICU, the IANA database Scheduler uses too), or a known name in the wrong case (ICU
 * accepts `europe/berlin`; IANA names, and Scheduler, are case-sensitive).
 */
function timeZoneProblem(zone: string): string | undefined {
  let canonical: string;
  try {
    canonical = new Intl.DateTimeFormat('en-US', { timeZone: zone }).resolvedOptions().timeZone;
  } catch {
    return 'has an unknown time zone: give an IANA time zone such as Europe/Berlin (TimeZone.EUROPE_BERLIN)';
  }
  const known = knownTimeZones();
  if (known.has(zone) || canonical === zone) return undefined;
  const sameButCase = [...known, canonical].find((name) => name.toLowerCase() === zone.toLowerCase());
  return sameButCase ? `has a time zone in the wrong case: IANA names are case-sensitive, give ${sameButCase}` : undefined;
}

let zones: Set<string> | undefined;
/** The time zones CDK names (`TimeZone.*`) and those ICU lists. */
function knownTimeZones(): Set<string> {
  const named = Object.getOwnPropertyNames(TimeZone).map((k) => (TimeZone as any)[k]).filter((v): v is TimeZone => v instanceof TimeZone);
  zones ??= new Set([...named.map((v) => v.timezoneName), ...((Intl as any).supportedValuesOf?.('timeZone') ?? [])]);
  return zones;
}

const UNIT_MINUTES: Record<string, number> = { minute: 1, hour: 60, day: 1440 };

/**
 * A `rate` of at least `cadence.minMinutes`, or a `cron` whose minute field fires at least that
 * many minutes apart, also across the hour (a single number fires once an hour, whatever the
 * hour field says; `0/15` every 15 minutes). Returns the shortest interval between two ticks the
 * expression can have, in minutes (a lower bound for a cron: what its minute and hour fields
 * allow).
 */
function validateCadence(scope: IConstruct, prop: string, expression: string, cadence: Cadence): number {
  const rule = `must fire at most once ${cadence.minMinutes === 60 ? 'an hour' : `every ${cadence.minMinutes} minutes`} (${cadence.reason}): ` +
    `use a rate of at least ${cadence.minMinutes === 60 ? '1 hour' : `${cadence.minMinutes} minutes`}, or a cron expression whose minute ` +
    (cadence.minMinutes === 60 ? 'field is one number, such as cron(0 2 * * ? *)' : `values are at least ${cadence.minMinutes} apart, such as cron(0/${cadence.minMinutes} * * * ? *)`);
  const rate = /^rate\((\d+) (minute|hour|day)(s?)\)$/.exec(expression);
  if (rate) {
    const value = Number(rate[1]);
    if (value < 1 || (value === 1) !== (rate[3] === '')) {
      invalid(scope, prop, 'a rate takes a whole number of at least 1, with the unit singular for 1 and plural otherwise, such as rate(1 hour) or rate(2 hours)', expression);
    }
    const minutes = value * UNIT_MINUTES[rate[2]];
    if (minutes < cadence.minMinutes) invalid(scope, prop, rule, expression);
    return minutes;
  }
  const cron = /^cron\((.*)\)$/.exec(expression);
  if (!cron) invalid(scope, prop, 'is not a rate(...) or cron(...) expression', expression);
  const fields = cron[1].trim().split(/\s+/);
  if (fields.length !== 6) invalid(scope, prop, 'a cron expression has 6 fields (minutes hours day-of-month month day-of-week year)', expression);
  const minutes = fieldValues(fields[0], 59);
  if (!minutes) invalid(scope, prop, 'has a minute field that is not numbers (0-59), ranges, steps (at most 59) or *', expression);
  if (shortestGap(minutes, 60) < cadence.minMinutes) invalid(scope, prop, rule, expression);
  if (minutes.length > 1) return shortestGap(minutes, 60);
  // One minute of the hour: as often as the hour field allows (a day, if it names one hour).
  const hours = fieldValues(fields[1], 23);
  return hours ? shortestGap(hours, 24) * 60 : 60;
}

/** The values (0–`max`) a cron field of numbers, ranges, steps and `*` names, or undefined if it is not one this check reads. */
function fieldValues(field: string, max: number): number[] | undefined {
  const out = new Set<number>();
  for (const part of field.split(',')) {
    const m = /^(\*|\d{1,2}(?:-\d{1,2})?)(?:\/(\d{1,2}))?$/.exec(part);
    if (!m) return undefined;
    const [from, to] = m[1] === '*' ? [0, max] : m[1].includes('-') ? m[1].split('-').map(Number) : [Number(m[1]), m[2] ? max : Number(m[1])];
    const step = m[2] ? Number(m[2]) : 1;
    if (from > max || to > max || from > to || step < 1 || step > max) return undefined;
    for (let v = from; v <= to; v += step) out.add(v);
  }
  return [...out].sort((a, b) => a - b);
}

/** The shortest distance between two of `values` on a cycle of `period` (minutes of the hour, hours of the day), across the wrap too. */
function shortestGap(values: number[], period: number): number {
  let gap = period - values[values.length - 1] + values[0];
  for (let i = 1; i < values.length; i++) gap = Math.min(gap, values[i] - values[i - 1]);
  return gap;
}
