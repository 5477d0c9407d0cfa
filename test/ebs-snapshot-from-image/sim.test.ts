import { Readable } from 'stream';
import { EBSClient, PutSnapshotBlockCommand } from '@aws-sdk/client-ebs';
import { CreateTagsCommand, DescribeSnapshotsCommand, EC2Client } from '@aws-sdk/client-ec2';
import { GetObjectCommand, HeadObjectCommand, S3Client } from '@aws-sdk/client-s3';
import { mockClient } from 'aws-sdk-client-mock';
import * as fc from 'fast-check';
import { decodeCursor } from '../../lambda/ebs-direct-snapshot/cursor';
import * as handler from '../../lambda/ebs-direct-snapshot/index';
import { type EbsSnapshotFromImageProperties, UPLOAD_CURSOR_TAG_KEY } from '../../src/private/ebs-direct-contract';
import { awsError } from '../support/aws-errors';
import { CfnStack, StackOperationResult } from '../support/cfn-driver';
import { syntheticImage } from '../support/ebs-direct-server';
import { blockChecksum } from '../support/fake-ebs';
import { Invariants, Violation } from '../support/invariants';
import { SIM_RUNS, SIM_TIMEOUT_MS, checkScenarios, faultRatesArb } from '../support/sim-property';
import { SimWorld, SimWorldOptions } from '../support/sim-world';

/*
 * Snapshots from data through the whole deploy lifecycle: CloudFormation and the Provider framework
 * (cfn-driver) around the real handler, the stateful EC2/EBS fakes, and the image in a mocked S3.
 * Whatever goes wrong on the way, the completed snapshot's blocks are exactly the image's non-zero
 * blocks, and no snapshot is completed twice or half-written.
 */

const s3mock = mockClient(S3Client);

function serveImage(blocks: number, zeroShare: number, seed = 3) {
  const image = syntheticImage(blocks, zeroShare, seed);
  s3mock.reset();
  s3mock.on(HeadObjectCommand).callsFake(async () => ({ ContentLength: image.sizeBytes, ETag: image.etag }));
  s3mock.on(GetObjectCommand).callsFake(async (input) => {
    if (input.IfMatch !== image.etag) throw awsError('PreconditionFailed', 'At least one of the pre-conditions you specified did not hold', 412);
    const [, a, b] = /^bytes=(\d+)-(\d+)$/.exec(input.Range)!;
    return { Body: Readable.from([image.read(Number(a), Number(b))]), ETag: image.etag };
  });
  const nonZero = new Map<number, string>();
  for (let i = 0; i < blocks; i++) {
    const b = image.block(i);
    if (!b.every((v) => v === 0)) nonZero.set(i, blockChecksum(b));
  }
  return { image, nonZero };
}

function props(over: Partial<EbsSnapshotFromImageProperties> = {}): EbsSnapshotFromImageProperties {
  return { ImageBucket: 'images', ImageKey: 'golden/disk.raw', RemovalPolicy: 'destroy', TimeoutSeconds: '3600', ...over };
}

function setup(options: SimWorldOptions, blocks = 200, zeroShare = 0.3) {
  const world = new SimWorld({ ...options, ebs: { completeMs: 30_000, putLatencyMs: 500, ...options.ebs } });
  const served = serveImage(blocks, zeroShare);
  // isComplete gets no Lambda context here: it uploads for DEFAULT_SLICE_MS (60 s) per invocation,
  // and the simulated writes take 500 ms each (one after another in simulated time): 140 non-zero
  // blocks take 70 s, so every upload of that size spans invocations.
  const stack = new CfnStack(world, handler, { resourceType: 'Custom::EbsSnapshotFromImage' });
  return { world, stack, ...served };
}

/** The one snapshot the deploy reports: completed, its blocks exactly the image's non-zero blocks, each written at least once. */
function expectExactSnapshot(world: SimWorld, id: string, nonZero: Map<number, string>) {
  const s = world.ec2.snapshots.get(id)!;
  expect(s.state).toBe('completed');
  expect(s.gone).toBe(false);
  expect([...s.direct!.blocks.entries()].sort(([a], [b]) => a - b)).toEqual([...nonZero.entries()].sort(([a], [b]) => a - b));
  // It is the one completed snapshot of the stack that reported it.
  const ours = [...world.ec2.snapshots.values()].filter((x) => x.direct && !x.gone && x.state === 'completed');
  expect(ours.filter((x) => x.tags.some((t) => t.Key === 'cdk-storage-snapshots:stack-id' && s.tags.some((u) => u.Key === t.Key && u.Value === t.Value)))).toHaveLength(1);
  expect(decodeCursor(s.tags.find((t) => t.Key === UPLOAD_CURSOR_TAG_KEY)?.Value)?.changed).toBe(nonZero.size);
}

