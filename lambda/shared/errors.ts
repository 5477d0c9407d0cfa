import { backoff } from './backoff';
import { clock } from './clock';
import { logger } from './logger';

/** CloudFormation shows at most 4 KB of a failure reason; keep ours well under it. */
export const MAX_REASON_LENGTH = 1000;

/**
 * An error whose message is already the short, human reason CloudFormation should show.
 * `transient`: it came from throttling, a 5xx, a network error or a timeout (another try, or
 * another invocation, may well succeed), not from something every try would meet.
 */
export class HandlerError extends Error {
  constructor(message: string, public readonly transient = false) {
    super(truncate(message));
    this.name = 'HandlerError';
    // The Provider framework puts the stack into the reason CloudFormation shows: keep it to the
    // message so the user reads the reason, not our bundle's line numbers.
    this.stack = `${this.name}: ${this.message}`;
  }
}

/** The service's error code (`name`) of an SDK error, or `Error`. */
export function errorCode(err: unknown): string {
  if (err && typeof err === 'object') {
    const e = err as { name?: unknown; Code?: unknown; code?: unknown };
    for (const c of [e.name, e.Code, e.code]) {
      if (typeof c === 'string' && c && c !== 'Error') return c;
    }
  }
  return 'Error';
}

export function errorMessage(err: unknown): string {
  if (err instanceof Error) return err.message;
  return String(err);
}

/** "<what we were doing>: <code>: <service's message>", short enough for CloudFormation. */
export function describeError(context: string, err: unknown): string {
  if (err instanceof HandlerError) return err.message;
  return truncate(`${context}: ${errorCode(err)}: ${errorMessage(err)}`);
}

function truncate(message: string): string {
  return message.length <= MAX_REASON_LENGTH ? message : `${message.slice(0, MAX_REASON_LENGTH - 1)}…`;
}

const THROTTLING = new Set([
  'ThrottlingException',
  'Throttling',
  'ThrottledException',
  'RequestLimitExceeded',
  'TooManyRequestsException',
  'RequestThrottled',
  'RequestThrottledException',
  'SlowDown',
]);

const TRANSIENT = new Set([
  'InternalServerError',
  'InternalServerException',
  'InternalError',
  'InternalFailure',
  'ServiceUnavailable',
  'ServiceUnavailableException',
  'RequestTimeout',
  'RequestTimeoutException',
  'TimeoutError',
  'ECONNRESET',
  'ECONNREFUSED',
  'EPIPE',
  'ETIMEDOUT',
  'EAI_AGAIN',
  'NetworkingError',
]);

export function isThrottling(err: unknown): boolean {
  return THROTTLING.has(errorCode(err));
}

/** Throttling, 5xx and network errors: worth another try. */
export function isTransient(err: unknown): boolean {
  if (isThrottling(err) || TRANSIENT.has(errorCode(err))) return true;
  const status = (err as { $metadata?: { httpStatusCode?: number } } | undefined)?.$metadata?.httpStatusCode;
  return typeof status === 'number' && status >= 500;
}

export interface RetryOptions {
  /** Give up once this much time has gone (ms). */
  readonly budgetMs: number;
  /** First delay (ms); doubles each time, with full jitter, up to `maxDelayMs`. */
  readonly baseDelayMs?: number;
  readonly maxDelayMs?: number;
  /** Which errors are worth another try. @default isTransient */
  readonly retryable?: (err: unknown) => boolean;
  /** Called before each wait, for logging. */
  readonly onRetry?: (err: unknown, attempt: number, delayMs: number) => void;
}

/**
 * Runs `fn` until it succeeds, throws something not retryable, or the budget is spent (then the
 * last error is thrown). The SDK already retries each call a few times in standard mode; this is
 * the longer, budgeted layer above it for errors that outlast those (throttling storms,
 * `BackupInProgress`, snapshot rate limits).
 */
export async function withRetries<T>(fn: () => Promise<T>, options: RetryOptions): Promise<T> {
  const start = clock.now();
  const base = options.baseDelayMs ?? 500;
  const max = options.maxDelayMs ?? 20_000;
  const retryable = options.retryable ?? isTransient;
  for (let attempt = 1; ; attempt++) {
    try {
      return await fn();
    } catch (err) {
      const delay = backoff(attempt, base, max);
      if (!retryable(err) || clock.now() - start + delay > options.budgetMs) throw err;
      options.onRetry?.(err, attempt, delay);
      await clock.sleep(delay);
    }
  }
}

/**
 * Runs one step of a handler; any failure is logged with its details and rethrown as a
 * HandlerError carrying the short reason CloudFormation will show.
 */
export async function step<T>(context: string, fn: () => Promise<T>): Promise<T> {
  try {
    return await fn();
  } catch (err) {
    if (err instanceof HandlerError) throw err;
    const reason = describeError(context, err);
    // Logged in full here; CloudFormation gets the short reason only.
    logger.error(reason, { error: err as Error });
    throw new HandlerError(reason, isTransient(err));
  }
}

