/*
 * The stack's one provider (issue #15): per deploy-time type, cold start against the type's own
 * provider of a past commit (its bundle built from that commit's sources, measured side by side in
 * this run), what a request loads, what the shared functions' larger memory costs a deploy, and the
 * fixed resources the library adds to a stack.
 */
import { execFileSync } from 'child_process';
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import { Duration, Size, Stack } from 'aws-cdk-lib';
import * as events from 'aws-cdk-lib/aws-events';
import * as s3 from 'aws-cdk-lib/aws-s3';
import { buildSync } from 'esbuild';
import { idOf } from './cases';
import { BUNDLE_OPTIONS, ColdStartCase, libraryCases, measureColdStart, probeCase } from './cold-start';
import { num, ratio, Section, table } from './report';
import { synthOnce } from './scale';
import { BackupTarget, DiskImage, EbsSnapshotFromImage, EbsSnapshotOnDeploy, EbsSnapshotSource, FsxBackupSchedule, OpenZfsSnapshot } from '../src';
import { DEPLOY_TIME_HANDLERS, PROVIDER_ASSET } from '../src/private/deploy-time-types';

const ROOT = path.join(__dirname, '..');

/** Each type's own provider, before one provider served them all. */
export const DEFAULT_BASELINE = 'cad47d0';

/** The cold-start target of issue #15: each type within 10 % of its own provider's. */
export const COLD_START_TARGET = 1.1;

/** Lambda's price per GB-second on arm64, us-east-1 list price (first tier). */
export const ARM64_USD_PER_GB_SECOND = 0.0000133334;

/**
 * What a deploy (a Create) of one instance invokes of the shared functions, and for how long. The
 * handlers wait on AWS API calls, not on the CPU, so their durations do not shrink with memory.
 */
export const GBS_ASSUMPTIONS = {
  onEventSeconds: 1,
  pollSeconds: 0.3,
  /** isComplete polls per Create; the image type uploads in isComplete at 2,048 MB either way. */
  polls: { 'openzfs-snapshot': 2, 'ebs-snapshot': 1 } as Record<string, number | undefined>,
  pollsNote: { 'openzfs-snapshot': 'until the snapshot is AVAILABLE; 2 in the simulator at 10 s', 'ebs-snapshot': 'without waitForCompletion' } as Record<string, string | undefined>,
};

/** The fixed resources the library added before this change (issue #15, measured then). */
export const BEFORE_ISSUE_15 = {
  deployTime: { total: 58 } as Record<string, number>,
  withSchedule: { 'total': 67, 'AWS::Lambda::Function': 17, 'AWS::IAM::Role': 16, 'AWS::StepFunctions::StateMachine': 3 } as Record<string, number>,
  targets: { deployTime: 16, withSchedule: 26 },
};

export interface ProviderOptions {
  /** Fresh `node` processes per case for cold start (the median is reported). */
  readonly runs: number;
  /** The commit whose per-type bundles are the baseline (default DEFAULT_BASELINE). */
  readonly baseline?: string;
  /** Deploy-time handler modules to measure cold start of; all by default. */
  readonly types?: string[];
}

export interface TypeColdStart {
  readonly type: string;
  readonly resourceType: string;
  readonly thenBytes: number;
  readonly nowBytes: number;
  readonly thenMs: number;
  readonly nowMs: number;
  readonly ratio: number;
}

export interface LoadRow {
  readonly resourceType: string;
  readonly module: string;
  /** What the router's isComplete answered (or the error). */
  readonly answer: string;
  /** Files of assets/provider in `require.cache` afterwards. */
  readonly providerFiles: string[];
  /** Other files in `require.cache` (none: everything is bundled). */
  readonly otherFiles: string[];
  readonly onlyOwn: boolean;
}

export interface GbsRow {
  readonly type: string;
  readonly resourceType: string;
  readonly ownMb: number;
  readonly sharedMb: number;
  /** Seconds billed per Create (undefined where not estimated). */
  readonly seconds?: number;
  readonly invocations?: string;
  readonly ownGbs?: number;
  readonly sharedGbs?: number;
}

export interface FixedCount {
  /** Fixed resources by CloudFormation type, with `total`. */
  readonly fixed: Record<string, number>;
  /** What one more instance of each construct adds, by CloudFormation type. */
  readonly perInstance: Record<string, number>;
}

