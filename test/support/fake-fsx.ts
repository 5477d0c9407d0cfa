import {
  CreateBackupCommand,
  CreateSnapshotCommand,
  DeleteBackupCommand,
  DeleteSnapshotCommand,
  DescribeBackupsCommand,
  DescribeFileSystemsCommand,
  DescribeSnapshotsCommand,
  DescribeVolumesCommand,
  ListTagsForResourceCommand,
  TagResourceCommand,
  type Backup,
  type Snapshot,
} from '@aws-sdk/client-fsx';
import type { AwsStub } from 'aws-sdk-client-mock';
import { awsError } from './aws-errors';
import { ACCOUNT, CallContext, CommandTable, CopyView, REGION, SimCore, SimTag, canonical, mergeTags, page, routeCommands } from './sim-core';

export interface FakeFsxOptions {
  /** How long a deleted snapshot stays DELETING before it is gone (ms). */
  readonly snapshotDeleteMs?: number;
  /** Live snapshots per volume before ServiceLimitExceeded. */
  readonly maxSnapshotsPerVolume?: number;
  /** Live user-initiated backups before ServiceLimitExceeded. */
  readonly maxBackups?: number;
  /**
   * How long FSx remembers a client token after the request that used it (ms): a request with a
   * forgotten token is a new request. AWS does not document how long FSx keeps them.
   * @default forever
   */
  readonly tokenMemoryMs?: number;
  /** Page size of the describe calls (small, so that paging is exercised). */
  readonly pageSize?: number;
  /**
   * FSx refuses a second snapshot of a name the volume already has (a ZFS snapshot's name is
   * unique in its dataset): BadRequest. Off only for tests that show what the client token does
   * without the names' help.
   * @default true
   */
  readonly uniqueSnapshotNames?: boolean;
  /**
   * BROKEN on purpose: DeleteSnapshot deletes a snapshot a volume was cloned from, which FSx
   * refuses. Only for the test that shows the refusal is load-bearing
   * (test/support/fake-fsx-snapshots.test.ts).
   */
  readonly allowDeleteOfClonedSnapshot?: boolean;
}

interface FileSystem {
  readonly id: string;
  readonly type: 'OPENZFS' | 'WINDOWS' | 'LUSTRE' | 'ONTAP';
  readonly copyTagsToBackups: boolean;
  readonly tags: SimTag[];
  /** FSx refuses to back it up (a scratch Lustre file system, or one linked to a data repository). */
  readonly backupUnsupported: boolean;
}

interface Volume {
  readonly id: string;
  readonly fileSystemId: string;
  readonly type: 'OPENZFS' | 'ONTAP';
  /** ONTAP volumes only. */
  readonly copyTagsToBackups: boolean;
  /** OpenZFS volumes only: CreateSnapshot without Tags copies the volume's. */
  readonly copyTagsToSnapshots: boolean;
  readonly tags: SimTag[];
  /** A clone (CreateVolume with OriginSnapshot, CopyStrategy CLONE): the snapshot it depends on. */
  readonly originSnapshotId?: string;
}

interface Timeline {
  /** When the copy reaches its end state, and which. */
  readonly at: number;
  readonly to: string;
}

interface SnapshotRecord {
  readonly id: string;
  readonly name: string;
  readonly volumeId: string;
  readonly created: number;
  lifecycle: string;
  tags: SimTag[];
  next?: Timeline;
  /** When a DELETING snapshot is gone. */
  goneAt?: number;
  gone: boolean;
  reason?: string;
  readonly foreign: boolean;
  readonly createdDuring?: CallContext;
  readonly serviceFailed: boolean;
  deletedByCall: boolean;
}

/** Who made a backup, as DescribeBackups `Type` says. */
export type BackupType = 'USER_INITIATED' | 'AUTOMATIC' | 'AWS_BACKUP';

interface BackupRecord {
  readonly id: string;
  readonly fileSystemId: string;
  readonly volumeId?: string;
  readonly type: BackupType;
  /** Set on a copy (CopyBackup): the backup it was copied from, and that one's region. */
  readonly sourceBackupId?: string;
  readonly sourceRegion?: string;
  readonly created: number;
  lifecycle: string;
  tags: SimTag[];
  next?: Timeline;
  gone: boolean;
  failure?: string;
  readonly foreign: boolean;
  readonly createdDuring?: CallContext;
  readonly serviceFailed: boolean;
  deletedByCall: boolean;
}

interface TokenUse {
  readonly params: string;
  readonly id: string;
  readonly at: number;
}

const BACKUP_BUSY = new Set(['CREATING', 'PENDING', 'TRANSFERRING', 'COPYING']);

