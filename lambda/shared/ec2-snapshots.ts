import { DeleteSnapshotCommand, DescribeSnapshotsCommand, Filter, Snapshot } from '@aws-sdk/client-ec2';
import { CALL_BUDGET_MS } from './budget';
import { ec2 } from './clients/ec2';
import { errorCode, withRetries } from './errors';
import type { CopyStore } from './lifecycle';
import { allPages } from './paging';

/*
 * The EC2 snapshot calls both EBS handlers make. EC2 reads are eventually consistent: a snapshot
 * made moments ago may be missing from them for a while.
 */

/** The account's own snapshots that match `filters`, every page. */
export async function describeOwnSnapshots(filters: Filter[]): Promise<Snapshot[]> {
  return allPages(
    (NextToken) => withRetries(() => ec2().send(new DescribeSnapshotsCommand({ OwnerIds: ['self'], Filters: filters, NextToken })), { budgetMs: CALL_BUDGET_MS }),
    (page) => page.Snapshots,
  );
}

/** A snapshot by id; undefined if reads do not show it (deleted, or made moments ago: EC2 reads lag). */
export async function describeEc2Snapshot(id: string): Promise<Snapshot | undefined> {
  try {
    const out = await withRetries(() => ec2().send(new DescribeSnapshotsCommand({ SnapshotIds: [id] })), { budgetMs: CALL_BUDGET_MS });
    return out.Snapshots?.find((s) => s.SnapshotId === id);
  } catch (err) {
    if (errorCode(err) === 'InvalidSnapshot.NotFound') return undefined;
    throw err;
  }
}

/** Deletes a snapshot; one already gone is deleted. */
export async function deleteEc2Snapshot(id: string): Promise<void> {
  try {
    await withRetries(() => ec2().send(new DeleteSnapshotCommand({ SnapshotId: id })), { budgetMs: CALL_BUDGET_MS });
  } catch (err) {
    if (errorCode(err) !== 'InvalidSnapshot.NotFound') throw err;
  }
}

/** EC2 snapshots as the custom-resource lifecycle reads and deletes them. */
export const EC2_SNAPSHOTS: CopyStore<Snapshot> = {
  noun: 'EBS snapshot',
  idPrefix: 'snap-',
  describe: describeEc2Snapshot,
  delete: deleteEc2Snapshot,
};
