import { AsyncLocalStorage } from 'node:async_hooks';
import { LambdaKilled } from './sim-clock';
import { SimWorld } from './sim-world';

/** The Provider framework's physical id after a failed Create (its following Delete is skipped). */
export const CREATE_FAILED_MARKER = 'AWSCDK::CustomResourceProviderFramework::CREATE_FAILED';
export const MISSING_PHYSICAL_ID_MARKER = 'AWSCDK::CustomResourceProviderFramework::MISSING_PHYSICAL_ID';

/** The user functions a Provider runs: `onEvent` and, optionally, `isComplete`. */
export interface ProviderHandler {
  onEvent(event: any, context?: SimLambdaContext): Promise<any>;
  isComplete?(event: any, context?: SimLambdaContext): Promise<any>;
}

/** What the driver passes as the Lambda context: the invocation's id and the time it has left. */
export interface SimLambdaContext {
  readonly awsRequestId: string;
  getRemainingTimeInMillis(): number;
}

/** One invocation of a user function, and how it ended. */
export interface InvocationRecord {
  /** The Lambda context's awsRequestId. */
  readonly id: string;
  readonly fn: 'onEvent' | 'isComplete';
  /** `StackId/LogicalResourceId/RequestId`. */
  readonly requestKey: string;
  /** `ok`, `failed` (it threw: the reason follows) or `killed`. */
  outcome?: 'ok' | 'failed' | 'killed';
  reason?: string;
}

export interface CfnDriverOptions {
  readonly stackName?: string;
  readonly resourceType?: string;
  /** The Provider's `queryInterval` (ms). @default 10 s, as this library's provider */
  readonly queryIntervalMs?: number;
  /** The Provider's `totalTimeout` (ms). @default 1 hour */
  readonly totalTimeoutMs?: number;
  /** The user functions' Lambda timeouts (ms). @default 5 min and 2 min, as this library's provider */
  readonly onEventTimeoutMs?: number;
  readonly isCompleteTimeoutMs?: number;
  /** Called before each request is sent (a test can script faults for that request). */
  readonly beforeRequest?: (event: any, flags: { readonly rollback?: boolean; readonly cleanup?: boolean }) => void;
  /**
   * Opt-in: a `duplicate-delivery` runs at the same time as the first delivery instead of after it
   * (both user handlers in flight, their SDK calls interleaved, one shared simulated clock, a
   * Lambda deadline each). `true` interleaves every duplicate delivery.
   * @default false: a duplicate delivery starts once the first one was answered
   */
  readonly concurrentDuplicates?: boolean | ConcurrentDuplicates;
  /**
   * Resources of the stack's own that the handlers use (a claim table, say): made when the stack
   * is created, deleted once its deletion, or the rollback of its creation, completes (after
   * every custom resource).
   */
  readonly stackResources?: { created(stackId: string): void; deleted(stackId: string): void };
  /**
   * The share of requests that failed in an update operation which the next operation sends again
   * with the same RequestId, when it asks for the same properties (a retried deployment: aws-cdk
   * issue 35957). @default 0
   */
  readonly retryFailedRequestId?: number;
  /** Each invocation's clock is off by up to this much (ms, either way): clock skew between Lambdas. @default 0 */
  readonly clockSkewMs?: number;
  /** Whether the user functions get a Lambda context (its awsRequestId and the time left). @default true */
  readonly lambdaContext?: boolean;
}

/** An SDK call one of two concurrent deliveries of a request is about to send. */
export interface DeliveryCall {
  /** 0: the first delivery; 1: the duplicate. */
  readonly delivery: 0 | 1;
  readonly service: string;
  /** The SDK command name, e.g. `CreateSnapshotCommand`. */
  readonly command: string;
  readonly input: unknown;
  /** The commands this delivery sent before this one, in order (onEvent and isComplete, retries included). */
  readonly before: readonly string[];
}

/** How concurrent duplicate deliveries interleave. */
export interface ConcurrentDuplicates {
  /** The share of duplicate deliveries that run concurrently; the others run after the first. @default 1 */
  readonly share?: number;
  /**
   * The duplicate starts when the first delivery is about to send a call this accepts; the first
   * is held there (the call not sent) until `resumeWhen` lets it go on. If it accepts none, the
   * duplicate starts once the first was answered.
   * @default both start at once
   */
  readonly startWhen?: (call: DeliveryCall) => boolean;
  /**
   * The held first delivery goes on once the duplicate had the answer to a call this accepts (or
   * sleeps, or has answered).
   * @default after the duplicate's first call
   */
  readonly resumeWhen?: (call: DeliveryCall) => boolean;
}

