/*
 * Template scale: a stack with N instances of one way of making a copy, synthesized in process,
 * and what its template costs (resources, bytes, IAM policy size) and how long synth takes.
 */
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import { performance } from 'perf_hooks';
import { App, Stack } from 'aws-cdk-lib';
import { median } from './report';

/** The account and region of every benchmark stack (ARNs then render as in most real stacks). */
export const ENV = { account: '111111111111', region: 'us-east-1' };

/** CloudFormation's and IAM's limits the figures are held against. */
export const LIMITS = {
  resources: 500,
  templateBytes: 1_000_000,
  /** All inline policies of one role together (IAM counts characters without whitespace). */
  roleInlineBytes: 10_240,
  managedPolicyBytes: 6_144,
  /** Managed policies per role without a quota increase. */
  managedPoliciesPerRole: 10,
};

/**
 * One way of making a copy during deploy, N times in a stack. Adding a construct to the benchmark
 * is adding one of these (bench/cases.ts).
 */
export interface ScaleCase {
  /** The row's name, e.g. `OpenZfsSnapshot` or `AwsCustomResource`. */
  readonly name: string;
  /** What it copies; the rows of one family are compared with each other. */
  readonly family: string;
  /** A construct of this library (the targets apply to it) or what users would write instead. */
  readonly kind: 'library' | 'baseline';
  /** A short note shown under the table (what the row does and does not do). */
  readonly note?: string;
  /** For a library construct: the most resources its N-th instance may add. @default 1 */
  readonly targetAdds?: number;
  /** Adds instance `i` (0-based; each instance copies a resource of its own) to `stack`. */
  add(stack: Stack, i: number): void;
  /** Runs `build` with a setting changed for this case only (the per-ARN IAM variant). */
  around?<T>(build: () => T): T;
}

export interface SynthResult {
  readonly ms: number;
  readonly template: any;
  readonly bytes: number;
}

/** Builds a stack with `n` instances of `c` and synthesizes it to a temporary directory. */
export function synthOnce(c: ScaleCase, n: number): SynthResult {
  const outdir = fs.mkdtempSync(path.join(os.tmpdir(), 'bench-synth-'));
  try {
    const build = () => {
      const start = performance.now();
      // CDK refuses to synthesize past 500 resources; the benchmark measures such stacks all the
      // same, and reports them as not fitting.
      const app = new App({ outdir, analyticsReporting: false, context: { '@aws-cdk/core:stackResourceLimit': 0 } });
      const stack = new Stack(app, 'Bench', { env: ENV });
      for (let i = 0; i < n; i++) c.add(stack, i);
      const assembly = app.synth();
      const ms = performance.now() - start;
      return { ms, file: path.join(assembly.directory, stack.templateFile) };
    };
    const { ms, file } = c.around ? c.around(build) : build();
    const text = fs.readFileSync(file, 'utf8');
    return { ms, template: JSON.parse(text), bytes: Buffer.byteLength(text) };
  } finally {
    fs.rmSync(outdir, { recursive: true, force: true });
  }
}

export interface TemplateFigures {
  readonly resources: number;
  readonly templateBytes: number;
  /** All IAM policy documents of the stack, resolved as CloudFormation would (estimated), minified. */
  readonly iamBytes: number;
  /** The largest sum of inline policies attached to one role (IAM's 10,240 limit). */
  readonly roleInlineMax: number;
  /** AWS::IAM::Policy and AWS::IAM::ManagedPolicy resources. */
  readonly policies: number;
  /** Managed policies CDK split off a role's default policy (`OverflowPolicy…`). */
  readonly overflowPolicies: number;
  /** The largest managed policy (IAM's 6,144 limit). */
  readonly managedMax: number;
  /** The most managed policies attached to one role (IAM's default quota is 10). */
  readonly managedPerRoleMax: number;
}

/** Whether IAM would refuse the stack's policies (a role's inline total or a managed policy too large). */
export function overIamLimits(f: TemplateFigures): boolean {
  return f.roleInlineMax > LIMITS.roleInlineBytes || f.managedMax > LIMITS.managedPolicyBytes || f.managedPerRoleMax > LIMITS.managedPoliciesPerRole;
}

export function templateFigures(template: any, bytes: number): TemplateFigures {
  const resources = Object.entries<any>(template.Resources ?? {});
  let iamBytes = 0;
  let policies = 0;
  let overflowPolicies = 0;
  let managedMax = 0;
  const inlineByRole = new Map<string, number>();
  const managedByRole = new Map<string, number>();
  for (const [id, r] of resources) {
    if (r.Type === 'AWS::IAM::Policy' || r.Type === 'AWS::IAM::ManagedPolicy') {
      policies++;
      const size = resolvedSize(r.Properties.PolicyDocument, template);
      iamBytes += size;
      if (r.Type === 'AWS::IAM::ManagedPolicy') {
        managedMax = Math.max(managedMax, size);
        for (const role of r.Properties.Roles ?? []) managedByRole.set(JSON.stringify(role), (managedByRole.get(JSON.stringify(role)) ?? 0) + 1);
      }
      if (r.Type === 'AWS::IAM::ManagedPolicy' && /OverflowPolicy/.test(id)) overflowPolicies++;
      if (r.Type === 'AWS::IAM::Policy') {
        for (const role of r.Properties.Roles ?? []) {
          const key = JSON.stringify(role);
          inlineByRole.set(key, (inlineByRole.get(key) ?? 0) + size);
        }
      }
    } else if (r.Type === 'AWS::IAM::Role') {
      const key = JSON.stringify({ Ref: id });
      managedByRole.set(key, (managedByRole.get(key) ?? 0) + (r.Properties?.ManagedPolicyArns ?? []).length);
      for (const p of r.Properties?.Policies ?? []) {
        const size = resolvedSize(p.PolicyDocument, template);
        iamBytes += size;
        inlineByRole.set(key, (inlineByRole.get(key) ?? 0) + size);
      }
    }
  }
  return {
    resources: resources.length,
    templateBytes: bytes,
    iamBytes,
    roleInlineMax: Math.max(0, ...inlineByRole.values()),
    policies,
    overflowPolicies,
    managedMax,
    managedPerRoleMax: Math.max(0, ...managedByRole.values()),
  };
}

