/**
 * The cluster bus on a real PostgreSQL (LISTEN/NOTIFY): a request larger
 * than one NOTIFY reaches the other node whole; a request nobody answers is
 * NODE_UNREACHABLE after its timeout; the leader is one node at a time, and
 * when its connection is cut another node leads while it connects again.
 */
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import pg from 'pg';
import { PgClusterBus } from '../../src/cluster/pg-bus.ts';
import type { ClusterRequest } from '../../src/core/ports/cluster-bus.ts';
import { eventually } from '../support/harness.ts';
import { startPostgres, type TestPostgres } from '../support/postgres.ts';

const quiet = { info: () => undefined, warn: () => undefined, error: () => undefined };

describe('the cluster bus over LISTEN/NOTIFY', () => {
  let server: TestPostgres;
  let url: string;
  const buses: PgClusterBus[] = [];
  const received = new Map<string, ClusterRequest[]>();
  const reconnects = new Map<string, number>();

  async function bus(nodeId: string): Promise<PgClusterBus> {
    const b = new PgClusterBus({ url, nodeId, logger: quiet });
    received.set(nodeId, []);
    b.listen({
      notice: () => undefined,
      request: async (request) => void received.get(nodeId)!.push(request),
      reconnected: () => void reconnects.set(nodeId, (reconnects.get(nodeId) ?? 0) + 1),
    });
    await b.start();
    buses.push(b);
    return b;
  }

  before(async () => {
    server = await startPostgres();
    url = await server.createDatabase();
  });
  after(async () => {
    for (const b of buses) await b.close();
    await server?.stop();
  });

  test('a request of 30 KB (three times what one NOTIFY carries) arrives whole, and is answered', async () => {
    const a = await bus('bus-a');
    await bus('bus-b');
    // Multi-byte characters, so parts split inside them.
    const answer = { kind: 'question' as const, answers: { q: 'ünïcödé ✓ '.repeat(3_000) } };
    await a.request('bus-b', { kind: 'answer_input', taskId: 't1', requestId: 'r1', answer }, 5_000);
    assert.deepEqual(received.get('bus-b'), [{ kind: 'answer_input', taskId: 't1', requestId: 'r1', answer }]);
    assert.deepEqual(received.get('bus-a'), [], 'only the node it was sent to');
  });

  test('a request to a node nobody runs is NODE_UNREACHABLE after its timeout', async () => {
    const [a] = buses as [PgClusterBus];
    const started = Date.now();
    await assert.rejects(a.request('bus-nobody', { kind: 'teardown', sessionKey: 'k' }, 300), { name: 'RunnerError', code: 'NODE_UNREACHABLE' });
    assert.ok(Date.now() - started >= 290);
  });

  test('the leader\'s connection cut: it connects again and is told to catch up; one leader all along', async () => {
    const [a, b] = buses as [PgClusterBus, PgClusterBus];
    assert.deepEqual([a.isLeader(), b.isLeader()], [true, false]);
    const leaders: number[] = [];
    const sampler = setInterval(() => leaders.push(Number(a.isLeader()) + Number(b.isLeader())), 20);
    const admin = new pg.Client({ connectionString: url });
    await admin.connect();
    try {
      // The leader's listening connection is the one holding the advisory lock.
      const { rows } = await admin.query(`select pg_terminate_backend(pid) as cut from pg_locks where locktype = 'advisory' and granted`);
      assert.deepEqual(rows, [{ cut: true }]);
      await eventually(() => (reconnects.get('bus-a') === 1 ? true : undefined), 10_000, 'a to connect again');
      await eventually(async () => ((await admin.query(`select count(*)::int as n from pg_locks where locktype = 'advisory' and granted`)).rows[0].n === 1 ? true : undefined), 5_000, 'a leader again');
    } finally {
      clearInterval(sampler);
      await admin.end();
    }
    assert.ok(leaders.every((n) => n <= 1), 'never two leaders');
    assert.equal(Number(a.isLeader()) + Number(b.isLeader()), 1);
    // Back on the bus: a request reaches it.
    await b.request('bus-a', { kind: 'teardown', sessionKey: 'after' }, 5_000);
    assert.deepEqual(received.get('bus-a'), [{ kind: 'teardown', sessionKey: 'after' }]);
  });

  test('the leader leaves: another node leads within about a second', async () => {
    const leader = buses.find((b) => b.isLeader())!;
    const other = buses.find((b) => b !== leader)!;
    const started = Date.now();
    await leader.close();
    await eventually(() => (other.isLeader() ? true : undefined), 5_000, 'the other node to lead');
    assert.ok(Date.now() - started < 3_000, `led after ${Date.now() - started} ms`);
  });
});