/** One DeleteBackup that acted, with what the account looked like at that moment. */
export interface BackupDelete {
  readonly at: number;
  readonly backupId: string;
  /** The volume or file system the backup is of. */
  readonly target: string;
  readonly lifecycle: string;
  readonly tags: SimTag[];
  readonly foreign: boolean;
  /**
   * It was the newest AVAILABLE backup of its target among those carrying the same ownership
   * tags (managed-by, stack-id, owner) as it.
   */
  readonly newestOfItsOwner: boolean;
  /** It was the newest AVAILABLE backup of its target, whoever made it. */
  readonly newestOfTarget: boolean;
}

/** One DeleteSnapshot that acted, with what the volume looked like at that moment. */
export interface SnapshotDelete {
  readonly at: number;
  readonly snapshotId: string;
  readonly volumeId: string;
  readonly lifecycle: string;
  readonly tags: SimTag[];
  readonly foreign: boolean;
  /** It was the newest AVAILABLE snapshot of its volume among those carrying the same ownership tags as it. */
  readonly newestOfItsOwner: boolean;
  /** It was the newest AVAILABLE snapshot of its volume, whoever made it. */
  readonly newestOfTarget: boolean;
  /** Volumes cloned from it that were still there (FSx refuses such a delete; only the broken variant lets it act). */
  readonly liveClones: string[];
}

/** FSx as the handlers see it: file systems, volumes, backups and OpenZFS snapshots. */
export class FakeFsx {
  private readonly fileSystems = new Map<string, FileSystem>();
  private readonly volumes = new Map<string, Volume>();
  private readonly snapshots = new Map<string, SnapshotRecord>();
  private readonly backups = new Map<string, BackupRecord>();
  private readonly tokens = new Map<string, TokenUse>();
  private readonly options: Required<FakeFsxOptions>;
  /** Every DeleteBackup that acted, in order. */
  public readonly backupDeletes: BackupDelete[] = [];
  /** Every DeleteSnapshot that acted, in order. */
  public readonly snapshotDeletes: SnapshotDelete[] = [];

  constructor(
    private readonly core: SimCore,
    options: FakeFsxOptions = {},
  ) {
    this.options = {
      snapshotDeleteMs: 30_000,
      maxSnapshotsPerVolume: 10_000,
      maxBackups: 10_000,
      tokenMemoryMs: Number.POSITIVE_INFINITY,
      pageSize: 3,
      allowDeleteOfClonedSnapshot: false,
      uniqueSnapshotNames: true,
      ...options,
    };
  }

  // ---- seeding (the test's world, not the library's) ----

  public addFileSystem(
    id: string,
    type: FileSystem['type'] = 'OPENZFS',
    opts: { copyTagsToBackups?: boolean; tags?: SimTag[]; backupUnsupported?: boolean } = {},
  ) {
    this.fileSystems.set(id, {
      id,
      type,
      copyTagsToBackups: opts.copyTagsToBackups ?? false,
      tags: opts.tags ?? [],
      backupUnsupported: opts.backupUnsupported ?? false,
    });
  }

  public addVolume(
    id: string,
    fileSystemId: string,
    type: Volume['type'] = 'OPENZFS',
    opts: { copyTagsToBackups?: boolean; copyTagsToSnapshots?: boolean; tags?: SimTag[] } = {},
  ) {
    this.volumes.set(id, {
      id,
      fileSystemId,
      type,
      copyTagsToBackups: opts.copyTagsToBackups ?? false,
      copyTagsToSnapshots: opts.copyTagsToSnapshots ?? false,
      tags: opts.tags ?? [],
    });
  }

  /**
   * A user's new OpenZFS volume cloned from an AVAILABLE snapshot (CreateVolume with
   * `OriginSnapshot`, `CopyStrategy: CLONE`): while it exists, FSx refuses to delete the snapshot.
   * Undefined when the snapshot is not AVAILABLE (FSx refuses the clone).
   */
  public cloneVolumeFrom(snapshotId: string): string | undefined {
    this.refresh();
    const s = this.snapshots.get(snapshotId);
    const origin = s && this.volumes.get(s.volumeId);
    if (!s || s.gone || s.lifecycle !== 'AVAILABLE' || !origin) return undefined;
    const id = this.core.newId('fsvol-');
    this.volumes.set(id, {
      id,
      fileSystemId: origin.fileSystemId,
      type: 'OPENZFS',
      copyTagsToBackups: false,
      copyTagsToSnapshots: false,
      tags: [],
      originSnapshotId: snapshotId,
    });
    return id;
  }

  /** The user deletes a clone: its origin snapshot can be deleted again. */
  public removeClone(volumeId: string) {
    if (this.volumes.get(volumeId)?.originSnapshotId) this.volumes.delete(volumeId);
  }

