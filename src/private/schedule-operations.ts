/*
 * The scheduled operations the stack's one scheduled function serves, and the handler module of
 * each. A value module without dependencies: the construct side (src/private/schedule-handlers.ts),
 * the router (lambda/schedule/index.ts) and the bundler import it.
 */

/** The input's `Operation` → the handler module (lambda/<module>), bundled into the one scheduled function. */
export const SCHEDULED_OPERATIONS = {
  FsxBackup: 'fsx-backup-schedule',
  OpenZfsSnapshot: 'openzfs-snapshot-schedule',
} as const;

export type ScheduledOperation = keyof typeof SCHEDULED_OPERATIONS;

/** The bundle directory under `assets/` of the stack's one scheduled function (the router and every operation). */
export const SCHEDULE_ASSET = 'schedule';
