/*
 * Waiting cost: in the simulator (test/support), one OpenZfsSnapshot created through the
 * CloudFormation/Provider driver, with a snapshot lifecycle of a fixed length and the framework's
 * waiter polling isComplete at a fixed interval (aws-cdk-lib's waiter state machine retries with
 * BackoffRate 1: custom-resources/lib/provider-framework/util.js). Counts the Describe calls and
 * the time from the snapshot becoming AVAILABLE to the resource being complete.
 */
import { isComplete, onEvent } from '../lambda/openzfs-snapshot';
import type { OpenZfsSnapshotProperties } from '../src/private/contract';
import { CfnStack } from '../test/support/cfn-driver';
import { SimWorld } from '../test/support/sim-world';

export interface WaitingRow {
  readonly lifecycleMs: number;
  readonly intervalMs: number;
  /** FSx DescribeSnapshots calls during the create (polls, and any look-ups onEvent makes). */
  readonly describeCalls: number;
  /** isComplete invocations (each a Lambda invocation and a state transition of the waiter). */
  readonly polls: number;
  /** From the snapshot becoming AVAILABLE to isComplete saying so. */
  readonly latencyMs: number;
  /** From the create request to the resource being complete. */
  readonly totalMs: number;
}

const FILE_SYSTEM = 'fs-0123456789abcdef0';
const VOLUME = 'fsvol-0123456789abcdef0';

/** One create of an OpenZfsSnapshot whose snapshot takes exactly `lifecycleMs`, polled every `intervalMs`. */
export async function measureWaiting(lifecycleMs: number, intervalMs: number): Promise<WaitingRow> {
  const world = new SimWorld({ seed: 1, durations: { minMs: lifecycleMs, maxMs: lifecycleMs, slowMs: lifecycleMs } });
  try {
    world.fsx.addFileSystem(FILE_SYSTEM, 'OPENZFS');
    world.fsx.addVolume(VOLUME, FILE_SYSTEM);
    let polls = 0;
    const counted = { onEvent, isComplete: (event: any) => (polls++, isComplete(event)) };
    const stack = new CfnStack(world, counted, { resourceType: 'Custom::OpenZfsSnapshot', queryIntervalMs: intervalMs });
    const props: OpenZfsSnapshotProperties = { VolumeId: VOLUME, SnapshotName: 'bench', Trigger: 'v1', RemovalPolicy: 'retain', TimeoutSeconds: '3600' };
    const start = world.clock.now();
    const describesBefore = world.core.callCounts['fsx:DescribeSnapshotsCommand'] ?? 0;
    const result = await stack.deploy({ Snap: props });
    if (result.status !== 'CREATE_COMPLETE') throw new Error(`the simulated create ended ${result.status}`);
    const created = world.core.log.find((c) => c.command === 'CreateSnapshotCommand' && c.outcome === 'ok');
    if (!created) throw new Error('the simulated create made no snapshot');
    const done = world.clock.now();
    const availableAt = created.at + lifecycleMs;
    return {
      lifecycleMs,
      intervalMs,
      describeCalls: (world.core.callCounts['fsx:DescribeSnapshotsCommand'] ?? 0) - describesBefore,
      polls,
      latencyMs: done - availableAt,
      totalMs: done - start,
    };
  } finally {
    world.dispose();
  }
}

export interface WaitingSummary {
  readonly lifecycleMs: number;
  readonly intervalMs: number;
  readonly runs: number;
  readonly describeCallsMean: number;
  readonly pollsMean: number;
  readonly latencyMeanMs: number;
  readonly latencyMaxMs: number;
}

/**
 * A snapshot does not become AVAILABLE in step with the polls: `phases` creates whose lifecycles
 * are `lifecycleMs` plus 0, 1/phases, 2/phases… of the interval, averaged (and the worst latency).
 */
export async function summarizeWaiting(lifecycleMs: number, intervalMs: number, phases: number): Promise<WaitingSummary> {
  const rows: WaitingRow[] = [];
  for (let j = 0; j < phases; j++) rows.push(await measureWaiting(lifecycleMs + Math.round((j * intervalMs) / phases), intervalMs));
  const mean = (f: (r: WaitingRow) => number) => rows.reduce((a, r) => a + f(r), 0) / rows.length;
  return {
    lifecycleMs,
    intervalMs,
    runs: rows.length,
    describeCallsMean: mean((r) => r.describeCalls),
    pollsMean: mean((r) => r.polls),
    latencyMeanMs: mean((r) => r.latencyMs),
    latencyMaxMs: Math.max(...rows.map((r) => r.latencyMs)),
  };
}