export type Status = 'SUCCESS' | 'FAILED';

/** One request CloudFormation sent to the custom resource, and what it was answered. */
export interface RequestRecord {
  readonly stackId: string;
  readonly logicalId: string;
  readonly requestId: string;
  readonly requestType: 'Create' | 'Update' | 'Delete';
  /** A rollback Update, or a Delete of a resource created by the failed operation. */
  readonly rollback: boolean;
  /** A Delete of a replaced physical id after an update (or rollback) succeeded. */
  readonly cleanup: boolean;
  /** A second delivery of the same RequestId. */
  readonly duplicate: boolean;
  readonly physicalIdIn?: string;
  readonly properties: any;
  readonly oldProperties?: any;
  status: Status;
  physicalIdOut: string;
  data?: Record<string, unknown>;
  reason?: string;
  /** Whether CloudFormation acted on this answer (false for an ignored duplicate). */
  counted: boolean;
  /** When this delivery started (simulated epoch ms). */
  startedAt?: number;
  /** When this delivery answered (simulated epoch ms): its last call came before. */
  endedAt?: number;
  /** The user function invocations of this delivery (awsRequestIds), in order. */
  readonly invocations: string[];
}

export interface ResourceRecord {
  physicalId: string;
  properties: any;
}

export interface StackOperationResult {
  readonly stackId: string;
  readonly operation: 'create' | 'update' | 'delete';
  readonly status: string;
  /** Each resource's physical id and properties once the operation ended. */
  readonly resources: Map<string, ResourceRecord>;
}

export interface DeployOptions {
  /**
   * Another resource of the same stack operation fails at this position in the order of the
   * custom resources (0 = before the first one): the stack rolls back.
   */
  readonly otherResourceFailsAt?: number;
}

type Invocation = { ok: true; value: any } | { ok: false; reason: string; killed?: string };

let stackCounter = 0;

/**
 * Plays CloudFormation and aws-cdk-lib's Provider framework (custom-resources/lib/provider-framework/
 * runtime) around one or more custom resources of one stack that share a Provider.
 */
export class CfnStack {
  public readonly requests: RequestRecord[] = [];
  public readonly operations: StackOperationResult[] = [];
  public stackId: string | undefined;
  public status = 'NONE';
  public resources = new Map<string, ResourceRecord>();
  /** Duplicate deliveries run concurrently (`concurrentDuplicates`), and those during which both were in flight at once. */
  public readonly concurrency = { pairs: 0, overlapped: 0 };
  /** Requests sent again with the RequestId of a request that failed in an earlier operation. */
  public retriedRequestIds = 0;
  /** Every invocation of a user function, by its awsRequestId. */
  public readonly invocations = new Map<string, InvocationRecord>();
  private invocationCounter = 0;
  private readonly opts: Required<CfnDriverOptions>;
  private requestCounter = 0;
  private interleaving: Interleaving | undefined;
  /** The requests that failed in the last update operation, by logical id: what a retried deployment may send again. */
  private failedLastTime = new Map<string, { requestId: string; properties: string }>();

  constructor(
    private readonly world: SimWorld,
    private readonly handler: ProviderHandler,
    options: CfnDriverOptions = {},
  ) {
    this.opts = {
      stackName: 'app',
      resourceType: 'Custom::Sim',
      queryIntervalMs: 10_000,
      totalTimeoutMs: 3_600_000,
      onEventTimeoutMs: 5 * 60_000,
      isCompleteTimeoutMs: 2 * 60_000,
      beforeRequest: () => undefined,
      concurrentDuplicates: false,
      stackResources: { created: () => undefined, deleted: () => undefined },
      retryFailedRequestId: 0,
      clockSkewMs: 0,
      lambdaContext: true,
      ...options,
    };
  }