export interface ProviderResult {
  readonly section: Section;
  readonly baseline: string;
  readonly coldStart: TypeColdStart[];
  readonly loads: LoadRow[];
  readonly gbs: GbsRow[];
  readonly deployTime: FixedCount;
  readonly withSchedule: FixedCount;
}

const resourceTypeOf = (module: string) => Object.keys(DEPLOY_TIME_HANDLERS).find((t) => DEPLOY_TIME_HANDLERS[t] === module)!;

/**
 * The handler sources of `rev` in a temporary directory: lambda/ and src/private/ (what the handlers
 * import), and the two tsconfig files lambda/tsconfig.json extends, so esbuild compiles them as then.
 */
function extractBaseline(rev: string, dir: string): string {
  const commit = execFileSync('git', ['rev-parse', '--verify', `${rev}^{commit}`], { cwd: ROOT, encoding: 'utf8' }).trim();
  const paths = ['lambda', 'src/private', 'tsconfig.json', 'test/tsconfig.json']
    .filter((p) => execFileSync('git', ['ls-tree', '--name-only', commit, p], { cwd: ROOT, encoding: 'utf8' }).trim() !== '');
  execFileSync('sh', ['-c', 'git archive "$@" | tar -x -C "$0"', dir, commit, ...paths], { cwd: ROOT, stdio: ['ignore', 'ignore', 'pipe'] });
  return commit;
}

/** Per type: the baseline's own bundle (as its provider's entry) against the router and the type's bundle now. */
function coldStartThenNow(tmp: string, rev: string, types: string[], runs: number):
{ commit: string; rows: TypeColdStart[]; thenCases: ColdStartCase[] } {
  const tree = path.join(tmp, 'baseline');
  fs.mkdirSync(tree, { recursive: true });
  const commit = extractBaseline(rev, tree);
  const nodePaths = [path.join(ROOT, 'node_modules')];
  const thenCases = types
    .filter((type) => fs.existsSync(path.join(tree, 'lambda', type, 'index.ts')))
    .map((type) => {
      const bundle = path.join(tmp, 'then', type, 'index.js');
      buildSync({ ...BUNDLE_OPTIONS, nodePaths, entryPoints: [path.join(tree, 'lambda', type, 'index.ts')], outfile: bundle });
      return probeCase({ name: type, srcRoot: tree, files: [bundle], probeFile: path.join(tmp, 'then-probe', type, 'index.js'), nodePaths });
    });
  const nowCases = libraryCases(path.join(tmp, 'now-probe'), thenCases.map((c) => c.name));
  const measured = measureColdStart([...thenCases, ...nowCases], runs, [true]);
  const rows = nowCases.map((now) => {
    const then = thenCases.find((c) => c.name === now.name)!;
    const row = (c: ColdStartCase) => measured.find((r) => r.case === c)!;
    const ms = (c: ColdStartCase) => row(c).loadMs + row(c).clientsMs;
    return {
      type: now.name,
      resourceType: resourceTypeOf(now.name),
      thenBytes: then.bytes,
      nowBytes: now.bytes,
      thenMs: ms(then),
      nowMs: ms(now),
      ratio: ms(now) / ms(then),
    };
  });
  return { commit, rows, thenCases };
}

