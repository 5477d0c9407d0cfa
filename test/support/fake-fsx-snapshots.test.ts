import { CreateBackupCommand, CreateSnapshotCommand, DeleteSnapshotCommand, DescribeSnapshotsCommand, DescribeVolumesCommand, FSxClient } from '@aws-sdk/client-fsx';
import { handler, metrics } from '../../lambda/openzfs-snapshot-schedule';
import { OWNERSHIP_TAG_KEYS, tagValue } from '../../lambda/shared/ownership';
import type { OpenZfsSnapshotTickInput } from '../../src/private/openzfs-snapshot-schedule-contract';
import { STACK_ID, rejection } from '../fixtures/events';
import { useCapturedMetrics } from '../fixtures/scheduled-tick';
import { FakeFsxOptions } from '../support/fake-fsx';
import { ScriptedFault } from '../support/faults';
import { withTamperedClient } from '../support/schedule-sim';
import { SimWorld } from '../support/sim-world';

/*
 * The FSx fake's OpenZFS snapshots as the scheduled snapshot handler depends on them: client
 * tokens, names unique per volume, tags, clones that keep a snapshot from being deleted. And, for
 * the faults the fake models, a broken variant (or a broken handler) that the checks catch, so
 * that each modelled fault is shown to carry weight.
 */

const FS = 'fs-0123456789abcdef0';
const VOL = 'fsvol-0000000000000000a';
const VOL2 = 'fsvol-0000000000000000b';
const ONTAP_VOL = 'fsvol-0000000000000000c';
const SCHEDULE = 'AppQuarterHourly11112222';
const QUARTER_HOUR = 15 * 60_000;
const client = new FSxClient({ region: 'us-east-1' });
const { addMetric } = useCapturedMetrics(metrics);

let world: SimWorld;
function newWorld(fsx: FakeFsxOptions = {}, scripted: ScriptedFault[] = []): SimWorld {
  // Snapshots are made in seconds, well within a tick.
  world = new SimWorld({ seed: 7, scripted, durations: { minMs: 1_000, maxMs: 5_000, slowMs: 5_000 }, fsx: { uniqueSnapshotNames: true, ...fsx } });
  world.fsx.addFileSystem(FS, 'OPENZFS');
  world.fsx.addVolume(VOL, FS, 'OPENZFS', { copyTagsToSnapshots: true, tags: [{ Key: 'app', Value: 'orders' }] });
  world.fsx.addVolume(VOL2, FS);
  world.fsx.addVolume(ONTAP_VOL, 'fs-0123456789abcdef1', 'ONTAP');
  return world;
}
afterEach(() => world?.dispose());

const create = (input: Partial<{ VolumeId: string; Name: string; ClientRequestToken: string; Tags: any[] }>) =>
  client.send(new CreateSnapshotCommand({ VolumeId: VOL, Name: 'snap', ...input }));

/** Lets simulated time pass: lifecycles move on, deleted snapshots go. */
const wait = (ms: number) => world.clock.advance(ms);

