/*
 * The benchmarks: what the constructs cost in a template, at synth and at cold start, and what
 * waiting costs, each next to what users would write instead, measured side by side in one run.
 * Prints the tables and writes them with the conclusions to bench/RESULTS.md.
 *
 *   npx projen bench                       (bundles the handlers first)
 *   npx ts-node --project test/tsconfig.json bench/run.ts [--quick] [--skip-ebs-direct] [--only=scale,iam,cold-start,provider,waiting,ebs-answer,ebs-direct]
 *     [--baseline=REV] [--no-write]
 *
 * --quick runs the smallest case of each part (seconds); the smoke test does the same in process.
 * --baseline=REV: the commit the provider part measures each type's own provider at (default cad47d0).
 */
import './env';
import { execFileSync } from 'child_process';
import { createHash } from 'crypto';
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import { performance } from 'perf_hooks';
import { measureAnswers } from './ebs-answer';
import { ebsDirectUploadBench } from './ebs-direct-upload';
import { coldStartPart, iamPart, scalePart, waitingPart } from './parts';
import { ARM64_USD_PER_GB_SECOND, BEFORE_ISSUE_15, COLD_START_TARGET, providerPart } from './provider';
import { num, ratio, Section, table } from './report';
import { PROVIDER_QUERY_INTERVAL } from '../src/private/provider';
import { EXACT_ARNS_PER_STATEMENT } from '../src/private/stack-handlers';

const PARTS = ['scale', 'iam', 'cold-start', 'provider', 'waiting', 'ebs-answer', 'ebs-direct'] as const;
type Part = typeof PARTS[number];

interface Args {
  readonly quick: boolean;
  readonly parts: Set<Part>;
  readonly write: boolean;
  /** The commit the provider part compares cold start with (each type's own provider). */
  readonly baseline?: string;
}

function parseArgs(argv: string[]): Args {
  const only = argv.find((a) => a.startsWith('--only='))?.slice('--only='.length).split(',');
  const unknown = (only ?? []).filter((p) => !(PARTS as readonly string[]).includes(p));
  if (unknown.length) throw new Error(`unknown part(s) ${unknown.join(', ')}: the parts are ${PARTS.join(', ')}`);
  const parts = new Set<Part>((only as Part[] | undefined) ?? PARTS);
  if (argv.includes('--skip-ebs-direct')) parts.delete('ebs-direct');
  const baseline = argv.find((a) => a.startsWith('--baseline='))?.slice('--baseline='.length);
  return { quick: argv.includes('--quick'), parts, write: !argv.includes('--no-write'), baseline };
}

/** A fixed CPU task (SHA-256 of 32 MiB), timed before and after: how much the machine's load moved the figures. */
function calibrate(): number {
  const block = Buffer.alloc(1024 * 1024, 7);
  const start = performance.now();
  for (let i = 0; i < 32; i++) createHash('sha256').update(block).digest();
  return performance.now() - start;
}

/**
 * The EBS-direct upload benchmark (bench/ebs-direct-upload.ts): its rows, as a table. It runs in a
 * fresh Node process: after the synth parts, this process's heap (hundreds of apps) made garbage
 * collection dominate an upload that allocates 512 KiB per block (20 MiB/s here against 130–230
 * MiB/s alone). In-process with --quick (the smoke test's small case, which is not measured).
 */
async function ebsDirectPart(quick: boolean, inProcess = false): Promise<Section> {
  const rows: Array<Record<string, unknown>> = inProcess
    ? ((await ebsDirectUploadBench({ quick })) as any[])
    : JSON.parse(execFileSync(process.execPath, ['-r', 'ts-node/register/transpile-only', path.join(__dirname, 'ebs-direct-upload.ts'), '--json', ...(quick ? ['--quick'] : [])],
      { encoding: 'utf8', env: { ...process.env, TS_NODE_PROJECT: path.join(__dirname, '..', 'test', 'tsconfig.json') }, maxBuffer: 16 * 1024 * 1024 }));
  if (rows.length === 0) return { title: 'EBS direct upload', markdown: 'bench/ebs-direct-upload.ts returned no rows.' };
  const headers = [...new Set(rows.flatMap((r) => Object.keys(r)))];
  const cell = (v: unknown) => (typeof v === 'number' ? (Number.isInteger(v) ? v : num(v, 2)) : String(v ?? ''));
  return { title: 'EBS direct upload (upload throughput against the local SHA-256 limit)', markdown: table(headers, rows.map((r) => headers.map((h) => cell(r[h])))) };
}

/** Progress goes to stderr when run as a command (not from the smoke test). */
const progress = require.main === module ? (line: string) => console.error(line) : () => undefined;

