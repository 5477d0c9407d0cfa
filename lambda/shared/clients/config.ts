/*
 * Configuration shared by every SDK client. Clients are created once per container on first use
 * (one small file per service, so a handler bundles only the clients it calls). Region and
 * credentials come from the Lambda environment; the SDK itself reads the standard endpoint
 * variables (`AWS_ENDPOINT_URL`, `AWS_ENDPOINT_URL_FSX`, `AWS_ENDPOINT_URL_EC2`,
 * `AWS_ENDPOINT_URL_EBS`, …), so the handlers can be pointed at any AWS-compatible endpoint.
 */
export const CLIENT_CONFIG = { retryMode: 'standard', maxAttempts: 3 } as const;

/** A function that creates its value on the first call and returns the same value after. */
export function once<T>(create: () => T): () => T {
  let value: T | undefined;
  return () => (value ??= create());
}
