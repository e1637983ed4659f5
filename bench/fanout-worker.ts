/**
 * The fan-out bench's subscribers, in a worker thread of their own (their
 * parsing does not share the server's event loop): `count` WebSockets on one
 * session; each `text` frame whose text starts with the marker is timed on
 * arrival (timeOrigin + now: comparable across threads).
 */
import { parentPort, workerData } from 'node:worker_threads';
import WebSocket from 'ws';

const { url, sessionId, count, marker } = workerData as { url: string; sessionId: string; count: number; marker: string };
/** event number → arrival time at each subscriber (ms since the epoch, fractional). */
const arrivals = new Map<number, number[]>();
const sockets: WebSocket[] = [];

await Promise.all(Array.from({ length: count }, () => new Promise<void>((resolve, reject) => {
  const socket = new WebSocket(`${url.replace(/^http/, 'ws')}/stream/${encodeURIComponent(sessionId)}`);
  sockets.push(socket);
  socket.once('error', reject);
  socket.on('message', (data) => {
    const at = performance.timeOrigin + performance.now();
    const frame = JSON.parse(data.toString()) as { type: string; text?: string };
    if (frame.type === 'connected') return resolve();
    if (frame.type !== 'text' || !frame.text?.startsWith(marker)) return;
    const n = Number(frame.text.slice(marker.length));
    let list = arrivals.get(n);
    if (!list) arrivals.set(n, (list = []));
    list.push(at);
  });
})));
parentPort!.postMessage({ ready: true });
parentPort!.on('message', (message: { report?: boolean }) => {
  if (!message.report) return;
  for (const socket of sockets) socket.terminate();
  parentPort!.postMessage({ arrivals: [...arrivals.entries()] });
  parentPort!.close();
});
