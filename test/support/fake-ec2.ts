import {
  CreateSnapshotCommand,
  CreateSnapshotsCommand,
  CreateTagsCommand,
  DeleteSnapshotCommand,
  DescribeInstancesCommand,
  DescribeSnapshotsCommand,
  DescribeVolumesCommand,
  type Snapshot,
} from '@aws-sdk/client-ec2';
import type { AwsStub } from 'aws-sdk-client-mock';
import { awsError } from './aws-errors';
import { ACCOUNT, CallContext, CommandTable, CopyView, SimCore, SimTag, mergeTags, page, routeCommands } from './sim-core';

export interface FakeEc2Options {
  /** A new snapshot is invisible to DescribeSnapshots (and CreateTags) for this long (ms). */
  readonly visibilityDelayMs?: number;
  /** Up to this much more (ms, from the fault plan's PRNG), so that snapshots do not show in the order they were made. */
  readonly visibilityJitterMs?: number;
  /** Minimum time between two snapshots of one volume (AWS advises 15 s). */
  readonly minSnapshotIntervalMs?: number;
  /** Pending snapshots per volume (5 for gp2/gp3/io1/io2/standard, 1 for st1/sc1). */
  readonly maxPendingPerVolume?: number;
  readonly pageSize?: number;
}

export interface VolumeSeed {
  readonly size?: number;
  readonly type?: string;
  readonly encrypted?: boolean;
  readonly instanceId?: string;
  readonly device?: string;
  readonly tags?: SimTag[];
}

export interface InstanceSeed {
  /** Tags, e.g. the `aws:cloudformation:*` tags CloudFormation puts on the instances it creates. */
  readonly tags?: SimTag[];
  readonly state?: 'pending' | 'running' | 'stopping' | 'stopped' | 'shutting-down' | 'terminated';
  readonly launchTime?: number;
}

export interface NewSnapshot {
  readonly description?: string;
  readonly tags?: SimTag[];
  readonly encrypted?: boolean;
  readonly direct?: DirectUpload;
  readonly parent?: string;
  /** The command that made it (names the lifecycle fault). */
  readonly command: string;
}

interface VolumeRecord {
  readonly id: string;
  readonly size: number;
  readonly type: string;
  readonly encrypted: boolean;
  readonly instanceId?: string;
  readonly device?: string;
  tags: SimTag[];
}

/** EBS direct state of a snapshot started with StartSnapshot. */
export interface DirectUpload {
  readonly timeoutMinutes: number;
  lastActivity: number;
  readonly blocks: Map<number, string>;
  completeRequested: boolean;
}

export interface Ec2SnapshotRecord {
  readonly id: string;
  readonly volumeId: string;
  readonly volumeSize: number;
  readonly ownerId: string;
  readonly description: string;
  readonly encrypted: boolean;
  readonly started: number;
  readonly visibleAt: number;
  state: 'pending' | 'completed' | 'error' | 'recoverable' | 'recovering';
  stateMessage?: string;
  tags: SimTag[];
  /** When a pending snapshot finishes, and how. */
  next?: { readonly at: number; readonly to: 'completed' | 'error' };
  gone: boolean;
  readonly foreign: boolean;
  readonly createdDuring?: CallContext;
  serviceFailed: boolean;
  deletedByCall: boolean;
  readonly parentSnapshotId?: string;
  direct?: DirectUpload;
}

/** EC2 snapshots and volumes (EBS direct snapshots live here too, see FakeEbs). */
export class FakeEc2 {
  public readonly snapshots = new Map<string, Ec2SnapshotRecord>();
  private readonly volumes = new Map<string, VolumeRecord>();
  private readonly instances = new Map<string, string[]>();
  private readonly instanceRecords = new Map<string, { tags: SimTag[]; state: Required<InstanceSeed>['state']; launchTime: number }>();
  private readonly lastSnapshotOf = new Map<string, number>();
  public readonly options: Required<FakeEc2Options>;

  constructor(
    private readonly core: SimCore,
    options: FakeEc2Options = {},
  ) {
    this.options = { visibilityDelayMs: 0, visibilityJitterMs: 0, minSnapshotIntervalMs: 15_000, maxPendingPerVolume: 5, pageSize: 3, ...options };
  }

