import { networkError, requestTimeoutError } from './aws-errors';
import { FaultPlan } from './faults';
import { SimClock } from './sim-clock';
import { REQUEST_TIMEOUT_MS } from '../../lambda/shared/clients/config';

export const ACCOUNT = '111111111111';
export const REGION = 'us-east-1';

export interface SimTag {
  readonly Key?: string;
  readonly Value?: string;
}

/** Who is calling: set by a driver around each handler invocation. */
export interface CallContext {
  readonly kind: 'cfn' | 'schedule' | 'test';
  /** The owner the handler acts for: a stack and a logical id (or a schedule id). */
  readonly stackId?: string;
  readonly owner?: string;
  /** One distinct request: `StackId/LogicalResourceId/RequestId`, or `schedule/tick time`. */
  readonly requestKey: string;
  readonly requestType?: 'Create' | 'Update' | 'Delete';
  /** An Update that CloudFormation sent to roll back. */
  readonly rollback?: boolean;
  /** For scheduled ticks: the scheduled time. */
  readonly tick?: string;
}

/** One mutating call, as it reached the fake (faulted or not). */
export interface CallRecord {
  readonly seq: number;
  readonly at: number;
  readonly service: string;
  readonly command: string;
  readonly input: unknown;
  readonly context?: CallContext;
  /** `ok`, the error code it failed with, or the fault that hit it after it acted. */
  outcome: string;
  /** The resource it acted on or made. */
  resourceId?: string;
  /** For deletes and tagging: the tags the resource carried at that moment. */
  tagsBefore?: SimTag[];
  /** For deletes and tagging: whether the resource was pre-seeded by the test. */
  foreign?: boolean;
}

/** A copy (FSx backup or snapshot, EBS snapshot) as the invariants see it. */
export interface CopyView {
  readonly kind: 'fsx-backup' | 'fsx-snapshot' | 'ec2-snapshot';
  readonly id: string;
  /** What it is a copy of: the volume or file system id. */
  readonly target: string;
  readonly tags: SimTag[];
  /** The service's state, e.g. AVAILABLE, completed, DELETING. */
  readonly state: string;
  /** Still there (not deleted, not being deleted). */
  readonly exists: boolean;
  /** AVAILABLE / completed. */
  readonly ready: boolean;
  /** Pre-seeded by the test, not made by the library. */
  readonly foreign: boolean;
  /** The call context that made it (undefined for foreign copies). */
  readonly createdDuring?: CallContext;
  /** The service failed it on its own (a fault), so a second attempt is not a duplicate. */
  readonly serviceFailed: boolean;
  /** Deleted by a call (not by the service on its own). */
  readonly deletedByCall: boolean;
}

/**
 * What the fakes share: simulated time, the fault plan, the log of mutating calls and the caller's
 * context. Every fake runs each call through `handle`, which injects the faults.
 */
export class SimCore {
  public readonly log: CallRecord[] = [];
  /** Every call, mutating or not, by `service:Command`. */
  public readonly callCounts: Record<string, number> = {};
  public context: CallContext | undefined;
  private seq = 0;
  private readonly counters: Record<string, number> = {};

  constructor(
    public readonly clock: SimClock,
    public readonly faults: FaultPlan,
  ) {}

  /** A new id such as `fsvolsnap-0000000000000001a` (prefix + 17 hex digits). */
  public newId(prefix: string, hexDigits = 17): string {
    const n = (this.counters[prefix] = (this.counters[prefix] ?? 0) + 1);
    return `${prefix}${n.toString(16).padStart(hexDigits, '0')}`;
  }

