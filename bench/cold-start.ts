/*
 * Handler cold start: for each handler, the size of what Lambda loads (for a deploy-time type, the
 * provider's router and the type's bundle), and in a fresh `node` process the time to load it and
 * to create the AWS SDK clients it uses; next to aws-cdk-lib's AwsCustomResource
 * handler, which loads the SDK client of its service from the runtime on its first call.
 */
import { execFileSync } from 'child_process';
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import { buildSync } from 'esbuild';
import { median } from './report';
import { DEPLOY_TIME_HANDLERS, PROVIDER_ASSET } from '../src/private/deploy-time-types';

const ROOT = path.join(__dirname, '..');

export interface ColdStartCase {
  readonly name: string;
  /** The handler's bundle. */
  readonly file: string;
  /** Every file Lambda loads for it, in order (the provider's router, then the type's bundle). */
  readonly files?: string[];
  /** Bytes Lambda loads: the bundles (and their source maps when source maps are enabled). */
  readonly bytes: number;
  readonly mapBytes: number;
  /** The SDK clients its first call creates. */
  readonly clients: string[];
  /** Modules required before the probe, timed with it (the router, which then requires the type's bundle). */
  readonly preload?: string[];
  /** A module that loads like `file` and also exposes a function creating those clients. */
  readonly probe: string;
  /** How the probe creates the clients (JavaScript run in the child after loading `probe` as `m`). */
  readonly createClients: string;
}

export interface ColdStartRow {
  readonly case: ColdStartCase;
  readonly sourceMaps: boolean;
  /** Median ms to `require` the handler module (after the router, for a deploy-time type). */
  readonly loadMs: number;
  /** Median ms to create its SDK clients after that (for AwsCustomResource: load the SDK client package too). */
  readonly clientsMs: number;
  readonly runs: number;
}

/**
 * The library's handlers as Lambda loads them (`npx projen bundle`): each deploy-time type as the
 * provider's router (assets/provider/index.js) and then the type's own bundle beside it, which the
 * router requires on the first request of that type; every other handler as assets/<name>/index.js.
 * Named by handler module (lambda/<name>/index.ts).
 */
export function libraryCases(tmp: string, only?: string[]): ColdStartCase[] {
  const assets = path.join(ROOT, 'assets');
  if (!fs.existsSync(assets)) return [];
  const router = path.join(assets, PROVIDER_ASSET, 'index.js');
  const deployTime = [...new Set(Object.values(DEPLOY_TIME_HANDLERS))];
  const others = fs.readdirSync(assets)
    .filter((name) => name !== PROVIDER_ASSET && !deployTime.includes(name))
    .filter((name) => fs.existsSync(path.join(assets, name, 'index.js')) && fs.existsSync(path.join(ROOT, 'lambda', name, 'index.ts')));
  const filesOf = (name: string) => (deployTime.includes(name) ? [router, path.join(assets, PROVIDER_ASSET, `${name}.js`)] : [path.join(assets, name, 'index.js')]);
  return [...deployTime, ...others]
    .filter((name) => !only || only.includes(name))
    .filter((name) => filesOf(name).every((f) => fs.existsSync(f)))
    .sort()
    .map((name) => probeCase({ name, srcRoot: ROOT, files: filesOf(name), probeFile: path.join(tmp, name, 'index.js') }));
}

/** The esbuild options of build-tools/bundle-handlers.ts. */
export const BUNDLE_OPTIONS = {
  bundle: true, platform: 'node', target: 'node22', format: 'cjs', minify: true, sourcemap: true, sourcesContent: false, legalComments: 'none', logLevel: 'warning',
} as const;

export interface ProbeCaseOptions {
  readonly name: string;
  /** The tree holding `lambda/` (and what it imports): the working tree, or a past commit's extracted. */
  readonly srcRoot: string;
  /**
   * The files Lambda loads, in order: the last is the handler's bundle of `lambda/<name>/index.ts`
   * (the probe stands in for it); any before it (the router) are required first, within the load time.
   */
  readonly files: string[];
  /** Where to write the probe. */
  readonly probeFile: string;
  /** Where esbuild finds packages when `srcRoot` has no node_modules. */
  readonly nodePaths?: string[];
}

/**
 * The handler's clients are made on first use inside the bundle, out of reach of a caller; the
 * probe is the same entry point bundled with the same esbuild options as build-tools/
 * bundle-handlers.ts, plus an export of each client factory the handler bundles.
 */