  /** Deploys the template: these custom resources with these properties. */
  public async deploy(desired: Record<string, any>, options: DeployOptions = {}): Promise<StackOperationResult> {
    if (['ROLLBACK_COMPLETE', 'ROLLBACK_FAILED', 'DELETE_FAILED'].includes(this.status)) {
      // A stack whose creation rolled back, or whose deletion failed, can only be deleted (again),
      // then created again.
      const retried = await this.deleteStack();
      if (retried.status !== 'DELETE_COMPLETE') return retried;
    }
    const creating = !this.stackId;
    if (creating) {
      this.stackId = `arn:aws:cloudformation:us-east-1:111111111111:stack/${this.opts.stackName}/${(++stackCounter).toString(16).padStart(8, '0')}-0000-4000-8000-000000000000`;
      this.resources = new Map();
    }
    this.setStatus(creating ? 'CREATE_IN_PROGRESS' : 'UPDATE_IN_PROGRESS');
    if (creating) this.opts.stackResources.created(this.stackId!);
    const failedLastTime = this.failedLastTime;
    this.failedLastTime = new Map();
    // The requests of this operation that fail: a retry of it (the next operation) may re-send them.
    const failedNow = new Map<string, { requestId: string; properties: string }>();
    /** The RequestId of a request that failed last time, if this one asks the same and the deployment is retried that way. */
    const retriedId = (logicalId: string, props: unknown) => {
      const failed = failedLastTime.get(logicalId);
      if (this.opts.retryFailedRequestId <= 0 || !failed || failed.properties !== JSON.stringify(props)) return {};
      if (!(this.world.faults.next() < this.opts.retryFailedRequestId)) return {};
      this.retriedRequestIds++;
      return { RequestId: failed.requestId };
    };
    const noteFailure = (rec: RequestRecord) => {
      if (!creating && rec.status === 'FAILED') failedNow.set(rec.logicalId, { requestId: rec.requestId, properties: JSON.stringify(rec.properties) });
    };
    const before = new Map([...this.resources].map(([k, v]) => [k, { ...v }]));
    const order = Object.keys(desired);
    const attempted: Array<{ logicalId: string; kind: 'Create' | 'Update'; ok: boolean; physicalId: string }> = [];
    let failed = false;
    for (let i = 0; i <= order.length && !failed; i++) {
      if (options.otherResourceFailsAt === i) {
        failed = true;
        break;
      }
      if (i === order.length) break;
      const logicalId = order[i];
      const props = { ServiceToken: 'arn:aws:lambda:us-east-1:111111111111:function:framework-onEvent', ...desired[logicalId] };
      const current = this.resources.get(logicalId);
      if (!current) {
        const rec = await this.request({ RequestType: 'Create', LogicalResourceId: logicalId, ResourceProperties: props, ...retriedId(logicalId, props) });
        noteFailure(rec);
        attempted.push({ logicalId, kind: 'Create', ok: rec.status === 'SUCCESS', physicalId: rec.physicalIdOut });
        this.resources.set(logicalId, { physicalId: rec.physicalIdOut, properties: props });
        failed = rec.status === 'FAILED';
      } else if (JSON.stringify(current.properties) !== JSON.stringify(props)) {
        const rec = await this.request({
          RequestType: 'Update',
          LogicalResourceId: logicalId,
          PhysicalResourceId: current.physicalId,
          ResourceProperties: props,
          OldResourceProperties: current.properties,
          ...retriedId(logicalId, props),
        });
        noteFailure(rec);
        // Assumption: CloudFormation keeps the old physical id when an Update fails.
        const ok = rec.status === 'SUCCESS';
        attempted.push({ logicalId, kind: 'Update', ok, physicalId: ok ? rec.physicalIdOut : current.physicalId });
        if (ok) this.resources.set(logicalId, { physicalId: rec.physicalIdOut, properties: props });
        failed = !ok;
      }
    }

    if (!failed) {
      if (!creating) {
        this.setStatus('UPDATE_COMPLETE_CLEANUP_IN_PROGRESS');
        for (const a of attempted) {
          const old = before.get(a.logicalId);
          if (a.kind === 'Update' && old && old.physicalId !== a.physicalId) {
            // A failed cleanup Delete does not fail the stack update.
            await this.request({ RequestType: 'Delete', LogicalResourceId: a.logicalId, PhysicalResourceId: old.physicalId, ResourceProperties: old.properties }, { cleanup: true });
          }
        }
      }
      return this.finish(creating ? 'create' : 'update', creating ? 'CREATE_COMPLETE' : 'UPDATE_COMPLETE');
    }

    if (creating) {
      this.setStatus('ROLLBACK_IN_PROGRESS');
      let ok = true;
      for (const a of [...attempted].reverse()) {
        const r = this.resources.get(a.logicalId)!;
        const rec = await this.request({ RequestType: 'Delete', LogicalResourceId: a.logicalId, PhysicalResourceId: r.physicalId, ResourceProperties: r.properties }, { rollback: true });
        ok &&= rec.status === 'SUCCESS';
      }
      this.resources = new Map();
      return this.finish('create', ok ? 'ROLLBACK_COMPLETE' : 'ROLLBACK_FAILED');
    }

    this.failedLastTime = failedNow;
    this.setStatus('UPDATE_ROLLBACK_IN_PROGRESS');
    const replaced: Array<{ logicalId: string; physicalId: string; properties: any }> = [];
    for (const a of [...attempted].reverse()) {
      const r = this.resources.get(a.logicalId)!;
      const old = before.get(a.logicalId);
      if (a.kind === 'Create' || !old) {
        const rec = await this.request({ RequestType: 'Delete', LogicalResourceId: a.logicalId, PhysicalResourceId: a.physicalId, ResourceProperties: r.properties }, { rollback: true });
        if (rec.status === 'FAILED') return this.finish('update', 'UPDATE_ROLLBACK_FAILED');
        this.resources.delete(a.logicalId);
        continue;
      }
      // The failed update's properties: those it was updated to (if it succeeded) or tried.
      const tried = { ServiceToken: old.properties.ServiceToken, ...desired[a.logicalId] };
      const rec = await this.request(
        { RequestType: 'Update', LogicalResourceId: a.logicalId, PhysicalResourceId: a.physicalId, ResourceProperties: old.properties, OldResourceProperties: tried },
        { rollback: true },
      );
      if (rec.status === 'FAILED') return this.finish('update', 'UPDATE_ROLLBACK_FAILED');
      if (rec.physicalIdOut !== a.physicalId) replaced.push({ logicalId: a.logicalId, physicalId: a.physicalId, properties: tried });
      this.resources.set(a.logicalId, { physicalId: rec.physicalIdOut, properties: old.properties });
    }
    this.setStatus('UPDATE_ROLLBACK_COMPLETE_CLEANUP_IN_PROGRESS');
    for (const r of replaced) {
      await this.request({ RequestType: 'Delete', LogicalResourceId: r.logicalId, PhysicalResourceId: r.physicalId, ResourceProperties: r.properties }, { cleanup: true, rollback: true });
    }
    return this.finish('update', 'UPDATE_ROLLBACK_COMPLETE');
  }