/**
 * The size of a policy document as IAM counts it (minified), with the intrinsics replaced by values
 * of realistic length: the partition, region and account of ENV, a stack ARN, physical names and
 * ARNs of the shape CloudFormation generates.
 */
export function resolvedSize(doc: unknown, template: any): number {
  return JSON.stringify(resolveIntrinsics(doc, template)).length;
}

function resolveIntrinsics(v: any, template: any): any {
  if (Array.isArray(v)) return v.map((x) => resolveIntrinsics(x, template));
  if (!v || typeof v !== 'object') return v;
  const keys = Object.keys(v);
  if (keys.length === 1) {
    const [k] = keys;
    const arg = v[k];
    if (k === 'Ref') return refValue(arg, template);
    if (k === 'Fn::GetAtt') return `arn:aws:${serviceOf(template, arg[0])}:${ENV.region}:${ENV.account}:x/Bench-${String(arg[0]).slice(0, 40)}-ABCDEFGHIJKL`;
    if (k === 'Fn::Join') return (resolveIntrinsics(arg[1], template) as any[]).map(String).join(arg[0]);
    if (k === 'Fn::Sub') return String(Array.isArray(arg) ? arg[0] : arg);
  }
  return Object.fromEntries(keys.map((k) => [k, resolveIntrinsics(v[k], template)]));
}

function refValue(name: string, template: any): string {
  switch (name) {
    case 'AWS::Partition': return 'aws';
    case 'AWS::Region': return ENV.region;
    case 'AWS::AccountId': return ENV.account;
    case 'AWS::URLSuffix': return 'amazonaws.com';
    case 'AWS::StackName': return 'Bench';
    case 'AWS::StackId': return `arn:aws:cloudformation:${ENV.region}:${ENV.account}:stack/Bench/01234567-89ab-cdef-0123-456789abcdef`;
    default: return template.Parameters?.[name] ? 'parameter-value' : `Bench-${name.slice(0, 40)}-ABCDEFGHIJKL`;
  }
}

function serviceOf(template: any, logicalId: string): string {
  const type: string = template.Resources?.[logicalId]?.Type ?? 'AWS::X::Y';
  return type.split('::')[1]?.toLowerCase() ?? 'x';
}

export interface ScaleRow extends TemplateFigures {
  readonly case: ScaleCase;
  readonly n: number;
  /** Median synth time (construct + `app.synth()`), ms. */
  readonly synthMs: number;
  readonly runs: number;
}

/**
 * For each N, `runs(n)` synths of every case taken round-robin (case after case, run after run),
 * so that a change in the machine's load shifts every case alike; the median time of each. One
 * unmeasured synth of each case first (module loading, JIT).
 */
export function measureScaleRoundRobin(cases: ScaleCase[], ns: number[], runs: (n: number) => number): ScaleRow[] {
  for (const c of cases) synthOnce(c, 1);
  const rows: ScaleRow[] = [];
  for (const n of ns) {
    const samples = cases.map(() => [] as SynthResult[]);
    for (let r = 0; r < runs(n); r++) cases.forEach((c, i) => samples[i].push(synthOnce(c, n)));
    cases.forEach((c, i) => {
      const last = samples[i][samples[i].length - 1];
      rows.push({ case: c, n, runs: runs(n), synthMs: median(samples[i].map((x) => x.ms)), ...templateFigures(last.template, last.bytes) });
    });
  }
  // Grouped by case, N ascending, as the tables show them.
  return cases.flatMap((c) => rows.filter((r) => r.case === c));
}

/**
 * The smallest N in [1, max] at which `exceeds(figures of N instances)` holds, or undefined: the
 * figures grow with N, so a doubling then a bisection finds it in a few synths.
 */
export function firstN(c: ScaleCase, exceeds: (f: TemplateFigures) => boolean, max: number): number | undefined {
  const at = (n: number) => {
    const r = synthOnce(c, n);
    return exceeds(templateFigures(r.template, r.bytes));
  };
  let lo = 0; // known not to exceed (0 instances: nothing)
  let hi = 1;
  while (!at(hi)) {
    lo = hi;
    if (hi >= max) return undefined;
    hi = Math.min(max, hi * 2);
  }
  while (hi - lo > 1) {
    const mid = Math.floor((lo + hi) / 2);
    if (at(mid)) hi = mid;
    else lo = mid;
  }
  return hi;
}
