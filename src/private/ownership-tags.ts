import type { ManagedByValue, OwnershipTagKeys } from './contract';

/** The ownership tag keys, as IAM conditions name them (typed by the contract the handlers tag with). */
export const OWNERSHIP_TAG_KEYS: OwnershipTagKeys = {
  managedBy: 'cdk-storage-snapshots:managed-by',
  stackId: 'cdk-storage-snapshots:stack-id',
  owner: 'cdk-storage-snapshots:owner',
  propsHash: 'cdk-storage-snapshots:props-hash',
  token: 'cdk-storage-snapshots:token',
};
export const MANAGED_BY: ManagedByValue = 'cdk-storage-snapshots';
/** How many of the 50 tags AWS allows the library's own take. */
export const OWNERSHIP_TAG_COUNT = Object.keys(OWNERSHIP_TAG_KEYS).length;

/**
 * The IAM condition (for `StringEquals`) that a copy carries the library's and this stack's
 * ownership tags: on the resource (`ResourceTag`, for writes to and deletes of existing copies) or
 * in the request (`RequestTag`, for creating one).
 */
export function stackOwnershipCondition(on: 'ResourceTag' | 'RequestTag', stackId: string): Record<string, string> {
  return {
    [`aws:${on}/${OWNERSHIP_TAG_KEYS.managedBy}`]: MANAGED_BY,
    [`aws:${on}/${OWNERSHIP_TAG_KEYS.stackId}`]: stackId,
  };
}

/**
 * The tag a scheduled copy (a backup or snapshot a schedule made) carries besides the ownership
 * tags: the tick's scheduled minute (`2026-03-29T01:30Z`), so that the copy of a given tick can be
 * found (backups have no name that says it).
 */
export const SCHEDULED_TICK_TAG_KEY = 'cdk-storage-snapshots:tick';
/** How many of the 50 tags AWS allows the library's own take on a scheduled copy. */
export const SCHEDULED_COPY_TAG_COUNT = OWNERSHIP_TAG_COUNT + 1;