  /** Deletes the stack: a Delete for each resource, last created first. */
  public async deleteStack(): Promise<StackOperationResult> {
    if (!this.stackId) throw new Error('no stack to delete');
    this.setStatus('DELETE_IN_PROGRESS');
    let ok = true;
    for (const [logicalId, r] of [...this.resources].reverse()) {
      const rec = await this.request({ RequestType: 'Delete', LogicalResourceId: logicalId, PhysicalResourceId: r.physicalId, ResourceProperties: r.properties });
      if (rec.status === 'SUCCESS') this.resources.delete(logicalId);
      else ok = false;
    }
    const result = this.finish('delete', ok ? 'DELETE_COMPLETE' : 'DELETE_FAILED');
    if (ok) {
      this.stackId = undefined;
      this.status = 'NONE';
    }
    return result;
  }

  /** Sends one request, as CloudFormation does, through the Provider framework. */
  private async request(partial: any, flags: { rollback?: boolean; cleanup?: boolean } = {}): Promise<RequestRecord> {
    const rec = await this.deliver(partial, flags);
    this.acted(rec, flags);
    return rec;
  }

  /** Delivers one request, once or more (duplicates); returns the answer CloudFormation acts on. */
  private async deliver(partial: any, flags: { rollback?: boolean; cleanup?: boolean }): Promise<RequestRecord> {
    const type = String(partial.RequestType).toUpperCase();
    this.world.cloudformation.setResourceStatus(this.stackId!, partial.LogicalResourceId, `${type}_IN_PROGRESS`);
    const event = {
      RequestId: `${(++this.requestCounter).toString(16).padStart(8, '0')}-req-${this.opts.stackName}`,
      ...partial,
      StackId: this.stackId!,
      ResourceType: this.opts.resourceType,
      ResponseURL: 'https://cloudformation-custom-resource-response-useast1.s3.amazonaws.com/sim',
      ServiceToken: partial.ResourceProperties.ServiceToken,
    };
    this.opts.beforeRequest(event, flags);
    const concurrent = this.opts.concurrentDuplicates;
    if (concurrent) {
      // Decided before the first delivery, which the duplicate may overlap.
      if (!this.world.faults.chance('duplicate-delivery')) return this.frameworkRequest(event, flags, false);
      const options = typeof concurrent === 'object' ? concurrent : {};
      const share = options.share ?? 1;
      if (share >= 1 || this.world.faults.next() < share) return this.concurrentDeliveries(event, flags, options);
      return this.duplicateAfter(event, flags, await this.frameworkRequest(event, flags, false));
    }
    const first = await this.frameworkRequest(event, flags, false);
    if (this.world.faults.chance('duplicate-delivery')) return this.duplicateAfter(event, flags, first);
    return first;
  }

