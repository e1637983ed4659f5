/** Session routes: the seed's list, details, delete and reset, paginated where they grow. */
import { z } from 'zod';
import { SessionDeletedSchema, SessionResetSchema, SessionsPageQuery, SessionViewSchema } from '../../api/index.ts';
import { errorResponses, json, SessionParams, type ZodApp } from '../openapi.ts';
import { sessionView } from '../views.ts';
import type { HttpDeps } from '../app.ts';

const notFound = errorResponses(['INVALID_SESSION_ID', 'SESSION_NOT_FOUND']);
// Delete and reset ask the node that holds the session (several nodes) to tear it down.
const notFoundOrOrigin = errorResponses(['INVALID_SESSION_ID', 'SESSION_NOT_FOUND', 'ORIGIN_NOT_ALLOWED', 'NODE_UNREACHABLE']);

export function sessionRoutes(app: ZodApp, deps: HttpDeps): void {
  // The seed answers with an array; the next page's cursor travels in a header so that stays true.
  app.get('/sessions', {
    schema: {
      tags: ['sessions'], summary: 'The caller\'s sessions, a page at a time', querystring: SessionsPageQuery,
      description: 'An array (the seed\'s shape); when there is a next page, its cursor is in the `x-next-cursor` header and a `link: <...>; rel="next"` header.',
      response: { 200: json(z.array(SessionViewSchema), 'A page of sessions.'), ...errorResponses([]) },
    },
  }, async (request, reply) => {
    const query = request.query;
    const page = await deps.sessions.list(request.caller.tenantId, { limit: query.limit, cursor: query.cursor ?? null });
    if (page.nextCursor) {
      reply.header('x-next-cursor', page.nextCursor);
      reply.header('link', `</sessions?limit=${query.limit}&cursor=${encodeURIComponent(page.nextCursor)}>; rel="next"`);
    }
    return page.items.map(sessionView);
  });

  app.get('/session/:sessionId', {
    schema: { tags: ['sessions'], summary: 'A session: state, queue, turns, cost', params: SessionParams, response: { 200: json(SessionViewSchema, 'The session.'), ...notFound } },
  }, async (request) => {
    const { sessionId } = request.params;
    return sessionView(await deps.sessions.describe(request.caller.tenantId, sessionId));
  });

  app.delete('/session/:sessionId', {
    schema: {
      tags: ['sessions'], summary: 'Delete a session: its tasks are aborted, its sandbox, workspace and history removed', params: SessionParams,
      response: { 200: json(SessionDeletedSchema, 'Deleted.'), ...notFoundOrOrigin },
    },
  }, async (request) => {
    const { sessionId } = request.params;
    await deps.sessions.delete(request.caller.tenantId, sessionId);
    return { sessionId, deleted: true as const };
  });

  app.post('/session/:sessionId/reset', {
    schema: {
      tags: ['sessions'], summary: 'Reset a session to a clean state: conversation and workspace, keeping its id', params: SessionParams,
      response: { 200: json(SessionResetSchema, 'The session after the reset.'), ...notFoundOrOrigin },
    },
  }, async (request) => {
    const { sessionId } = request.params;
    await deps.sessions.reset(request.caller.tenantId, sessionId);
    return { ...sessionView(await deps.sessions.describe(request.caller.tenantId, sessionId)), reset: true as const };
  });
}
