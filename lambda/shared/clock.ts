/**
 * Time as the handlers see it. The lifecycle simulator replaces both functions to run hours of
 * simulated time in milliseconds; nothing else should.
 */
export const clock = {
  now: (): number => Date.now(),
  sleep: (ms: number): Promise<void> => new Promise((resolve) => setTimeout(resolve, ms)),
};
