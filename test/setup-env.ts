// Runs before each test file: the handlers' logger is created when they are imported.
process.env.POWERTOOLS_LOG_LEVEL ??= 'SILENT';
process.env.AWS_REGION ??= 'us-east-1';
// The EBS snapshot handler's late-duplicate queue (the construct sets it on the onEvent function).
process.env.LATE_DUPLICATE_QUEUE_URL ??= 'https://sqs.us-east-1.amazonaws.com/111111111111/late-duplicates';
