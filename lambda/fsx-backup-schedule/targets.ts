import { DescribeFileSystemsCommand, DescribeVolumesCommand, ListTagsForResourceCommand } from '@aws-sdk/client-fsx';
import { chunks, isNotFound, retrying } from './calls';
import type { FsxBackupTargetInput } from '../../src/private/fsx-backup-contract';
import { FSX_TAG_PATTERN } from '../../src/private/shared-values';
import { fsx } from '../shared/clients/fsx';
import { describeError } from '../shared/errors';
import type { KeyValue, Tag } from '../shared/ownership';
import { allPages } from '../shared/paging';

/*
 * The targets of a tick as the backups need them: whether each copies its tags to backups, and the
 * tags to copy.
 */

/** AWS allows 50 tags per resource. */
const MAX_TAGS = 50;
/** Describe calls take at most 50 ids. */
const DESCRIBE_IDS = 50;

export interface TargetInfo {
  readonly copyTags: boolean;
  readonly tags: Tag[];
}

export type Lookup = { readonly info: TargetInfo } | { readonly error: string };

/**
 * Whether each target copies its tags to backups, and its tags: one Describe call per 50 ids;
 * when one id of a batch does not exist (the call fails as a whole), each id is read alone.
 */
export async function describeTargets(targets: FsxBackupTargetInput[], deadline: number): Promise<Map<string, Lookup>> {
  const out = new Map<string, Lookup>();
  const byKind = (kind: FsxBackupTargetInput['Kind']) => targets.filter((t) => t.Kind === kind).map((t) => t.Id);
  for (const kind of ['file-system', 'volume'] as const) {
    for (const ids of chunks(byKind(kind), DESCRIBE_IDS)) {
      try {
        const found = await describeBatch(kind, ids, deadline);
        for (const id of ids) out.set(id, found.get(id) ?? { error: `${id} was not found` });
      } catch (err) {
        if (ids.length > 1 && isNotFound(err)) {
          for (const id of ids) {
            const one = await describeBatch(kind, [id], deadline).catch((e) => e);
            out.set(id, one instanceof Map ? one.get(id) ?? { error: `${id} was not found` } : { error: describeError(`Reading ${id}`, one) });
          }
        } else {
          for (const id of ids) out.set(id, { error: describeError(`Reading ${id} (its tags)`, err) });
        }
      }
    }
  }
  return out;
}

async function describeBatch(kind: FsxBackupTargetInput['Kind'], ids: string[], deadline: number): Promise<Map<string, Lookup>> {
  const out = new Map<string, Lookup>();
  if (kind === 'file-system') {
    const list = await allPages(
      (NextToken) => retrying('DescribeFileSystems', () => fsx().send(new DescribeFileSystemsCommand({ FileSystemIds: ids, NextToken })), deadline),
      (page) => page.FileSystems,
    );
    for (const fs of list) {
      const copyTags = !!(fs.WindowsConfiguration?.CopyTagsToBackups || fs.LustreConfiguration?.CopyTagsToBackups ||
        fs.OpenZFSConfiguration?.CopyTagsToBackups);
      out.set(fs.FileSystemId!, { info: { copyTags, tags: await tagsOf(fs.Tags, fs.ResourceARN, copyTags, deadline) } });
    }
  } else {
    const list = await allPages(
      (NextToken) => retrying('DescribeVolumes', () => fsx().send(new DescribeVolumesCommand({ VolumeIds: ids, NextToken })), deadline),
      (page) => page.Volumes,
    );
    for (const v of list) {
      const copyTags = !!v.OntapConfiguration?.CopyTagsToBackups;
      out.set(v.VolumeId!, { info: { copyTags, tags: await tagsOf(v.Tags, v.ResourceARN, copyTags, deadline) } });
    }
  }
  return out;
}

/** The tags to copy: as described, or (when the description leaves them out) listed. */
async function tagsOf(described: Tag[] | undefined, arn: string | undefined, copyTags: boolean, deadline: number): Promise<Tag[]> {
  if (!copyTags) return [];
  if (described || !arn) return described ?? [];
  return allPages(
    (NextToken) => retrying('ListTagsForResource', () => fsx().send(new ListTagsForResourceCommand({ ResourceARN: arn, NextToken })), deadline),
    (page) => page.Tags,
  );
}

/**
 * The backup's tags: the target's own (when it copies tags to backups, since tags in the request
 * turn that off), then the user's, then ours; later ones win. Sorted by key, so that a retry sends
 * exactly the same request. Copied tags that FSx would refuse (characters outside its tag
 * pattern) or that do not fit in AWS's 50 are left out (and reported).
 */
export function backupTags(copied: Tag[], user: Record<string, string>, ours: KeyValue[]): { tags: KeyValue[]; dropped: string[] } {
  const fixed = new Map<string, string>([...Object.entries(user), ...ours.map((t) => [t.Key, t.Value] as const)]);
  const byKey = (a: KeyValue, b: KeyValue) => (a.Key < b.Key ? -1 : a.Key > b.Key ? 1 : 0);
  const copyable = copied
    .filter((t): t is KeyValue => !!t.Key && t.Value !== undefined && !t.Key.startsWith('aws:') && !fixed.has(t.Key))
    .sort(byKey);
  const valid = (t: KeyValue) => FSX_TAG_PATTERN.test(t.Key) && t.Key.length <= 128 && FSX_TAG_PATTERN.test(t.Value) && t.Value.length <= 256;
  const candidates = copyable.filter(valid);
  const room = Math.max(0, MAX_TAGS - fixed.size);
  const kept = candidates.slice(0, room);
  const tags = [...kept, ...[...fixed].map(([Key, Value]) => ({ Key, Value }))].sort(byKey);
  return { tags, dropped: [...copyable.filter((t) => !valid(t)), ...candidates.slice(room)].map((t) => t.Key) };
}