/** Per type, in a fresh `node`: the router's isComplete for a Delete, then what of assets/provider is loaded. */
function whatARequestLoads(): LoadRow[] {
  const dir = path.join(ROOT, 'assets', PROVIDER_ASSET);
  const router = path.join(dir, 'index.js');
  if (!fs.existsSync(router)) return [];
  return Object.entries(DEPLOY_TIME_HANDLERS).map(([resourceType, module]) => {
    const event = {
      RequestType: 'Delete',
      ResourceType: resourceType,
      RequestId: 'bench-request',
      LogicalResourceId: 'Bench',
      StackId: 'arn:aws:cloudformation:us-east-1:111111111111:stack/Bench/00000000-0000-0000-0000-000000000000',
      ServiceToken: 'arn:aws:lambda:us-east-1:111111111111:function:bench',
      ResponseURL: 'https://example.invalid/',
      PhysicalResourceId: 'bench-physical-id',
      ResourceProperties: { ServiceToken: 'arn:aws:lambda:us-east-1:111111111111:function:bench' },
    };
    const script = [
      `const r = require(${JSON.stringify(router)});`,
      'const out = (answer) => process.stdout.write(JSON.stringify({ answer, files: Object.keys(require.cache) }));',
      `r.isComplete(${JSON.stringify(event)}).then((a) => out(JSON.stringify(a)), (e) => out('error: ' + e.message));`,
    ].join('\n');
    const out = JSON.parse(execFileSync(process.execPath, ['-e', script], {
      encoding: 'utf8',
      stdio: ['ignore', 'pipe', 'pipe'],
      timeout: 30_000,
      env: {
        PATH: process.env.PATH,
        AWS_REGION: 'us-east-1',
        AWS_ACCESS_KEY_ID: 'AKIDEXAMPLE',
        AWS_SECRET_ACCESS_KEY: 'secret',
        // Nothing of a Delete's isComplete calls AWS; were it to, it fails at once here.
        AWS_ENDPOINT_URL: 'http://127.0.0.1:9',
        AWS_MAX_ATTEMPTS: '1',
        POWERTOOLS_LOG_LEVEL: 'SILENT',
        POWERTOOLS_SERVICE_NAME: 'bench',
        NODE_OPTIONS: '--enable-source-maps',
        NODE_NO_WARNINGS: '1',
      },
    })) as { answer: string; files: string[] };
    const byName = (x: string, y: string) => (x === 'index.js' ? -1 : y === 'index.js' ? 1 : x.localeCompare(y));
    const providerFiles = out.files.filter((f) => f.startsWith(dir + path.sep)).map((f) => path.relative(dir, f)).sort(byName);
    const otherFiles = out.files.filter((f) => !f.startsWith(dir + path.sep));
    const own = ['index.js', `${module}.js`];
    return {
      resourceType,
      module,
      answer: out.answer,
      providerFiles,
      otherFiles,
      onlyOwn: otherFiles.length === 0 && JSON.stringify(providerFiles) === JSON.stringify(own),
    };
  });
}

/** One instance of each deploy-time type (instance `i`), as the issue's stack has them. */
function addDeployTime(stack: Stack, i: number): void {
  new OpenZfsSnapshot(stack, `Zfs${i}`, { volumeId: idOf('fsvol-', i + 1) });
  new EbsSnapshotOnDeploy(stack, `Ebs${i}`, { source: EbsSnapshotSource.fromVolumeId(idOf('vol-', i + 1)) });
  new EbsSnapshotFromImage(stack, i === 0 ? 'I' : `I${i}`, {
    image: DiskImage.fromS3Object(s3.Bucket.fromBucketName(stack, i === 0 ? 'B' : `B${i}`, 'bucket'), i === 0 ? 'k' : `k${i}`),
    volumeSize: Size.gibibytes(1),
  });
}

function addSchedule(stack: Stack, i: number): void {
  new FsxBackupSchedule(stack, `Backup${i}`, { schedule: events.Schedule.rate(Duration.hours(24)), targets: [BackupTarget.fileSystemId(idOf('fs-', i + 1))] });
}

function countByType(add: (stack: Stack, i: number) => void, n: number): Record<string, number> {
  const { template } = synthOnce({ name: 'provider', family: 'provider', kind: 'library', add }, n);
  const counts: Record<string, number> = {};
  for (const r of Object.values<any>(template.Resources ?? {})) counts[r.Type] = (counts[r.Type] ?? 0) + 1;
  return counts;
}

/** Fixed resources: with one instance of each construct, less what a second instance of each adds. */
function fixedResources(add: (stack: Stack, i: number) => void): FixedCount {
  const one = countByType(add, 1);
  const two = countByType(add, 2);
  const fixed: Record<string, number> = {};
  const perInstance: Record<string, number> = {};
  for (const type of new Set([...Object.keys(one), ...Object.keys(two)])) {
    const adds = (two[type] ?? 0) - (one[type] ?? 0);
    if (adds) perInstance[type] = adds;
    if ((one[type] ?? 0) - adds) fixed[type] = (one[type] ?? 0) - adds;
  }
  fixed.total = Object.values(fixed).reduce((a, b) => a + b, 0);
  return { fixed, perInstance };
}

/** The memory of the provider's handler functions in a stack built by `add`. */
function providerMemory(add: (stack: Stack) => void): number {
  const { template } = synthOnce({ name: 'provider', family: 'provider', kind: 'library', add: (stack) => add(stack) }, 1);
  const sizes = Object.values<any>(template.Resources ?? {})
    .filter((r) => r.Type === 'AWS::Lambda::Function' && /^index\.(onEvent|isComplete)$/.test(r.Properties?.Handler ?? ''))
    .map((r) => r.Properties.MemorySize as number);
  return Math.max(...sizes);
}

