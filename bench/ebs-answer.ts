/*
 * What EbsSnapshotOnDeploy makes a deploy wait, beyond EC2's own calls: in the simulator (where
 * every call takes 0 s, so what is measured is only what the handler and the Provider framework
 * add), the time from CloudFormation's request to the resource's answer, side by side with
 * OpenZfsSnapshot (FSx takes a client token: nothing to coordinate). Fault-free, reads lagging
 * 20–30 s behind a new snapshot, Provider polling every 10 s.
 */
import { isComplete as ebsIsComplete, onEvent as ebsOnEvent } from '../lambda/ebs-snapshot';
import { isComplete as zfsIsComplete, onEvent as zfsOnEvent } from '../lambda/openzfs-snapshot';
import type { OpenZfsSnapshotProperties } from '../src/private/contract';
import type { EbsSnapshotOnDeployProperties } from '../src/private/ebs-contract';
import { CfnStack, RequestRecord } from '../test/support/cfn-driver';
import { SimWorld } from '../test/support/sim-world';

export interface AnswerRow {
  readonly what: string;
  /** Simulated seconds from the request to its answer (each request of the operation). */
  readonly seconds: number;
}

const VOLUME = 'vol-0000000000000000c';
const INSTANCE = 'i-00000000000000001';

function ebsWorld(): SimWorld {
  const world = new SimWorld({ seed: 1, ec2: { visibilityDelayMs: 20_000, visibilityJitterMs: 10_000 } });
  world.ec2.addVolume('vol-0000000000000000a', { instanceId: INSTANCE, device: '/dev/xvda', size: 8 });
  world.ec2.addVolume('vol-0000000000000000b', { instanceId: INSTANCE, device: '/dev/sdf', size: 100 });
  world.ec2.addVolume(VOLUME, { size: 20 });
  world.ec2.addInstance(INSTANCE);
  return world;
}

function ebsStack(world: SimWorld, concurrentDuplicates = false): CfnStack {
  return new CfnStack(world, { onEvent: ebsOnEvent, isComplete: ebsIsComplete }, {
    resourceType: 'Custom::EbsSnapshotOnDeploy',
    concurrentDuplicates,
    stackResources: {
      created: (stackId) => {
        process.env.CLAIM_TABLE_NAME = `claims-${stackId.split('/')[2]}`;
        world.dynamodb.createTable(process.env.CLAIM_TABLE_NAME, 'Token', 'ExpiresAt');
      },
      deleted: (stackId) => world.dynamodb.deleteTable(`claims-${stackId.split('/')[2]}`),
    },
  });
}

function props(kind: 'volume' | 'instance', trigger: string): EbsSnapshotOnDeployProperties {
  const source = kind === 'volume' ? { Source: 'volume' as const, VolumeId: VOLUME } : { Source: 'instance' as const, InstanceId: INSTANCE };
  return { ...source, Trigger: trigger, RemovalPolicy: 'destroy', TimeoutSeconds: '1800', WaitForCompletion: 'false' };
}

const seconds = (r: RequestRecord) => ((r.endedAt ?? 0) - (r.startedAt ?? 0)) / 1000;
const last = (stack: CfnStack, type: string) => stack.requests.filter((r) => r.requestType === type && r.counted).at(-1)!;

/** Each row: one request, fault-free, and how long it took to answer on the simulated clock. */
export async function measureAnswers(): Promise<AnswerRow[]> {
  const rows: AnswerRow[] = [];
  const world = ebsWorld();
  try {
    for (const kind of ['volume', 'instance'] as const) {
      const stack = ebsStack(world);
      await stack.deploy({ Snap: props(kind, 'v1') });
      rows.push({ what: `EbsSnapshotOnDeploy Create (${kind})`, seconds: seconds(last(stack, 'Create')) });
      // The next deploy a minute later (EC2 refuses a second snapshot of a volume within 15 s).
      world.clock.advance(60_000);
      await stack.deploy({ Snap: props(kind, 'v2') });
      rows.push({ what: `EbsSnapshotOnDeploy Update taking a new snapshot (${kind})`, seconds: seconds(stack.requests.find((r) => r.requestType === 'Update')!) });
      rows.push({ what: `EbsSnapshotOnDeploy Delete of the replaced snapshot (${kind}, 1 min old)`, seconds: seconds(last(stack, 'Delete')) });
      world.clock.advance(10 * 60_000);
      let before = world.clock.now();
      await stack.deleteStack();
      rows.push({ what: `EbsSnapshotOnDeploy stack deletion (${kind}, snapshot 10 min old)`, seconds: (world.clock.now() - before) / 1000 });
      const young = ebsStack(world);
      await young.deploy({ Snap: props(kind, 'v3') });
      before = world.clock.now();
      await young.deleteStack();
      rows.push({
        what: `EbsSnapshotOnDeploy stack deletion right after its Create (${kind}; waits until EC2 reads show the snapshot, 20–30 s here)`,
        seconds: (world.clock.now() - before) / 1000,
      });
      world.clock.advance(60_000);
    }
    const pair = ebsStack(world, true);
    world.faults.script({ kind: 'duplicate-delivery' });
    await pair.deploy({ Snap: props('volume', 'v1') });
    const [a, b] = pair.requests;
    rows.push({ what: 'EbsSnapshotOnDeploy Create, two deliveries at once (the later answer)', seconds: Math.max(seconds(a), seconds(b)) });
  } finally {
    world.dispose();
  }
  const zfs = new SimWorld({ seed: 1 });
  try {
    zfs.fsx.addFileSystem('fs-0123456789abcdef0', 'OPENZFS');
    zfs.fsx.addVolume('fsvol-0123456789abcdef0', 'fs-0123456789abcdef0');
    const stack = new CfnStack(zfs, { onEvent: zfsOnEvent, isComplete: zfsIsComplete }, { resourceType: 'Custom::OpenZfsSnapshot' });
    const p: OpenZfsSnapshotProperties = { VolumeId: 'fsvol-0123456789abcdef0', SnapshotName: 'bench', Trigger: 'v1', RemovalPolicy: 'retain', TimeoutSeconds: '3600' };
    // Its create waits for AVAILABLE (FSx snapshots take seconds): the answer comes after the lifecycle.
    await stack.deploy({ Snap: p });
    rows.push({ what: 'OpenZfsSnapshot Create (waits for AVAILABLE: a lifecycle of 5 s–10 min here)', seconds: seconds(last(stack, 'Create')) });
  } finally {
    zfs.dispose();
  }
  return rows;
}
