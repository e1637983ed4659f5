/**
 * WebSocket fan-out: 100 subscribers on one session's stream (in a worker
 * thread), events appended through the runner's event log (stored, then
 * published) one every few ms; for each event and subscriber, the delay from
 * the append call to the frame's arrival.
 */
import { setTimeout as sleep } from 'node:timers/promises';
import { Worker } from 'node:worker_threads';
import { DEFAULT_TENANT } from '../src/core/model.ts';
import { untimedTask, withHarness } from './sessions.ts';
import { percentiles, type Percentiles } from './stats.ts';

const MARKER = 'fanout-';

export interface FanoutResults {
  subscribers: number;
  events: number;
  /** Every (event, subscriber) pair: append → arrival. */
  delayMs: Percentiles;
  /** Per event, its last subscriber's delay. */
  lastSubscriberMs: Percentiles;
  /** Pairs that never arrived. */
  missing: number;
}

export async function measureFanout(subscribers = 100, events = 50): Promise<FanoutResults> {
  return withHarness({}, async (h) => {
    await untimedTask(h, 'fanout');
    const session = await h.runner.store.findSession(DEFAULT_TENANT, 'fanout');
    const task = await h.api('/session/fanout');
    const taskId = (task.body.lastTaskId as string | null) ?? null;
    if (!session) throw new Error('bench: the fan-out session is not stored');

    const worker = new Worker(new URL('./fanout-worker.ts', import.meta.url), {
      workerData: { url: h.url, sessionId: 'fanout', count: subscribers, marker: MARKER },
    });
    const messages: Array<(message: any) => void> = [];
    const next = (): Promise<any> => new Promise((resolve) => messages.push(resolve));
    worker.on('message', (message) => messages.shift()?.(message));
    worker.on('error', (error) => { throw error; });
    await next();

    const appendedAt: number[] = [];
    for (let e = 0; e < events; e++) {
      appendedAt.push(performance.timeOrigin + performance.now());
      await h.runner.events.append(session.key, taskId, 'text', { text: `${MARKER}${e}` });
      await sleep(10);
    }
    await sleep(1000);
    const report = next();
    worker.postMessage({ report: true });
    const { arrivals } = await report as { arrivals: Array<[number, number[]]> };
    await worker.terminate();

    const delays: number[] = [];
    const last: number[] = [];
    let received = 0;
    for (const [e, times] of arrivals) {
      received += times.length;
      for (const at of times) delays.push(at - appendedAt[e]!);
      last.push(Math.max(...times) - appendedAt[e]!);
    }
    return { subscribers, events, delayMs: percentiles(delays), lastSubscriberMs: percentiles(last), missing: subscribers * events - received };
  });
}