function gbSeconds(): GbsRow[] {
  const alone: Record<string, (stack: Stack) => void> = {
    'openzfs-snapshot': (stack) => new OpenZfsSnapshot(stack, 'Zfs', { volumeId: idOf('fsvol-', 1) }),
    'ebs-snapshot': (stack) => new EbsSnapshotOnDeploy(stack, 'Ebs', { source: EbsSnapshotSource.fromVolumeId(idOf('vol-', 1)) }),
    'ebs-direct-snapshot': (stack) => new EbsSnapshotFromImage(stack, 'I', {
      image: DiskImage.fromS3Object(s3.Bucket.fromBucketName(stack, 'B', 'bucket'), 'k'), volumeSize: Size.gibibytes(1),
    }),
  };
  const sharedMb = providerMemory((stack) => addDeployTime(stack, 0));
  return Object.values(DEPLOY_TIME_HANDLERS).filter((type) => alone[type]).map((type) => {
    const ownMb = providerMemory(alone[type]);
    const polls = GBS_ASSUMPTIONS.polls[type];
    if (polls === undefined) return { type, resourceType: resourceTypeOf(type), ownMb, sharedMb };
    const seconds = GBS_ASSUMPTIONS.onEventSeconds + polls * GBS_ASSUMPTIONS.pollSeconds;
    return {
      type,
      resourceType: resourceTypeOf(type),
      ownMb,
      sharedMb,
      seconds,
      invocations: `onEvent 1 × ${GBS_ASSUMPTIONS.onEventSeconds} s + isComplete ${polls} × ${GBS_ASSUMPTIONS.pollSeconds} s`,
      ownGbs: (ownMb / 1024) * seconds,
      sharedGbs: (sharedMb / 1024) * seconds,
    };
  });
}

