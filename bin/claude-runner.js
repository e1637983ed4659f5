#!/usr/bin/env node
// The `claude-runner` command. In the repository it runs the TypeScript source
// (Node 24 strips types), so it is never a stale build; in an installed package
// (no src/, and Node will not strip types inside node_modules) the compiled dist/.
import { existsSync } from 'node:fs';

const source = new URL('../src/cli/main.ts', import.meta.url);
const compiled = new URL('../dist/cli/main.js', import.meta.url);
const canStripTypes = Boolean(process.features.typescript);
if (existsSync(source) && canStripTypes) await import(source.href);
else if (existsSync(compiled)) await import(compiled.href);
else {
  console.error(`claude-runner: Node ${process.version} cannot run the TypeScript source: use the project's Node (npx claude-runner, npm run cli) or build it first (npm run build).`);
  process.exit(1);
}
