// One WebSocket to /ws for the whole page: subscriptions survive reconnects, frames are
// dispatched to the handlers of their channel.

import { token } from "./api.js";

const RETRY_MS = [500, 1000, 2000, 5000];

class LiveSocket {
  constructor() {
    this.subscriptions = new Map(); // channel -> subscribe frame
    this.handlers = new Map(); // channel -> Set of functions(frame): data frames only
    this.confirmed = new Map(); // channel -> Set of functions(): the server confirmed it
    this.statusHandlers = new Set();
    this.errors = new Set();
    this.socket = null;
    this.attempt = 0;
    this.status = "connecting";
  }

  connect() {
    const jwt = token();
    // client=dashboard: the user's alert preferences treat this as the dashboard channel
    const query = `?client=dashboard${jwt ? `&token=${encodeURIComponent(jwt)}` : ""}`;
    const scheme = location.protocol === "https:" ? "wss" : "ws";
    const socket = new WebSocket(`${scheme}://${location.host}/ws${query}`);
    this.socket = socket;
    this.setStatus("connecting");
    socket.addEventListener("open", () => {
      this.attempt = 0;
      this.setStatus("live");
      for (const frame of this.subscriptions.values()) this.send(frame);
    });
    socket.addEventListener("message", (event) => this.dispatch(JSON.parse(event.data)));
    socket.addEventListener("close", () => {
      if (this.socket !== socket) return; // replaced by reconnect()
      this.setStatus("offline");
      const delay = RETRY_MS[Math.min(this.attempt++, RETRY_MS.length - 1)];
      setTimeout(() => this.socket === socket && this.connect(), delay);
    });
  }

  /** Connect again (the token changed). */
  reconnect() {
    const old = this.socket;
    this.socket = null;
    if (old) old.close();
    this.connect();
  }

  setStatus(status) {
    this.status = status;
    this.statusHandlers.forEach((fn) => fn(status));
  }

  send(frame) {
    if (this.socket && this.socket.readyState === WebSocket.OPEN) {
      this.socket.send(JSON.stringify(frame));
    }
  }

  dispatch(frame) {
    if (frame.type === "error") {
      this.errors.forEach((fn) => fn(frame));
      return;
    }
    if (frame.type === "subscribed") {
      const confirmed = this.confirmed.get(frame.channel);
      if (confirmed) confirmed.forEach((fn) => fn());
      return;
    }
    if (frame.data === undefined) return; // unsubscribed, pong, heartbeat: nothing to show
    const handlers = this.handlers.get(frame.channel);
    if (handlers) handlers.forEach((fn) => fn(frame));
  }

  /** ``fn()`` each time the server confirms a subscription to ``channel`` (also after a
   * reconnect): what happened before it must be fetched another way. */
  onSubscribed(channel, fn) {
    if (!this.confirmed.has(channel)) this.confirmed.set(channel, new Set());
    this.confirmed.get(channel).add(fn);
    return () => this.confirmed.get(channel).delete(fn);
  }

  /** Subscribe (or re-subscribe with new options); returns the unsubscribe function. */
  subscribe(channel, handler, options = {}) {
    const frame = { op: "subscribe", channel, ...options };
    this.subscriptions.set(channel, frame);
    if (!this.handlers.has(channel)) this.handlers.set(channel, new Set());
    this.handlers.get(channel).add(handler);
    this.send(frame);
    return () => {
      const set = this.handlers.get(channel);
      if (!set || !set.delete(handler)) return; // already unsubscribed
      if (set.size === 0) {
        this.handlers.delete(channel);
        this.subscriptions.delete(channel);
        this.send({ op: "unsubscribe", channel });
      }
    };
  }

  /** Change the options of a channel already subscribed (e.g. the sort of tokens:top). */
  resubscribe(channel, options) {
    const frame = { op: "subscribe", channel, ...options };
    this.subscriptions.set(channel, frame);
    this.send(frame);
  }

  onStatus(fn) {
    this.statusHandlers.add(fn);
    fn(this.status);
  }

  onError(fn) {
    this.errors.add(fn);
  }
}

export const live = new LiveSocket();
