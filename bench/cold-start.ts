/*
 * Handler cold start: for each bundle in assets/, its size, and in a fresh `node` process the time
 * to load it and to create the AWS SDK clients it uses; next to aws-cdk-lib's AwsCustomResource
 * handler, which loads the SDK client of its service from the runtime on its first call.
 */
import { execFileSync } from 'child_process';
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import { buildSync } from 'esbuild';
import { median } from './report';

const ROOT = path.join(__dirname, '..');

export interface ColdStartCase {
  readonly name: string;
  /** The file Lambda loads. */
  readonly file: string;
  /** Bytes Lambda loads: the bundle (and its source map when source maps are enabled). */
  readonly bytes: number;
  readonly mapBytes: number;
  /** The SDK clients its first call creates. */
  readonly clients: string[];
  /** A module that loads like `file` and also exposes a function creating those clients. */
  readonly probe: string;
  /** How the probe creates the clients (JavaScript run in the child after loading `probe` as `m`). */
  readonly createClients: string;
}

export interface ColdStartRow {
  readonly case: ColdStartCase;
  readonly sourceMaps: boolean;
  /** Median ms to `require` the handler module. */
  readonly loadMs: number;
  /** Median ms to create its SDK clients after that (for AwsCustomResource: load the SDK client package too). */
  readonly clientsMs: number;
  readonly runs: number;
}

/** The library's handler bundles (assets/<name>/index.js, as `npx projen bundle` makes them). */
export function libraryCases(tmp: string, only?: string[]): ColdStartCase[] {
  const assets = path.join(ROOT, 'assets');
  if (!fs.existsSync(assets)) return [];
  return fs.readdirSync(assets)
    .filter((name) => fs.existsSync(path.join(assets, name, 'index.js')) && fs.existsSync(path.join(ROOT, 'lambda', name, 'index.ts')))
    .filter((name) => !only || only.includes(name))
    .sort()
    .map((name) => libraryCase(name, tmp));
}

/**
 * The handler's clients are made on first use inside the bundle, out of reach of a caller; the
 * probe is the same entry point bundled with the same esbuild options as build-tools/
 * bundle-handlers.ts, plus an export of each client factory the handler bundles.
 */
function libraryCase(name: string, tmp: string): ColdStartCase {
  const entry = path.join(ROOT, 'lambda', name, 'index.ts');
  const options = { bundle: true, platform: 'node', target: 'node22', format: 'cjs', minify: true, sourcemap: true, sourcesContent: false, legalComments: 'none', logLevel: 'warning' } as const;
  const meta = buildSync({ ...options, entryPoints: [entry], write: false, outdir: tmp, metafile: true }).metafile!;
  const clients = Object.keys(meta.inputs)
    .map((input) => /lambda\/shared\/clients\/([a-z0-9-]+)\.ts$/.exec(input)?.[1])
    .filter((c): c is string => c !== undefined && c !== 'config');
  const outfile = path.join(tmp, name, 'index.js');
  const contents = [
    `export * from ${JSON.stringify(entry)};`,
    ...clients.map((c) => `export { ${c} as __client_${c.replace(/-/g, '_')} } from ${JSON.stringify(path.join(ROOT, 'lambda', 'shared', 'clients', c))};`),
  ].join('\n');
  buildSync({ ...options, stdin: { contents, resolveDir: ROOT, sourcefile: 'probe.ts', loader: 'ts' }, outfile });
  const bundle = path.join(ROOT, 'assets', name, 'index.js');
  return {
    name,
    file: bundle,
    bytes: fs.statSync(bundle).size,
    mapBytes: fs.existsSync(`${bundle}.map`) ? fs.statSync(`${bundle}.map`).size : 0,
    clients,
    probe: outfile,
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
