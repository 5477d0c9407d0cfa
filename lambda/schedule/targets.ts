import { DescribeVolumesCommand, ListTagsForResourceCommand, Volume } from '@aws-sdk/client-fsx';
import { chunks, isNotFound, retrying } from './calls';
import { fsx } from '../shared/clients/fsx';
import { describeError } from '../shared/errors';
import type { Tag } from '../shared/ownership';
import { allPages } from '../shared/paging';

/*
 * The targets of a tick as their copies need them: whether each copies its tags to its copies,
 * and the tags to copy.
 */

/** Describe calls take at most 50 ids. */
const DESCRIBE_IDS = 50;

export interface TargetInfo {
  readonly copyTags: boolean;
  readonly tags: Tag[];
}

/** A target as read, or why it cannot be copied. */
export type Lookup = { readonly info: TargetInfo } | { readonly error: string };

/**
 * Each id read with `describe`, 50 ids a call; when one id of a batch does not exist (the call
 * fails as a whole), each id of the batch is read alone. `reading` names what failed in a reason.
 */
export async function lookUpInBatches(
  ids: string[],
  describe: (ids: string[]) => Promise<Map<string, Lookup>>,
  reading: (id: string) => string,
): Promise<Map<string, Lookup>> {
  const out = new Map<string, Lookup>();
  const notFound = (id: string): Lookup => ({ error: `${id} was not found` });
  for (const batch of chunks(ids, DESCRIBE_IDS)) {
    try {
      const found = await describe(batch);
      for (const id of batch) out.set(id, found.get(id) ?? notFound(id));
    } catch (err) {
      if (batch.length > 1 && isNotFound(err)) {
        for (const id of batch) {
          const one = await describe([id]).catch((e) => e);
          out.set(id, one instanceof Map ? one.get(id) ?? notFound(id) : { error: describeError(`Reading ${id}`, one) });
        }
      } else {
        for (const id of batch) out.set(id, { error: describeError(reading(id), err) });
      }
    }
  }
  return out;
}

/** FSx volumes, every page. */
export function describeVolumes(ids: string[], deadline: number): Promise<Volume[]> {
  return allPages(
    (NextToken) => retrying('DescribeVolumes', () => fsx().send(new DescribeVolumesCommand({ VolumeIds: ids, NextToken })), deadline),
    (page) => page.Volumes,
  );
}

/** A resource's tags: as described, or (when the description leaves them out) listed. */
export async function resourceTags(described: Tag[] | undefined, arn: string | undefined, deadline: number): Promise<Tag[]> {
  if (described || !arn) return described ?? [];
  return allPages(
    (NextToken) => retrying('ListTagsForResource', () => fsx().send(new ListTagsForResourceCommand({ ResourceARN: arn, NextToken })), deadline),
    (page) => page.Tags,
  );
}
