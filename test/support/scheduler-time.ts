/*
 * EventBridge Scheduler's schedule expressions as the simulator reads them: when a schedule's
 * ticks fall, in UTC, for `rate()`, `cron()` and `at()` in an IANA time zone. The time zone
 * arithmetic uses Intl (Node has full ICU); wall-clock times are enumerated per local day and
 * converted, never minute by minute.
 *
 * What AWS documents, and what is assumed here:
 * - `cron()` and `at()` name wall-clock times in the schedule's time zone. A time in the
 *   spring-forward gap does not exist and is skipped; a time in the fall-back hour exists twice and
 *   runs once ("your schedule runs only once and doesn't repeat its invocation"): here at its first
 *   occurrence, which AWS does not specify.
 * - `rate()` counts real elapsed time from the schedule's start (its StartDate, or its creation),
 *   whatever the time zone: a DST change does not move it.
 * - StartDate is the time "after which" the schedule may invoke, EndDate the time "before which":
 *   ticks at or after the start and before the end.
 */

const MINUTE = 60_000;
const HOUR = 60 * MINUTE;
const DAY = 24 * HOUR;

/** A wall-clock time in some time zone (month 1–12). */
export interface WallTime {
  readonly year: number;
  readonly month: number;
  readonly day: number;
  readonly hour: number;
  readonly minute: number;
  readonly second: number;
}

/** The six fields of a Scheduler cron expression, as the values each allows (`undefined`: `?`). */
export interface CronFields {
  readonly minutes: readonly number[];
  readonly hours: readonly number[];
  readonly daysOfMonth?: ReadonlySet<number>;
  readonly months: ReadonlySet<number>;
  /** 1 = SUN … 7 = SAT, as in AWS's cron. */
  readonly daysOfWeek?: ReadonlySet<number>;
  readonly years: ReadonlySet<number>;
}

export type ParsedExpression =
  | { readonly kind: 'rate'; readonly everyMs: number }
  | { readonly kind: 'cron'; readonly fields: CronFields }
  | { readonly kind: 'at'; readonly local: WallTime };

const MONTHS = ['JAN', 'FEB', 'MAR', 'APR', 'MAY', 'JUN', 'JUL', 'AUG', 'SEP', 'OCT', 'NOV', 'DEC'];
const WEEKDAYS = ['SUN', 'MON', 'TUE', 'WED', 'THU', 'FRI', 'SAT'];
const RATE_UNITS: Record<string, number> = { minute: MINUTE, minutes: MINUTE, hour: HOUR, hours: HOUR, day: DAY, days: DAY };

/** Parses `rate(15 minutes)`, `cron(30 2 * * ? *)` or `at(2026-03-29T02:30:00)`; throws on anything else. */
export function parseScheduleExpression(expression: string): ParsedExpression {
  const rate = /^rate\((\d+) ([a-z]+)\)$/.exec(expression);
  if (rate) {
    const value = Number(rate[1]);
    const unit = RATE_UNITS[rate[2]];
    if (!unit || value < 1) throw new Error(`${expression}: a rate is a positive whole number of minutes, hours or days`);
    return { kind: 'rate', everyMs: value * unit };
  }
  const at = /^at\((\d{4})-(\d{2})-(\d{2})T(\d{2}):(\d{2}):(\d{2})\)$/.exec(expression);
  if (at) {
    const [year, month, day, hour, minute, second] = at.slice(1).map(Number);
    const local = { year, month, day, hour, minute, second };
    const back = wallOf(wallMs(local));
    if (back.month !== month || back.day !== day || hour > 23 || minute > 59 || second > 59) throw new Error(`${expression}: not a date and time`);
    return { kind: 'at', local };
  }
  const cron = /^cron\((.*)\)$/.exec(expression);
  if (cron) return { kind: 'cron', fields: parseCron(cron[1], expression) };
  throw new Error(`${expression}: not a Scheduler expression (rate(value unit), cron(fields) or at(yyyy-mm-ddThh:mm:ss))`);
}