  /**
   * The same RequestId again (a deployment retry, or the framework's async retry). When the first
   * answer was lost, the second is the one CloudFormation acts on.
   */
  private async duplicateAfter(event: any, flags: { rollback?: boolean; cleanup?: boolean }, first: RequestRecord): Promise<RequestRecord> {
    const firstLost = this.world.faults.next() < 0.5;
    if (!firstLost) this.acted(first, flags);
    const second = await this.frameworkRequest(event, flags, true);
    if (firstLost) {
      first.counted = false;
      second.counted = true;
      return second;
    }
    return first;
  }

  /**
   * Two deliveries of one request in flight at once. CloudFormation acts on the answer that comes
   * first, unless it was lost: then on the other.
   */
  private async concurrentDeliveries(
    event: any, flags: { rollback?: boolean; cleanup?: boolean }, options: ConcurrentDuplicates,
  ): Promise<RequestRecord> {
    const firstLost = this.world.faults.next() < 0.5;
    const interleaving = new Interleaving(this.world, options);
    this.interleaving = interleaving;
    let out: { records: [RequestRecord, RequestRecord]; finished: Array<0 | 1> };
    let answered = 0;
    // CloudFormation acts on the answer it takes as soon as it comes, while the other delivery may still run.
    const onFinish = (rec: RequestRecord) => {
      if (answered++ === (firstLost ? 1 : 0)) this.acted(rec, flags);
    };
    try {
      out = await interleaving.run(() => this.frameworkRequest(event, flags, false), () => this.frameworkRequest(event, flags, true), onFinish);
    } finally {
      this.interleaving = undefined;
      this.world.core.context = undefined;
    }
    this.concurrency.pairs++;
    if (interleaving.overlapped) this.concurrency.overlapped++;
    const kept = out.records[out.finished[firstLost ? 1 : 0]];
    for (const r of out.records) r.counted = r === kept;
    return kept;
  }

  /**
   * CloudFormation acted on this answer: the resource is complete or failed, and a failed Create or
   * Update (not in a rollback) starts the rollback at once, even while another delivery of the
   * request still runs.
   */
  private acted(rec: RequestRecord, flags: { rollback?: boolean; cleanup?: boolean }): void {
    const type = rec.requestType.toUpperCase();
    this.world.cloudformation.setResourceStatus(rec.stackId, rec.logicalId, `${type}_${rec.status === 'SUCCESS' ? 'COMPLETE' : 'FAILED'}`);
    if (rec.status !== 'FAILED' || rec.requestType === 'Delete' || flags.rollback || flags.cleanup) return;
    if (this.status === 'CREATE_IN_PROGRESS') this.setStatus('ROLLBACK_IN_PROGRESS');
    if (this.status === 'UPDATE_IN_PROGRESS') this.setStatus('UPDATE_ROLLBACK_IN_PROGRESS');
  }

  /** Simulated time passing in the framework (between polls, before a retry). */
  private async pause(ms: number): Promise<void> {
    const task = this.interleaving?.task();
    if (task) await this.interleaving!.sleep(task, ms);
    else this.world.clock.advance(ms);
  }