/**
 * EC2 tags read back stale: once the "completing" cursor is saved, the next `reads` DescribeSnapshots
 * of the snapshot show it `pending` with the cursor `pick` chooses from those saved before.
 */
function staleCursorReads(reads: number, pick: (saved: string[]) => string) {
  const saved: string[] = [];
  let left = -1;
  const original = EC2Client.prototype.send;
  jest.spyOn(EC2Client.prototype, 'send').mockImplementation(async function (this: any, command: any, ...rest: any[]) {
    const out = await (original as any).call(this, command, ...rest);
    if (command instanceof CreateTagsCommand) {
      const value = command.input.Tags?.find((t: any) => t.Key === UPLOAD_CURSOR_TAG_KEY)?.Value;
      if (value && left < 0 && decodeCursor(value)?.phase === 'completing') left = reads;
      else if (value && left < 0) saved.push(value);
    }
    if (command instanceof DescribeSnapshotsCommand && command.input.SnapshotIds && left > 0) {
      left--;
      const value = pick(saved);
      return {
        ...out,
        Snapshots: out.Snapshots?.map((x: any) => ({ ...x, State: 'pending', Tags: x.Tags.map((t: any) => (t.Key === UPLOAD_CURSOR_TAG_KEY ? { ...t, Value: value } : t)) })),
      };
    }
    return out;
  });
  return { staleLeft: () => left };
}

afterEach(() => jest.restoreAllMocks());