  /** The volumes cloned from a snapshot that still exist. */
  public clonesOf(snapshotId: string): string[] {
    return [...this.volumes.values()].filter((v) => v.originSnapshotId === snapshotId).map((v) => v.id);
  }

  public removeFileSystem(id: string) {
    this.fileSystems.delete(id);
  }

  public removeVolume(id: string) {
    this.volumes.delete(id);
  }

  /** A snapshot someone else made (AVAILABLE): the library must never delete or adopt it. */
  public seedSnapshot(volumeId: string, tags: SimTag[], lifecycle = 'AVAILABLE'): string {
    const id = this.core.newId('fsvolsnap-');
    this.snapshots.set(id, {
      id,
      name: `foreign-${id}`,
      volumeId,
      created: this.core.clock.now(),
      lifecycle,
      tags,
      gone: false,
      foreign: true,
      serviceFailed: false,
      deletedByCall: false,
    });
    return id;
  }

  /**
   * A backup someone else made (AVAILABLE): of a file system, or of an ONTAP volume (`volumeId`),
   * made `ageMs` ago, by a user (the default), by FSx (`AUTOMATIC`) or by AWS Backup.
   */
  public seedBackup(
    fileSystemId: string,
    tags: SimTag[],
    lifecycle = 'AVAILABLE',
    opts: { volumeId?: string; ageMs?: number; type?: BackupType } = {},
  ): string {
    const id = this.core.newId('backup-');
    this.backups.set(id, {
      id,
      fileSystemId,
      volumeId: opts.volumeId,
      type: opts.type ?? 'USER_INITIATED',
      created: this.core.clock.now() - (opts.ageMs ?? 0),
      lifecycle,
      tags,
      gone: false,
      foreign: true,
      serviceFailed: false,
      deletedByCall: false,
    });
    return id;
  }

  /**
   * A user's `CopyBackup` of an AVAILABLE backup within the region: a new USER_INITIATED backup
   * of the same file system or volume whose `SourceBackupId` names the source, with the source's
   * tags when `copyTags` (ownership tags included: FSx copies every tag). Foreign: the library
   * must never delete it. Undefined when the source is not AVAILABLE (FSx refuses the copy).
   */
  public copyBackup(sourceId: string, opts: { copyTags?: boolean; tags?: SimTag[] } = {}): string | undefined {
    this.refresh();
    const source = this.backups.get(sourceId);
    if (!source || source.gone || source.lifecycle !== 'AVAILABLE') return undefined;
    const id = this.core.newId('backup-');
    this.backups.set(id, {
      id,
      fileSystemId: source.fileSystemId,
      volumeId: source.volumeId,
      type: 'USER_INITIATED',
      sourceBackupId: source.id,
      sourceRegion: REGION,
      created: this.core.clock.now(),
      lifecycle: 'AVAILABLE',
      tags: mergeTags(opts.copyTags ? [...source.tags] : [], opts.tags ?? []),
      gone: false,
      foreign: true,
      serviceFailed: false,
      deletedByCall: false,
    });
    return id;
  }

  /** The backups the library made (not foreign), for scenarios that act on them. */
  public ownBackupIds(lifecycle = 'AVAILABLE'): string[] {
    this.refresh();
    return [...this.backups.values()].filter((b) => !b.foreign && !b.gone && b.lifecycle === lifecycle).map((b) => b.id);
  }

  // ---- views for invariants ----

  public snapshot(id: string): Snapshot | undefined {
    this.refresh();
    const s = this.snapshots.get(id);
    return s && !s.gone ? this.toSnapshot(s) : undefined;
  }

  public backup(id: string): Backup | undefined {
    this.refresh();
    const b = this.backups.get(id);
    return b && !b.gone ? this.toBackup(b) : undefined;
  }

  public copies(): CopyView[] {
    this.refresh();
    const snaps: CopyView[] = [...this.snapshots.values()].map((s) => ({
      kind: 'fsx-snapshot',
      id: s.id,
      target: s.volumeId,
      tags: s.tags,
      state: s.gone ? 'GONE' : s.lifecycle,
      exists: !s.gone && s.lifecycle !== 'DELETING',
      ready: !s.gone && s.lifecycle === 'AVAILABLE',
      foreign: s.foreign,
      createdDuring: s.createdDuring,
      serviceFailed: s.serviceFailed,
      deletedByCall: s.deletedByCall,
    }));
    const backups: CopyView[] = [...this.backups.values()].map((b) => ({
      kind: 'fsx-backup',
      id: b.id,
      target: b.volumeId ?? b.fileSystemId,
      tags: b.tags,
      state: b.gone ? 'DELETED' : b.lifecycle,
      exists: !b.gone && b.lifecycle !== 'DELETED' && b.lifecycle !== 'FAILED',
      ready: !b.gone && b.lifecycle === 'AVAILABLE',
      foreign: b.foreign,
      createdDuring: b.createdDuring,
      serviceFailed: b.serviceFailed,
      deletedByCall: b.deletedByCall,
    }));
    return [...snaps, ...backups];
  }