  /** The framework's onEvent, then its waiter state machine polling isComplete. */
  private async frameworkRequest(event: any, flags: { rollback?: boolean; cleanup?: boolean }, duplicate: boolean): Promise<RequestRecord> {
    const rec: RequestRecord = {
      stackId: event.StackId,
      logicalId: event.LogicalResourceId,
      requestId: event.RequestId,
      requestType: event.RequestType,
      rollback: (flags.rollback ?? false) && !flags.cleanup,
      cleanup: flags.cleanup ?? false,
      duplicate,
      physicalIdIn: event.PhysicalResourceId,
      properties: event.ResourceProperties,
      oldProperties: event.OldResourceProperties,
      status: 'FAILED',
      physicalIdOut: '',
      counted: !duplicate,
      startedAt: this.world.clock.now(),
      invocations: [],
    };
    this.requests.push(rec);
    const fail = (ev: any, reason: string) => {
      rec.endedAt = this.world.clock.now();
      rec.status = 'FAILED';
      rec.reason = reason;
      rec.physicalIdOut = ev.PhysicalResourceId || (ev.RequestType === 'Create' ? CREATE_FAILED_MARKER : MISSING_PHYSICAL_ID_MARKER);
      return rec;
    };
    if (event.RequestType === 'Delete' && event.PhysicalResourceId === CREATE_FAILED_MARKER) {
      rec.endedAt = this.world.clock.now();
      rec.status = 'SUCCESS';
      rec.physicalIdOut = CREATE_FAILED_MARKER;
      return rec;
    }

    let result: Invocation;
    for (let attempt = 1; ; attempt++) {
      result = await this.invoke('onEvent', event, this.opts.onEventTimeoutMs, flags, rec);
      // The framework Lambda dies with the user function: Lambda's async retries (2) run it all again.
      if (!result.ok && result.killed && attempt <= 2 && this.world.faults.chance('framework-retry')) {
        await this.pause(60_000 * attempt);
        continue;
      }
      break;
    }
    if (!result.ok) return fail(event, result.reason);
    const out = result.value ?? {};
    const physicalId = out.PhysicalResourceId || (event.RequestType === 'Create' ? event.RequestId : event.PhysicalResourceId);
    if (event.RequestType === 'Delete' && physicalId !== event.PhysicalResourceId) {
      return fail(event, `DELETE: cannot change the physical resource ID from "${event.PhysicalResourceId}" to "${out.PhysicalResourceId}" during deletion`);
    }
    const resourceEvent = { ...event, ...out, PhysicalResourceId: physicalId };
    if (!this.handler.isComplete) {
      rec.endedAt = this.world.clock.now();
      rec.status = 'SUCCESS';
      rec.physicalIdOut = physicalId;
      rec.data = out.Data;
      return rec;
    }

    // The waiter: isComplete right away, then every queryInterval, at most totalTimeout / interval times.
    const maxAttempts = Math.floor(this.opts.totalTimeoutMs / this.opts.queryIntervalMs);
    for (let attempt = 0; ; attempt++) {
      const poll = await this.invoke('isComplete', resourceEvent, this.opts.isCompleteTimeoutMs, flags, rec);
      if (!poll.ok) return fail(resourceEvent, poll.reason);
      const answer = poll.value ?? {};
      if (answer.IsComplete) {
        rec.endedAt = this.world.clock.now();
        rec.status = 'SUCCESS';
        rec.physicalIdOut = answer.PhysicalResourceId ?? physicalId;
        rec.data = { ...resourceEvent.Data, ...answer.Data };
        return rec;
      }
      if (answer.Data && Object.keys(answer.Data).length > 0) return fail(resourceEvent, '"Data" is not allowed if "IsComplete" is "False"');
      if (attempt >= maxAttempts) return fail(resourceEvent, 'Operation timed out');
      await this.pause(this.opts.queryIntervalMs);
    }
  }

  /** One synchronous invocation of a user function, bounded by its Lambda timeout. */
  private async invoke(fn: 'onEvent' | 'isComplete', event: any, timeoutMs: number, flags: { rollback?: boolean }, rec: RequestRecord): Promise<Invocation> {
    const handler = fn === 'onEvent' ? this.handler.onEvent : this.handler.isComplete!;
    const { world } = this;
    world.core.context = {
      kind: 'cfn',
      stackId: event.StackId,
      owner: event.LogicalResourceId,
      requestKey: `${event.StackId}/${event.LogicalResourceId}/${event.RequestId}`,
      requestType: event.RequestType,
      rollback: flags.rollback ?? false,
    };
    // Concurrent deliveries: a deadline per delivery (the clock's own tracks one invocation).
    const task = this.interleaving?.task();
    const skew = this.opts.clockSkewMs > 0 ? Math.round((this.world.faults.next() * 2 - 1) * this.opts.clockSkewMs) : 0;
    if (task) startDelivery(task, world.clock.now() + timeoutMs, skew);
    else world.clock.startInvocation(timeoutMs, skew);
    const record: InvocationRecord = { id: `inv-${++this.invocationCounter}`, fn, requestKey: world.core.context.requestKey };
    this.invocations.set(record.id, record);
    rec.invocations.push(record.id);
    const deadline = world.clock.now() + timeoutMs;
    const context: SimLambdaContext = { awsRequestId: record.id, getRemainingTimeInMillis: () => Math.max(0, deadline - world.clock.now()) };
    let out: Invocation;
    try {
      // Lambda passes JSON both ways.
      const value = await handler(JSON.parse(JSON.stringify({ ...event, ResponseURL: '...' })), this.opts.lambdaContext ? context : undefined);
      out = { ok: true, value: value === undefined ? undefined : JSON.parse(JSON.stringify(value)) };
    } catch (err) {
      out = { ok: false, reason: (err as Error)?.message ?? String(err) };
    }
    const killed = task ? endDelivery(task, world.clock.now()) : world.clock.endInvocation();
    record.outcome = killed ? 'killed' : out.ok ? 'ok' : 'failed';
    record.reason = killed ?? (out.ok ? undefined : out.reason);
    // (Both concurrent deliveries have the same context: it is cleared once both ended.)
    if (!task) world.core.context = undefined;
    return killed ? { ok: false, reason: `Task timed out or was killed: ${killed}`, killed } : out;
  }