export async function main(argv: string[]): Promise<string> {
  const args = parseArgs(argv);
  const started = performance.now();
  const before = { load: os.loadavg()[0], calibrationMs: calibrate() };
  const sections: Section[] = [];
  const conclusions: string[] = [];
  const timings: Array<[string, number]> = [];
  const calibrations: Array<[string, number]> = [];
  const timed = async <T>(name: string, f: () => T | Promise<T>): Promise<T> => {
    calibrations.push([`before ${name}`, calibrate()]);
    const t = performance.now();
    const out = await f();
    timings.push([name, performance.now() - t]);
    progress(`bench: ${name} done in ${num((performance.now() - t) / 1000, 1)} s`);
    return out;
  };

  if (args.parts.has('scale')) {
    const scale = await timed('scale', () => scalePart(args.quick
      ? { ns: [1, 2], runs: () => 1 }
      : { ns: [1, 10, 50, 200], runs: (n) => (n >= 200 ? 5 : n >= 50 ? 7 : 11) }));
    sections.push(scale.section);
    for (const m of scale.marginal.filter((x) => x.case.kind === 'library')) {
      const acr = scale.marginal.find((x) => x.case.family === m.case.family && x.case.name === 'AwsCustomResource');
      conclusions.push(`${m.case.name}: instance number ${m.largest.n} adds ${m.lastAdds} resource(s) (target ${m.case.targetAdds ?? 1}); ` +
        `${num(m.bytes)} template bytes per instance${acr ? ` (${ratio(m.bytes, acr.bytes)} AwsCustomResource's)` : ''}; ` +
        `${num(m.fixedResources, 0)} resources and ${num(m.fixedBytes / 1024, 1)} KiB fixed per stack; at most ${m.maxN} per stack by CloudFormation's limits; ` +
        `synth ${num(m.synthMs, 2)} ms per instance${acr ? ` (${ratio(m.synthMs, acr.synthMs)} AwsCustomResource's: target at most 1×)` : ''}.`);
    }
  }
  if (args.parts.has('iam')) {
    const iam = await timed('iam', () => iamPart(args.quick ? 12 : 400));
    sections.push(iam.section);
    for (const r of iam.rows) {
      conclusions.push(`${r.case.name} (${r.case.family}): CDK splits its policy ${r.cdkSplitsAt ? `at N = ${r.cdkSplitsAt}` : 'never up to the maximum tried'}; ` +
        `IAM refuses a policy ${r.iamRefusesAt ? `at N = ${r.iamRefusesAt}` : 'never up to the maximum tried'}.`);
    }
  }
  if (args.parts.has('cold-start')) {
    const cold = await timed('cold-start', () => coldStartPart(args.quick
      ? { runs: 1, only: ['openzfs-snapshot'], sourceMapModes: [true], acrClients: ['fsx'] }
      : { runs: 11 }));
    sections.push(cold.section);
  }
  if (args.parts.has('provider')) {
    const provider = await timed('provider', () => providerPart(args.quick
      ? { runs: 1, types: ['openzfs-snapshot'], baseline: args.baseline }
      : { runs: 21, baseline: args.baseline }));
    sections.push(provider.section);
    for (const r of provider.coldStart) {
      conclusions.push(`${r.resourceType} cold start (load + clients, source maps on): ${num(r.nowMs, 1)} ms through the one provider against ` +
        `${num(r.thenMs, 1)} ms with its own at ${provider.baseline}: ${ratio(r.nowMs, r.thenMs)} (target at most ${num(COLD_START_TARGET, 2)}×); ` +
        `${num(r.nowBytes / 1024)} KiB loaded against ${num(r.thenBytes / 1024)}.`);
    }
    const strays = provider.loads.filter((l) => !l.onlyOwn);
    conclusions.push(strays.length === 0
      ? `A request of each type loads only the router and its own type's bundle (${provider.loads.map((l) => `${l.module}.js`).join(', ')}).`
      : `A request loads more than the router and its own bundle: ${strays.map((l) => `${l.resourceType}: ${[...l.providerFiles, ...l.otherFiles].join(', ')}`).join('; ')}.`);
    for (const g of provider.gbs.filter((x) => x.ownGbs !== undefined && x.sharedMb !== x.ownMb)) {
      conclusions.push(`${g.resourceType} in a stack with EbsSnapshotFromImage runs at ${num(g.sharedMb)} MB instead of ${num(g.ownMb)}: ` +
        `${num(g.sharedGbs!, 2)} GB-s per Create instead of ${num(g.ownGbs!, 2)} (assumed ${num(g.seconds!, 1)} s billed; ` +
        `$${((g.sharedGbs! - g.ownGbs!) * 1000 * ARM64_USD_PER_GB_SECOND).toFixed(3)} more per 1,000 deploys at arm64 us-east-1 list price).`);
    }
    conclusions.push(`Fixed resources per stack: ${provider.deployTime.fixed.total} with the three deploy-time types ` +
      `(target ≤ ${BEFORE_ISSUE_15.targets.deployTime}, before ${BEFORE_ISSUE_15.deployTime.total}), ${provider.withSchedule.fixed.total} with ` +
      `FsxBackupSchedule too (target ≤ ${BEFORE_ISSUE_15.targets.withSchedule}, before ${BEFORE_ISSUE_15.withSchedule.total}); ` +
      `${provider.withSchedule.fixed['AWS::Lambda::Function'] ?? 0} Lambda functions (before ${BEFORE_ISSUE_15.withSchedule['AWS::Lambda::Function']}), ` +
      `${provider.withSchedule.fixed['AWS::StepFunctions::StateMachine'] ?? 0} state machine(s) (before ${BEFORE_ISSUE_15.withSchedule['AWS::StepFunctions::StateMachine']}).`);
  }
  if (args.parts.has('waiting')) {
    const waiting = await timed('waiting', () => waitingPart(args.quick
      ? { lifecyclesMs: [10_000], intervalsMs: [PROVIDER_QUERY_INTERVAL.toMilliseconds()], phases: 1 }
      : { lifecyclesMs: [10_000, 120_000, 1_200_000], intervalsMs: [5_000, 10_000, 30_000, 60_000], phases: 8 }));
    sections.push(waiting.section);
  }
  if (args.parts.has('ebs-answer')) {
    const rows = await timed('ebs-answer', () => measureAnswers());
    sections.push({
      title: 'What a deploy waits for an EBS snapshot (simulated seconds, beyond EC2\'s own calls)',
      markdown: [
        table(['request', 'seconds to answer'], rows.map((r) => [r.what, num(r.seconds, 1)])),
        '',
        'Fault-free, in the simulator (test/support: every call takes 0 s, so what shows is what the handler and the Provider framework ' +
        'add: sleeps, polls, waits); EC2 reads lag 20–30 s behind a new snapshot; the Provider polls isComplete every 10 s.',
      ].join('\n'),
    });
    const most = (pattern: RegExp) => num(Math.max(...rows.filter((r) => pattern.test(r.what)).map((r) => r.seconds)), 1);
    conclusions.push(`EbsSnapshotOnDeploy answers a fault-free Create or Update in at most ${most(/^EbsSnapshotOnDeploy (Create|Update) /)} s ` +
      `beyond EC2's calls (target 5 s); a stack deletion waits ${most(/stack deletion \(/)} s, and ${most(/right after its Create/)} s ` +
      'right after the Create (until EC2 reads show the snapshot).');
  }
  if (args.parts.has('ebs-direct')) {
    sections.push(await timed('ebs-direct', () => ebsDirectPart(args.quick, args.quick)));
  }

  const after = { load: os.loadavg()[0], calibrationMs: calibrate() };
  const elapsed = (performance.now() - started) / 1000;
  const header = [
    '# Benchmark results',
    '',
    `Written by \`bench/run.ts\`${args.quick ? ' --quick (smallest cases only)' : ''} on ${new Date().toISOString().slice(0, 10)}: ` +
    `${os.cpus().length} CPUs (${os.cpus()[0]?.model.trim()}), Node ${process.version}, aws-cdk-lib ${JSON.parse(fs.readFileSync(require.resolve('aws-cdk-lib/package.json'), 'utf8')).version}. ` +
    `Whole run ${num(elapsed, 0)} s (${timings.map(([n, ms]) => `${n} ${num(ms / 1000, 0)} s`).join(', ')}).`,
    '',
    `Contention: 1-minute load average ${num(before.load, 2)} before and ${num(after.load, 2)} after; a fixed CPU task (SHA-256 of ` +
    `32 MiB) took ${[['at the start', before.calibrationMs] as [string, number], ...calibrations, ['at the end', after.calibrationMs] as [string, number]]
      .map(([when, ms]) => `${num(ms, 0)} ms ${when}`).join(', ')}. ` +
    'Absolute times move with the load of the machine; compare the ratios, measured side by side in this run.',
    '',
    `Settings measured: exact ARNs up to ${EXACT_ARNS_PER_STATEMENT} per IAM statement, then resource-type patterns; ` +
    `Provider query interval ${PROVIDER_QUERY_INTERVAL.toSeconds()} s.`,
  ].join('\n');
  const body = sections.map((s) => `## ${s.title}\n\n${s.markdown}`).join('\n\n');
  const markdown = `${header}\n\n${body}\n\n## Figures in one line each\n\n${conclusions.map((c) => `- ${c}`).join('\n')}\n`;
  return markdown;
}

/** The conclusions written by hand from the figures of a full run (bench/CONCLUSIONS.md), appended to RESULTS.md. */
function handWritten(): string {
  const file = path.join(__dirname, 'CONCLUSIONS.md');
  return fs.existsSync(file) ? `\n${fs.readFileSync(file, 'utf8')}` : '';
}

if (require.main === module) {
  main(process.argv.slice(2)).then((markdown) => {
    const args = parseArgs(process.argv.slice(2));
    console.log(markdown);
    if (args.write) {
      const out = path.join(__dirname, 'RESULTS.md');
      fs.writeFileSync(out, markdown + handWritten());
      console.error(`bench: wrote ${path.relative(process.cwd(), out)}`);
    }
  }).catch((err) => {
    console.error(err);
    process.exitCode = 1;
  });
}
