/*
 * The benchmark's parts, each returning a Markdown section: template scale, IAM growth, handler
 * cold start, waiting cost. bench/run.ts runs them all; test/bench-smoke.test.ts runs the smallest
 * case of each.
 */
import * as path from 'path';
import { SCALE_CASES } from './cases';
import { awsCustomResourceCase, ColdStartCase, ColdStartRow, libraryCases, measureColdStart, tempDir } from './cold-start';
import { num, ratio, Section, table } from './report';
import { firstN, LIMITS, measureScaleRoundRobin, overIamLimits, ScaleCase, ScaleRow, synthOnce, templateFigures } from './scale';
import { summarizeWaiting, WaitingSummary } from './waiting';
import { PROVIDER_QUERY_INTERVAL } from '../src/private/provider';
import { EXACT_ARNS_PER_STATEMENT } from '../src/private/stack-handlers';

export interface ScaleOptions {
  readonly ns: number[];
  /** Synth runs (the median is reported) per N. */
  readonly runs: (n: number) => number;
  readonly cases?: ScaleCase[];
}

export interface ScaleResult {
  readonly section: Section;
  readonly rows: ScaleRow[];
  readonly marginal: MarginalRow[];
}

export interface MarginalRow {
  readonly case: ScaleCase;
  readonly resources: number;
  readonly bytes: number;
  readonly iamBytes: number;
  readonly synthMs: number;
  readonly fixedResources: number;
  readonly fixedBytes: number;
  readonly fixedSynthMs: number;
  /** Resources the last instance added (N-th minus (N-1)-th). */
  readonly lastAdds: number;
  /** The largest N one stack holds by CloudFormation's resource and size limits. */
  readonly maxN: number;
  readonly largest: ScaleRow;
}

export function scalePart(options: ScaleOptions): ScaleResult {
  const cases = options.cases ?? SCALE_CASES;
  const ns = [...options.ns].sort((a, b) => a - b);
  const rows = measureScaleRoundRobin(cases, ns, options.runs);
  const small = ns[0];
  const large = ns[ns.length - 1];
  const marginal: MarginalRow[] = cases.map((c) => {
    const a = rows.find((r) => r.case === c && r.n === small)!;
    const b = rows.find((r) => r.case === c && r.n === large)!;
    const per = (f: (r: ScaleRow) => number) => (large === small ? NaN : (f(b) - f(a)) / (large - small));
    const resources = per((r) => r.resources);
    const bytes = per((r) => r.templateBytes);
    const before = large > 1 ? synthOnce(c, large - 1) : undefined;
    const lastAdds = before ? b.resources - templateFigures(before.template, before.bytes).resources : b.resources;
    const fixedResources = a.resources - small * resources;
    const fixedBytes = a.templateBytes - small * bytes;
    const maxN = Math.floor(Math.min((LIMITS.resources - fixedResources) / resources, (LIMITS.templateBytes - fixedBytes) / bytes));
    return {
      case: c,
      resources,
      bytes,
      iamBytes: per((r) => r.iamBytes),
      synthMs: per((r) => r.synthMs),
      fixedResources,
      fixedBytes,
      fixedSynthMs: a.synthMs - small * per((r) => r.synthMs),
      lastAdds,
      maxN,
      largest: b,
    };
  });

  const families = [...new Set(cases.map((c) => c.family))];
  const parts: string[] = [];
  for (const family of families) {
    const inFamily = cases.filter((c) => c.family === family);
    const acr = inFamily.find((c) => c.name === 'AwsCustomResource');
    parts.push(`### ${family}\n`);
    parts.push(table(
      ['case', 'N', 'resources', 'template B', 'IAM B', 'largest role inline B', 'policies (CDK overflow)', 'synth ms (median)', 'synth vs AwsCustomResource'],
      rows.filter((r) => inFamily.includes(r.case)).map((r) => {
        const base = acr ? rows.find((x) => x.case === acr && x.n === r.n) : undefined;
        return [
          r.case.name, r.n, r.resources, r.templateBytes, r.iamBytes,
          r.roleInlineMax > LIMITS.roleInlineBytes ? `${num(r.roleInlineMax)} (over)` : r.roleInlineMax,
          `${r.policies} (${r.overflowPolicies})${r.managedMax > LIMITS.managedPolicyBytes ? ', one over 6,144' : ''}` +
            `${r.managedPerRoleMax > LIMITS.managedPoliciesPerRole ? `, ${r.managedPerRoleMax} managed on one role` : ''}`,
          num(r.synthMs, 1), base && base !== r ? ratio(r.synthMs, base.synthMs) : '–',
        ];
      }),
    ));
    const notes = inFamily.filter((c) => c.note).map((c) => `- ${c.name}: ${c.note}`);
    if (notes.length) parts.push(`\n${notes.join('\n')}`);
    parts.push('');
  }
  parts.push(`### Per instance and per stack (from N = ${small} and N = ${large})\n`);
  parts.push(table(
    ['case', 'family', 'resources / instance', 'N-th adds', 'template B / instance', 'IAM B / instance', 'synth ms / instance', 'vs AwsCustomResource',
      'fixed resources', 'fixed template B', 'fixed synth ms', 'max N per stack', `${large} fit one stack`],
    marginal.map((m) => {
      const acr = marginal.find((x) => x.case.family === m.case.family && x.case.name === 'AwsCustomResource');
      const fits = m.largest.resources <= LIMITS.resources && m.largest.templateBytes <= LIMITS.templateBytes && !overIamLimits(m.largest);
      return [
        m.case.name, m.case.family, num(m.resources, 2), m.lastAdds, num(m.bytes), num(m.iamBytes), num(m.synthMs, 2),
        acr && acr !== m ? ratio(m.synthMs, acr.synthMs) : '–',
        num(m.fixedResources, 1), num(m.fixedBytes), num(m.fixedSynthMs, 1), m.maxN,
        fits ? 'yes' : `no (${whyNot(m.largest)})`,
      ];
    }),
  ));
  parts.push('\n"max N per stack" is bounded by 500 resources and a 1 MB template (whichever comes first); "fit" also needs ' +
    'every role\'s inline policies within 10,240 characters, every managed policy within 6,144 and at most 10 managed policies ' +
    'on a role (IAM\'s default quota; sizes estimated with intrinsics resolved).');
  return { section: { title: 'Template scale', markdown: parts.join('\n') }, rows, marginal };
}