describe('FSx fake: OpenZFS snapshots', () => {
  test('a token with the same parameters gets the same snapshot; with other tags, IncompatibleParameterError', async () => {
    newWorld();
    const a = await create({ ClientRequestToken: 'tok-1', Tags: [{ Key: 'k', Value: '1' }] });
    const b = await create({ ClientRequestToken: 'tok-1', Tags: [{ Key: 'k', Value: '1' }] });
    expect(b.Snapshot?.SnapshotId).toBe(a.Snapshot?.SnapshotId);
    const err = await rejection(create({ ClientRequestToken: 'tok-1', Tags: [{ Key: 'k', Value: '2' }] }));
    expect(err.name).toBe('IncompatibleParameterError');
  });

  test('tokenMemoryMs: a token is forgotten that long after the request that used it, for CreateSnapshot and CreateBackup alike: then it is a new request', async () => {
    newWorld({ tokenMemoryMs: 60_000 });
    const a = await create({ Name: 'a', ClientRequestToken: 'tok-a' });
    const backUp = () => client.send(new CreateBackupCommand({ FileSystemId: FS, ClientRequestToken: 'tok-b' }));
    const b = await backUp();
    wait(60_000);
    // Remembered for exactly that long: the same snapshot and backup back.
    expect((await create({ Name: 'a', ClientRequestToken: 'tok-a' })).Snapshot?.SnapshotId).toBe(a.Snapshot?.SnapshotId);
    expect((await backUp()).Backup?.BackupId).toBe(b.Backup?.BackupId);
    wait(60_001);
    // Forgotten: a new backup; a new snapshot but for the name, which its volume still has.
    expect((await backUp()).Backup?.BackupId).not.toBe(b.Backup?.BackupId);
    expect((await rejection(create({ Name: 'a', ClientRequestToken: 'tok-a' }))).name).toBe('BadRequest');
    expect((await create({ Name: 'a2', ClientRequestToken: 'tok-a' })).Snapshot?.SnapshotId).not.toBe(a.Snapshot?.SnapshotId);
  });

  test('a name is unique on its volume (BadRequest), not across volumes, and free again once its snapshot is gone', async () => {
    newWorld();
    const first = await create({ Name: 'hourly-1' });
    const err = await rejection(create({ Name: 'hourly-1', ClientRequestToken: 'other' }));
    expect(err).toMatchObject({ name: 'BadRequest', message: expect.stringMatching(/hourly-1 already exists on volume fsvol-0000000000000000a/) });
    await expect(create({ VolumeId: VOL2, Name: 'hourly-1' })).resolves.toBeDefined();
    wait(10_000);
    await client.send(new DeleteSnapshotCommand({ SnapshotId: first.Snapshot!.SnapshotId! }));
    // DELETING still holds the name; gone, it does not.
    expect((await rejection(create({ Name: 'hourly-1' }))).name).toBe('BadRequest');
    wait(60_000);
    await expect(create({ Name: 'hourly-1' })).resolves.toBeDefined();
    // The option off (the default, for the older tests): names may repeat.
    newWorld({ uniqueSnapshotNames: false });
    await create({ Name: 'hourly-1' });
    await expect(create({ Name: 'hourly-1' })).resolves.toBeDefined();
  });

  test('only OpenZFS volumes have snapshots', async () => {
    newWorld();
    expect(await rejection(create({ VolumeId: ONTAP_VOL }))).toMatchObject({ name: 'BadRequest', message: expect.stringMatching(/OpenZFS volumes only/) });
    expect((await rejection(create({ VolumeId: 'fsvol-0000000000000000f' }))).name).toBe('VolumeNotFound');
  });

  test('CopyTagsToSnapshots: without Tags the volume\'s are copied, with Tags only those; more than 50 is BadRequest', async () => {
    newWorld();
    const copied = await create({ Name: 'a' });
    expect(copied.Snapshot?.Tags).toEqual([{ Key: 'app', Value: 'orders' }]);
    const given = await create({ Name: 'b', Tags: [{ Key: 'team', Value: 'data' }] });
    expect(given.Snapshot?.Tags).toEqual([{ Key: 'team', Value: 'data' }]);
    const many = Array.from({ length: 51 }, (_, i) => ({ Key: `k${i}`, Value: 'v' }));
    expect((await rejection(create({ Name: 'c', Tags: many }))).name).toBe('BadRequest');
    await expect(create({ Name: 'c', Tags: many.slice(0, 50) })).resolves.toBeDefined();
  });

  test('DescribeSnapshots: tags, the volume-id filter, every page; DescribeVolumes: CopyTagsToSnapshots and a clone\'s origin', async () => {
    newWorld();
    for (const name of ['a', 'b', 'c', 'd']) await create({ Name: name, Tags: [{ Key: 'n', Value: name }] });
    await create({ VolumeId: VOL2, Name: 'other' });
    const first = await client.send(new DescribeSnapshotsCommand({ Filters: [{ Name: 'volume-id', Values: [VOL] }] }));
    expect(first.Snapshots).toHaveLength(3);
    expect(first.NextToken).toBeDefined();
    const second = await client.send(new DescribeSnapshotsCommand({ Filters: [{ Name: 'volume-id', Values: [VOL] }], NextToken: first.NextToken }));
    expect([...first.Snapshots!, ...second.Snapshots!].map((s) => s.Tags)).toEqual(['a', 'b', 'c', 'd'].map((n) => [{ Key: 'n', Value: n }]));

    wait(10_000);
    const clone = world.fsx.cloneVolumeFrom(first.Snapshots![0].SnapshotId!)!;
    const volumes = await client.send(new DescribeVolumesCommand({ VolumeIds: [VOL, clone] }));
    expect(volumes.Volumes?.find((v) => v.VolumeId === VOL)?.OpenZFSConfiguration).toMatchObject({ CopyTagsToSnapshots: true });
    expect(volumes.Volumes?.find((v) => v.VolumeId === clone)?.OpenZFSConfiguration?.OriginSnapshot)
      .toEqual({ SnapshotARN: first.Snapshots![0].ResourceARN, CopyStrategy: 'CLONE' });
  });

  test('a snapshot a live volume was cloned from cannot be deleted (BadRequest); once the clone is gone it can', async () => {
    newWorld();
    const id = (await create({ Name: 'a' })).Snapshot!.SnapshotId!;
    expect(world.fsx.cloneVolumeFrom(id)).toBeUndefined(); // still CREATING: FSx refuses the clone
    wait(10_000);
    const clone = world.fsx.cloneVolumeFrom(id)!;
    expect(world.fsx.clonesOf(id)).toEqual([clone]);
    const err = await rejection(client.send(new DeleteSnapshotCommand({ SnapshotId: id })));
    expect(err).toMatchObject({ name: 'BadRequest', message: expect.stringMatching(/dependent clone volumes/) });
    expect(world.fsx.snapshot(id)?.Lifecycle).toBe('AVAILABLE');
    expect(world.fsx.snapshotDeletes).toEqual([]);
    world.fsx.removeClone(clone);
    await expect(client.send(new DeleteSnapshotCommand({ SnapshotId: id }))).resolves.toMatchObject({ Lifecycle: 'DELETING' });
    expect(world.fsx.snapshotDeletes).toEqual([expect.objectContaining({ snapshotId: id, volumeId: VOL, liveClones: [], newestOfTarget: true })]);
  });

  test('BROKEN variant: allowDeleteOfClonedSnapshot deletes it, and the record says a clone was live', async () => {
    newWorld({ allowDeleteOfClonedSnapshot: true });
    const id = (await create({ Name: 'a' })).Snapshot!.SnapshotId!;
    wait(10_000);
    const clone = world.fsx.cloneVolumeFrom(id)!;
    await client.send(new DeleteSnapshotCommand({ SnapshotId: id }));
    expect(world.fsx.snapshotDeletes).toEqual([expect.objectContaining({ snapshotId: id, liveClones: [clone] })]);
  });
});