  /** Wires the fake into a mocked FSxClient. */
  public install(mock: AwsStub<any, any, any>): void {
    const table: CommandTable = [];
    const on = (cmd: any, fn: (input: any) => Promise<unknown>) => table.push([cmd, fn]);
    on(CreateSnapshotCommand, (input) =>
      this.core.handle('fsx', 'CreateSnapshotCommand', input, { mutating: true, creates: true }, (r) => this.createSnapshot(input, r)));
    on(DescribeSnapshotsCommand, (input) =>
      this.core.handle('fsx', 'DescribeSnapshotsCommand', input, { mutating: false }, () => this.describeSnapshots(input)));
    on(DeleteSnapshotCommand, (input) =>
      this.core.handle('fsx', 'DeleteSnapshotCommand', input, { mutating: true }, (r) => this.deleteSnapshot(input, r)));
    on(CreateBackupCommand, (input) =>
      this.core.handle('fsx', 'CreateBackupCommand', input, { mutating: true, creates: true }, (r) => this.createBackup(input, r)));
    on(DescribeBackupsCommand, (input) =>
      this.core.handle('fsx', 'DescribeBackupsCommand', input, { mutating: false }, () => this.describeBackups(input)));
    on(DeleteBackupCommand, (input) =>
      this.core.handle('fsx', 'DeleteBackupCommand', input, { mutating: true }, (r) => this.deleteBackup(input, r)));
    on(TagResourceCommand, (input) =>
      this.core.handle('fsx', 'TagResourceCommand', input, { mutating: true }, (r) => this.tagResource(input, r)));
    on(DescribeFileSystemsCommand, (input) =>
      this.core.handle('fsx', 'DescribeFileSystemsCommand', input, { mutating: false }, () => this.describeFileSystems(input)));
    on(DescribeVolumesCommand, (input) =>
      this.core.handle('fsx', 'DescribeVolumesCommand', input, { mutating: false }, () => this.describeVolumes(input)));
    on(ListTagsForResourceCommand, (input) =>
      this.core.handle('fsx', 'ListTagsForResourceCommand', input, { mutating: false }, () => this.listTags(input)));
    routeCommands(mock, 'fsx', table);
  }

  // ---- lifecycle ----

  /** Moves every lifecycle forward to the current simulated time. */
  public refresh(): void {
    const now = this.core.clock.now();
    for (const s of this.snapshots.values()) {
      if (s.next && s.next.at <= now) {
        s.lifecycle = s.next.to;
        if (s.lifecycle === 'DELETING') {
          s.reason = 'The snapshot could not be created: the volume ran out of space';
          s.goneAt = s.next.at + this.options.snapshotDeleteMs;
        }
        s.next = undefined;
      }
      if (s.goneAt !== undefined && s.goneAt <= now) s.gone = true;
    }
    for (const b of this.backups.values()) {
      if (b.next && b.next.at <= now) {
        b.lifecycle = b.next.to;
        if (b.lifecycle === 'FAILED') b.failure = 'The backup could not be completed';
        b.next = undefined;
      }
    }
    for (const [token, use] of this.tokens) if (now - use.at > this.options.tokenMemoryMs) this.tokens.delete(token);
  }

  // ---- snapshots ----

