import { describeVolumes, Lookup, lookUpInBatches, resourceTags } from '../schedule/targets';

/*
 * The volumes of a tick as their snapshots need them: OpenZFS ones only, whether each copies its
 * tags to snapshots, and the tags to copy.
 */

/** Each volume's tags to copy, or why it cannot be snapshotted (it does not exist, or is not an OpenZFS volume). */
export function describeOpenZfsVolumes(ids: string[], deadline: number): Promise<Map<string, Lookup>> {
  return lookUpInBatches(ids, (batch) => describeBatch(batch, deadline), (id) => `Reading volume ${id}`);
}

async function describeBatch(ids: string[], deadline: number): Promise<Map<string, Lookup>> {
  const out = new Map<string, Lookup>();
  for (const v of await describeVolumes(ids, deadline)) {
    if (v.VolumeType !== 'OPENZFS') {
      out.set(v.VolumeId!, { error: `${v.VolumeId} is ${v.VolumeType ? `an ${v.VolumeType}` : 'not an OpenZFS'} volume: FSx takes snapshots of OpenZFS volumes only` });
      continue;
    }
    // Tags in CreateSnapshot turn off the volume's CopyTagsToSnapshots: its tags go in the request.
    const copyTags = !!v.OpenZFSConfiguration?.CopyTagsToSnapshots;
    out.set(v.VolumeId!, { info: { copyTags, tags: copyTags ? await resourceTags(v.Tags, v.ResourceARN, deadline) : [] } });
  }
  return out;
}
