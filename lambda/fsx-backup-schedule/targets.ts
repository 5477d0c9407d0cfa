import { DescribeFileSystemsCommand } from '@aws-sdk/client-fsx';
import type { FsxBackupTargetInput } from '../../src/private/fsx-backup-contract';
import { retrying } from '../schedule/calls';
import { Lookup, describeVolumes, lookUpInBatches, resourceTags } from '../schedule/targets';
import { fsx } from '../shared/clients/fsx';
import { allPages } from '../shared/paging';

/*
 * The targets of a tick as the backups need them: whether each copies its tags to backups, and the
 * tags to copy.
 */

/** Whether each target copies its tags to backups, and its tags. */
export async function describeTargets(targets: FsxBackupTargetInput[], deadline: number): Promise<Map<string, Lookup>> {
  const out = new Map<string, Lookup>();
  for (const kind of ['file-system', 'volume'] as const) {
    const ids = targets.filter((t) => t.Kind === kind).map((t) => t.Id);
    const found = await lookUpInBatches(ids, (batch) => describeBatch(kind, batch, deadline), (id) => `Reading ${id} (its tags)`);
    for (const [id, lookup] of found) out.set(id, lookup);
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
      out.set(fs.FileSystemId!, { info: { copyTags, tags: copyTags ? await resourceTags(fs.Tags, fs.ResourceARN, deadline) : [] } });
    }
  } else {
    for (const v of await describeVolumes(ids, deadline)) {
      const copyTags = !!v.OntapConfiguration?.CopyTagsToBackups;
      out.set(v.VolumeId!, { info: { copyTags, tags: copyTags ? await resourceTags(v.Tags, v.ResourceARN, deadline) : [] } });
    }
  }
  return out;
}
