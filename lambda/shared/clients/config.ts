/** How long a request may stay silent (no byte sent or received) before the SDK gives up on it (ms). */
export const REQUEST_TIMEOUT_MS = 30_000;

/*
 * Configuration shared by every SDK client. Clients are created once per container on first use
 * (one small file per service, so a handler bundles only the clients it calls). Region and
 * credentials come from the Lambda environment; the SDK itself reads the standard endpoint
 * variables (`AWS_ENDPOINT_URL`, `AWS_ENDPOINT_URL_FSX`, `AWS_ENDPOINT_URL_EC2`,
 * `AWS_ENDPOINT_URL_EBS`, …), so the handlers can be pointed at any AWS-compatible endpoint.
 */
export const CLIENT_CONFIG = {
  retryMode: 'standard',
  maxAttempts: 3,
  // A connection that cannot be made in 5 s, or a request silent for REQUEST_TIMEOUT_MS, fails with
  // a TimeoutError (retried, or for a create, handled as one of unknown outcome) instead of hanging
  // the invocation into its Lambda timeout, which would fail the deploy with nothing cleaned up.
  // (`socketTimeout` is the idle timeout that throws; `requestTimeout` alone only logs a warning.)
  requestHandler: { connectionTimeout: 5_000, socketTimeout: REQUEST_TIMEOUT_MS },
} as const;

/** A function that creates its value on the first call and returns the same value after. */
export function once<T>(create: () => T): () => T {
  let value: T | undefined;
  return () => (value ??= create());
}
