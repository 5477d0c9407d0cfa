/*
 * Bundles every Lambda handler (lambda/<name>/index.ts) with esbuild into assets/<name>/index.js:
 * minified, with a source map, for the Node version of the Lambda runtime, with the AWS SDK v3
 * clients it calls inside (what runs in Lambda is what the tests ran). Prints each bundle's size.
 *
 *   ts-node build-tools/bundle-handlers.ts [--target node22] [name ...]
 *
 * With names, only those handlers are bundled.
 */
import * as fs from 'fs';
import * as path from 'path';
import { buildSync } from 'esbuild';

const root = path.join(__dirname, '..');
const args = process.argv.slice(2);
const targetArg = args.indexOf('--target');
const target = targetArg >= 0 ? args[targetArg + 1] : 'node22';
const only = args.filter((a, i) => !a.startsWith('--') && (targetArg < 0 || i !== targetArg + 1));

const handlers = fs
  .readdirSync(path.join(root, 'lambda'), { withFileTypes: true })
  .filter((d) => d.isDirectory() && d.name !== 'shared' && fs.existsSync(path.join(root, 'lambda', d.name, 'index.ts')))
  .map((d) => d.name)
  .filter((name) => only.length === 0 || only.includes(name))
  .sort();

for (const name of handlers) {
  const outfile = path.join(root, 'assets', name, 'index.js');
  fs.rmSync(path.dirname(outfile), { recursive: true, force: true });
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
  console.log(`bundled ${name}: index.js ${kib(outfile)} KiB, index.js.map ${kib(`${outfile}.map`)} KiB`);
}
