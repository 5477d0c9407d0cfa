/**
 * An AWS service error as the SDK throws it: `name` is the service's error code and `$metadata`
 * carries the HTTP status. (The SDK's own classes add nothing the handlers look at.)
 */
export function awsError(name: string, message = name, httpStatusCode = 400, extra: Record<string, unknown> = {}): Error {
  return Object.assign(new Error(message), {
    name,
    $fault: httpStatusCode >= 500 ? 'server' : 'client',
    $metadata: { httpStatusCode, requestId: 'sim', attempts: 1, totalRetryDelay: 0 },
    ...extra,
  });
}

/** A dropped connection, as Node's HTTP stack reports it (no HTTP status). */
export function networkError(code = 'ECONNRESET'): Error {
  return Object.assign(new Error(code === 'ECONNRESET' ? 'socket hang up' : code), {
    name: 'Error',
    code,
    $metadata: { attempts: 1, totalRetryDelay: 0 },
  });
}

/** What the SDK's HTTP handler throws when a request stays silent past its `requestTimeout`. */
export function requestTimeoutError(ms = 30_000): Error {
  return Object.assign(new Error(`Connection timed out after ${ms} ms`), { name: 'TimeoutError', $metadata: { attempts: 1, totalRetryDelay: 0 } });
}