  private setStatus(status: string): void {
    this.status = status;
    this.world.cloudformation.setStatus(this.stackId!, this.opts.stackName, status);
  }

  private finish(operation: StackOperationResult['operation'], status: string): StackOperationResult {
    this.setStatus(status);
    if (status === 'DELETE_COMPLETE' || status === 'ROLLBACK_COMPLETE') this.opts.stackResources.deleted(this.stackId!);
    const result: StackOperationResult = {
      stackId: this.stackId!,
      operation,
      status,
      resources: new Map([...this.resources].map(([k, v]) => [k, { ...v }])),
    };
    this.operations.push(result);
    return result;
  }
}

const DELIVERY_STORAGE = new AsyncLocalStorage<DeliveryTask>();

/** One of two concurrent deliveries: its Lambda deadline, why it was killed, and the commands it sent. */
interface DeliveryTask {
  readonly index: 0 | 1;
  deadline?: number;
  /** How far this invocation's clock is off (ms). */
  skew?: number;
  killedBy?: string;
  readonly sent: string[];
}

/** A delivery's invocation starts: its own Lambda deadline. */
function startDelivery(task: DeliveryTask, deadline: number, skew: number): void {
  task.deadline = deadline;
  task.skew = skew;
  task.killedBy = undefined;
}

function endDelivery(task: DeliveryTask, now: number): string | undefined {
  const killed = task.killedBy ?? (task.deadline !== undefined && now > task.deadline ? 'the function timed out' : undefined);
  task.deadline = undefined;
  task.killedBy = undefined;
  return killed;
}

interface Sleeper {
  readonly at: number;
  readonly seq: number;
  readonly wake: () => void;
}

/**
 * Runs two deliveries of one request at once, for `concurrentDuplicates`. The simulated clock is
 * shared, but the clock and the fakes track one running invocation: while the pair runs, the
 * clock's `checkAlive`, `kill` and `sleep` and the core's `handle` are overridden on those
 * instances to act for the delivery calling them (found through an AsyncLocalStorage). A sleep no
 * longer moves the clock by itself: time advances to the earliest wake-up once every delivery in
 * flight sleeps (a discrete-event scheduler), so the two deliveries' sleeps overlap as in real time.
 */
class Interleaving {
  /** Whether the duplicate started while the first delivery was in flight. */
  public overlapped = false;
  /** One for all pairs: every AsyncLocalStorage left enabled slows every promise of the process. */
  private readonly storage = DELIVERY_STORAGE;
  private sleepers: Sleeper[] = [];
  private live = 0;
  private seq = 0;
  private held: (() => void) | undefined;
  private second: Promise<RequestRecord> | undefined;
  /** Starts the duplicate (once); set by run(). */
  private startSecond!: () => Promise<RequestRecord>;

  constructor(
    private readonly world: SimWorld,
    private readonly options: ConcurrentDuplicates,
  ) {}

  public task(): DeliveryTask | undefined {
    return this.storage.getStore();
  }

  public async run(
    first: () => Promise<RequestRecord>, second: () => Promise<RequestRecord>, onFinish: (rec: RequestRecord) => void = () => undefined,
  ): Promise<{ records: [RequestRecord, RequestRecord]; finished: Array<0 | 1> }> {
    const finished: Array<0 | 1> = [];
    const tasks: [DeliveryTask, DeliveryTask] = [{ index: 0, sent: [] }, { index: 1, sent: [] }];
    const track = async (task: DeliveryTask, fn: () => Promise<RequestRecord>) => {
      try {
        const rec = await fn();
        onFinish(rec);
        return rec;
      } finally {
        finished.push(task.index);
        this.live--;
        if (task.index === 1) this.resume();
        this.schedule();
      }
    };
    this.startSecond = () => {
      if (!this.second) {
        this.overlapped = finished.length === 0;
        // (Counted in flight before it runs: a sleep of the first must not move the clock alone.)
        if (this.options.startWhen) this.live++;
        this.second = this.storage.run(tasks[1], () => track(tasks[1], second));
      }
      return this.second;
    };
    const restore = this.install();
    try {
      this.live = this.options.startWhen ? 1 : 2;
      const a = this.storage.run(tasks[0], () => track(tasks[0], first));
      if (!this.options.startWhen) void this.startSecond();
      // Both settle before either is looked at (one may fail while the other still runs).
      const [ra] = await Promise.allSettled([a]);
      const [rb] = await Promise.allSettled([this.startSecond()]);
      if (ra.status === 'rejected') throw ra.reason;
      if (rb.status === 'rejected') throw rb.reason;
      return { records: [ra.value, rb.value], finished };
    } finally {
      restore();
    }
  }