// ---------------------------------------------------------------------------------------------
// The scheduled handler against the fake.
// ---------------------------------------------------------------------------------------------

function tick(time: number, overrides: Partial<OpenZfsSnapshotTickInput> = {}): OpenZfsSnapshotTickInput {
  return {
    Operation: 'OpenZfsSnapshot',
    Time: new Date(time).toISOString(),
    StackId: STACK_ID,
    Schedule: SCHEDULE,
    VolumeIds: [VOL, VOL2],
    NamePrefix: 'quarter',
    ...overrides,
  };
}

/** The sum of a metric over every invocation of the test. */
const total = (name: string) => addMetric().mock.calls.filter(([n]) => n === name).reduce((sum, [, , value]) => sum + value, 0);

/** Deletes that acted on a snapshot a live volume was cloned from: what retention must never do. */
function clonedDeletes(w: SimWorld): string[] {
  return w.fsx.snapshotDeletes.filter((d) => d.liveClones.length > 0).map((d) => `deleted ${d.snapshotId} of ${d.volumeId}, cloned by ${d.liveClones.join(', ')}`);
}

/** More than one snapshot the library made for one volume and one tick (the token tag names the tick). */
function duplicates(w: SimWorld): string[] {
  const groups = new Map<string, string[]>();
  for (const c of w.copies()) {
    if (c.kind !== 'fsx-snapshot' || c.foreign || c.serviceFailed) continue;
    const key = `${c.target}#${tagValue(c.tags, OWNERSHIP_TAG_KEYS.token)}`;
    groups.set(key, [...(groups.get(key) ?? []), c.id]);
  }
  return [...groups].filter(([, ids]) => ids.length > 1).map(([key, ids]) => `${ids.length} snapshots for ${key}: ${ids.join(', ')}`);
}

