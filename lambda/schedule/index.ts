import type { ScheduledOperation } from '../../src/private/schedule-operations';
import { handler as backUp } from '../fsx-backup-schedule';
import { handler as snapshot } from '../openzfs-snapshot-schedule';
import { HandlerError } from '../shared/errors';

/*
 * The stack's one scheduled function: every FsxBackupSchedule and OpenZfsSnapshotSchedule tick
 * arrives here and goes to its operation's handler (src/private/schedule-operations.ts).
 */

const OPERATIONS: Record<ScheduledOperation, (event: any) => Promise<unknown>> = {
  FsxBackup: backUp,
  OpenZfsSnapshot: snapshot,
};

export async function handler(event: { readonly Operation?: unknown } | undefined): Promise<unknown> {
  // Ticks of rules deployed before there was an Operation are backups.
  const operation = event?.Operation ?? 'FsxBackup';
  if (typeof operation !== 'string' || !Object.prototype.hasOwnProperty.call(OPERATIONS, operation)) {
    throw new HandlerError(`unknown scheduled operation ${JSON.stringify(operation)} (this function serves ${Object.keys(OPERATIONS).join(', ')}): ` +
      'was the schedule\'s input changed by hand, or does the stack deploy a newer construct than its function?');
  }
  return OPERATIONS[operation as ScheduledOperation](event);
}
