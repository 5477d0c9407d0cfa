/*
 * The stack's one provider: onEvent and isComplete route each request on its `ResourceType` to
 * that type's handler module. Each module is a bundle of its own beside this one
 * (assets/provider/<module>.js), loaded on the first request of its type, so a request loads only
 * its own type's code and SDK clients (an OpenZFS request never loads the EC2 client).
 */
import * as path from 'path';
import { DEPLOY_TIME_HANDLERS } from '../../src/private/deploy-time-types';

/** What every type's module exports. */
interface TypeModule {
  onEvent(event: unknown, context?: unknown): Promise<unknown>;
  isComplete(event: unknown, context?: unknown): Promise<unknown>;
}

interface Routed {
  readonly ResourceType: string;
  readonly RequestType: 'Create' | 'Update' | 'Delete';
  readonly PhysicalResourceId?: string;
}

export async function onEvent(event: Routed, context?: unknown): Promise<unknown> {
  const module = moduleFor(event);
  // A type this provider no longer serves must not block a stack's clean-up or deletion: its
  // Delete keeps what it made (it is still tagged as this stack's).
  if (!module) return { PhysicalResourceId: event.PhysicalResourceId };
  return module.onEvent(event, context);
}

export async function isComplete(event: Routed, context?: unknown): Promise<unknown> {
  const module = moduleFor(event);
  if (!module) return { IsComplete: true };
  return module.isComplete(event, context);
}

/** The module of the request's type; undefined for a Delete of a type this provider does not serve. */
function moduleFor(event: Routed): TypeModule | undefined {
  const name = Object.prototype.hasOwnProperty.call(DEPLOY_TIME_HANDLERS, event.ResourceType) ? DEPLOY_TIME_HANDLERS[event.ResourceType] : undefined;
  if (!name) {
    const reason = `cdk-storage-snapshots has no handler for resource type ${event.ResourceType} ` +
      `(this provider serves ${Object.keys(DEPLOY_TIME_HANDLERS).join(', ')})`;
    if (event.RequestType === 'Delete') {
      console.warn(JSON.stringify({ level: 'WARN', message: `${reason}: answering its Delete without acting` }));
      return undefined;
    }
    throw new Error(reason);
  }
  // Not a literal: the bundler leaves it to Node, which loads the module once and caches it.
  const file = path.join(__dirname, `${name}.js`);
  // eslint-disable-next-line @typescript-eslint/no-require-imports
  return require(file) as TypeModule;
}
