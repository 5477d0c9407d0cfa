import { createHash } from 'crypto';
import { CfnParameter, CfnResource, Fn, Lazy, Stack } from 'aws-cdk-lib';
import { IConstruct } from 'constructs';
import { invalid } from './validation';

/**
 * Makes a copy (the custom resource that takes a snapshot) come before every resource in
 * `guarded`. `hash` is a hash of the guarded resources' resolved CloudFormation definitions,
 * computed lazily at synth (as aws-lambda's function hash is); it goes into the copy's properties,
 * so any change to a guarded resource changes the copy's properties too, and CloudFormation updates
 * the copy (a new snapshot) before it changes the guarded resource.
 */
export class SnapshotGuard {
  /** Undefined when nothing is guarded, so that the property is left out. */
  public readonly hash: string | undefined;

  constructor(private readonly owner: IConstruct, private readonly guarded: IConstruct[]) {
    const stack = Stack.of(owner);
    for (const g of guarded) {
      if (Stack.of(g) !== stack) {
        invalid(owner, 'snapshotBefore', `${g.node.path} is in stack ${Stack.of(g).stackName}, not in ${stack.stackName}: ` +
          'a snapshot can only come before resources of its own stack');
      }
      if (g === owner || owner.node.scopes.includes(g)) {
        invalid(owner, 'snapshotBefore', `${g.node.path} contains the snapshot itself`);
      }
    }
    this.hash = guarded.length === 0 ? undefined : Lazy.string({
      produce: () => {
        const hash = createHash('sha256');
        const inputs = new DeployTimeInputs(stack);
        for (const r of guardedResources(guarded)) {
          const definition = stack.resolve((r as any)._toCloudFormation());
          hash.update(r.node.path);
          hash.update(JSON.stringify(definition));
          inputs.collect(definition);
        }
        const digest = hash.digest('hex').slice(0, 32);
        // Values the template only names (a parameter, such as the SSM-backed one of
        // MachineImage.latestAmazonLinux2023(); an SSM dynamic reference) are resolved by
        // CloudFormation in the snapshot's properties too: a new value at deploy is then a new
        // snapshot before the guarded resource changes, with no dependency on it.
        const named = inputs.references();
        return named.length === 0 ? digest : Fn.join('|', [digest, ...named]);
      },
    });
  }

  /** Orders the guarded resources after `copy`, and refuses at synth what would make a cycle. */
  public comesBefore(copy: CfnResource): void {
    if (this.guarded.length === 0) return;
    for (const g of this.guarded) g.node.addDependency(copy);
    this.owner.node.addValidation({ validate: () => findCycles(this.owner, copy, this.guarded) });
  }
}

/**
 * The deploy-time inputs of the guarded resources that can be copied into the snapshot's
 * properties without a dependency and without exposing a secret: references to the stack's
 * parameters (not `NoEcho` ones) and SSM dynamic references (not `ssm-secure` or Secrets Manager).
 */
class DeployTimeInputs {
  private readonly parameters = new Map<string, CfnParameter>();
  private readonly found = new Set<string>();

  constructor(stack: Stack) {
    for (const c of stack.node.findAll()) {
      if (c instanceof CfnParameter && Stack.of(c) === stack) this.parameters.set(stack.resolve(c.logicalId), c);
    }
  }

  public collect(fragment: unknown): void {
    if (typeof fragment === 'string') {
      for (const m of fragment.matchAll(/\{\{resolve:ssm:[^}]+\}\}/g)) this.found.add(m[0]);
    } else if (Array.isArray(fragment)) {
      fragment.forEach((f) => this.collect(f));
    } else if (fragment && typeof fragment === 'object') {
      for (const [key, value] of Object.entries(fragment as Record<string, unknown>)) {
        if (key === 'Ref' && typeof value === 'string' && this.parameters.has(value) && !this.parameters.get(value)!.noEcho) {
          this.found.add(`Ref:${value}`);
        } else {
          this.collect(value);
        }
      }
    }
  }

  /** In a stable order: parameter references as `{ Ref }`, dynamic references as written. */
  public references(): string[] {
    return [...this.found].sort().map((f) => (f.startsWith('Ref:') ? Fn.ref(f.slice(4)) : f));
  }
}

function guardedResources(guarded: IConstruct[]): CfnResource[] {
  const all = new Map<string, CfnResource>();
  for (const g of guarded) {
    for (const c of g.node.findAll()) {
      if (CfnResource.isCfnResource(c)) all.set(c.node.path, c);
    }
  }
  return [...all.values()].sort((a, b) => (a.node.path < b.node.path ? -1 : 1));
}

/**
 * A snapshot that (through references or dependencies) needs a guarded resource to exist first
 * cannot also come before it. CloudFormation would only say "circular dependency" at deploy; we
 * say which resource, and why, at synth.
 */
function findCycles(owner: IConstruct, copy: CfnResource, guarded: IConstruct[]): string[] {
  const stack = Stack.of(owner);
  const guardedIds = new Map<string, string>();
  for (const r of guardedResources(guarded)) {
    if (r === copy) return [`${owner.node.path}: invalid snapshotBefore: it contains the snapshot's own custom resource`];
    guardedIds.set(stack.resolve(r.logicalId), r.node.path);
  }
  const edges = new Map<string, Set<string>>();
  for (const c of stack.node.findAll()) {
    if (!CfnResource.isCfnResource(c) || Stack.of(c) !== stack) continue;
    const id = stack.resolve(c.logicalId) as string;
    edges.set(id, referencedIds(stack.resolve((c as any)._toCloudFormation())));
  }
  const start = stack.resolve(copy.logicalId) as string;
  const seen = new Set<string>();
  const queue = [...(edges.get(start) ?? [])];
  while (queue.length > 0) {
    const id = queue.shift()!;
    if (seen.has(id)) continue;
    seen.add(id);
    const path = guardedIds.get(id);
    if (path) {
      return [
        `${owner.node.path}: invalid snapshotBefore: ${path} must exist before the snapshot can be taken ` +
          '(the snapshot refers to it, directly or through other resources), so the snapshot cannot also come before it. ' +
          'Guard the resources that change instead of the one the snapshot is taken of.',
      ];
    }
    queue.push(...(edges.get(id) ?? []));
  }
  return [];
}

/** Every logical id a resolved template fragment depends on: Ref, Fn::GetAtt, Fn::Sub and DependsOn. */
function referencedIds(fragment: unknown, out = new Set<string>()): Set<string> {
  if (Array.isArray(fragment)) {
    fragment.forEach((f) => referencedIds(f, out));
  } else if (fragment && typeof fragment === 'object') {
    for (const [key, value] of Object.entries(fragment as Record<string, unknown>)) {
      if (key === 'Ref' && typeof value === 'string' && !value.startsWith('AWS::')) {out.add(value);} else if (key === 'Fn::GetAtt') {out.add(Array.isArray(value) ? String(value[0]) : String(value).split('.')[0]);} else if (key === 'DependsOn') {(Array.isArray(value) ? value : [value]).forEach((v) => out.add(String(v)));} else if (key === 'Fn::Sub') {
        const text = Array.isArray(value) ? String(value[0]) : String(value);
        for (const m of text.matchAll(/\$\{([A-Za-z0-9]+)(\.[^}]*)?\}/g)) out.add(m[1]);
        if (Array.isArray(value)) referencedIds(value[1], out);
      } else {referencedIds(value, out);}
    }
  }
  return out;
}
