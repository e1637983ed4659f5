/**
 * `npm run build` (and `prepack`): compiles src/ to dist/ as JavaScript with
 * declarations (Node does not strip types inside node_modules, so the packed
 * package ships JS), the demo's mock API to dist/examples/, and copies the
 * files code reads at run time (anything in src/ that is not TypeScript,
 * e.g. src/dashboard/public/**) next to the compiled code.
 */
import { spawnSync } from 'node:child_process';
import { cpSync, existsSync, rmSync, statSync } from 'node:fs';
import { join, resolve } from 'node:path';

const root = resolve(import.meta.dirname, '..');
const tsc = join(root, 'node_modules/typescript/bin/tsc');
const started = Date.now();

rmSync(join(root, 'dist'), { recursive: true, force: true });
for (const project of ['tsconfig.build.json', 'tsconfig.build-examples.json']) {
  const result = spawnSync(process.execPath, [tsc, '-p', join(root, project)], { cwd: root, stdio: ['ignore', 'pipe', 'inherit'], encoding: 'utf8' });
  // A package is built only from code that type-checks: tsc exits 2 when it found errors (even though it wrote files).
  if (result.status !== 0) {
    console.error(`build: tsc -p ${project} failed:\n${result.stdout}`);
    process.exit(result.status ?? 1);
  }
}
cpSync(join(root, 'src'), join(root, 'dist'), {
  recursive: true,
  filter: (source) => statSync(source).isDirectory() || !/\.(ts|tsx|mts|cts)$/.test(source),
});
if (!existsSync(join(root, 'dist/cli/main.js'))) {
  console.error('build: dist/cli/main.js is missing');
  process.exit(1);
}
console.log(`build: dist/ in ${((Date.now() - started) / 1000).toFixed(1)} s`);