export function probeCase(options: ProbeCaseOptions): ColdStartCase {
  const { name, srcRoot, files, probeFile } = options;
  const entry = path.join(srcRoot, 'lambda', name, 'index.ts');
  const build = { ...BUNDLE_OPTIONS, ...(options.nodePaths ? { nodePaths: options.nodePaths } : {}) };
  const meta = buildSync({ ...build, entryPoints: [entry], write: false, outdir: path.dirname(probeFile), metafile: true }).metafile!;
  const clients = Object.keys(meta.inputs)
    .map((input) => /lambda\/shared\/clients\/([a-z0-9-]+)\.ts$/.exec(input)?.[1])
    .filter((c): c is string => c !== undefined && c !== 'config');
  const contents = [
    `export * from ${JSON.stringify(entry)};`,
    ...clients.map((c) => `export { ${c} as __client_${c.replace(/-/g, '_')} } from ${JSON.stringify(path.join(srcRoot, 'lambda', 'shared', 'clients', c))};`),
  ].join('\n');
  buildSync({ ...build, stdin: { contents, resolveDir: srcRoot, sourcefile: 'probe.ts', loader: 'ts' }, outfile: probeFile });
  const size = (file: string) => (fs.existsSync(file) ? fs.statSync(file).size : 0);
  return {
    name,
    file: files[files.length - 1],
    files,
    bytes: files.reduce((sum, f) => sum + size(f), 0),
    mapBytes: files.reduce((sum, f) => sum + size(`${f}.map`), 0),
    clients,
    preload: files.slice(0, -1),
    probe: probeFile,
    createClients: 'for (const k of Object.keys(m)) if (k.startsWith("__client_")) m[k]();',
  };
}

/** aws-cdk-lib's AwsCustomResource handler: its module, then the SDK client package it requires on its first call. */
export function awsCustomResourceCase(client: 'fsx' | 'ec2'): ColdStartCase {
  const file = path.join(path.dirname(require.resolve('aws-cdk-lib/package.json')), 'custom-resource-handlers', 'dist', 'custom-resources', 'aws-custom-resource-handler', 'index.js');
  const pkg = `@aws-sdk/client-${client}`;
  const cls = client === 'fsx' ? 'FSxClient' : 'EC2Client';
  return {
    name: `AwsCustomResource (${pkg})`,
    file,
    bytes: fs.statSync(file).size,
    mapBytes: 0,
    clients: [client],
    probe: file,
    createClients: `const sdk = require(${JSON.stringify(require.resolve(pkg))}); new sdk.${cls}({});`,
  };
}

/** One fresh `node` process: ms to load the probe, then ms to create the clients. */
function once(c: ColdStartCase, sourceMaps: boolean): { load: number; clients: number } {
  const script = [
    'const t0 = process.hrtime.bigint();',
    ...(c.preload ?? []).map((f) => `require(${JSON.stringify(f)});`),
    `const m = require(${JSON.stringify(c.probe)});`,
    'const t1 = process.hrtime.bigint();',
    c.createClients,
    'const t2 = process.hrtime.bigint();',
    'process.stdout.write(JSON.stringify({ load: Number(t1 - t0) / 1e6, clients: Number(t2 - t1) / 1e6 }));',
  ].join('\n');
  const env: NodeJS.ProcessEnv = {
    PATH: process.env.PATH,
    AWS_REGION: 'us-east-1',
    AWS_ACCESS_KEY_ID: 'AKIDEXAMPLE',
    AWS_SECRET_ACCESS_KEY: 'secret',
    POWERTOOLS_SERVICE_NAME: 'bench',
    // The library's functions run with NODE_OPTIONS=--enable-source-maps (src/private/stack-handlers.ts).
    NODE_OPTIONS: sourceMaps ? '--enable-source-maps' : '',
    NODE_NO_WARNINGS: '1',
  };
  const out = execFileSync(process.execPath, ['-e', script], { env, encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] });
  return JSON.parse(out);
}

/**
 * `runs` samples of every case in every mode, taken round-robin (case after case, run after run)
 * so that a change in the machine's load shifts them all alike; one unmeasured round first.
 */
export function measureColdStart(cases: ColdStartCase[], runs: number, sourceMapModes = [true, false]): ColdStartRow[] {
  const configs = sourceMapModes.flatMap((sourceMaps) => cases
    // Without a source map the flag changes nothing: one row ("off") is enough.
    .filter((c) => !(sourceMaps && c.mapBytes === 0 && sourceMapModes.includes(false)))
    .map((c) => ({ c, sourceMaps, samples: [] as Array<{ load: number; clients: number }> })));
  for (let round = 0; round <= runs; round++) {
    for (const config of configs) {
      const sample = once(config.c, config.sourceMaps);
      if (round > 0) config.samples.push(sample);
    }
  }
  return configs.map(({ c, sourceMaps, samples }) => ({
    case: c,
    sourceMaps,
    runs,
    loadMs: median(samples.map((s) => s.load)),
    clientsMs: median(samples.map((s) => s.clients)),
  }));
}

export function tempDir(): string {
  return fs.mkdtempSync(path.join(os.tmpdir(), 'bench-cold-'));
}
