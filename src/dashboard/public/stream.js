// One session's live events over the WebSocket stream: replayed from the start of the stored log, then live;
// on a drop it reconnects after the last seq it saw (a fresh stream token each time), so nothing is lost or doubled.
import { apiUrl, streamToken } from './api.js';

/**
 * Opens the stream; `onFrame` gets every frame (events, `connected`, `gap`), `onStatus` 'connecting' | 'live' |
 * 'reconnecting'. Returns a function that closes it for good.
 */
export function openSessionStream(sessionId, { onFrame, onStatus }) {
  let socket;
  let lastSeq = 0;
  let closed = false;
  let attempts = 0;
  let timer;

  const retry = () => {
    if (closed) return;
    onStatus('reconnecting');
    timer = setTimeout(connect, Math.min(5000, 300 * 2 ** attempts++));
  };

  async function connect() {
    if (closed) return;
    let token;
    try {
      token = await streamToken(sessionId);
    } catch {
      return retry();
    }
    if (closed) return;
    const url = apiUrl(`stream/${encodeURIComponent(sessionId)}`);
    url.protocol = url.protocol === 'https:' ? 'wss:' : 'ws:';
    url.searchParams.set('after', String(lastSeq));
    if (token) url.searchParams.set('token', token);
    socket = new WebSocket(url);
    socket.onopen = () => {
      attempts = 0;
      onStatus('live');
    };
    socket.onmessage = ({ data }) => {
      let frame;
      try {
        frame = JSON.parse(data);
      } catch {
        return;
      }
      if (frame.type === 'gap') lastSeq = Math.max(lastSeq, frame.toSeq);
      else if (typeof frame.seq === 'number') {
        if (frame.seq <= lastSeq) return;
        lastSeq = frame.seq;
      }
      onFrame(frame);
    };
    socket.onclose = retry;
  }

  onStatus('connecting');
  void connect();
  return () => {
    closed = true;
    clearTimeout(timer);
    if (socket) {
      socket.onclose = null;
      socket.close();
    }
  };
}
