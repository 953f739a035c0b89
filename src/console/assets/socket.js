// The live connection to /ws: connect with the token, `resume` from the last seen seq of every
// conversation right after `ready`, and reconnect with a growing delay when the connection drops
// (network loss, server restart 1001, too slow 4008). A token that expired (4001) or is refused
// stops it: the user has to sign in again. A heartbeat notices a connection that died silently.

const FIRST_RETRY_MS = 500;
const MAX_RETRY_MS = 15000;
const HEARTBEAT_MS = 15000;
const PONG_TIMEOUT_MS = 8000;

export class Socket {
  /**
   * @param {object} hooks
   * @param {string} hooks.token the bearer token (sent as `?token=`, the one way a browser can
   *   hand a token to a WebSocket upgrade; the server's access log leaves queries out)
   * @param {() => object} hooks.lastSeen `{conversationId: lastSeenSeq}` to resume from
   * @param {(frame: object) => void} hooks.onFrame every frame but ready/pong
   * @param {(state: string) => void} hooks.onState "connecting" | "online" | "offline" | "retry in Ns"
   * @param {() => void} hooks.onResumed the resume was answered (history is complete again)
   * @param {() => Promise<boolean>} hooks.tokenStillValid asked after a failed connection
   * @param {() => void} hooks.onExpired the token expired or was refused
   */
  constructor(hooks) {
    this.hooks = hooks;
    this.ws = null;
    this.retryMs = FIRST_RETRY_MS;
    this.stopped = false;
    this.timer = null;
    this.heartbeat = null;
    this.pongDeadline = null;
    this.resumeRef = null;
    addEventListener("offline", () => this.dropped("offline"));
    addEventListener("online", () => this.reconnectNow());
  }

  start() {
    this.stopped = false;
    this.connect();
  }

  stop() {
    this.stopped = true;
    clearTimeout(this.timer);
    this.closeQuietly(1000);
  }

  get isOpen() {
    return this.ws?.readyState === WebSocket.OPEN && this.ready;
  }

  /** Sends a frame if the session is up; false if it is not (the caller falls back to HTTP). */
  send(frame) {
    if (!this.isOpen) return false;
    this.ws.send(JSON.stringify(frame));
    return true;
  }

  connect() {
    clearTimeout(this.timer);
    if (this.stopped) return;
    // A connection still being opened would become a second session nobody reads.
    this.closeQuietly(4000);
    this.hooks.onState("connecting");
    const scheme = location.protocol === "https:" ? "wss" : "ws";
    const url = `${scheme}://${location.host}/ws?token=${encodeURIComponent(this.hooks.token)}`;
    const ws = new WebSocket(url);
    this.ws = ws;
    this.ready = false;
    ws.onmessage = (event) => this.received(ws, event);
    ws.onclose = (event) => this.closed(ws, event);
  }

  received(ws, event) {
    if (ws !== this.ws) return;
    let frame;
    try {
      frame = JSON.parse(event.data);
    } catch {
      return;
    }
    if (frame.type === "ready") {
      this.ready = true;
      this.retryMs = FIRST_RETRY_MS;
      this.resumeRef = `resume-${Date.now()}`;
      ws.send(JSON.stringify({ type: "resume", ref: this.resumeRef, conversations: this.hooks.lastSeen() }));
      this.hooks.onState("online");
      this.beat();
      return;
    }
    if (frame.type === "pong") {
      clearTimeout(this.pongDeadline);
      return;
    }
    if (frame.ref !== undefined && frame.ref === this.resumeRef && (frame.type === "ack" || frame.type === "error")) {
      this.hooks.onResumed();
      if (frame.type === "ack") return;
    }
    this.hooks.onFrame(frame);
  }

  async closed(ws, event) {
    if (ws !== this.ws) return;
    this.stopBeat();
    const wasReady = this.ready;
    this.ready = false;
    if (this.stopped) return;
    if (event.code === 4001) {
      this.hooks.onExpired();
      return;
    }
    // A refused upgrade (401) reaches the page as a plain failure: ask the API whether the token
    // still holds before trying again.
    if (!wasReady && !(await this.hooks.tokenStillValid())) {
      this.hooks.onExpired();
      return;
    }
    this.scheduleRetry();
  }

  scheduleRetry() {
    if (this.stopped) return;
    const delay = this.retryMs;
    this.retryMs = Math.min(this.retryMs * 2, MAX_RETRY_MS);
    this.hooks.onState(navigator.onLine === false ? "offline" : `reconnecting in ${Math.ceil(delay / 1000)} s`);
    clearTimeout(this.timer);
    this.timer = setTimeout(() => this.connect(), delay + Math.random() * 250);
  }

  /** The network went away: close now instead of waiting for the socket to notice. */
  dropped(state) {
    if (this.stopped) return;
    this.closeQuietly(4000);
    this.hooks.onState(state);
    // Keep trying too, in case the browser never says the network is back.
    this.scheduleRetry();
  }

  reconnectNow() {
    if (this.stopped || this.isOpen) return;
    this.retryMs = FIRST_RETRY_MS;
    this.connect();
  }

  closeQuietly(code) {
    const ws = this.ws;
    this.ws = null;
    this.ready = false;
    this.stopBeat();
    if (ws) {
      ws.onclose = null;
      ws.onmessage = null;
      try {
        ws.close(code);
      } catch {
        // Already closed.
      }
    }
  }

  beat() {
    this.stopBeat();
    this.heartbeat = setInterval(() => {
      if (!this.send({ type: "ping" })) return;
      clearTimeout(this.pongDeadline);
      this.pongDeadline = setTimeout(() => {
        // No pong: the connection is dead even if the browser has not noticed.
        this.closeQuietly(4000);
        this.scheduleRetry();
      }, PONG_TIMEOUT_MS);
    }, HEARTBEAT_MS);
  }

  stopBeat() {
    clearInterval(this.heartbeat);
    clearTimeout(this.pongDeadline);
  }
}
