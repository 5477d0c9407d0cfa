import { SimWorld } from './sim-world';

/** The Provider framework's physical id after a failed Create (its following Delete is skipped). */
export const CREATE_FAILED_MARKER = 'AWSCDK::CustomResourceProviderFramework::CREATE_FAILED';
export const MISSING_PHYSICAL_ID_MARKER = 'AWSCDK::CustomResourceProviderFramework::MISSING_PHYSICAL_ID';

/** The user functions a Provider runs: `onEvent` and, optionally, `isComplete`. */
export interface ProviderHandler {
  onEvent(event: any): Promise<any>;
  isComplete?(event: any): Promise<any>;
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
  private readonly opts: Required<CfnDriverOptions>;
  private requestCounter = 0;

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
        const rec = await this.request({ RequestType: 'Create', LogicalResourceId: logicalId, ResourceProperties: props });
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
        });
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
    const event = {
      ...partial,
      RequestId: `${(++this.requestCounter).toString(16).padStart(8, '0')}-req-${this.opts.stackName}`,
      StackId: this.stackId!,
      ResourceType: this.opts.resourceType,
      ResponseURL: 'https://cloudformation-custom-resource-response-useast1.s3.amazonaws.com/sim',
      ServiceToken: partial.ResourceProperties.ServiceToken,
    };
    this.opts.beforeRequest(event, flags);
    const first = await this.frameworkRequest(event, flags, false);
    if (this.world.faults.chance('duplicate-delivery')) {
      // The same RequestId again (a deployment retry, or the framework's async retry). When the first
      // answer was lost, the second is the one CloudFormation acts on.
      const firstLost = this.world.faults.next() < 0.5;
      const second = await this.frameworkRequest(event, flags, true);
      if (firstLost) {
        first.counted = false;
        second.counted = true;
        return second;
      }
    }
    return first;
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
    };
    this.requests.push(rec);
    const fail = (ev: any, reason: string) => {
      rec.status = 'FAILED';
      rec.reason = reason;
      rec.physicalIdOut = ev.PhysicalResourceId || (ev.RequestType === 'Create' ? CREATE_FAILED_MARKER : MISSING_PHYSICAL_ID_MARKER);
      return rec;
    };
    if (event.RequestType === 'Delete' && event.PhysicalResourceId === CREATE_FAILED_MARKER) {
      rec.status = 'SUCCESS';
      rec.physicalIdOut = CREATE_FAILED_MARKER;
      return rec;
    }

    let result: Invocation;
    for (let attempt = 1; ; attempt++) {
      result = await this.invoke('onEvent', event, this.opts.onEventTimeoutMs, flags);
      // The framework Lambda dies with the user function: Lambda's async retries (2) run it all again.
      if (!result.ok && result.killed && attempt <= 2 && this.world.faults.chance('framework-retry')) {
        this.world.clock.advance(60_000 * attempt);
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
      rec.status = 'SUCCESS';
      rec.physicalIdOut = physicalId;
      rec.data = out.Data;
      return rec;
    }

    // The waiter: isComplete right away, then every queryInterval, at most totalTimeout / interval times.
    const maxAttempts = Math.floor(this.opts.totalTimeoutMs / this.opts.queryIntervalMs);
    for (let attempt = 0; ; attempt++) {
      const poll = await this.invoke('isComplete', resourceEvent, this.opts.isCompleteTimeoutMs, flags);
      if (!poll.ok) return fail(resourceEvent, poll.reason);
      const answer = poll.value ?? {};
      if (answer.IsComplete) {
        rec.status = 'SUCCESS';
        rec.physicalIdOut = answer.PhysicalResourceId ?? physicalId;
        rec.data = { ...resourceEvent.Data, ...answer.Data };
        return rec;
      }
      if (answer.Data && Object.keys(answer.Data).length > 0) return fail(resourceEvent, '"Data" is not allowed if "IsComplete" is "False"');
      if (attempt >= maxAttempts) return fail(resourceEvent, 'Operation timed out');
      this.world.clock.advance(this.opts.queryIntervalMs);
    }
  }

  /** One synchronous invocation of a user function, bounded by its Lambda timeout. */
  private async invoke(fn: 'onEvent' | 'isComplete', event: any, timeoutMs: number, flags: { rollback?: boolean }): Promise<Invocation> {
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
    world.clock.startInvocation(timeoutMs);
    let out: Invocation;
    try {
      // Lambda passes JSON both ways.
      const value = await handler(JSON.parse(JSON.stringify({ ...event, ResponseURL: '...' })));
      out = { ok: true, value: value === undefined ? undefined : JSON.parse(JSON.stringify(value)) };
    } catch (err) {
      out = { ok: false, reason: (err as Error)?.message ?? String(err) };
    }
    const killed = world.clock.endInvocation();
    world.core.context = undefined;
    return killed ? { ok: false, reason: `Task timed out or was killed: ${killed}`, killed } : out;
  }

  private setStatus(status: string): void {
    this.status = status;
    this.world.cloudformation.setStatus(this.stackId!, this.opts.stackName, status);
  }

  private finish(operation: StackOperationResult['operation'], status: string): StackOperationResult {
    this.setStatus(status);
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