  private createSnapshot(input: any, record: any) {
    this.refresh();
    const params = canonical({ ...input, ClientRequestToken: undefined });
    const replay = this.replay(input.ClientRequestToken, params);
    if (replay) {
      const s = this.snapshots.get(replay)!;
      if (record) record.resourceId = s.id;
      return { Snapshot: this.toSnapshot(s) };
    }
    if (!input.Name || !/^[a-zA-Z0-9_:.-]{1,203}$/.test(input.Name)) throw awsError('BadRequest', `Invalid snapshot name ${input.Name}`, 400);
    const volume = this.volumes.get(input.VolumeId);
    if (!volume) throw awsError('VolumeNotFound', `Volume ${input.VolumeId} does not exist`, 400);
    if (volume.type !== 'OPENZFS') throw awsError('BadRequest', `Snapshots are supported for OpenZFS volumes only; ${volume.id} is ${volume.type}`, 400);
    // A ZFS snapshot's name is unique within its dataset (volume).
    if (this.options.uniqueSnapshotNames && [...this.snapshots.values()].some((s) => s.volumeId === volume.id && !s.gone && s.name === input.Name)) {
      throw awsError('BadRequest', `A snapshot with the name ${input.Name} already exists on volume ${volume.id}`, 400);
    }
    validateTags(input.Tags);
    const live = [...this.snapshots.values()].filter((s) => s.volumeId === input.VolumeId && !s.gone).length;
    if (live >= this.options.maxSnapshotsPerVolume) {
      throw awsError('ServiceLimitExceeded', 'Snapshot limit exceeded for the volume', 400, { Limit: 'TOTAL_USER_INITIATED_BACKUPS' });
    }
    const plan = this.core.faults.lifecycle('fsx', 'CreateSnapshotCommand');
    const now = this.core.clock.now();
    const s: SnapshotRecord = {
      id: this.core.newId('fsvolsnap-'),
      name: input.Name,
      volumeId: input.VolumeId,
      created: now,
      lifecycle: 'CREATING',
      // Tags in the request turn off CopyTagsToSnapshots for this snapshot.
      tags: input.Tags?.length ? [...input.Tags] : volume.copyTagsToSnapshots ? [...volume.tags] : [],
      next: { at: now + plan.durationMs, to: plan.fails ? 'DELETING' : 'AVAILABLE' },
      gone: false,
      foreign: false,
      createdDuring: this.core.context,
      serviceFailed: plan.fails,
      deletedByCall: false,
    };
    this.snapshots.set(s.id, s);
    if (input.ClientRequestToken) this.tokens.set(input.ClientRequestToken, { params, id: s.id, at: now });
    if (record) record.resourceId = s.id;
    return { Snapshot: this.toSnapshot(s) };
  }

  private describeSnapshots(input: any) {
    this.refresh();
    let list = [...this.snapshots.values()].filter((s) => !s.gone);
    if (input.SnapshotIds?.length) {
      const missing = input.SnapshotIds.filter((id: string) => !list.some((s) => s.id === id));
      if (missing.length) throw awsError('SnapshotNotFound', `Snapshot(s) not found: ${missing.join(', ')}`, 400);
      list = list.filter((s) => input.SnapshotIds.includes(s.id));
    }
    for (const f of input.Filters ?? []) {
      if (f.Name === 'volume-id') list = list.filter((s) => f.Values.includes(s.volumeId));
      else if (f.Name === 'file-system-id') list = list.filter((s) => f.Values.includes(this.volumes.get(s.volumeId)?.fileSystemId));
      else throw awsError('BadRequest', `Unknown filter ${f.Name}`, 400);
    }
    const { items, nextToken } = page(list, input.MaxResults, input.NextToken, this.options.pageSize);
    return { Snapshots: items.map((s) => this.toSnapshot(s)), NextToken: nextToken };
  }

  private deleteSnapshot(input: any, record: any) {
    this.refresh();
    const s = this.snapshots.get(input.SnapshotId);
    if (!s || s.gone) throw awsError('SnapshotNotFound', `Snapshot ${input.SnapshotId} not found`, 400);
    if (record) Object.assign(record, { resourceId: s.id, tagsBefore: [...s.tags], foreign: s.foreign });
    const clones = this.clonesOf(s.id);
    if (clones.length > 0 && !this.options.allowDeleteOfClonedSnapshot) {
      // DeleteSnapshot's errors are BadRequest, SnapshotNotFound and InternalServerError; the
      // wording is ours (ZFS says "snapshot has dependent clones").
      throw awsError('BadRequest', `Unable to delete snapshot ${s.id}: it has dependent clone volumes (${clones.join(', ')}). Delete the clones first.`, 400);
    }
    if (s.lifecycle !== 'DELETING') {
      this.snapshotDeletes.push(this.describeSnapshotDelete(s, clones));
      s.lifecycle = 'DELETING';
      s.next = undefined;
      s.deletedByCall = true;
      s.goneAt = this.core.clock.now() + this.options.snapshotDeleteMs;
    }
    return { SnapshotId: s.id, Lifecycle: 'DELETING' };
  }

  // ---- backups ----