  // ---- seeding ----

  public addVolume(id: string, opts: VolumeSeed = {}) {
    this.volumes.set(id, {
      id,
      size: opts.size ?? 100,
      type: opts.type ?? 'gp3',
      encrypted: opts.encrypted ?? false,
      instanceId: opts.instanceId,
      device: opts.device,
      tags: opts.tags ?? [],
    });
    if (opts.instanceId) this.instances.set(opts.instanceId, [...(this.instances.get(opts.instanceId) ?? []), id]);
  }

  /** An instance (its volumes are added with `addVolume(..., { instanceId })`), for DescribeInstances. */
  public addInstance(id: string, opts: InstanceSeed = {}) {
    this.instanceRecords.set(id, { tags: opts.tags ?? [], state: opts.state ?? 'running', launchTime: opts.launchTime ?? this.core.clock.now() });
    if (!this.instances.has(id)) this.instances.set(id, []);
  }

  /** Sets an instance's state (e.g. `terminated` after a replacement). */
  public setInstanceState(id: string, state: Required<InstanceSeed>['state']) {
    const i = this.instanceRecords.get(id);
    if (i) i.state = state;
  }

  /** A snapshot someone else made (completed, visible). `ownerId` another account's, if shared. */
  public seedSnapshot(volumeId: string, tags: SimTag[], opts: { ownerId?: string; state?: Ec2SnapshotRecord['state'] } = {}): string {
    const id = this.core.newId('snap-');
    const now = this.core.clock.now();
    this.snapshots.set(id, {
      id,
      volumeId,
      volumeSize: this.volumes.get(volumeId)?.size ?? 8,
      ownerId: opts.ownerId ?? ACCOUNT,
      description: 'foreign',
      encrypted: false,
      started: now,
      visibleAt: now,
      state: opts.state ?? 'completed',
      tags,
      gone: false,
      foreign: true,
      serviceFailed: false,
      deletedByCall: false,
    });
    return id;
  }

  public copies(): CopyView[] {
    this.refresh();
    return [...this.snapshots.values()].map((s) => ({
      kind: 'ec2-snapshot',
      id: s.id,
      target: s.volumeId,
      tags: s.tags,
      state: s.gone ? 'deleted' : s.state,
      exists: !s.gone && s.state !== 'error',
      ready: !s.gone && s.state === 'completed',
      foreign: s.foreign,
      createdDuring: s.createdDuring,
      serviceFailed: s.serviceFailed,
      deletedByCall: s.deletedByCall,
    }));
  }

  public install(mock: AwsStub<any, any, any>): void {
    const table: CommandTable = [];
    const on = (cmd: any, fn: (input: any) => Promise<unknown>) => table.push([cmd, fn]);
    on(CreateSnapshotCommand, (input) =>
      this.core.handle('ec2', 'CreateSnapshotCommand', input, { mutating: true, creates: true }, (r) => this.createSnapshot(input, r)));
    on(CreateSnapshotsCommand, (input) =>
      this.core.handle('ec2', 'CreateSnapshotsCommand', input, { mutating: true, creates: true }, (r) => this.createSnapshots(input, r)));
    on(DescribeSnapshotsCommand, (input) =>
      this.core.handle('ec2', 'DescribeSnapshotsCommand', input, { mutating: false }, () => this.describeSnapshots(input)));
    on(DeleteSnapshotCommand, (input) =>
      this.core.handle('ec2', 'DeleteSnapshotCommand', input, { mutating: true }, (r) => this.deleteSnapshot(input, r)));
    on(CreateTagsCommand, (input) =>
      this.core.handle('ec2', 'CreateTagsCommand', input, { mutating: true }, (r) => this.createTags(input, r)));
    on(DescribeInstancesCommand, (input) =>
      this.core.handle('ec2', 'DescribeInstancesCommand', input, { mutating: false }, () => this.describeInstances(input)));
    on(DescribeVolumesCommand, (input) =>
      this.core.handle('ec2', 'DescribeVolumesCommand', input, { mutating: false }, () => this.describeVolumes(input)));
    routeCommands(mock, 'ec2', table);
  }