  /**
   * Runs one call: refuses it if the invocation was killed, injects faults before it acts, logs it
   * if it mutates, and after it acted may lose its response or kill the Lambda.
   */
  public async handle<T>(
    service: string,
    command: string,
    input: unknown,
    options: { readonly mutating: boolean; readonly creates?: boolean },
    act: (record: CallRecord | undefined) => T | Promise<T>,
  ): Promise<T> {
    const key = `${service}:${command}`;
    this.callCounts[key] = (this.callCounts[key] ?? 0) + 1;
    this.clock.checkAlive();
    const stall = this.faults.stallBefore(service, command);
    if (stall > 0) await this.clock.sleep(stall);
    const record: CallRecord | undefined = options.mutating
      ? { seq: ++this.seq, at: this.clock.now(), service, command, input: snapshotOf(input), context: this.context, outcome: 'ok' }
      : undefined;
    if (record) this.log.push(record);
    const before = this.faults.beforeCall(service, command);
    if (before) {
      if (record) record.outcome = `fault:${(before as { code?: string }).code ?? before.name}`;
      throw before;
    }
    let result: T;
    try {
      result = await act(record);
    } catch (err) {
      if (record) record.outcome = (err as Error).name;
      throw err;
    }
    if (options.mutating) {
      const after = this.faults.afterCall(service, command, options.creates ?? false);
      if (after && record) record.outcome = `ok+${after}`;
      if (after === 'lost-response') throw networkError('ECONNRESET');
      if (after === 'kill-after-create') this.clock.kill(`killed after ${command} succeeded`);
      if (after === 'hung-response') {
        // No response ever comes: the SDK's request timeout (the clients' config) gives up on it.
        await this.clock.sleep(REQUEST_TIMEOUT_MS);
        throw requestTimeoutError(REQUEST_TIMEOUT_MS);
      }
    }
    return structuredClone(result);
  }
}

function snapshotOf(input: unknown): unknown {
  try {
    return structuredClone(input);
  } catch {
    return input;
  }
}

/** Tags as a plain map. */
export function tagMap(tags: readonly SimTag[] | undefined): Record<string, string> {
  const out: Record<string, string> = {};
  for (const t of tags ?? []) if (t.Key) out[t.Key] = t.Value ?? '';
  return out;
}

/** Tags merged: later ones replace earlier ones of the same key. */
export function mergeTags(base: readonly SimTag[], add: readonly SimTag[]): SimTag[] {
  const map = { ...tagMap(base), ...tagMap(add) };
  return Object.entries(map).map(([Key, Value]) => ({ Key, Value }));
}

/** JSON with sorted keys: compares request parameters for token replay. */
export function canonical(value: unknown): string {
  if (Array.isArray(value)) return `[${value.map(canonical).join(',')}]`;
  if (value instanceof Uint8Array) return JSON.stringify(Buffer.from(value).toString('base64'));
  if (value instanceof Date) return JSON.stringify(value.toISOString());
  if (value !== null && typeof value === 'object') {
    const entries = Object.entries(value as Record<string, unknown>)
      .filter(([, v]) => v !== undefined)
      .sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0));
    return `{${entries.map(([k, v]) => `${JSON.stringify(k)}:${canonical(v)}`).join(',')}}`;
  }
  return JSON.stringify(value);
}

/** Pages `items` as the services do: NextToken is an offset here. */
export function page<T>(items: T[], maxResults: number | undefined, nextToken: string | undefined, pageSize: number) {
  const start = nextToken ? Number(nextToken) : 0;
  const size = Math.max(1, Math.min(maxResults ?? pageSize, pageSize));
  const slice = items.slice(start, start + size);
  const next = start + size < items.length ? String(start + size) : undefined;
  return { items: slice, nextToken: next };
}

/** Command class → what the fake does with its input. */
export type CommandTable = Array<[new (...args: any[]) => { input: unknown }, (input: any) => Promise<unknown>]>;

/**
 * Routes every command sent to a mocked client to its fake, through the one stubbed `send` that
 * aws-sdk-client-mock installs. (Its per-command `on(...)` matchers deep-compare every call and
 * cost more than the whole simulation.) A command the fake does not implement is refused.
 */
export function routeCommands(mock: { send: { callsFake(fn: (command: any) => unknown): unknown } }, service: string, table: CommandTable): void {
  const routes = new Map<unknown, (input: any) => Promise<unknown>>(table);
  mock.send.callsFake((command: any) => {
    const route = routes.get(command?.constructor);
    if (!route) return Promise.reject(new Error(`the ${service} fake does not implement ${command?.constructor?.name}`));
    return route(command.input);
  });
}