  private createBackup(input: any, record: any) {
    this.refresh();
    const params = canonical({ ...input, ClientRequestToken: undefined });
    const replay = this.replay(input.ClientRequestToken, params);
    if (replay) {
      const b = this.backups.get(replay)!;
      if (record) record.resourceId = b.id;
      return { Backup: this.toBackup(b) };
    }
    if (!!input.FileSystemId === !!input.VolumeId) throw awsError('BadRequest', 'Specify either FileSystemId or VolumeId', 400);
    let fs: FileSystem | undefined;
    let volume: Volume | undefined;
    if (input.VolumeId) {
      volume = this.volumes.get(input.VolumeId);
      if (!volume) throw awsError('VolumeNotFound', `Volume ${input.VolumeId} does not exist`, 400);
      if (volume.type !== 'ONTAP') throw awsError('BadRequest', 'VolumeId is supported for ONTAP volumes only', 400);
      fs = this.fileSystems.get(volume.fileSystemId);
    } else {
      fs = this.fileSystems.get(input.FileSystemId);
      if (!fs) throw awsError('FileSystemNotFound', `File system ${input.FileSystemId} does not exist`, 400);
      if (fs.type === 'ONTAP') throw awsError('BadRequest', 'ONTAP backups are of volumes: specify VolumeId', 400);
      if (fs.backupUnsupported) throw awsError('UnsupportedOperation', `File system ${fs.id} does not support backups`, 400);
    }
    validateTags(input.Tags);
    const fsId = fs?.id ?? '';
    // One backup at a time per file system (per volume for ONTAP volumes).
    const busy = [...this.backups.values()].some((b) =>
      b.fileSystemId === fsId && (b.volumeId ?? '') === (input.VolumeId ?? '') && !b.gone && BACKUP_BUSY.has(b.lifecycle));
    if (busy) throw awsError('BackupInProgress', `Another backup of ${input.VolumeId ?? fsId} is already in progress`, 400);
    const live = [...this.backups.values()].filter((b) => !b.gone && b.lifecycle !== 'FAILED').length;
    if (live >= this.options.maxBackups) {
      throw awsError('ServiceLimitExceeded', 'You have reached the limit of user-initiated backups', 400, { Limit: 'TOTAL_USER_INITIATED_BACKUPS' });
    }
    // Tags in the request turn off CopyTagsToBackups for this backup.
    const copies = volume ? volume.copyTagsToBackups : fs?.copyTagsToBackups;
    const tags = input.Tags?.length ? [...input.Tags] : copies ? [...(volume ? volume.tags : fs?.tags ?? [])] : [];
    const plan = this.core.faults.lifecycle('fsx', 'CreateBackupCommand');
    const now = this.core.clock.now();
    const b: BackupRecord = {
      id: this.core.newId('backup-'),
      fileSystemId: fsId,
      volumeId: input.VolumeId,
      type: 'USER_INITIATED',
      created: now,
      lifecycle: 'CREATING',
      tags,
      next: { at: now + plan.durationMs, to: plan.fails ? 'FAILED' : 'AVAILABLE' },
      gone: false,
      foreign: false,
      createdDuring: this.core.context,
      serviceFailed: plan.fails,
      deletedByCall: false,
    };
    this.backups.set(b.id, b);
    if (input.ClientRequestToken) this.tokens.set(input.ClientRequestToken, { params, id: b.id, at: now });
    if (record) record.resourceId = b.id;
    return { Backup: this.toBackup(b) };
  }

  private describeBackups(input: any) {
    this.refresh();
    let list = [...this.backups.values()].filter((b) => !b.gone);
    if (input.BackupIds?.length) {
      const missing = input.BackupIds.filter((id: string) => !list.some((b) => b.id === id));
      if (missing.length) throw awsError('BackupNotFound', `Backup(s) not found: ${missing.join(', ')}`, 400);
      list = list.filter((b) => input.BackupIds.includes(b.id));
    }
    for (const f of input.Filters ?? []) {
      if (f.Name === 'file-system-id') list = list.filter((b) => f.Values.includes(b.fileSystemId));
      else if (f.Name === 'volume-id') list = list.filter((b) => f.Values.includes(b.volumeId));
      else if (f.Name === 'backup-type') list = list.filter((b) => f.Values.includes(b.type));
      else if (f.Name === 'file-system-type') list = list.filter((b) => f.Values.includes(this.fileSystems.get(b.fileSystemId)?.type));
      else throw awsError('BadRequest', `Unknown filter ${f.Name}`, 400);
    }
    const { items, nextToken } = page(list, input.MaxResults, input.NextToken, this.options.pageSize);
    return { Backups: items.map((b) => this.toBackup(b)), NextToken: nextToken };
  }

  private describeFileSystems(input: any) {
    let list = [...this.fileSystems.values()];
    if (input.FileSystemIds?.length) {
      const missing = input.FileSystemIds.filter((id: string) => !this.fileSystems.has(id));
      if (missing.length) throw awsError('FileSystemNotFound', `File system(s) not found: ${missing.join(', ')}`, 400);
      list = list.filter((f) => input.FileSystemIds.includes(f.id));
    }
    const { items, nextToken } = page(list, input.MaxResults, input.NextToken, this.options.pageSize);
    return {
      FileSystems: items.map((f) => {
        const config = { CopyTagsToBackups: f.copyTagsToBackups };
        return {
          FileSystemId: f.id,
          FileSystemType: f.type,
          Lifecycle: 'AVAILABLE',
          ResourceARN: `arn:aws:fsx:${REGION}:${ACCOUNT}:file-system/${f.id}`,
          Tags: f.tags.map((t) => ({ Key: t.Key!, Value: t.Value! })),
          WindowsConfiguration: f.type === 'WINDOWS' ? config : undefined,
          LustreConfiguration: f.type === 'LUSTRE' ? config : undefined,
          OpenZFSConfiguration: f.type === 'OPENZFS' ? config : undefined,
          OntapConfiguration: f.type === 'ONTAP' ? {} : undefined,
        };
      }),
      NextToken: nextToken,
    };
  }