  public refresh(): void {
    const now = this.core.clock.now();
    for (const s of this.snapshots.values()) {
      if (s.gone || s.state !== 'pending') continue;
      const d = s.direct;
      if (d && !d.completeRequested && now - d.lastActivity > d.timeoutMinutes * 60_000) {
        // EBS direct: cancelled when nothing is written, or it is not completed, within Timeout.
        s.state = 'error';
        s.stateMessage = 'The snapshot timed out: no block was written and it was not completed within the timeout';
        s.serviceFailed = true;
        continue;
      }
      if (s.next && s.next.at <= now) {
        s.state = s.next.to;
        if (s.state === 'error') s.stateMessage = 'Internal error while creating the snapshot';
        s.next = undefined;
      }
    }
  }

  /** A new snapshot, pending, with its lifecycle from the fault plan (not for EBS direct). */
  public newSnapshot(volumeId: string, volumeSize: number, opts: NewSnapshot): Ec2SnapshotRecord {
    const now = this.core.clock.now();
    const plan = opts.direct ? undefined : this.core.faults.lifecycle('ec2', opts.command);
    const s: Ec2SnapshotRecord = {
      id: this.core.newId('snap-'),
      volumeId,
      volumeSize,
      ownerId: ACCOUNT,
      description: opts.description ?? '',
      encrypted: opts.encrypted ?? false,
      started: now,
      visibleAt: now + this.options.visibilityDelayMs + this.visibilityJitter(),
      state: 'pending',
      tags: [...(opts.tags ?? [])],
      next: plan ? { at: now + plan.durationMs, to: plan.fails ? 'error' : 'completed' } : undefined,
      gone: false,
      foreign: false,
      createdDuring: this.core.context,
      serviceFailed: plan?.fails ?? false,
      deletedByCall: false,
      parentSnapshotId: opts.parent,
      direct: opts.direct,
    };
    this.snapshots.set(s.id, s);
    return s;
  }

  private visibilityJitter(): number {
    const jitter = this.options.visibilityJitterMs;
    return jitter ? Math.floor(this.core.faults.next() * jitter) : 0;
  }

  public toSnapshot(s: Ec2SnapshotRecord): Snapshot {
    const now = this.core.clock.now();
    const progress = s.state === 'completed' ? 100 : s.next ? Math.floor((99 * (now - s.started)) / Math.max(1, s.next.at - s.started)) : 0;
    return {
      SnapshotId: s.id,
      VolumeId: s.volumeId,
      VolumeSize: s.volumeSize,
      OwnerId: s.ownerId,
      Description: s.description,
      Encrypted: s.encrypted,
      StartTime: new Date(s.started),
      State: s.state,
      StateMessage: s.stateMessage,
      Progress: `${Math.min(100, Math.max(0, progress))}%`,
      Tags: s.tags.map((t) => ({ Key: t.Key, Value: t.Value })),
    };
  }

  private tagsFor(specs: any[] | undefined, type: string): SimTag[] {
    return (specs ?? []).filter((t) => t.ResourceType === type).flatMap((t) => t.Tags ?? []);
  }

  private checkRate(volume: VolumeRecord): void {
    const now = this.core.clock.now();
    const last = this.lastSnapshotOf.get(volume.id);
    if (last !== undefined && now - last < this.options.minSnapshotIntervalMs) {
      throw awsError('SnapshotCreationPerVolumeRateExceeded', 'The maximum per volume CreateSnapshot request rate has been exceeded. Use an increasing or variable sleep interval between requests.', 400);
    }
    const limit = volume.type === 'st1' || volume.type === 'sc1' ? 1 : this.options.maxPendingPerVolume;
    const pending = [...this.snapshots.values()].filter((s) => s.volumeId === volume.id && !s.gone && s.state === 'pending').length;
    if (pending >= limit) throw awsError('ConcurrentSnapshotLimitExceeded', `Maximum of ${limit} pending snapshots for ${volume.id}`, 400);
  }

