import { Duration, RemovalPolicy, Stack } from 'aws-cdk-lib';
import { IConstruct } from 'constructs';
import type { CopyRemovalPolicy } from './contract';

/** How long a deploy waits for a copy by default. */
export const DEFAULT_TIMEOUT = Duration.minutes(30);

/** User tags as one JSON property, keys sorted so that synth output does not depend on their order. */
export function encodeTags(scope: IConstruct, tags: Record<string, string> | undefined): string | undefined {
  if (!tags || Object.keys(tags).length === 0) return undefined;
  const sorted = Object.fromEntries(Object.entries(tags).sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0)));
  return Stack.of(scope).toJsonString(sorted);
}

export function encodeRemovalPolicy(policy: RemovalPolicy | undefined): CopyRemovalPolicy {
  return (policy ?? RemovalPolicy.RETAIN) === RemovalPolicy.DESTROY ? 'destroy' : 'retain';
}