describe('EBS snapshot from data: lifecycle simulation', () => {
  test('an upload that spans several invocations completes with exactly the non-zero blocks, each written once', async () => {
    const { world, stack, nonZero } = setup({});
    try {
      const result = await stack.deploy({ Golden: props() });
      expect(result.status).toBe('CREATE_COMPLETE');
      const id = result.resources.get('Golden')!.physicalId;
      expectExactSnapshot(world, id, nonZero);
      expect([...world.ebs.writes.get(id)!.values()].every((n) => n === 1)).toBe(true);
      const polls = stack.requests[0];
      expect(polls.data).toMatchObject({ SnapshotId: id, BlockCount: String(nonZero.size), VolumeSize: '1' });
      // The upload took more than one isComplete invocation: cursors saved mid-way, then "completing".
      expect(world.core.callCounts['ec2:CreateTagsCommand']).toBeGreaterThan(3);
    } finally {
      world.dispose();
    }
  });

  test('an isComplete killed mid-upload fails that deploy (the Provider framework does not rerun it) but leaves a consistent cursor, never a completed half-snapshot; the next deploy completes exactly', async () => {
    const world = new SimWorld({ ebs: { completeMs: 30_000, putLatencyMs: 500 } });
    const { nonZero } = serveImage(200, 0.3);
    // 45 s Lambdas, shorter than the 60 s upload slice: the first isComplete is killed part-way,
    // after two checkpoints of the cursor.
    let atRollback: { state: string; completeRequested: boolean; blocks: Map<number, string>; cursor?: string } | undefined;
    const stack = new CfnStack(world, handler, {
      isCompleteTimeoutMs: 45_000,
      // Without a Lambda context the handler does not know its 45 s (with one, it slices its upload to fit).
      lambdaContext: false,
      beforeRequest: (event) => {
        if (event.RequestType !== 'Delete') return;
        const s = world.ec2.snapshots.get(event.PhysicalResourceId)!;
        const cursor = s.tags.find((t) => t.Key === UPLOAD_CURSOR_TAG_KEY)?.Value;
        atRollback = { state: s.state, completeRequested: s.direct!.completeRequested, blocks: new Map(s.direct!.blocks), cursor };
      },
    });
    try {
      const failed = await stack.deploy({ Golden: props() });
      expect(failed.status).toBe('ROLLBACK_COMPLETE');
      expect(stack.requests[0].reason).toMatch(/killed|timed out/);
      // What the rollback's Delete found: pending, never completed, with a consistent cursor.
      expect(atRollback).toMatchObject({ state: 'pending', completeRequested: false });
      const cursor = decodeCursor(atRollback!.cursor)!;
      expect(cursor.next).toBeGreaterThan(0);
      const below = [...nonZero.keys()].filter((i) => i < cursor.next);
      for (const i of below) expect(atRollback!.blocks.get(i)).toBe(nonZero.get(i));
      expect(cursor.changed).toBe(below.length);
      expect(cursor.next).toBeLessThan(200);
      // The rollback deleted it (removal policy destroy): nothing half-written is left.
      expect([...world.ec2.snapshots.values()].filter((x) => x.direct && !x.gone)).toHaveLength(0);

      // With Lambdas long enough for the slice, the next deploy (a new request) completes.
      const retry = new CfnStack(world, handler, { stackName: 'app2' });
      const ok = await retry.deploy({ Golden: props() });
      expect(ok.status).toBe('CREATE_COMPLETE');
      expectExactSnapshot(world, ok.resources.get('Golden')!.physicalId, nonZero);
    } finally {
      world.dispose();
    }
  });

  test('a throttling storm slows the pool down and loses nothing', async () => {
    const { world, stack, nonZero } = setup({ seed: 5, ebs: { putThrottleRate: 0.4 } }, 120);
    try {
      const result = await stack.deploy({ Golden: props() });
      expect(result.status).toBe('CREATE_COMPLETE');
      expect(world.ebs.putThrottled).toBeGreaterThan(20);
      expectExactSnapshot(world, result.resources.get('Golden')!.physicalId, nonZero);
    } finally {
      world.dispose();
    }
  });

  test('"snapshot does not exist" for a minute after StartSnapshot, and EC2 not seeing it for a while, are waited out', async () => {
    const { world, stack, nonZero } = setup({ ebs: { notFoundAfterStartMs: 60_000 }, ec2: { visibilityDelayMs: 20_000 } }, 80);
    try {
      const result = await stack.deploy({ Golden: props() });
      expect(result.status).toBe('CREATE_COMPLETE');
      expectExactSnapshot(world, result.resources.get('Golden')!.physicalId, nonZero);
    } finally {
      world.dispose();
    }
  });

  test.each([1, 2, 3, 4, 5, 6])('seed %i: duplicate deliveries, lost responses, kills after create, throttling and 5xx: one completed snapshot with exactly the non-zero blocks', async (seed) => {
    const { world, stack, nonZero } = setup({
      seed,
      faults: { 'duplicate-delivery': 0.5, 'throttle': 0.05, 'server-error': 0.03, 'lost-response': 0.02, 'kill-after-create': 0.3, 'framework-retry': 0.5 },
    }, 60);
    try {
      const result = await stack.deploy({ Golden: props() });
      if (result.status === 'CREATE_COMPLETE') {
        expectExactSnapshot(world, result.resources.get('Golden')!.physicalId, nonZero);
      } else {
        // A failed create (its duplicate may still have finished the upload after CloudFormation
        // gave up) leaves nothing that is not tagged as this resource's, with the request's token.
        for (const s of [...world.ec2.snapshots.values()].filter((x) => x.direct && !x.gone)) {
          expect(s.tags).toEqual(expect.arrayContaining([
            { Key: 'cdk-storage-snapshots:owner', Value: 'Golden' },
            { Key: 'cdk-storage-snapshots:managed-by', Value: 'cdk-storage-snapshots' },
            expect.objectContaining({ Key: 'cdk-storage-snapshots:token' }),
          ]));
        }
      }
      // Whatever happened, at most one snapshot was ever started for the one Create request.
      const started = world.core.log.filter((r) => r.command === 'StartSnapshotCommand' && r.resourceId);
      expect(new Set(started.map((r) => r.resourceId)).size).toBe(1);
    } finally {
      world.dispose();
    }
  });

  test('CompleteSnapshot whose answer is lost is retried in the same call; EBS refusing the retry does not fail the deploy', async () => {
    const { world, stack, nonZero } = setup({ scripted: [{ kind: 'lost-response', service: 'ebs', command: 'CompleteSnapshotCommand' }] }, 40);
    try {
      const result = await stack.deploy({ Golden: props() });
      expect(world.faults.injected['lost-response']).toBe(1);
      expect(result.status).toBe('CREATE_COMPLETE');
      expect(world.core.callCounts['ebs:CompleteSnapshotCommand']).toBeGreaterThanOrEqual(2);
      expectExactSnapshot(world, result.resources.get('Golden')!.physicalId, nonZero);
    } finally {
      world.dispose();
    }
  });

  test.each([
    ['the last "uploading" cursor (nothing left to write: CompleteSnapshot is sent again)', (saved: string[]) => saved.at(-1)!, 2, 0],
    ['an early cursor (EBS refuses the writes; the second read is stale too)', (saved: string[]) => saved[0], 1, 1],
  ])('cursor tags read back stale after CompleteSnapshot, %s: the deploy succeeds and the snapshot is not deleted', async (_, pick, completes, refusedWrites) => {
    const { world, stack, nonZero } = setup({}, 200);
    const stale = staleCursorReads(2, pick);
    try {
      const result = await stack.deploy({ Golden: props() });
      expect(stale.staleLeft()).toBe(0);
      expect(result.status).toBe('CREATE_COMPLETE');
      // Every poll that reads the snapshot pending with the "completing" cursor resends CompleteSnapshot; EBS refuses those.
      expect(world.core.callCounts['ebs:CompleteSnapshotCommand']).toBeGreaterThanOrEqual(completes);
      const refused = world.core.log.filter((r) => r.command === 'PutSnapshotBlockCommand' && r.outcome === 'ValidationException');
      expect(refusedWrites > 0 ? refused.length > 0 : refused.length === 0).toBe(true);
      expect(world.core.callCounts['ec2:DeleteSnapshotCommand'] ?? 0).toBe(0);
      expectExactSnapshot(world, result.resources.get('Golden')!.physicalId, nonZero);
    } finally {
      world.dispose();
    }
  });

  test('a block EBS refuses fails the deploy with its index, and the snapshot is deleted, never completed', async () => {
    const { world, stack, nonZero } = setup({}, 40);
    const bad = [...nonZero.keys()][3];
    // EBS refuses one block (as it does a block whose data does not match its checksum).
    const original = EBSClient.prototype.send;
    jest.spyOn(EBSClient.prototype, 'send').mockImplementation(function (this: any, command: any, ...rest: any[]) {
      if (command instanceof PutSnapshotBlockCommand && command.input.BlockIndex === bad) {
        return Promise.reject(awsError('ValidationException', 'The checksum of the block does not match its data', 400, { Reason: 'INVALID_BLOCK' }));
      }
      return (original as any).call(this, command, ...rest);
    });
    try {
      const result = await stack.deploy({ Golden: props() });
      expect(result.status).toBe('ROLLBACK_COMPLETE');
      expect(stack.requests[0].reason).toMatch(new RegExp(`block ${bad} .*INVALID_BLOCK.*not completed and has been deleted`));
      expect([...world.ec2.snapshots.values()].filter((s) => s.direct && !s.gone)).toHaveLength(0);
      expect(world.core.callCounts['ebs:CompleteSnapshotCommand'] ?? 0).toBe(0);
    } finally {
      world.dispose();
    }
  });

  test('update of the image makes a new snapshot and deletes the old one; a rollback re-adopts the old one', async () => {
    const { world, stack, nonZero } = setup({}, 30);
    try {
      const first = await stack.deploy({ Golden: props() });
      const oldId = first.resources.get('Golden')!.physicalId;
      const failed = await stack.deploy({ Golden: props({ ImageKey: 'golden/disk-v2.raw' }) }, { otherResourceFailsAt: 1 });
      expect(failed.status).toBe('UPDATE_ROLLBACK_COMPLETE');
      expect(failed.resources.get('Golden')!.physicalId).toBe(oldId);
      expectExactSnapshot(world, oldId, nonZero);
      const second = await stack.deploy({ Golden: props({ ImageKey: 'golden/disk-v2.raw' }) });
      expect(second.status).toBe('UPDATE_COMPLETE');
      expect(second.resources.get('Golden')!.physicalId).not.toBe(oldId);
      expect(world.ec2.snapshots.get(oldId)!.gone).toBe(true);
      const tagsOnly = await stack.deploy({ Golden: props({ ImageKey: 'golden/disk-v2.raw', Tags: '{"team":"a"}' }) });
      expect(tagsOnly.resources.get('Golden')!.physicalId).toBe(second.resources.get('Golden')!.physicalId);
      const deleted = await stack.deleteStack();
      expect(deleted.status).toBe('DELETE_COMPLETE');
    } finally {
      world.dispose();
    }
  });
});

