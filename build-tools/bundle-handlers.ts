/*
 * Bundles the Lambda handlers with esbuild: minified, with a source map, for the Node version of
 * the Lambda runtime, with the AWS SDK v3 clients each calls inside (what runs in Lambda is what
 * the tests ran). Prints each bundle's size.
 *
 * - The stack's one provider (assets/provider/): the router lambda/provider/index.ts as index.js,
 *   and each deploy-time type's handler lambda/<module>/index.ts as <module>.js beside it, a bundle
 *   of its own, so that a request loads only its own type's code (src/private/deploy-time-types.ts).
 * - Every other handler lambda/<name>/index.ts into assets/<name>/index.js.
 *
 *   ts-node build-tools/bundle-handlers.ts [--target node22]
 */
import * as fs from 'fs';
import * as path from 'path';
import { buildSync } from 'esbuild';
import { DEPLOY_TIME_HANDLERS, PROVIDER_ASSET } from '../src/private/deploy-time-types';

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

fs.rmSync(path.join(root, 'assets'), { recursive: true, force: true });
for (const name of handlers) {
  const outfile = name === PROVIDER_ASSET
    ? path.join(root, 'assets', PROVIDER_ASSET, 'index.js')
    : deployTime.has(name)
      ? path.join(root, 'assets', PROVIDER_ASSET, `${name}.js`)
      : path.join(root, 'assets', name, 'index.js');
  buildSync({
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
  });
  const kib = (file: string) => (fs.statSync(file).size / 1024).toFixed(0);
  console.log(`bundled ${name}: ${path.relative(root, outfile)} ${kib(outfile)} KiB, map ${kib(`${outfile}.map`)} KiB`);
}
