/*
 * Bundles the Lambda handlers with esbuild: minified, with a source map, for the Node version of
 * the Lambda runtime, with the AWS SDK v3 clients each calls inside (what runs in Lambda is what
 * the tests ran). Prints each bundle's size.
 *
 * - The stack's one provider (assets/provider/): the router lambda/provider/index.ts as index.js,
 *   and each deploy-time type's handler lambda/<module>/index.ts as <module>.js beside it, a bundle
 *   of its own, so that a request loads only its own type's code (src/private/deploy-time-types.ts).
 * - The stack's one scheduled function (assets/schedule/): the router lambda/schedule/index.ts as
 *   index.js, with every scheduled operation's handler (src/private/schedule-operations.ts) inside
 *   it; those get no bundle of their own.
 * - Every other handler lambda/<name>/index.ts into assets/<name>/index.js.
 *
 *   ts-node build-tools/bundle-handlers.ts [--target node22]
 */
import * as fs from 'fs';
import * as path from 'path';
import { buildSync } from 'esbuild';
import { DEPLOY_TIME_HANDLERS, PROVIDER_ASSET } from '../src/private/deploy-time-types';
import { SCHEDULED_OPERATIONS, SCHEDULE_ASSET } from '../src/private/schedule-operations';

const root = path.join(__dirname, '..');
const args = process.argv.slice(2);
const targetArg = args.indexOf('--target');
const target = targetArg >= 0 ? args[targetArg + 1] : 'node22';

const deployTime = new Set(Object.values(DEPLOY_TIME_HANDLERS));
const handlers = fs
  .readdirSync(path.join(root, 'lambda'), { withFileTypes: true })
  .filter((d) => d.isDirectory() && d.name !== 'shared' && fs.existsSync(path.join(root, 'lambda', d.name, 'index.ts')))
  .map((d) => d.name)
  .sort();
for (const name of deployTime) {
  if (!handlers.includes(name)) throw new Error(`DEPLOY_TIME_HANDLERS names ${name}, but there is no lambda/${name}/index.ts`);
}
const scheduled = new Set<string>(Object.values(SCHEDULED_OPERATIONS));
for (const name of [...scheduled, SCHEDULE_ASSET]) {
  if (!handlers.includes(name)) throw new Error(`the scheduled function needs lambda/${name}/index.ts, and there is none`);
}

fs.rmSync(path.join(root, 'assets'), { recursive: true, force: true });
for (const name of handlers) {
  if (scheduled.has(name)) continue; // inside the scheduled function's router
  const outfile = name === PROVIDER_ASSET
    ? path.join(root, 'assets', PROVIDER_ASSET, 'index.js')
    : deployTime.has(name)
      ? path.join(root, 'assets', PROVIDER_ASSET, `${name}.js`)
      : path.join(root, 'assets', name, 'index.js');
  const { metafile } = buildSync({
    entryPoints: [path.join(root, 'lambda', name, 'index.ts')],
    outfile,
    bundle: true,
    platform: 'node',
    target,
    format: 'cjs',
    minify: true,
    sourcemap: true,
    sourcesContent: false,
    legalComments: 'none',
    logLevel: 'warning',
    metafile: true,
  });
  if (name === SCHEDULE_ASSET) {
    for (const op of scheduled) {
      if (!Object.keys(metafile?.inputs ?? {}).some((f) => f.endsWith(`lambda/${op}/index.ts`))) throw new Error(`the router lambda/${SCHEDULE_ASSET}/index.ts does not import lambda/${op}: its ticks would fail`);
    }
  }
  const kib = (file: string) => (fs.statSync(file).size / 1024).toFixed(0);
  console.log(`bundled ${name}: ${path.relative(root, outfile)} ${kib(outfile)} KiB, map ${kib(`${outfile}.map`)} KiB`);
}