/*
 * Property run: random deploy sequences (trigger changes, stack deletes, waits) of one or two
 * snapshots from data, with random faults, checked against the simulator's invariants and, for
 * every snapshot a successful deploy reports, the exact-blocks rule.
 */
const dataStep = fc.oneof(
  { weight: 6, arbitrary: fc.record({ kind: fc.constant('deploy' as const), trigger: fc.integer({ min: 0, max: 2 }), policy: fc.constantFrom('retain' as const, 'destroy' as const) }) },
  { weight: 1, arbitrary: fc.constant({ kind: 'delete' as const }) },
  { weight: 1, arbitrary: fc.record({ kind: fc.constant('wait' as const), minutes: fc.integer({ min: 1, max: 90 }) }) },
);

const dataScenario = fc.record({
  seed: fc.integer({ min: 1, max: 2 ** 31 - 1 }),
  blocks: fc.integer({ min: 1, max: 12 }),
  zeroShare: fc.constantFrom(0, 0.3, 0.9),
  // 10 ms writes finish in one isComplete; 6 s writes (one after another in simulated time) make
  // an upload of more than 10 blocks span invocations (60 s slices).
  putLatencyMs: fc.constantFrom(10, 6_000),
  twoResources: fc.boolean(),
  faults: faultRatesArb({ 'duplicate-delivery': fc.constantFrom(0, 0.1, 0.3), 'framework-retry': fc.constantFrom(0, 0.5, 1) }),
  steps: fc.array(dataStep, { minLength: 1, maxLength: 5 }),
});

