import { CREATE_FAILED_MARKER, CfnStack, StackOperationResult } from './cfn-driver';
import { CopyView, SimTag } from './sim-core';
import { SimWorld } from './sim-world';
import { OWNERSHIP_TAG_KEYS, isOwnedBy } from '../../lambda/shared/ownership';

export interface Violation {
  readonly invariant: 'no-duplicates' | 'success-points-at-copy' | 'only-ours-touched' | 'rollback-safe' | 'no-orphans';
  readonly detail: string;
}

export interface InvariantOptions {
  /** The copy id a physical id names. @default the physical id itself */
  readonly copyIdOf?: (physicalId: string) => string | undefined;
  /** Whether a resource with these properties waits for its copy to be ready. @default always */
  readonly waitsForCopy?: (properties: any) => boolean;
  /** `retain` or `destroy` for a resource with these properties. @default its `RemovalPolicy` */
  readonly removalPolicyOf?: (properties: any) => 'retain' | 'destroy';
  /**
   * Copies with the same key are duplicates; `undefined` leaves a copy out (e.g. one the same
   * request deleted again, as EbsSnapshotOnDeploy's duplicate clean-up does).
   * @default the request that made it and the kind of copy (for scheduled ticks: the tick and target)
   */
  readonly duplicateKeyOf?: (copy: CopyView) => string | undefined;
}

const CREATES = new Set(['CreateSnapshotCommand', 'CreateSnapshotsCommand', 'CreateBackupCommand', 'StartSnapshotCommand']);
const DELETES = new Set(['DeleteSnapshotCommand', 'DeleteBackupCommand']);
const TAGS = new Set(['TagResourceCommand', 'CreateTagsCommand']);

/**
 * The promises the library makes, checked against what the simulated account and CloudFormation
 * saw. Check `afterOperation` right after each stack operation and `atEnd` once per run.
 */
export class Invariants {
  public readonly violations: Violation[] = [];
  private readonly opts: Required<InvariantOptions>;

  constructor(
    private readonly world: SimWorld,
    options: InvariantOptions = {},
  ) {
    this.opts = {
      copyIdOf: (id) => id,
      waitsForCopy: () => true,
      removalPolicyOf: (p) => (p?.RemovalPolicy === 'destroy' ? 'destroy' : 'retain'),
      duplicateKeyOf: (c) => (c.createdDuring!.kind === 'schedule' ? `${c.createdDuring!.requestKey}#${c.target}` : `${c.createdDuring!.requestKey}#${c.kind}`),
      ...options,
    };
  }

  /** Every resource of a stack that deployed (or rolled back) points at a copy of its own. */
  public afterOperation(result: StackOperationResult): void {
    const ok = result.status === 'CREATE_COMPLETE' || result.status === 'UPDATE_COMPLETE';
    const rolledBack = result.status === 'UPDATE_ROLLBACK_COMPLETE';
    // (A failed Delete while a stack *creation* rolls back gives ROLLBACK_FAILED; that stack can be
    // deleted again, so it is a failed delete, not a failed rollback Update.)
    if (result.status === 'UPDATE_ROLLBACK_FAILED') {
      this.add('rollback-safe', `stack ${result.stackId} ended ${result.status}`);
    }
    if (!ok && !rolledBack) return;
    for (const [logicalId, r] of result.resources) {
      const copyId = this.opts.copyIdOf(r.physicalId);
      if (!copyId) continue;
      const copy = this.world.copy(copyId);
      const where = `${result.status}: ${logicalId} -> ${r.physicalId}`;
      if (!copy || !copy.exists) {
        this.add('success-points-at-copy', `${where}, which ${copy ? `is ${copy.state}` : 'does not exist'}`);
        continue;
      }
      if (ok && this.opts.waitsForCopy(r.properties) && !copy.ready) {
        this.add('success-points-at-copy', `${where}, which is still ${copy.state}`);
      }
      if (copy.foreign || !isOwnedBy(copy.tags, { stackId: result.stackId, owner: logicalId })) {
        this.add('only-ours-touched', `${where} adopted a copy that is not tagged as ${logicalId}'s (${copy.foreign ? 'foreign, ' : ''}${tagText(copy.tags)})`);
      }
    }
  }

  /** Checks over the whole run. */
  public atEnd(stacks: CfnStack[] = []): Violation[] {
    this.checkNoDuplicates();
    this.checkOnlyOursTouched();
    for (const stack of stacks) this.checkRollbacks(stack);
    for (const stack of stacks) this.checkDeletes(stack);
    this.checkNoOrphans();
    return this.violations;
  }

  /** Throws a readable error listing every violation. */
  public assertNone(context = ''): void {
    if (this.violations.length === 0) return;
    const lines = this.violations.slice(0, 20).map((v) => `  [${v.invariant}] ${v.detail}`);
    throw new Error(`${this.violations.length} invariant violation(s)${context ? ` (${context})` : ''}:\n${lines.join('\n')}`);
  }