function whyNot(r: ScaleRow): string {
  const why: string[] = [];
  if (r.resources > LIMITS.resources) why.push(`${r.resources} resources`);
  if (r.templateBytes > LIMITS.templateBytes) why.push(`${num(r.templateBytes)} B template`);
  if (r.roleInlineMax > LIMITS.roleInlineBytes) why.push(`role inline ${num(r.roleInlineMax)} B`);
  if (r.managedMax > LIMITS.managedPolicyBytes) why.push(`managed policy ${num(r.managedMax)} B`);
  if (r.managedPerRoleMax > LIMITS.managedPoliciesPerRole) why.push(`${r.managedPerRoleMax} managed policies on a role`);
  return why.join(', ');
}

export interface IamRow {
  readonly case: ScaleCase;
  readonly cdkSplitsAt: number | undefined;
  readonly iamRefusesAt: number | undefined;
}

/** Where CDK first splits a role's policy, and where IAM would first refuse one, up to `max` instances. */
export function iamPart(max: number, cases: ScaleCase[] = SCALE_CASES.filter((c) => c.kind === 'library' || c.name === 'AwsCustomResource')): { section: Section; rows: IamRow[] } {
  const rows = cases.map((c) => ({
    case: c,
    cdkSplitsAt: firstN(c, (f) => f.overflowPolicies > 0, max),
    iamRefusesAt: firstN(c, overIamLimits, max),
  }));
  const at = (n: number | undefined) => (n === undefined ? `none up to ${max}` : `N = ${n}`);
  const markdown = [
    table(['case', 'family', 'CDK splits the default policy (OverflowPolicy)', 'IAM refuses a policy (size)'],
      rows.map((r) => [r.case.name, r.case.family, at(r.cdkSplitsAt), at(r.iamRefusesAt)])),
    '',
    'Each instance copies a resource of its own (distinct volume or file system ids): the worst case for per-ARN grants. ' +
    `The library now grants exact ARNs up to ${EXACT_ARNS_PER_STATEMENT} per statement and past that the resource type's ARN ` +
    'pattern in the stack\'s account and region, with the statement\'s request/resource-tag conditions unchanged ' +
    '(src/private/stack-handlers.ts `allow()`). AwsCustomResource adds one inline policy per instance to one shared role, ' +
    'which CDK never splits: IAM refuses the role\'s inline total past 10,240 characters at deploy time.',
  ].join('\n');
  return { section: { title: 'IAM growth', markdown }, rows };
}

export interface ColdStartOptions {
  readonly runs: number;
  /** Handlers to measure, by module (lambda/<name>); all by default. */
  readonly only?: string[];
  readonly sourceMapModes?: boolean[];
  readonly acrClients?: Array<'fsx' | 'ec2'>;
}