type DataScenario = typeof dataScenario extends fc.Arbitrary<infer S> ? S : never;

async function runDataScenario(s: DataScenario, stats: Record<string, number>) {
  const world = new SimWorld({ seed: s.seed, faults: s.faults, ebs: { completeMs: 30_000, putLatencyMs: s.putLatencyMs } });
  const { nonZero } = serveImage(s.blocks, s.zeroShare, s.seed);
  const violations: Violation[] = [];
  try {
    const stack = new CfnStack(world, handler, { resourceType: 'Custom::EbsSnapshotFromImage' });
    const inv = new Invariants(world);
    const checkExact = (result: StackOperationResult) => {
      if (result.status !== 'CREATE_COMPLETE' && result.status !== 'UPDATE_COMPLETE') return;
      for (const [logicalId, r] of result.resources) {
        const snap = world.ec2.snapshots.get(r.physicalId);
        const blocks = snap?.direct ? [...snap.direct.blocks.entries()].sort(([a], [b]) => a - b) : undefined;
        const expected = [...nonZero.entries()].sort(([a], [b]) => a - b);
        if (!snap || snap.state !== 'completed' || JSON.stringify(blocks) !== JSON.stringify(expected)) {
          violations.push({ invariant: 'success-points-at-copy', detail: `${result.status}: ${logicalId} -> ${r.physicalId} is not the image's exact non-zero blocks, completed` });
        }
      }
    };
    for (const step of s.steps) {
      if (step.kind === 'wait') {
        world.clock.advance(step.minutes * 60_000);
      } else if (step.kind === 'delete') {
        if (stack.stackId) inv.afterOperation(await stack.deleteStack());
      } else {
        const desired: Record<string, EbsSnapshotFromImageProperties> = { Golden: props({ Trigger: `t${step.trigger}`, RemovalPolicy: step.policy }) };
        if (s.twoResources) desired.Silver = props({ Trigger: `t${step.trigger}`, RemovalPolicy: step.policy });
        const result = await stack.deploy(desired);
        inv.afterOperation(result);
        checkExact(result);
        stats[result.status] = (stats[result.status] ?? 0) + 1;
      }
    }
    if (stack.stackId) inv.afterOperation(await stack.deleteStack());
    violations.push(...inv.atEnd([stack]));
    for (const [k, v] of Object.entries(world.faults.injected)) stats[`fault:${k}`] = (stats[`fault:${k}`] ?? 0) + v;
    stats.scenarios = (stats.scenarios ?? 0) + 1;
    return { violations };
  } finally {
    world.dispose();
  }
}

describe('property: random deploy sequences of snapshots from data, with faults', () => {
  jest.setTimeout(SIM_TIMEOUT_MS);

  test(`${SIM_RUNS} scenarios keep every invariant and write exactly the image's non-zero blocks`, async () => {
    const stats = await checkScenarios(dataScenario, runDataScenario, 20261123);
    expect(stats.scenarios).toBeGreaterThanOrEqual(SIM_RUNS);
    // The runs exercised what they are meant to: deploys that complete, and ones that fail.
    expect(stats.CREATE_COMPLETE).toBeGreaterThan(0);
    expect((stats.ROLLBACK_COMPLETE ?? 0) + (stats.UPDATE_ROLLBACK_COMPLETE ?? 0)).toBeGreaterThan(0);
  });
});