function parseCron(text: string, expression: string): CronFields {
  const parts = text.trim().split(/\s+/);
  if (parts.length !== 6) throw new Error(`${expression}: a cron expression has 6 fields (minutes hours day-of-month month day-of-week year), not ${parts.length}`);
  const [min, hour, dom, month, dow, year] = parts;
  if ((dom === '?') === (dow === '?')) {
    throw new Error(`${expression}: exactly one of day-of-month and day-of-week must be '?'`);
  }
  const field = (value: string, name: string, lo: number, hi: number, names?: string[]) => parseField(value, name, lo, hi, expression, names);
  return {
    minutes: [...field(min, 'minutes', 0, 59)].sort((a, b) => a - b),
    hours: [...field(hour, 'hours', 0, 23)].sort((a, b) => a - b),
    daysOfMonth: dom === '?' ? undefined : field(dom, 'day-of-month', 1, 31),
    months: field(month, 'month', 1, 12, MONTHS),
    daysOfWeek: dow === '?' ? undefined : field(dow, 'day-of-week', 1, 7, WEEKDAYS),
    years: field(year, 'year', 1970, 2199),
  };
}

/** One field: `*`, `5`, `1,15`, `MON-FRI`, `0/15`, `*\/15`, `8-17/2`. */
function parseField(text: string, name: string, lo: number, hi: number, expression: string, names?: string[]): Set<number> {
  if (/[LW#]/.test(text.replace(/[A-Z]{3}/g, (n) => (names?.includes(n) ? '' : n)))) {
    throw new Error(`${expression}: ${name} '${text}' uses L, W or #, which the simulator does not model`);
  }
  const value = (v: string) => {
    const i = names?.indexOf(v.toUpperCase()) ?? -1;
    const n = i >= 0 ? i + 1 : /^\d+$/.test(v) ? Number(v) : NaN;
    if (!(n >= lo && n <= hi)) throw new Error(`${expression}: ${name} '${v}' is not in ${lo}–${hi}`);
    return n;
  };
  const out = new Set<number>();
  for (const part of text.split(',')) {
    const [range, stepText, extra] = part.split('/');
    const step = stepText === undefined ? 1 : Number(stepText);
    if (extra !== undefined || !Number.isInteger(step) || step < 1) throw new Error(`${expression}: ${name} '${part}' has a bad step`);
    let from: number;
    let to: number;
    if (range === '*') [from, to] = [lo, hi];
    else if (range.includes('-')) [from, to] = range.split('-').map(value);
    else [from, to] = [value(range), stepText === undefined ? value(range) : hi];
    if (from > to) throw new Error(`${expression}: ${name} range '${range}' runs backwards`);
    for (let v = from; v <= to; v += step) out.add(v);
  }
  return out;
}

/** Throws unless `timeZone` is a time zone Intl knows. */
export function checkTimeZone(timeZone: string): void {
  formatter(timeZone);
}

const formatters = new Map<string, Intl.DateTimeFormat>();
const offsets = new Map<string, Map<number, number>>();

function formatter(timeZone: string): Intl.DateTimeFormat {
  let f = formatters.get(timeZone);
  if (!f) {
    try {
      f = new Intl.DateTimeFormat('en-US', {
        timeZone, hourCycle: 'h23', year: 'numeric', month: 'numeric', day: 'numeric', hour: 'numeric', minute: 'numeric', second: 'numeric',
      });
    } catch {
      throw new Error(`unknown time zone '${timeZone}'`);
    }
    formatters.set(timeZone, f);
  }
  return f;
}

/** A wall-clock time as epoch ms read as UTC (the arithmetic on wall times). */
function wallMs(w: WallTime): number {
  return Date.UTC(w.year, w.month - 1, w.day, w.hour, w.minute, w.second);
}

function wallOf(ms: number): WallTime {
  const d = new Date(ms);
  const [year, month, day] = [d.getUTCFullYear(), d.getUTCMonth() + 1, d.getUTCDate()];
  return { year, month, day, hour: d.getUTCHours(), minute: d.getUTCMinutes(), second: d.getUTCSeconds() };
}

/** How far the time zone's wall clock is ahead of UTC at this instant (ms). */
export function offsetAt(ms: number, timeZone: string): number {
  if (timeZone === 'UTC') return 0;
  let cache = offsets.get(timeZone);
  if (!cache) offsets.set(timeZone, (cache = new Map()));
  const known = cache.get(ms);
  if (known !== undefined) return known;
  const p: Record<string, number> = {};
  for (const part of formatter(timeZone).formatToParts(new Date(ms))) if (part.type !== 'literal') p[part.type] = Number(part.value);
  const offset = Date.UTC(p.year, p.month - 1, p.day, p.hour, p.minute, p.second) - Math.floor(ms / 1000) * 1000;
  if (cache.size > 100_000) cache.clear();
  cache.set(ms, offset);
  return offset;
}

/** The wall-clock time in the time zone at this instant. */
export function wallTimeAt(ms: number, timeZone: string): WallTime {
  return wallOf(ms + offsetAt(ms, timeZone));
}

/**
 * Every instant a wall-clock time names in the time zone, earliest first: none in a
 * spring-forward gap, two in a fall-back hour, one otherwise.
 */
export function instantsOf(local: WallTime, timeZone: string): number[] {
  const w = wallMs(local);
  // The true instant is within 14 h of `w`: a day either side brackets any one transition.
  const candidates = new Set([offsetAt(w - DAY, timeZone), offsetAt(w, timeZone), offsetAt(w + DAY, timeZone)]);
  const out: number[] = [];
  for (const offset of candidates) {
    const t = w - offset;
    if (offsetAt(t, timeZone) === offset && !out.includes(t)) out.push(t);
  }
  return out.sort((a, b) => a - b);
}

/** The instant a scheduled wall-clock time runs at: the first of a repeated one, none for one that does not exist. */
function runsAt(local: WallTime, timeZone: string): number | undefined {
  return instantsOf(local, timeZone)[0];
}

/**
 * The nominal ticks of a schedule in [fromMs, toMs] (epoch ms, ascending): what Scheduler puts in
 * `<aws.scheduler.scheduled-time>`. `startMs` is the schedule's start (no tick before it; a rate
 * counts from it); without it a rate counts from `fromMs`.
 */
export function scheduledTimes(expression: string, timeZone: string, fromMs: number, toMs: number, startMs?: number): number[] {
  checkTimeZone(timeZone);
  const parsed = parseScheduleExpression(expression);
  const lo = Math.max(fromMs, startMs ?? fromMs);
  const keep = (t: number | undefined): t is number => t !== undefined && t >= lo && t <= toMs;
  if (parsed.kind === 'rate') {
    const anchor = startMs ?? fromMs;
    const out: number[] = [];
    for (let t = anchor + Math.max(0, Math.ceil((lo - anchor) / parsed.everyMs)) * parsed.everyMs; t <= toMs; t += parsed.everyMs) out.push(t);
    return out;
  }
  if (parsed.kind === 'at') {
    const t = runsAt(parsed.local, timeZone);
    return keep(t) ? [t] : [];
  }
  return cronTimes(parsed.fields, timeZone, lo, toMs).filter(keep);
}

/** Walks the local days that can hold a tick in [fromMs, toMs], and each day's matching times. */
function cronTimes(f: CronFields, timeZone: string, fromMs: number, toMs: number): number[] {
  const out: number[] = [];
  if (toMs < fromMs) return out;
  const first = wallTimeAt(fromMs - DAY, timeZone);
  const last = Date.UTC(...ymd(wallTimeAt(toMs + DAY, timeZone)));
  for (let day = Date.UTC(...ymd(first)); day <= last; day += DAY) {
    const d = new Date(day);
    const [year, month, dom, dow] = [d.getUTCFullYear(), d.getUTCMonth() + 1, d.getUTCDate(), d.getUTCDay() + 1];
    if (!f.years.has(year) || !f.months.has(month)) continue;
    if (f.daysOfMonth ? !f.daysOfMonth.has(dom) : !f.daysOfWeek!.has(dow)) continue;
    for (const hour of f.hours) {
      for (const minute of f.minutes) {
        const t = runsAt({ year, month, day: dom, hour, minute, second: 0 }, timeZone);
        if (t !== undefined && t >= fromMs && t <= toMs) out.push(t);
      }
    }
  }
  return out.sort((a, b) => a - b);
}

function ymd(w: WallTime): [number, number, number] {
  return [w.year, w.month - 1, w.day];
}

/** Epoch ms as Scheduler writes a scheduled time: ISO 8601 to the second, `Z`. */
export function isoSeconds(ms: number): string {
  return new Date(ms).toISOString().replace(/\.\d{3}Z$/, 'Z');
}