  private describeVolumes(input: any) {
    let list = [...this.volumes.values()];
    if (input.VolumeIds?.length) {
      const missing = input.VolumeIds.filter((id: string) => !this.volumes.has(id));
      if (missing.length) throw awsError('VolumeNotFound', `Volume(s) not found: ${missing.join(', ')}`, 400);
      list = list.filter((v) => input.VolumeIds.includes(v.id));
    }
    const { items, nextToken } = page(list, input.MaxResults, input.NextToken, this.options.pageSize);
    return {
      Volumes: items.map((v) => ({
        VolumeId: v.id,
        FileSystemId: v.fileSystemId,
        VolumeType: v.type,
        Lifecycle: 'CREATED',
        ResourceARN: `arn:aws:fsx:${REGION}:${ACCOUNT}:volume/${v.fileSystemId}/${v.id}`,
        Tags: v.tags.map((t) => ({ Key: t.Key!, Value: t.Value! })),
        OntapConfiguration: v.type === 'ONTAP' ? { CopyTagsToBackups: v.copyTagsToBackups } : undefined,
        OpenZFSConfiguration: v.type === 'OPENZFS'
          ? {
            CopyTagsToSnapshots: v.copyTagsToSnapshots,
            OriginSnapshot: v.originSnapshotId
              ? { SnapshotARN: this.snapshotArn(this.snapshots.get(v.originSnapshotId)!), CopyStrategy: 'CLONE' as const }
              : undefined,
          }
          : undefined,
      })),
      NextToken: nextToken,
    };
  }

  private deleteBackup(input: any, record: any) {
    this.refresh();
    const b = this.backups.get(input.BackupId);
    if (!b || b.gone) throw awsError('BackupNotFound', `Backup ${input.BackupId} not found`, 400);
    if (record) Object.assign(record, { resourceId: b.id, tagsBefore: [...b.tags], foreign: b.foreign });
    if (BACKUP_BUSY.has(b.lifecycle)) throw awsError('BackupInProgress', `Backup ${b.id} is still ${b.lifecycle}`, 400);
    this.backupDeletes.push(this.describeDelete(b));
    b.gone = true;
    b.lifecycle = 'DELETED';
    b.deletedByCall = true;
    return { BackupId: b.id, Lifecycle: 'DELETED' };
  }

  private describeDelete(b: BackupRecord): BackupDelete {
    const target = (r: BackupRecord) => r.volumeId ?? r.fileSystemId;
    const available = [...this.backups.values()].filter((r) => !r.gone && r.lifecycle === 'AVAILABLE' && target(r) === target(b));
    return {
      at: this.core.clock.now(),
      backupId: b.id,
      target: target(b),
      lifecycle: b.lifecycle,
      tags: [...b.tags],
      foreign: b.foreign,
      // Copies and backups FSx or AWS Backup made can carry the same tags: "its owner's newest" is
      // among the user-initiated originals.
      ...newness(b, available, available.filter((r) => r.type === 'USER_INITIATED' && !r.sourceBackupId)),
    };
  }

  private describeSnapshotDelete(s: SnapshotRecord, liveClones: string[]): SnapshotDelete {
    const available = [...this.snapshots.values()].filter((r) => !r.gone && r.lifecycle === 'AVAILABLE' && r.volumeId === s.volumeId);
    return {
      at: this.core.clock.now(),
      snapshotId: s.id,
      volumeId: s.volumeId,
      lifecycle: s.lifecycle,
      tags: [...s.tags],
      foreign: s.foreign,
      ...newness(s, available, available),
      liveClones,
    };
  }

  // ---- tags ----

  private findByArn(arn: string): SnapshotRecord | BackupRecord | undefined {
    const id = arn.split('/').pop() ?? '';
    const r = this.snapshots.get(id) ?? this.backups.get(id);
    return r && !r.gone ? r : undefined;
  }

  private tagResource(input: any, record: any) {
    this.refresh();
    const r = this.findByArn(input.ResourceARN);
    if (!r) throw awsError('ResourceNotFound', `Resource ${input.ResourceARN} not found`, 400);
    if (record) Object.assign(record, { resourceId: r.id, tagsBefore: [...r.tags], foreign: r.foreign });
    validateTags(input.Tags);
    r.tags = mergeTags(r.tags, input.Tags);
    return {};
  }

