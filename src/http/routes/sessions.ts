/** Session routes: the seed's list, details, delete and reset, paginated where they grow. */
import type { FastifyInstance } from 'fastify';
import { parseInput } from '../errors.ts';
import { pageQuery, sessionView } from '../views.ts';
import type { HttpDeps } from '../app.ts';

const sessionsPage = pageQuery(100, 500);

export function sessionRoutes(app: FastifyInstance, deps: HttpDeps): void {
  // The seed answers with an array; the next page's cursor travels in a header so that stays true.
  app.get('/sessions', async (request, reply) => {
    const query = parseInput(sessionsPage, request.query);
    const page = await deps.sessions.list(request.caller.tenantId, { limit: query.limit, cursor: query.cursor ?? null });
    if (page.nextCursor) {
      reply.header('x-next-cursor', page.nextCursor);
      reply.header('link', `</sessions?limit=${query.limit}&cursor=${encodeURIComponent(page.nextCursor)}>; rel="next"`);
    }
    return page.items.map(sessionView);
  });

  app.get('/session/:sessionId', async (request) => {
    const { sessionId } = request.params as { sessionId: string };
    return sessionView(await deps.sessions.describe(request.caller.tenantId, sessionId));
  });

  app.delete('/session/:sessionId', async (request) => {
    const { sessionId } = request.params as { sessionId: string };
    await deps.sessions.delete(request.caller.tenantId, sessionId);
    return { sessionId, deleted: true };
  });

  app.post('/session/:sessionId/reset', async (request) => {
    const { sessionId } = request.params as { sessionId: string };
    await deps.sessions.reset(request.caller.tenantId, sessionId);
    return { ...sessionView(await deps.sessions.describe(request.caller.tenantId, sessionId)), reset: true };
  });
}