  private createSnapshot(input: any, record: any) {
    this.refresh();
    const v = this.volumes.get(input.VolumeId);
    if (!v) throw awsError('InvalidVolume.NotFound', `The volume '${input.VolumeId}' does not exist.`, 400);
    if (input.DryRun) throw awsError('DryRunOperation', 'Request would have succeeded, but DryRun flag is set.', 412);
    this.checkRate(v);
    this.lastSnapshotOf.set(v.id, this.core.clock.now());
    const s = this.newSnapshot(v.id, v.size, {
      description: input.Description, tags: this.tagsFor(input.TagSpecifications, 'snapshot'), encrypted: v.encrypted, command: 'CreateSnapshotCommand',
    });
    if (record) record.resourceId = s.id;
    return this.toSnapshot(s);
  }

  private createSnapshots(input: any, record: any) {
    this.refresh();
    const spec = input.InstanceSpecification ?? {};
    const volumeIds = this.instances.get(spec.InstanceId);
    if (!volumeIds) throw awsError('InvalidInstanceID.NotFound', `The instance ID '${spec.InstanceId}' does not exist`, 400);
    const chosen = volumeIds.filter((id, i) => !(spec.ExcludeBootVolume && i === 0) && !(spec.ExcludeDataVolumeIds ?? []).includes(id));
    for (const id of chosen) this.checkRate(this.volumes.get(id)!);
    const tags = this.tagsFor(input.TagSpecifications, 'snapshot');
    const made = chosen.map((id) => {
      const v = this.volumes.get(id)!;
      this.lastSnapshotOf.set(id, this.core.clock.now());
      const copied = input.CopyTagsFromSource === 'volume' ? mergeTags(v.tags, tags) : tags;
      return this.newSnapshot(id, v.size, { description: input.Description, tags: copied, encrypted: v.encrypted, command: 'CreateSnapshotsCommand' });
    });
    if (record) record.resourceId = made.map((s) => s.id).join(',');
    return {
      Snapshots: made.map((s) => ({
        SnapshotId: s.id,
        VolumeId: s.volumeId,
        State: s.state,
        StartTime: new Date(s.started),
        VolumeSize: s.volumeSize,
        OwnerId: s.ownerId,
        Description: s.description,
        Encrypted: s.encrypted,
        Progress: '0%',
        Tags: s.tags,
      })),
    };
  }

  /** What DescribeSnapshots can see now: new snapshots only after the visibility delay. */
  private visible(): Ec2SnapshotRecord[] {
    const now = this.core.clock.now();
    return [...this.snapshots.values()].filter((s) => !s.gone && s.visibleAt <= now);
  }

  private describeSnapshots(input: any) {
    this.refresh();
    let list = this.visible();
    if (input.SnapshotIds?.length) {
      const missing = input.SnapshotIds.filter((id: string) => !list.some((s) => s.id === id));
      if (missing.length) throw awsError('InvalidSnapshot.NotFound', `The snapshot '${missing[0]}' does not exist.`, 400);
      list = list.filter((s) => input.SnapshotIds.includes(s.id));
    }
    if (input.OwnerIds?.length) {
      const owners = input.OwnerIds.map((o: string) => (o === 'self' ? ACCOUNT : o));
      list = list.filter((s) => owners.includes(s.ownerId));
    }
    for (const f of input.Filters ?? []) {
      const values: string[] = f.Values ?? [];
      const name: string = f.Name;
      if (name.startsWith('tag:')) {
        const key = name.slice(4);
        list = list.filter((s) => s.tags.some((t) => t.Key === key && values.includes(t.Value ?? '')));
      } else if (name === 'tag-key') {list = list.filter((s) => s.tags.some((t) => values.includes(t.Key ?? '')));} else if (name === 'volume-id') {list = list.filter((s) => values.includes(s.volumeId));} else if (name === 'status') {list = list.filter((s) => values.includes(s.state));} else if (name === 'snapshot-id') {list = list.filter((s) => values.includes(s.id));} else if (name === 'owner-id') {list = list.filter((s) => values.includes(s.ownerId));} else if (name === 'description') {list = list.filter((s) => values.includes(s.description));} else {throw awsError('InvalidParameterValue', `The filter '${name}' is invalid`, 400);}
    }
    const { items, nextToken } = page(list, input.MaxResults, input.NextToken, this.options.pageSize);
    return { Snapshots: items.map((s) => this.toSnapshot(s)), NextToken: nextToken };
  }

