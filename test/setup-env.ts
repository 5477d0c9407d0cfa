// Runs before each test file: the handlers' logger is created when they are imported.
process.env.POWERTOOLS_LOG_LEVEL ??= 'SILENT';
process.env.AWS_REGION ??= 'us-east-1';
// The EBS snapshot handler's claim table (the construct sets it on the onEvent function).
process.env.CLAIM_TABLE_NAME ??= 'app-claims';