/** Four quarter-hourly ticks keeping 1 snapshot per volume; after the first, a user clones its snapshot of VOL. */
async function ticksWithAClone(w: SimWorld): Promise<{ errors: string[]; clonedSnapshot: string }> {
  const errors: string[] = [];
  let clonedSnapshot = '';
  for (let i = 0; i < 4; i++) {
    const at = w.clock.now();
    await handler(tick(at, { KeepLast: 1 })).catch((e) => errors.push(e.message));
    w.clock.advance(QUARTER_HOUR);
    if (i === 0) {
      clonedSnapshot = w.copies().find((c) => c.kind === 'fsx-snapshot' && c.target === VOL && c.ready)!.id;
      w.fsx.cloneVolumeFrom(clonedSnapshot);
    }
  }
  return { errors, clonedSnapshot };
}

describe('the scheduled snapshot handler against the fake', () => {
  test('retention keeps the snapshot a volume was cloned from, counts it, and the ticks succeed; the other volume is pruned', async () => {
    newWorld();
    const { errors, clonedSnapshot } = await ticksWithAClone(world);
    expect(errors).toEqual([]);
    expect(clonedDeletes(world)).toEqual([]);
    expect(world.fsx.snapshot(clonedSnapshot)?.Lifecycle).toBe('AVAILABLE');
    // A tick's own snapshot is still CREATING when it prunes, so the newest AVAILABLE one is the
    // previous tick's: ticks 3 and 4 tried the cloned one (kept), and pruned VOL2's first two and
    // VOL's second.
    expect(total('SnapshotsKeptInUse')).toBe(2);
    expect(total('SnapshotsPruned')).toBe(3);
    expect(total('SnapshotsFailed') + total('PruneFailures')).toBe(0);
    expect(world.copies().filter((c) => c.kind === 'fsx-snapshot' && c.target === VOL2 && c.exists)).toHaveLength(2);
  });

  test('with the BROKEN fake that deletes cloned snapshots the same run breaks the promise, and the checks catch it', async () => {
    newWorld({ allowDeleteOfClonedSnapshot: true });
    const { errors } = await ticksWithAClone(world);
    expect(errors).toEqual([]);
    expect(clonedDeletes(world)).toEqual([expect.stringMatching(/cloned by fsvol-/)]);
    // What the faithful fake's test asserts fails here: the refusal is what the handler's kept path rests on.
    expect(total('SnapshotsKeptInUse')).toBe(0);
  });

  test('duplicate deliveries and lost responses: one snapshot per volume per tick', async () => {
    newWorld({}, [{ kind: 'lost-response', command: 'CreateSnapshotCommand' }, { kind: 'lost-response', command: 'CreateSnapshotCommand', skip: 3 }]);
    for (let i = 0; i < 3; i++) {
      const at = world.clock.now();
      await handler(tick(at));
      await handler(tick(at + 20_000)); // a duplicate delivery, its time 20 s later
      world.clock.advance(QUARTER_HOUR);
    }
    expect(duplicates(world)).toEqual([]);
    expect(world.copies().filter((c) => c.kind === 'fsx-snapshot')).toHaveLength(6);
  });

  describe('a handler that ignores the token', () => {
    /** One tick of VOL whose CreateSnapshot response is lost, the handler's CreateSnapshot sent without ClientRequestToken. */
    async function lostResponseTick(fsx: FakeFsxOptions) {
      newWorld(fsx, [{ kind: 'lost-response', command: 'CreateSnapshotCommand' }]);
      const withoutToken = (c: unknown) => c instanceof CreateSnapshotCommand && delete c.input.ClientRequestToken;
      await withTamperedClient({ before: withoutToken }, () => handler(tick(world.clock.now(), { VolumeIds: [VOL] })));
      return duplicates(world);
    }

    test('is caught as a duplicate where names may repeat (the fake\'s token memory is what it depends on)', async () => {
      expect(await lostResponseTick({ uniqueSnapshotNames: false })).toEqual([expect.stringMatching(/^2 snapshots for fsvol-0000000000000000a#css-/)]);
    });

    test('is still held to one snapshot where names are unique, as in FSx: the tick\'s name is refused and its snapshot found by its token tag', async () => {
      expect(await lostResponseTick({})).toEqual([]);
      expect(world.core.log.filter((c) => c.command === 'CreateSnapshotCommand').map((c) => c.outcome)).toEqual(['ok+lost-response', 'BadRequest']);
    });
  });
});