export function providerPart(options: ProviderOptions): ProviderResult {
  const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'bench-provider-'));
  try {
    const rev = options.baseline ?? DEFAULT_BASELINE;
    const types = [...new Set(Object.values(DEPLOY_TIME_HANDLERS))].filter((t) => !options.types || options.types.includes(t)).sort();
    const cold = coldStartThenNow(tmp, rev, types, options.runs);
    const loads = whatARequestLoads();
    const gbs = gbSeconds();
    const deployTime = fixedResources(addDeployTime);
    const withSchedule = fixedResources((stack, i) => {
      addDeployTime(stack, i);
      addSchedule(stack, i);
    });
    const missing = types.filter((t) => !cold.thenCases.some((c) => c.name === t));
    const usd = (gbSecs: number, digits = 7) => `$${(gbSecs * ARM64_USD_PER_GB_SECOND).toFixed(digits)}`;
    const a = GBS_ASSUMPTIONS;

    const fixedTypes = [...new Set([deployTime.fixed, withSchedule.fixed, BEFORE_ISSUE_15.withSchedule].flatMap((f) => Object.keys(f)))]
      .filter((t) => t !== 'total').sort();
    const cell = (v: number | undefined) => (v === undefined ? '–' : v);
    const perInstance = (f: FixedCount) => Object.entries(f.perInstance).map(([t, n]) => `${n} ${t}`).join(', ');

    const markdown = [
      `### Cold start per type: its own provider at ${rev}${cold.commit.startsWith(rev) ? '' : ` (${cold.commit.slice(0, 7)})`} against the one provider now\n`,
      table(['type', 'resource type', 'bundle KiB then', 'KiB now (router + type)', 'load + clients ms then', 'now', 'now / then', `within ${num(COLD_START_TARGET, 2)}×`],
        cold.rows.map((r) => [r.type, r.resourceType, num(r.thenBytes / 1024), num(r.nowBytes / 1024), num(r.thenMs, 1), num(r.nowMs, 1),
          ratio(r.nowMs, r.thenMs), r.ratio <= COLD_START_TARGET ? 'yes' : 'no'])),
      '',
      `"Then": \`lambda/<type>/index.ts\` of ${rev} (\`git archive\` of lambda/ and src/private/, with its tsconfig files) bundled with the ` +
      'options of build-tools/bundle-handlers.ts, as its own provider\'s Lambda entry. "Now": assets/provider/index.js (the router) and then ' +
      'assets/provider/<type>.js, which the router requires on the first request of the type. Both with today\'s node_modules (the same ' +
      'SDK), so the difference is the router and the handler code, which was refactored too. Load and client creation as in "Handler ' +
      'cold start" (the probe stands in for the type\'s bundle), with `NODE_OPTIONS=--enable-source-maps` as the functions run; median ' +
      `of ${options.runs} fresh \`node\` processes per case, the cases round-robin, after one unmeasured round.` +
      (missing.length ? ` Not at ${rev}: ${missing.join(', ')}.` : ''),
      '',
      '### What a request loads\n',
      table(['resource type', 'isComplete (Delete) answered', 'assets/provider files loaded', 'other modules loaded', 'only its own'],
        loads.map((l) => [l.resourceType, l.answer, l.providerFiles.join(', '), l.otherFiles.length ? l.otherFiles.join(', ') : 'none', l.onlyOwn ? 'yes' : 'no'])),
      '',
      'A fresh `node` per type requires assets/provider/index.js, calls its `isComplete` with a Delete of that `ResourceType`, and lists ' +
      '`require.cache` afterwards.',
      '',
      '### GB-seconds of the shared size\n',
      table(['type', 'own MB', 'shared MB (with EbsSnapshotFromImage)', 'per Create (assumed)', 'GB-s own', 'GB-s shared', 'shared / own',
        'USD own', 'USD shared', 'extra USD per 1,000 deploys'],
      gbs.map((g) => (g.seconds === undefined
        ? [g.type, g.ownMb, g.sharedMb, 'its upload, in isComplete', '–', '–', ratio(g.sharedMb, g.ownMb), '–', '–', 'none (same size)']
        : [g.type, g.ownMb, g.sharedMb, `${g.invocations} = ${num(g.seconds, 1)} s`, num(g.ownGbs!, 3), num(g.sharedGbs!, 3),
          ratio(g.sharedGbs!, g.ownGbs!), usd(g.ownGbs!), usd(g.sharedGbs!), usd((g.sharedGbs! - g.ownGbs!) * 1000, 4)]))),
      '',
      'Assumptions: the shared onEvent and isComplete functions take the largest memory any type in the stack needs, read from synthesized ' +
      'templates (each type alone: "own"; all three: "shared"); without EbsSnapshotFromImage in the stack they stay at the smaller size, ' +
      `and nothing changes. A Create of one instance invokes onEvent once (~${a.onEventSeconds} s) and isComplete per poll (~${a.pollSeconds} s): ` +
      `${Object.entries(a.polls).map(([t, p]) => `${t} ${p} poll(s) (${a.pollsNote[t]})`).join(', ')}. The handlers wait on AWS API calls, ` +
      'not the CPU, so more memory does not shorten them: GB-s grow with memory. The longer isComplete timeout (14 min against 2) costs ' +
      'nothing unless a call runs that long. The Provider framework\'s own functions and state machine are the same either way; ' +
      `init time is not counted. Price: Lambda arm64 at $${ARM64_USD_PER_GB_SECOND} per GB-s (us-east-1 list price, first tier; ` +
      'the free tier not deducted).',
      '',
      '### Fixed resources per stack\n',
      table(['resource type', `OpenZFS + EBS + image, now (target ≤ ${BEFORE_ISSUE_15.targets.deployTime})`, 'before (issue #15)',
        `+ FsxBackupSchedule, now (target ≤ ${BEFORE_ISSUE_15.targets.withSchedule})`, 'before (issue #15)'],
      [
        ...fixedTypes.map((t) => [t, cell(deployTime.fixed[t]), cell(BEFORE_ISSUE_15.deployTime[t]),
          cell(withSchedule.fixed[t]), cell(BEFORE_ISSUE_15.withSchedule[t])]),
        ['total', deployTime.fixed.total, BEFORE_ISSUE_15.deployTime.total, withSchedule.fixed.total, BEFORE_ISSUE_15.withSchedule.total],
      ]),
      '',
      'Synthesized in process: one OpenZfsSnapshot, one EbsSnapshotOnDeploy (from a volume id), one EbsSnapshotFromImage (an S3 object, ' +
      '1 GiB), and again with a daily FsxBackupSchedule of one file system; default handler options. Fixed = the stack with one of each, ' +
      `less what a second of each adds (deploy-time types: ${perInstance(deployTime)}; with the schedule: ${perInstance(withSchedule)}). ` +
      'The before figures are those issue #15 measured (each type with a provider of its own); it gave no per-type breakdown of the ' +
      'stack without the schedule.',
    ].join('\n');
    return { section: { title: 'One provider per stack', markdown }, baseline: rev, coldStart: cold.rows, loads, gbs, deployTime, withSchedule };
  } finally {
    fs.rmSync(tmp, { recursive: true, force: true });
  }
}