  private listTags(input: any) {
    this.refresh();
    const id = String(input.ResourceARN).split('/').pop() ?? '';
    const target = this.fileSystems.get(id) ?? this.volumes.get(id);
    if (target) return { Tags: [...target.tags] };
    const r = this.findByArn(input.ResourceARN);
    if (!r) throw awsError('ResourceNotFound', `Resource ${input.ResourceARN} not found`, 400);
    return { Tags: [...r.tags] };
  }

  // ---- helpers ----

  /** The resource a replayed token made; IncompatibleParameterError if the parameters changed. */
  private replay(token: string | undefined, params: string): string | undefined {
    if (!token) return undefined;
    if (!/^[A-Za-z0-9_.-]{1,63}$/.test(token)) throw awsError('BadRequest', `Invalid ClientRequestToken ${token}`, 400);
    const use = this.tokens.get(token);
    if (!use) return undefined;
    if (use.params !== params) {
      throw awsError('IncompatibleParameterError', 'The client request token was already used with different parameters', 400, {
        Parameter: 'ClientRequestToken',
      });
    }
    return use.id;
  }

  private snapshotArn(s: SnapshotRecord): string {
    return `arn:aws:fsx:${REGION}:${ACCOUNT}:snapshot/${s.volumeId}/${s.id}`;
  }

  private toSnapshot(s: SnapshotRecord): Snapshot {
    return {
      SnapshotId: s.id,
      Name: s.name,
      VolumeId: s.volumeId,
      ResourceARN: this.snapshotArn(s),
      CreationTime: new Date(s.created),
      Lifecycle: s.lifecycle as Snapshot['Lifecycle'],
      LifecycleTransitionReason: s.reason ? { Message: s.reason } : undefined,
      Tags: s.tags.map((t) => ({ Key: t.Key!, Value: t.Value! })),
    };
  }

  private toBackup(b: BackupRecord): Backup {
    const fs = this.fileSystems.get(b.fileSystemId);
    return {
      BackupId: b.id,
      Lifecycle: b.lifecycle as Backup['Lifecycle'],
      FailureDetails: b.failure ? { Message: b.failure } : undefined,
      Type: b.type,
      SourceBackupId: b.sourceBackupId,
      SourceBackupRegion: b.sourceRegion,
      CreationTime: new Date(b.created),
      ResourceARN: `arn:aws:fsx:${REGION}:${ACCOUNT}:backup/${b.id}`,
      Tags: b.tags.map((t) => ({ Key: t.Key!, Value: t.Value! })),
      FileSystem: { FileSystemId: b.fileSystemId, FileSystemType: fs?.type },
      Volume: b.volumeId ? { VolumeId: b.volumeId } : undefined,
    };
  }
}

/** Whether a copy being deleted is the newest AVAILABLE one of its target, among its owner's (`owned`) and among all. */
function newness(
  copy: { readonly id: string; readonly tags: SimTag[] },
  available: ReadonlyArray<{ readonly id: string; readonly created: number; readonly tags: SimTag[] }>,
  owned: ReadonlyArray<{ readonly id: string; readonly created: number; readonly tags: SimTag[] }>,
): { newestOfItsOwner: boolean; newestOfTarget: boolean } {
  const ownerKey = (tags: SimTag[]) => ['managed-by', 'stack-id', 'owner']
    .map((k) => tags.find((t) => t.Key === `cdk-storage-snapshots:${k}`)?.Value ?? '').join('|');
  const newest = <T extends { readonly created: number }>(list: readonly T[]) =>
    list.reduce<T | undefined>((n, r) => (!n || r.created > n.created ? r : n), undefined);
  return {
    newestOfItsOwner: newest(owned.filter((r) => ownerKey(r.tags) === ownerKey(copy.tags)))?.id === copy.id,
    newestOfTarget: newest(available)?.id === copy.id,
  };
}

/** FSx's TagKey/TagValue pattern (its API model). */
const FSX_TAG_CHARACTERS = /^([\p{L}\p{Z}\p{N}_.:/=+\-@]*)$/u;

function validateTags(tags: SimTag[] | undefined): void {
  if (!tags) return;
  if (tags.length > 50) throw awsError('BadRequest', 'A resource can have at most 50 tags', 400);
  for (const t of tags) {
    if (!t.Key || t.Key.length > 128 || (t.Value ?? '').length > 256 || t.Key.startsWith('aws:') ||
      !FSX_TAG_CHARACTERS.test(t.Key) || !FSX_TAG_CHARACTERS.test(t.Value ?? '')) {
      throw awsError('BadRequest', `Invalid tag ${JSON.stringify(t)}`, 400);
    }
  }
}
