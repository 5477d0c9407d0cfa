import { CloudFormationClient } from '@aws-sdk/client-cloudformation';
import { DynamoDBClient } from '@aws-sdk/client-dynamodb';
import { EBSClient } from '@aws-sdk/client-ebs';
import { EC2Client } from '@aws-sdk/client-ec2';
import { FSxClient } from '@aws-sdk/client-fsx';
import { AwsStub, mockClient } from 'aws-sdk-client-mock';
import { FakeCloudFormation } from './fake-cloudformation';
import { FakeDynamoDb, FakeDynamoDbOptions } from './fake-dynamodb';
import { FakeEbs, FakeEbsOptions } from './fake-ebs';
import { FakeEc2, FakeEc2Options } from './fake-ec2';
import { FakeFsx, FakeFsxOptions } from './fake-fsx';
import { FaultPlan, FaultRates, ScriptedFault } from './faults';
import { SimClock, installSimClock } from './sim-clock';
import { CopyView, SimCore } from './sim-core';

interface Mocks {
  readonly fsx: AwsStub<any, any, any>;
  readonly ec2: AwsStub<any, any, any>;
  readonly ebs: AwsStub<any, any, any>;
  readonly cloudformation: AwsStub<any, any, any>;
  readonly dynamodb: AwsStub<any, any, any>;
}

let mocks: Mocks | undefined;

/** One mock per client class for the whole test file: mocking a class twice would wrap send twice. */
function sharedMocks(): Mocks {
  mocks ??= {
    fsx: mockClient(FSxClient),
    ec2: mockClient(EC2Client),
    ebs: mockClient(EBSClient),
    cloudformation: mockClient(CloudFormationClient),
    dynamodb: mockClient(DynamoDBClient),
  };
  return mocks;
}

export interface SimWorldOptions {
  /** Seeds the fault plan and the handlers' retry jitter. */
  readonly seed?: number;
  /**
   * When the simulated clock starts (epoch ms): a run that must see a given day (a DST change,
   * say) starts before it, since the clock never goes back. @default SimClock's start, 2026-11-22T10:00:00Z
   */
  readonly startMs?: number;
  readonly faults?: FaultRates;
  readonly scripted?: ScriptedFault[];
  /** Lifecycle durations of new copies (ms). */
  readonly durations?: { readonly minMs: number; readonly maxMs: number; readonly slowMs: number };
  readonly fsx?: FakeFsxOptions;
  readonly ec2?: FakeEc2Options;
  readonly ebs?: FakeEbsOptions;
  /** The claim tables' fake; its seed defaults to one derived from the world's. */
  readonly dynamodb?: FakeDynamoDbOptions;
}

/**
 * One simulated AWS account: a clock, a fault plan and the fakes behind mocked SDK clients.
 * `dispose()` puts the real clock back; the mocks stay installed for the file (reset per world).
 */
export class SimWorld {
  public readonly clock: SimClock;
  public readonly faults: FaultPlan;
  public readonly core: SimCore;
  public readonly fsx: FakeFsx;
  public readonly ec2: FakeEc2;
  public readonly ebs: FakeEbs;
  public readonly cloudformation: FakeCloudFormation;
  public readonly dynamodb: FakeDynamoDb;
  private readonly restoreClock: () => void;

  constructor(options: SimWorldOptions = {}) {
    const seed = options.seed ?? 1;
    this.clock = new SimClock(options.startMs);
    this.faults = new FaultPlan(seed, options.faults, options.scripted, options.durations);
    this.core = new SimCore(this.clock, this.faults);
    this.fsx = new FakeFsx(this.core, options.fsx);
    this.ec2 = new FakeEc2(this.core, options.ec2);
    this.ebs = new FakeEbs(this.core, this.ec2, options.ebs);
    this.cloudformation = new FakeCloudFormation(this.core);
    this.dynamodb = new FakeDynamoDb(this.core, { seed: seed + 0xddb, ...options.dynamodb });
    const m = sharedMocks();
    // Not reset(): aws-sdk-client-mock's reset() makes a new sinon stub, and sinon's default
    // sandbox keeps every stub ever made, with the fakes (and so the whole world) they close over:
    // a long soak ran out of memory. Each fake's install() replaces the one stub's behaviour.
    for (const mock of Object.values(m)) mock.resetHistory();
    this.fsx.install(m.fsx);
    this.ec2.install(m.ec2);
    this.ebs.install(m.ebs);
    this.cloudformation.install(m.cloudformation);
    this.dynamodb.install(m.dynamodb);
    this.restoreClock = installSimClock(this.clock, seed);
  }

  /** Every copy in the account, foreign or not. */
  public copies(): CopyView[] {
    return [...this.fsx.copies(), ...this.ec2.copies()];
  }

  public copy(id: string): CopyView | undefined {
    return this.copies().find((c) => c.id === id);
  }

  public dispose(): void {
    this.restoreClock();
  }
}
