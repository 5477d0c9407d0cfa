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
}

export async function onEvent(event: Routed, context?: unknown): Promise<unknown> {
  return moduleFor(event).onEvent(event, context);
}

export async function isComplete(event: Routed, context?: unknown): Promise<unknown> {
  return moduleFor(event).isComplete(event, context);
}

function moduleFor(event: Routed): TypeModule {
  const name = Object.prototype.hasOwnProperty.call(DEPLOY_TIME_HANDLERS, event.ResourceType) ? DEPLOY_TIME_HANDLERS[event.ResourceType] : undefined;
  if (!name) {
    throw new Error(`cdk-storage-snapshots has no handler for resource type ${event.ResourceType} ` +
      `(this provider serves ${Object.keys(DEPLOY_TIME_HANDLERS).join(', ')})`);
  }
  // Not a literal: the bundler leaves it to Node, which loads the module once and caches it.
  const file = path.join(__dirname, `${name}.js`);
  // eslint-disable-next-line @typescript-eslint/no-require-imports
  return require(file) as TypeModule;
}
