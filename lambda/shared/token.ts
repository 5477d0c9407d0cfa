import { createHash } from 'crypto';

/**
 * The smallest common ground of the APIs a token is passed to:
 * FSx `ClientRequestToken` is 1–63 characters of `[A-Za-z0-9_.-]`, EBS `ClientToken` is at most
 * 64 ASCII characters, and EC2 tag values at most 256. Ours is `css-` plus 40 hex digits (160 bits
 * of SHA-256): 44 characters of that alphabet.
 */
export const TOKEN_PATTERN = /^css-[0-9a-f]{40}$/;

/** What identifies one CloudFormation request to one custom resource. */
export interface RequestIdentity {
  readonly StackId: string;
  readonly LogicalResourceId: string;
  readonly RequestId: string;
}

/**
 * The client token of one CloudFormation request. A retry of the same request keeps its
 * RequestId and so gets the same token; another request, resource or stack gets another.
 */
export function requestToken(event: RequestIdentity): string {
  return token('request', event.StackId, event.LogicalResourceId, event.RequestId);
}

/** What identifies one target of one scheduled tick. */
export interface TickIdentity {
  /** The schedule's identity: its stack id and construct path, for example. */
  readonly scheduleId: string;
  /** The file system or volume backed up. */
  readonly target: string;
  /** The scheduled time of the tick (EventBridge's `time`), not the time it was delivered. */
  readonly scheduledTime: string;
}

/**
 * The client token of one target of one scheduled tick: a duplicate delivery or a retry of the
 * same tick gets the same token.
 */
export function tickToken(tick: TickIdentity): string {
  return token('tick', tick.scheduleId, tick.target, tick.scheduledTime);
}

function token(kind: string, ...parts: string[]): string {
  for (const part of parts) {
    if (!part) {
      throw new Error(`cannot derive a ${kind} token from an empty identity part`);
    }
  }
  // JSON encoding keeps ('a|b', 'c') and ('a', 'b|c') apart.
  const digest = createHash('sha256').update(JSON.stringify([kind, ...parts])).digest('hex');
  return `css-${digest.slice(0, 40)}`;
}

/** A short, stable hash of any JSON value: keys are sorted so property order does not matter. */
export function stableHash(value: unknown, length = 16): string {
  return createHash('sha256').update(canonicalJson(value)).digest('hex').slice(0, length);
}

function canonicalJson(value: unknown): string {
  if (Array.isArray(value)) {
    return `[${value.map(canonicalJson).join(',')}]`;
  }
  if (value !== null && typeof value === 'object') {
    const entries = Object.entries(value as Record<string, unknown>)
      .filter(([, v]) => v !== undefined)
      .sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0));
    return `{${entries.map(([k, v]) => `${JSON.stringify(k)}:${canonicalJson(v)}`).join(',')}}`;
  }
  return JSON.stringify(value);
}
