/**
 * The web dashboard: the page at `GET /` and its static modules under `/ui/`
 * (our own in ./public, and preact, htm and signals served as ES modules from
 * node_modules under /ui/vendor/<package>@<version>/, wired by an import map).
 * Nothing is built: the browser loads the modules as they are.
 *
 * Owns: serving the page and its files, their cache and security headers.
 * Must not touch: the API (the page calls the same routes as any client, with
 * the user's key) nor authentication (the page and its files are open; every
 * call they make is not).
 */
import { createHash } from 'node:crypto';
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { dirname, extname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { FastifyInstance, FastifyRequest } from 'fastify';
import { RunnerError } from '../core/errors.ts';
import { sendError } from '../http/errors.ts';

const HERE = import.meta.dirname;
const PUBLIC_DIR = join(HERE, 'public');

/** The ES module builds the page imports, by their bare specifier. */
const VENDOR_MODULES: Record<string, string> = {
  preact: 'preact',
  'preact/hooks': 'preact',
  htm: 'htm',
  '@preact/signals': '@preact/signals',
  '@preact/signals-core': '@preact/signals-core',
};

interface Asset {
  body: string;
  type: string;
  etag: string;
  cacheControl: string;
}

/** The package folder of a resolved module file: the nearest package.json named `name` above it. */
function packageVersion(file: string, name: string): string {
  for (let dir = dirname(file); dir !== dirname(dir); dir = dirname(dir)) {
    const manifest = join(dir, 'package.json');
    if (!existsSync(manifest)) continue;
    const parsed = JSON.parse(readFileSync(manifest, 'utf8')) as { name?: string; version?: string };
    if (parsed.name === name) return parsed.version ?? '0';
  }
  throw new Error(`dashboard: no package.json of ${name} above ${file}`);
}

function loadVendor(): { importMap: Record<string, string>; files: Map<string, string> } {
  const importMap: Record<string, string> = {};
  const files = new Map<string, string>();
  for (const [specifier, pkg] of Object.entries(VENDOR_MODULES)) {
    const file = fileURLToPath(import.meta.resolve(specifier));
    const name = `${pkg.replace('@', '').replace('/', '-')}@${packageVersion(file, pkg)}/${file.split('/').pop()}`;
    // Their source maps are not served: drop the comment that would make devtools ask for them.
    const body = readFileSync(file, 'utf8').replace(/\n?\/\/# sourceMappingURL=\S+\s*$/, '\n');
    importMap[specifier] = `./ui/vendor/${name}`;
    files.set(name, body);
  }
  return { importMap, files };
}

/** Is this request for the page or its files (open without a key)? Decided by the route found, not the URL as sent. */
export function isDashboardRoute(request: FastifyRequest): boolean {
  const route = request.routeOptions.url;
  return (request.method === 'GET' || request.method === 'HEAD') && (route === '/' || route?.startsWith('/ui/') === true);
}

const CONTENT_TYPES: Record<string, string> = { '.js': 'text/javascript; charset=utf-8', '.css': 'text/css; charset=utf-8' };

/** Our own modules, read once: a URL names one of these files or nothing (no path from the URL reaches the disk). */
function loadOwnFiles(): Map<string, Asset> {
  const files = new Map<string, Asset>();
  for (const name of readdirSync(PUBLIC_DIR)) {
    const type = CONTENT_TYPES[extname(name)];
    if (!type) continue;
    const body = readFileSync(join(PUBLIC_DIR, name), 'utf8');
    // They change with the runner: revalidated on each load by their ETag, cheap when unchanged.
    files.set(name, { body, type, etag: etagOf(body), cacheControl: 'no-cache' });
  }
  return files;
}

function etagOf(body: string): string {
  return `"${createHash('sha256').update(body).digest('base64url').slice(0, 22)}"`;
}

export async function dashboardRoutes(app: FastifyInstance): Promise<void> {
  const vendor = loadVendor();
  const assets = loadOwnFiles();
  for (const [name, body] of vendor.files) {
    // Versioned paths: a new version is a new URL, so these may be kept for good.
    assets.set(`vendor/${name}`, { body, type: CONTENT_TYPES['.js']!, etag: etagOf(body), cacheControl: 'public, max-age=31536000, immutable' });
  }
  const importMapJson = JSON.stringify({ imports: vendor.importMap });
  const page = readFileSync(join(HERE, 'index.html'), 'utf8').replace('%IMPORT_MAP%', importMapJson);
  const importMapHash = createHash('sha256').update(importMapJson).digest('base64');
  // The page runs only its own modules and the import map; it talks only to this origin; no one may frame it.
  const csp = [
    "default-src 'none'", `script-src 'self' 'sha256-${importMapHash}'`, "style-src 'self'", "img-src 'self' data:",
    "connect-src 'self'", "base-uri 'none'", "form-action 'none'", "frame-ancestors 'none'",
  ].join('; ');

  // Not part of the API: kept out of the OpenAPI document.
  const notApi = { schema: { hide: true } };
  app.get('/', notApi, async (_request, reply) => reply
    .header('content-type', 'text/html; charset=utf-8')
    .header('cache-control', 'no-cache')
    .header('content-security-policy', csp)
    .header('x-content-type-options', 'nosniff')
    .header('referrer-policy', 'no-referrer')
    .send(page));

  app.get('/ui/*', notApi, async (request, reply) => {
    const asset = assets.get((request.params as { '*': string })['*']);
    if (!asset) return sendError(reply, new RunnerError('ROUTE_NOT_FOUND', `No dashboard file ${request.url.split('?')[0]}.`));
    reply.header('cache-control', asset.cacheControl).header('etag', asset.etag).header('x-content-type-options', 'nosniff');
    if (request.headers['if-none-match'] === asset.etag) return reply.code(304).send();
    return reply.header('content-type', asset.type).send(asset.body);
  });
}