/** The files a case loads, relative to assets/ (or the file's name outside it). */
function loads(c: ColdStartCase): string {
  const assets = path.join(__dirname, '..', 'assets');
  return (c.files ?? [c.file]).map((f) => (f.startsWith(assets) ? path.relative(assets, f) : path.basename(f))).join(' + ');
}

export function coldStartPart(options: ColdStartOptions): { section: Section; rows: ColdStartRow[] } {
  const cases = [...libraryCases(tempDir(), options.only), ...(options.acrClients ?? ['fsx', 'ec2']).map((c) => awsCustomResourceCase(c))];
  const rows = measureColdStart(cases, options.runs, options.sourceMapModes ?? [true, false]);
  const acrOf = (r: ColdStartRow) => rows.find((x) => x.case.name.startsWith('AwsCustomResource') && x.case.clients.some((c) => r.case.clients.includes(c)));
  const markdown = [
    table(['handler', 'loads', 'bundle KiB', 'map KiB', 'SDK clients', 'source maps', 'load ms', 'clients ms', 'load + clients ms', 'vs AwsCustomResource'],
      rows.map((r) => {
        const acr = acrOf(r);
        const total = r.loadMs + r.clientsMs;
        return [r.case.name, loads(r.case), num(r.case.bytes / 1024), num(r.case.mapBytes / 1024), r.case.clients.join(', '), r.sourceMaps ? 'on' : 'off',
          num(r.loadMs, 1), num(r.clientsMs, 1), num(total, 1), acr && acr !== r ? ratio(total, acr.loadMs + acr.clientsMs) : '–'];
      })),
    '',
    `Median of ${options.runs} fresh \`node\` processes (${process.version}) after one unmeasured run. A deploy-time type loads the ` +
    'stack\'s one provider: its router (assets/provider/index.js), which on the first request of the type requires that type\'s ' +
    'bundle beside it; "load ms" is both, sizes are their sum. The library\'s handlers run with ' +
    '`NODE_OPTIONS=--enable-source-maps` (source maps "on"); AwsCustomResource loads `@aws-sdk/client-<service>` from the Lambda ' +
    'runtime on its first call, measured here from node_modules, so its "clients ms" includes loading the SDK package.',
  ].join('\n');
  return { section: { title: 'Handler cold start', markdown }, rows };
}

export interface WaitingOptions {
  readonly lifecyclesMs: number[];
  readonly intervalsMs: number[];
  readonly phases: number;
}

export async function waitingPart(options: WaitingOptions): Promise<{ section: Section; rows: WaitingSummary[] }> {
  const rows: WaitingSummary[] = [];
  for (const l of options.lifecyclesMs) for (const i of options.intervalsMs) rows.push(await summarizeWaiting(l, i, options.phases));
  const current = PROVIDER_QUERY_INTERVAL.toMilliseconds();
  const dur = (ms: number) => (ms >= 60_000 ? `${num(ms / 60_000, ms % 60_000 ? 1 : 0)} min` : `${num(ms / 1000)} s`);
  const markdown = [
    table(['lifecycle', 'interval', 'Describe calls', 'isComplete calls', 'AVAILABLE → complete, mean s', 'worst s', 'calls vs 10 s', 'mean latency vs 10 s'],
      rows.map((r) => {
        const ten = rows.find((x) => x.lifecycleMs === r.lifecycleMs && x.intervalMs === 10_000);
        return [dur(r.lifecycleMs), `${dur(r.intervalMs)}${r.intervalMs === current ? ' (chosen)' : ''}`, num(r.describeCallsMean, 1), num(r.pollsMean, 1),
          num(r.latencyMeanMs / 1000, 1), num(r.latencyMaxMs / 1000, 1),
          ten ? ratio(r.describeCallsMean, ten.describeCallsMean) : '–', ten ? ratio(r.latencyMeanMs, ten.latencyMeanMs) : '–'];
      })),
    '',
    `One OpenZfsSnapshot create in the simulator (test/support: SimWorld, CfnStack driver), no faults; each row averages ${options.phases} ` +
    'creates whose snapshot becomes AVAILABLE at evenly spread points between two polls. The Provider framework only offers a fixed ' +
    '`queryInterval`: its waiter state machine retries isComplete with `BackoffRate: 1` (aws-cdk-lib custom-resources/lib/' +
    'provider-framework/util.js `calculateRetryPolicy`), so no backoff can be chosen.',
  ].join('\n');
  return { section: { title: 'Waiting cost', markdown }, rows };
}