  private deleteSnapshot(input: any, record: any) {
    this.refresh();
    const s = this.snapshots.get(input.SnapshotId);
    if (!s || s.gone) throw awsError('InvalidSnapshot.NotFound', `The snapshot '${input.SnapshotId}' does not exist.`, 400);
    if (s.ownerId !== ACCOUNT) throw awsError('UnauthorizedOperation', 'You are not authorized to perform this operation.', 403);
    if (record) Object.assign(record, { resourceId: s.id, tagsBefore: [...s.tags], foreign: s.foreign });
    s.gone = true;
    s.deletedByCall = true;
    return {};
  }

  private createTags(input: any, record: any) {
    this.refresh();
    const now = this.core.clock.now();
    const targets = (input.Resources as string[]).map((id) => {
      if (id.startsWith('snap-')) {
        const s = this.snapshots.get(id);
        if (!s || s.gone || s.visibleAt > now) throw awsError('InvalidSnapshot.NotFound', `The snapshot '${id}' does not exist.`, 400);
        return s;
      }
      const v = this.volumes.get(id);
      if (!v) throw awsError('InvalidVolume.NotFound', `The volume '${id}' does not exist.`, 400);
      return v;
    });
    if (record) {
      Object.assign(record, {
        resourceId: input.Resources.join(','),
        tagsBefore: targets.flatMap((t) => t.tags),
        foreign: targets.some((t) => 'foreign' in t && t.foreign),
      });
    }
    for (const t of targets) t.tags = mergeTags(t.tags, input.Tags ?? []);
    return {};
  }

  private describeInstances(input: any) {
    let list = [...this.instanceRecords.entries()].map(([id, r]) => ({ id, ...r }));
    if (input.InstanceIds?.length) list = list.filter((i) => input.InstanceIds.includes(i.id));
    for (const f of input.Filters ?? []) {
      if (f.Name === 'instance-state-name') list = list.filter((i) => f.Values.includes(i.state));
      else if (f.Name.startsWith('tag:')) list = list.filter((i) => i.tags.some((t) => t.Key === f.Name.slice(4) && f.Values.includes(t.Value)));
      else throw awsError('InvalidParameterValue', `The filter '${f.Name}' is invalid`, 400);
    }
    return {
      Reservations: list.length === 0 ? [] : [{
        Instances: list.map((i) => ({ InstanceId: i.id, State: { Name: i.state }, LaunchTime: new Date(i.launchTime), Tags: i.tags })),
      }],
    };
  }

  private describeVolumes(input: any) {
    let list = [...this.volumes.values()];
    if (input.VolumeIds?.length) {
      const missing = input.VolumeIds.filter((id: string) => !this.volumes.has(id));
      if (missing.length) throw awsError('InvalidVolume.NotFound', `The volume '${missing[0]}' does not exist.`, 400);
      list = list.filter((v) => input.VolumeIds.includes(v.id));
    }
    for (const f of input.Filters ?? []) {
      if (f.Name === 'attachment.instance-id') list = list.filter((v) => f.Values.includes(v.instanceId));
      else if (f.Name.startsWith('tag:')) list = list.filter((v) => v.tags.some((t) => t.Key === f.Name.slice(4) && f.Values.includes(t.Value)));
      else throw awsError('InvalidParameterValue', `The filter '${f.Name}' is invalid`, 400);
    }
    return {
      Volumes: list.map((v) => ({
        VolumeId: v.id,
        Size: v.size,
        VolumeType: v.type,
        Encrypted: v.encrypted,
        State: v.instanceId ? 'in-use' : 'available',
        Attachments: v.instanceId ? [{ InstanceId: v.instanceId, VolumeId: v.id, Device: v.device, State: 'attached' }] : [],
        Tags: v.tags,
      })),
    };
  }
}
