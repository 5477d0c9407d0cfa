import { awsError, networkError } from './aws-errors';
import { seededRandom } from './sim-clock';

/** Every kind of fault the simulator can inject. */
export const FAULT_KINDS = [
  /** ThrottlingException / RequestLimitExceeded / RequestThrottledException / Throttling, before the call acts. */
  'throttle',
  /** A 5xx (InternalServerError, InternalError, …) before the call acts. */
  'server-error',
  /** ECONNRESET before the request reached the service. */
  'network',
  /** The call acted, but its response was lost: the caller sees ECONNRESET. */
  'lost-response',
  /**
   * The call acted, and the response never came: the SDK's request timeout (REQUEST_TIMEOUT_MS,
   * lambda/shared/clients/config.ts) ends the call with a TimeoutError after 30 s of silence.
   */
  'hung-response',
  /** The Lambda is killed right after a create call succeeded, before it answered. */
  'kill-after-create',
  /** A new copy takes longer than any timeout (hours). */
  'slow-lifecycle',
  /** A new copy fails on the service side (FSx snapshot DELETING, backup FAILED, EBS `error`). */
  'failed-lifecycle',
  /** CloudFormation delivers the same request (same RequestId) again after it was answered. */
  'duplicate-delivery',
  /** The framework's own Lambda dies with the user handler: Lambda's async retry reruns it. */
  'framework-retry',
  /** EventBridge delivers the same scheduled event twice. */
  'duplicate-tick',
  /** Lambda's async retry of a scheduled handler that failed (up to 2 retries). */
  'async-retry',
  /**
   * EventBridge Scheduler fails to deliver a tick (Lambda's Invoke throttled or a 5xx, before the
   * handler runs) and retries it later with backoff: a new execution id, the next attempt number,
   * the same scheduled time; past its retry policy the tick goes to the dead-letter queue.
   */
  'scheduler-retry',
  /**
   * The invocation freezes for 130–250 s right before a DynamoDB call (a CPU-starved container, a
   * long pause): past a claim's fence, before it is extended for a create or before the answer is
   * recorded. (Never between that extension and the create call: nothing can fence that gap, EC2
   * takes no fencing token.)
   */
  'stall',
] as const;

export type FaultKind = (typeof FAULT_KINDS)[number];

/** The probability of each fault, per call (per create for lifecycles, per request for delivery). */
export type FaultRates = Partial<Record<FaultKind, number>>;

/** A fault that fires on the next call that matches (deterministic tests). */
export interface ScriptedFault {
  readonly kind: FaultKind;
  /** SDK command name, e.g. `CreateSnapshotCommand`; any call if absent. */
  readonly command?: string;
  /** Service: `fsx`, `ec2`, `ebs`, `cloudformation`, `dynamodb`; any if absent. */
  readonly service?: string;
  /** How many matching calls it lets pass before it fires. @default 0 */
  readonly skip?: number;
}

export type AfterCallFault = 'lost-response' | 'hung-response' | 'kill-after-create' | undefined;

export interface LifecyclePlan {
  /** How long the copy takes to reach its end state (ms). */
  readonly durationMs: number;
  /** Whether the service fails it instead of finishing it. */
  readonly fails: boolean;
}

const THROTTLE: Record<string, [string, number]> = {
  fsx: ['ThrottlingException', 400],
  ec2: ['RequestLimitExceeded', 503],
  ebs: ['RequestThrottledException', 400],
  cloudformation: ['Throttling', 400],
  // On-demand tables answer ThrottlingException (ProvisionedThroughputExceededException is the provisioned one).
  dynamodb: ['ThrottlingException', 400],
};
const SERVER_ERROR: Record<string, [string, number]> = {
  fsx: ['InternalServerError', 500],
  ec2: ['InternalError', 500],
  ebs: ['InternalServerException', 500],
  cloudformation: ['InternalFailure', 500],
  dynamodb: ['InternalServerError', 500],
};

/**
 * Which faults happen, and when: chosen by a seeded PRNG so that a run is reproducible from its
 * seed, plus any scripted faults (which fire first). Counts what it injected.
 */
export class FaultPlan {
  public readonly injected: Record<string, number> = {};
  private readonly random: () => number;
  private readonly scripted: ScriptedFault[];

  constructor(
    seed: number,
    private readonly rates: FaultRates = {},
    scripted: ScriptedFault[] = [],
    /** Lifecycle durations of new copies (ms). */
    private readonly durations: { readonly minMs: number; readonly maxMs: number; readonly slowMs: number } = {
      minMs: 5_000,
      maxMs: 10 * 60_000,
      slowMs: 3 * 3_600_000,
    },
  ) {
    this.random = seededRandom(seed);
    this.scripted = [...scripted];
  }

  /** Adds a scripted fault. */
  public script(fault: ScriptedFault): void {
    this.scripted.push(fault);
  }

  /** A number in [0, 1) from the plan's PRNG. */
  public next(): number {
    return this.random();
  }

  /** Whether a fault of this kind happens now. */
  public chance(kind: FaultKind, where: { service?: string; command?: string } = {}): boolean {
    const i = this.scripted.findIndex(
      (f) => f.kind === kind && (!f.command || f.command === where.command) && (!f.service || f.service === where.service),
    );
    if (i >= 0) {
      const fault = this.scripted[i];
      if (fault.skip) {
        this.scripted[i] = { ...fault, skip: fault.skip - 1 };
        return false;
      }
      this.scripted.splice(i, 1);
      return this.count(kind);
    }
    const rate = this.rates[kind] ?? 0;
    return rate > 0 && this.random() < rate && this.count(kind);
  }

  /** The error a call fails with before it acts, if any. */
  public beforeCall(service: string, command: string): Error | undefined {
    if (this.chance('throttle', { service, command })) {
      const [name, status] = THROTTLE[service] ?? ['ThrottlingException', 400];
      return awsError(name, 'Rate exceeded', status);
    }
    if (this.chance('server-error', { service, command })) {
      const [name, status] = SERVER_ERROR[service] ?? ['InternalServerError', 500];
      return awsError(name, 'We encountered an internal error. Please try again.', status);
    }
    if (this.chance('network', { service, command })) return networkError('ECONNRESET');
    return undefined;
  }

  /** How long the invocation freezes before this call, if it does (ms). */
  public stallBefore(service: string, command: string): number {
    if (service !== 'dynamodb' || !this.chance('stall', { service, command })) return 0;
    return 130_000 + Math.floor(this.random() * 120_000);
  }

  /** What goes wrong after a mutating call acted, if anything. */
  public afterCall(service: string, command: string, creates: boolean): AfterCallFault {
    if (creates && this.chance('kill-after-create', { service, command })) return 'kill-after-create';
    if (this.chance('lost-response', { service, command })) return 'lost-response';
    if (this.chance('hung-response', { service, command })) return 'hung-response';
    return undefined;
  }

  /** How a new copy's lifecycle goes. */
  public lifecycle(service: string, command: string): LifecyclePlan {
    const fails = this.chance('failed-lifecycle', { service, command });
    const slow = !fails && this.chance('slow-lifecycle', { service, command });
    const { minMs, maxMs, slowMs } = this.durations;
    const durationMs = slow ? slowMs : Math.floor(minMs + this.random() * (maxMs - minMs));
    return { durationMs, fails };
  }

  private count(kind: FaultKind): true {
    this.injected[kind] = (this.injected[kind] ?? 0) + 1;
    return true;
  }
}
