/*
 * Imported first by bench/run.ts: the handlers' logger is created when they are imported, and
 * the simulator's handlers must not log every call (as test/setup-env.ts does for jest).
 */
process.env.POWERTOOLS_LOG_LEVEL ??= 'SILENT';
process.env.AWS_REGION ??= 'us-east-1';
