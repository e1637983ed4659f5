/**
 * Workspace files: list, download, upload (raw bytes, any content type),
 * delete. Paths are checked, and walked without following any symlink, by
 * src/workspace/files.ts, never here.
 */
import type { FastifyInstance } from 'fastify';
import { Readable } from 'node:stream';
import type { HttpDeps } from '../app.ts';

export function fileRoutes(app: FastifyInstance, deps: HttpDeps): void {
  // Uploads are bytes whatever their content type says: no parsing in this plugin.
  app.removeAllContentTypeParsers();
  app.addContentTypeParser('*', (_request, payload, done) => done(null, payload));

  const workspaceOf = async (tenantId: string, sessionId: string) =>
    deps.sessions.workspaceDir(await deps.sessions.get(tenantId, sessionId));

  app.get('/session/:sessionId/files', async (request) => {
    const { sessionId } = request.params as { sessionId: string };
    const { path } = request.query as { path?: string };
    const root = await workspaceOf(request.caller.tenantId, sessionId);
    return { sessionId, files: await deps.files.list(root, path || undefined) };
  });

  app.get('/session/:sessionId/files/*', async (request, reply) => {
    const { sessionId, '*': path } = request.params as { sessionId: string; '*': string };
    const root = await workspaceOf(request.caller.tenantId, sessionId);
    const { stream, size } = await deps.files.read(root, path);
    return reply.header('content-type', 'application/octet-stream').header('content-length', size).send(stream);
  });

  app.put('/session/:sessionId/files/*', async (request, reply) => {
    const { sessionId, '*': path } = request.params as { sessionId: string; '*': string };
    const session = await deps.sessions.get(request.caller.tenantId, sessionId);
    const body = (request.body as Readable | undefined) ?? Readable.from([]);
    const size = await deps.files.write(deps.sessions.workspaceDir(session), path, body, {
      maxBytes: deps.fileUploadLimitBytes, roomBytes: await deps.sessions.uploadRoom(session), owner: deps.workspaceOwner,
    });
    return reply.code(201).send({ sessionId, path, size });
  });

  app.delete('/session/:sessionId/files/*', async (request) => {
    const { sessionId, '*': path } = request.params as { sessionId: string; '*': string };
    const root = await workspaceOf(request.caller.tenantId, sessionId);
    await deps.files.remove(root, path);
    return { sessionId, path, deleted: true };
  });
}