  /** At most one copy per request (or per scheduled tick and target). */
  private checkNoDuplicates(): void {
    const groups = new Map<string, CopyView[]>();
    for (const c of this.world.copies()) {
      if (c.foreign || c.serviceFailed || !c.createdDuring) continue;
      const key = this.opts.duplicateKeyOf(c);
      if (key === undefined) continue;
      groups.set(key, [...(groups.get(key) ?? []), c]);
    }
    for (const [key, copies] of groups) {
      if (copies.length > 1) this.add('no-duplicates', `${copies.length} copies for ${key}: ${copies.map((c) => c.id).join(', ')}`);
    }
  }

  /** Nothing is deleted or tagged unless it carried our tags for the owner making the call. */
  private checkOnlyOursTouched(): void {
    for (const call of this.world.core.log) {
      if (!DELETES.has(call.command) && !TAGS.has(call.command)) continue;
      if (!call.resourceId || !call.outcome.startsWith('ok')) continue;
      const ctx = call.context;
      const owner = ctx?.owner && ctx.stackId ? { stackId: ctx.stackId, owner: ctx.owner } : undefined;
      if (call.foreign) {
        this.add('only-ours-touched', `${call.service} ${call.command} on foreign ${call.resourceId} (${tagText(call.tagsBefore)})`);
      } else if (DELETES.has(call.command) && owner && !isOwnedBy(call.tagsBefore, owner)) {
        this.add('only-ours-touched', `${call.command} of ${call.resourceId} by ${owner.owner}, tagged ${tagText(call.tagsBefore)}`);
      }
    }
  }

  /** A rollback never fails and never makes a copy. */
  private checkRollbacks(stack: CfnStack): void {
    for (const r of stack.requests) {
      if (r.rollback && r.requestType === 'Update' && r.status === 'FAILED' && r.counted) {
        this.add('rollback-safe', `rollback Update of ${r.logicalId} (${r.requestId}) FAILED: ${r.reason}`);
      }
    }
    for (const call of this.world.core.log) {
      if (CREATES.has(call.command) && call.context?.rollback && call.context.requestType === 'Update') {
        this.add('rollback-safe', `rollback ${call.context.requestKey} called ${call.command} (${call.outcome}${call.resourceId ? ` ${call.resourceId}` : ''})`);
      }
    }
  }

  /** A successful Delete with removal policy destroy leaves nothing; retain keeps the copy. */
  private checkDeletes(stack: CfnStack): void {
    for (const r of stack.requests) {
      if (r.requestType !== 'Delete' || r.status !== 'SUCCESS' || !r.counted || r.physicalIdIn === CREATE_FAILED_MARKER) continue;
      const copyId = r.physicalIdIn ? this.opts.copyIdOf(r.physicalIdIn) : undefined;
      if (!copyId) continue;
      const copy = this.world.copy(copyId);
      if (!copy || copy.foreign) continue;
      const ours = isOwnedBy(copy.tags, { stackId: r.stackId, owner: r.logicalId });
      const policy = this.opts.removalPolicyOf(r.properties);
      if (policy === 'destroy' && ours && copy.exists && !copy.deletedByCall) {
        this.add('no-orphans', `Delete of ${r.logicalId} (${r.requestId}, destroy) succeeded but ${copyId} is still ${copy.state}`);
      }
      if (policy === 'retain' && copy.deletedByCall && !copy.serviceFailed && this.deletedBy(copyId, r)) {
        this.add('no-orphans', `Delete of ${r.logicalId} (${r.requestId}, retain) deleted ${copyId}`);
      }
    }
  }

  /** Every copy the library made that is still there carries our ownership tags. */
  private checkNoOrphans(): void {
    for (const c of this.world.copies()) {
      if (c.foreign || !c.exists) continue;
      const missing = Object.values(OWNERSHIP_TAG_KEYS).filter((k) => k !== OWNERSHIP_TAG_KEYS.propsHash && !c.tags.some((t) => t.Key === k));
      if (missing.length) this.add('no-orphans', `${c.id} (${c.state}) is left without ownership tags ${missing.join(', ')}`);
    }
  }

  private deletedBy(copyId: string, r: { stackId: string; logicalId: string; requestId: string }): boolean {
    const key = `${r.stackId}/${r.logicalId}/${r.requestId}`;
    return this.world.core.log.some((c) => DELETES.has(c.command) && c.resourceId === copyId && c.context?.requestKey === key);
  }

  private add(invariant: Violation['invariant'], detail: string): void {
    this.violations.push({ invariant, detail });
  }
}

function tagText(tags: readonly SimTag[] | undefined): string {
  const t = (tags ?? []).map((x) => `${x.Key}=${x.Value}`).join(' ');
  return t || 'no tags';
}