  /** Sleeps `ms` of simulated time; past the delivery's Lambda deadline, it is killed at the deadline. */
  public sleep(task: DeliveryTask, ms: number): Promise<void> {
    this.checkAlive(task);
    const wanted = this.world.clock.now() + Math.max(0, ms);
    const dies = task.deadline !== undefined && wanted > task.deadline;
    const at = dies ? task.deadline! : wanted;
    return new Promise<void>((resolve, reject) => {
      this.sleepers.push({
        at,
        seq: ++this.seq,
        wake: () => {
          if (!dies) return resolve();
          task.killedBy ??= 'the function timed out while sleeping';
          reject(new LambdaKilled(task.killedBy));
        },
      });
      if (task.index === 1) this.resume();
      this.schedule();
    });
  }

  /** Once every delivery in flight sleeps, the clock moves to the earliest wake-up. */
  private schedule(): void {
    if (this.sleepers.length === 0 || this.sleepers.length < this.live) return;
    this.sleepers.sort((x, y) => x.at - y.at || x.seq - y.seq);
    const next = this.sleepers.shift()!;
    const now = this.world.clock.now();
    if (next.at > now) this.world.clock.advance(next.at - now);
    next.wake();
  }

  private resume(): void {
    const held = this.held;
    this.held = undefined;
    held?.();
  }

  private checkAlive(task: DeliveryTask): void {
    if (task.killedBy !== undefined) throw new LambdaKilled(task.killedBy);
    if (task.deadline !== undefined && this.world.clock.now() > task.deadline) {
      task.killedBy = 'the function timed out';
      throw new LambdaKilled(task.killedBy);
    }
  }

  /** Puts the per-delivery overrides on the clock and the core; returns what takes them off. */
  private install(): () => void {
    const { clock, core } = this.world;
    const storage = this.storage;
    const c = clock as any;
    const proto = Object.getPrototypeOf(clock);
    c.checkAlive = () => {
      const task = storage.getStore();
      return task ? this.checkAlive(task) : proto.checkAlive.call(clock);
    };
    c.kill = (reason: string) => {
      const task = storage.getStore();
      if (!task) return proto.kill.call(clock, reason);
      task.killedBy ??= reason;
      throw new LambdaKilled(task.killedBy);
    };
    c.sleep = (ms: number) => {
      const task = storage.getStore();
      return task ? this.sleep(task, ms) : proto.sleep.call(clock, ms);
    };
    c.handlerNow = () => {
      const task = storage.getStore();
      return task ? clock.now() + (task.skew ?? 0) : proto.handlerNow.call(clock);
    };
    Object.defineProperty(clock, 'killed', {
      configurable: true,
      get: () => {
        const task = storage.getStore();
        return task ? task.killedBy !== undefined : Object.getOwnPropertyDescriptor(proto, 'killed')!.get!.call(clock);
      },
    });
    const handle = core.handle;
    (core as any).handle = async (service: string, command: string, input: unknown, options: any, act: any) => {
      const task = storage.getStore();
      if (!task) return handle.call(core, service, command, input, options, act);
      const call: DeliveryCall = { delivery: task.index, service, command, input, before: [...task.sent] };
      task.sent.push(command);
      if (task.index === 0 && !this.second && this.options.startWhen?.(call)) {
        // Held before the call is sent, until the duplicate lets it go on.
        await new Promise<void>((resolve) => {
          this.held = resolve;
          void this.startSecond();
        });
      }
      try {
        return await handle.call(core, service, command, input, options, act);
      } finally {
        if (task.index === 1 && this.held && (this.options.resumeWhen?.(call) ?? true)) this.resume();
      }
    };
    return () => {
      for (const k of ['checkAlive', 'kill', 'sleep', 'killed', 'handlerNow']) delete c[k];
      delete (core as any).handle;
    };
  }
}
