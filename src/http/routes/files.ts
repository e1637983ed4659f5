/**
 * Workspace files: list, download, upload (raw bytes, any content type),
 * delete. Paths are checked, and walked without following any symlink, by
 * src/workspace/files.ts, never here.
 */
import { Readable } from 'node:stream';
import { z } from 'zod';
import { FileDeletedSchema, FileListQuery, FileListSchema, FileWrittenSchema } from '../../api/index.ts';
import { Binary, errorResponses, json, SessionParams, type ZodApp } from '../openapi.ts';
import type { HttpDeps } from '../app.ts';

/** The route's `*` is the file's path in the workspace (the document names it `path`). */
const FileParams = SessionParams.extend({
  '*': z.string().describe('The file\'s path in the workspace, slashes included (e.g. `out/report.csv`).'),
});
const fileErrors = ['INVALID_SESSION_ID', 'SESSION_NOT_FOUND', 'INVALID_PATH', 'FILE_NOT_FOUND'] as const;

export function fileRoutes(app: ZodApp, deps: HttpDeps): void {
  // Uploads are bytes whatever their content type says: no parsing in this plugin.
  app.removeAllContentTypeParsers();
  app.addContentTypeParser('*', (_request, payload, done) => done(null, payload));

  const workspaceOf = async (tenantId: string, sessionId: string) =>
    deps.sessions.workspaceDir(await deps.sessions.get(tenantId, sessionId));

  app.get('/session/:sessionId/files', {
    schema: {
      tags: ['files'], summary: 'List a workspace folder', params: SessionParams, querystring: FileListQuery,
      response: { 200: json(FileListSchema, 'The folder\'s entries.'), ...errorResponses([...fileErrors]) },
    },
  }, async (request) => {
    const { sessionId } = request.params;
    const { path } = request.query;
    const root = await workspaceOf(request.caller.tenantId, sessionId);
    return { sessionId, files: await deps.files.list(root, path || undefined) };
  });

  app.get('/session/:sessionId/files/*', {
    schema: {
      tags: ['files'], summary: 'Download a file: its bytes', params: FileParams,
      response: { 200: { description: 'The file\'s bytes.', content: { 'application/octet-stream': { schema: Binary } } }, ...errorResponses([...fileErrors]) },
    },
  }, async (request, reply) => {
    const { sessionId, '*': path } = request.params;
    const root = await workspaceOf(request.caller.tenantId, sessionId);
    const { stream, size } = await deps.files.read(root, path);
    return reply.header('content-type', 'application/octet-stream').header('content-length', size).send(stream);
  });

  app.put('/session/:sessionId/files/*', {
    schema: {
      tags: ['files'], summary: 'Upload a file: the body\'s bytes, whatever its content type; folders are created', params: FileParams,
      // Documentation only: any content type is taken as bytes, never parsed or checked.
      body: Binary,
      consumes: ['application/octet-stream', '*/*'],
      response: {
        201: json(FileWrittenSchema, 'Written.'),
        ...errorResponses([...fileErrors, 'ORIGIN_NOT_ALLOWED', 'PAYLOAD_TOO_LARGE', 'DISK_QUOTA_EXCEEDED']),
      },
    },
  }, async (request, reply) => {
    const { sessionId, '*': path } = request.params;
    const session = await deps.sessions.get(request.caller.tenantId, sessionId);
    const body = (request.body as Readable | null | undefined) ?? Readable.from([]);
    const size = await deps.files.write(deps.sessions.workspaceDir(session), path, body, {
      maxBytes: deps.fileUploadLimitBytes, roomBytes: await deps.sessions.uploadRoom(session), owner: deps.workspaceOwner,
    });
    return reply.code(201).send({ sessionId, path, size });
  });

  app.delete('/session/:sessionId/files/*', {
    schema: {
      tags: ['files'], summary: 'Delete a file, a symlink (never its target) or a folder with everything in it', params: FileParams,
      response: { 200: json(FileDeletedSchema, 'Deleted.'), ...errorResponses([...fileErrors, 'ORIGIN_NOT_ALLOWED']) },
    },
  }, async (request) => {
    const { sessionId, '*': path } = request.params;
    const root = await workspaceOf(request.caller.tenantId, sessionId);
    await deps.files.remove(root, path);
    return { sessionId, path, deleted: true as const };
  });
}
