// pyiii-stream.js: a dependency-free browser client for the pyiii (iii) stream listener.
//
// It speaks the reference stream protocol (spec/stream.md §3): one WebSocket, `join` / `leave`
// messages carrying a subscriptionId, and JSON frames {type:"stream", streamName, groupId, id, event}
// pushed by the server. Each subscription keeps a local collection (a Map of item id -> value) that
// `sync`, `create`, `update` and `delete` frames keep up to date; custom `event` frames and
// `unauthorized` rejections go to callbacks. When the socket drops, the client reconnects with
// exponential backoff and jitter and joins every subscription again; the fresh `sync` then replaces
// each collection (nothing is replayed: changes made while away arrive only through that sync, §3.10).
//
//   import { StreamClient } from "./pyiii-stream.js";
//   const client = new StreamClient("ws://127.0.0.1:3112");
//   const sub = client.subscribe({ stream: "todos", group: "all" }, {
//     onChange(items, change) { render([...items.values()]); },   // items: Map id -> value
//     onEvent(event) { console.log(event.type, event.data); },    // stream::send events
//     onError(error) { console.warn(error.type); },               // "unauthorized"
//   });
//   sub.unsubscribe(); client.close();
//
// Group snapshots carry values without ids (§3.6), so a group subscription keys synced values with
// `keyOf(value)`, by default `value.id` (the usual convention: store each item with its own id).
// A value without a key is kept under "#<position in the snapshot>".

/** Reconnection and liveness defaults; every one can be overridden in `new StreamClient(url, options)`. */
export const DEFAULTS = Object.freeze({
  /** First reconnect delay (ms); doubles (`backoffFactor`) per failed attempt up to `maxDelayMs`. */
  initialDelayMs: 500,
  maxDelayMs: 15000,
  backoffFactor: 2,
  /** Share of each delay that is random (0..1): 0.5 waits between half and all of it. */
  jitter: 0.5,
  /** Send {"type":"ping"} this often (ms) and reconnect when nothing arrives within `pongTimeoutMs`.
   *  pyiii answers with {"type":"pong"}; set 0 against servers that do not (the reference engine). */
  pingIntervalMs: 30000,
  pongTimeoutMs: 10000,
  /** WebSocket subprotocols to offer, e.g. ["Authorization", token]; pyiii echoes the first. */
  protocols: undefined,
});

const OPEN = 1; // WebSocket.OPEN

function defaultKeyOf(value) {
  return value !== null && typeof value === "object" && typeof value.id === "string" ? value.id : undefined;
}

/** Exponential backoff with jitter: the delay before reconnect attempt `attempt` (0-based), in ms. */
export function backoffDelay(attempt, options = DEFAULTS, random = Math.random) {
  const ceiling = Math.min(options.maxDelayMs, options.initialDelayMs * options.backoffFactor ** attempt);
  return ceiling * (1 - options.jitter) + ceiling * options.jitter * random();
}

/** One subscription: created by `StreamClient.subscribe`, ended by `unsubscribe()`. */
export class Subscription {
  constructor(client, id, target, handlers) {
    this.client = client;
    /** The subscriptionId sent in `join` and `leave`. */
    this.id = id;
    this.stream = target.stream;
    this.group = target.group;
    /** Item id for an item subscription, null for a group subscription. */
    this.itemId = target.id ?? null;
    /** The local collection: item id -> value. An item subscription holds at most its one item. */
    this.items = new Map();
    /** "pending" (join sent, no sync yet), "live", "unauthorized" (rejected; not re-joined) or "closed". */
    this.state = "pending";
    /** True once a sync has arrived on the current connection. */
    this.synced = false;
    this.handlers = handlers;
    this.keyOf = handlers.keyOf ?? defaultKeyOf;
  }

  /** The item's value for an item subscription (undefined while missing), or an array of the values. */
  get value() {
    return this.itemId === null ? [...this.items.values()] : this.items.get(this.itemId);
  }

  /** Sends `leave` (when connected) and stops applying frames. */
  unsubscribe() {
    this.client._remove(this);
  }

  _matches(frame) {
    // §3.9: same stream and group, and the subscription's id is null or the frame's id.
    return (
      frame.streamName === this.stream &&
      frame.groupId === this.group &&
      (this.itemId === null || this.itemId === frame.id)
    );
  }

  _sameTarget(frame) {
    return frame.streamName === this.stream && frame.groupId === this.group && frame.id === this.itemId;
  }

  _sync(frame) {
    this.items.clear();
    const data = frame.event.data;
    if (this.itemId !== null) {
      if (data !== null && data !== undefined) this.items.set(this.itemId, data);
    } else if (Array.isArray(data)) {
      data.forEach((value, i) => {
        const key = this.keyOf(value);
        this.items.set(key === undefined ? `#${i}` : String(key), value);
      });
    }
    this.state = "live";
    this.synced = true;
    this._changed({ type: "sync", id: frame.id, data, timestamp: frame.timestamp });
  }

  _apply(frame) {
    const event = frame.event;
    switch (event.type) {
      case "create":
      case "update":
        if (frame.id === null || frame.id === undefined) return;
        this.items.set(frame.id, event.data);
        break;
      case "delete":
        if (frame.id === null || frame.id === undefined) return;
        this.items.delete(frame.id);
        break;
      case "event": {
        const custom = event.event ?? {};
        this._call("onEvent", {
          type: custom.type,
          data: custom.data,
          id: frame.id,
          stream: frame.streamName,
          group: frame.groupId,
          timestamp: frame.timestamp,
        });
        return;
      }
      default:
        return; // unknown change types are ignored, like unknown frames
    }
    this._changed({ type: event.type, id: frame.id, data: event.data, timestamp: frame.timestamp });
  }

  _changed(change) {
    this._call("onChange", this.items, change, this);
  }

  _call(name, ...args) {
    const handler = this.handlers[name];
    if (typeof handler !== "function") return;
    try {
      handler(...args);
    } catch (err) {
      // A throwing callback must not break the frame loop of the whole client.
      console.error(`pyiii-stream: ${name} threw`, err);
    }
  }
}

/**
 * One WebSocket to a stream listener, shared by any number of subscriptions.
 *
 * `url`: a ws:// or wss:// URL (any path works with pyiii; "/" is the reference engine's), or a
 * function returning one, called before every (re)connect (to refresh a token in the query).
 * `options`: see DEFAULTS, plus `onStatus(status)` with "connecting", "open", "reconnecting" or
 * "closed", and `WebSocket` (a constructor, for non-browser hosts).
 */
export class StreamClient {
  constructor(url, options = {}) {
    this.url = url;
    this.options = { ...DEFAULTS, ...options };
    /** "connecting", "open", "reconnecting" or "closed". */
    this.status = "connecting";
    /** Reconnect attempts since the last successful open. */
    this.attempt = 0;
    /** Successful opens so far (1 after the first connect; each reconnect adds one). */
    this.connections = 0;
    this._subs = new Map(); // subscriptionId -> Subscription, in subscribe order
    this._nextId = 1;
    this._ws = null;
    this._timer = null;
    this._pingTimer = null;
    this._pongDeadline = null;
    this._pongWaiters = [];
    this._dupe = null; // {text, remaining}: identical copies still expected of the last frame (§3.9)
    this._closed = false;
    this._connect();
  }

  /**
   * Subscribes to a group (`{stream, group}`) or one item (`{stream, group, id}`).
   * `handlers`: `onChange(items, change, sub)`, `onEvent(event)`, `onError(error)`, `keyOf(value)`.
   * Returns the Subscription; its collection fills when the server's `sync` arrives.
   */
  subscribe(target, handlers = {}) {
    if (this._closed) throw new Error("pyiii-stream: client is closed");
    if (typeof target?.stream !== "string" || typeof target?.group !== "string") {
      throw new TypeError("pyiii-stream: subscribe needs {stream: string, group: string, id?: string}");
    }
    if (target.id !== undefined && target.id !== null && typeof target.id !== "string") {
      throw new TypeError("pyiii-stream: subscription id must be a string, null or absent");
    }
    const sub = new Subscription(this, `sub-${this._nextId++}`, target, handlers);
    this._subs.set(sub.id, sub);
    if (this._ws?.readyState === OPEN) this._join(sub);
    return sub;
  }

  /** The current subscriptions, in subscribe order. */
  get subscriptions() {
    return [...this._subs.values()];
  }

  /**
   * Resolves on the server's {"type":"pong"} to a {"type":"ping"} sent now. The server handles one
   * connection's messages in order, so every join sent before it has been answered by then.
   */
  ping() {
    return new Promise((resolve, reject) => {
      if (this._ws?.readyState !== OPEN) {
        reject(new Error("pyiii-stream: not connected"));
        return;
      }
      this._pongWaiters.push({ resolve, reject });
      this._ws.send('{"type":"ping"}');
    });
  }

  /** Closes the socket for good (code 1000); no reconnect follows. */
  close() {
    if (this._closed) return;
    this._closed = true;
    clearTimeout(this._timer);
    this._stopHeartbeat();
    for (const sub of this._subs.values()) sub.state = "closed";
    this._subs.clear();
    const ws = this._ws;
    this._ws = null;
    if (ws) {
      ws.onopen = ws.onmessage = ws.onerror = ws.onclose = null;
      ws.close(1000, "client closed");
    }
    this._failPongs("pyiii-stream: client closed");
    this._setStatus("closed");
  }

  // ------------------------------------------------------------------------------ connection

  _connect() {
    const Ctor = this.options.WebSocket ?? globalThis.WebSocket;
    const url = typeof this.url === "function" ? this.url() : this.url;
    let ws;
    try {
      ws = this.options.protocols ? new Ctor(url, this.options.protocols) : new Ctor(url);
    } catch (err) {
      console.error("pyiii-stream: cannot open", url, err);
      this._scheduleReconnect();
      return;
    }
    this._ws = ws;
    ws.onopen = () => this._onOpen(ws);
    ws.onmessage = (msg) => this._onMessage(ws, msg);
    ws.onclose = () => this._onClose(ws);
    ws.onerror = () => {}; // a close event always follows; reconnect is decided there
  }

  _onOpen(ws) {
    if (ws !== this._ws) return;
    this.attempt = 0;
    this.connections += 1;
    this._dupe = null;
    this._setStatus("open");
    // §3.10: nothing survives a connection; join everything again and let each sync replace the state.
    for (const sub of this._subs.values()) {
      if (sub.state === "unauthorized") continue;
      this._join(sub);
    }
    this._startHeartbeat();
  }

  _onClose(ws) {
    if (ws !== this._ws) return;
    this._ws = null;
    this._stopHeartbeat();
    this._failPongs("pyiii-stream: connection closed");
    for (const sub of this._subs.values()) {
      if (sub.state === "live") sub.state = "pending";
      sub.synced = false;
    }
    if (!this._closed) this._scheduleReconnect();
  }

  _scheduleReconnect() {
    const delay = backoffDelay(this.attempt, this.options);
    this.attempt += 1;
    this._setStatus("reconnecting");
    clearTimeout(this._timer);
    this._timer = setTimeout(() => {
      if (this._closed) return;
      this._setStatus("connecting");
      this._connect();
    }, delay);
  }

  _setStatus(status) {
    if (this.status === status) return;
    this.status = status;
    if (typeof this.options.onStatus === "function") {
      try {
        this.options.onStatus(status, this);
      } catch (err) {
        console.error("pyiii-stream: onStatus threw", err);
      }
    }
  }

  _join(sub) {
    sub.state = "pending";
    sub.synced = false;
    this._send("join", sub);
  }

  _remove(sub) {
    if (this._subs.get(sub.id) !== sub) return;
    this._subs.delete(sub.id);
    const wasJoined = sub.state === "pending" || sub.state === "live";
    sub.state = "closed";
    if (wasJoined && this._ws?.readyState === OPEN) this._send("leave", sub);
  }

  _send(type, sub) {
    // §3.5: camelCase data; id null asks for a group subscription.
    const data = { subscriptionId: sub.id, streamName: sub.stream, groupId: sub.group, id: sub.itemId };
    this._ws.send(JSON.stringify({ type, data }));
  }

  // ------------------------------------------------------------------------------ heartbeat

  _startHeartbeat() {
    const every = this.options.pingIntervalMs;
    if (!every) return;
    this._stopHeartbeat();
    this._pingTimer = setInterval(() => {
      const ws = this._ws;
      if (ws?.readyState !== OPEN) return;
      if (this._pongDeadline === null) {
        this._pongDeadline = setTimeout(() => {
          // Nothing came back: a half-open connection. Drop it; onclose reconnects.
          if (ws === this._ws) ws.close(4000, "no pong");
        }, this.options.pongTimeoutMs);
      }
      ws.send('{"type":"ping"}');
    }, every);
  }

  _stopHeartbeat() {
    clearInterval(this._pingTimer);
    clearTimeout(this._pongDeadline);
    this._pingTimer = null;
    this._pongDeadline = null;
  }

  _failPongs(message) {
    const waiters = this._pongWaiters;
    this._pongWaiters = [];
    for (const w of waiters) w.reject(new Error(message));
  }

  // ------------------------------------------------------------------------------ frames

  _onMessage(ws, msg) {
    if (ws !== this._ws || typeof msg.data !== "string") return;
    // Any frame proves the connection alive.
    if (this._pongDeadline !== null) {
      clearTimeout(this._pongDeadline);
      this._pongDeadline = null;
    }
    let frame;
    try {
      frame = JSON.parse(msg.data);
    } catch {
      return;
    }
    if (frame === null || typeof frame !== "object") return;
    if (frame.type === "pong") {
      this._pongWaiters.shift()?.resolve();
      return;
    }
    if (frame.type !== "stream" || frame.event === null || typeof frame.event !== "object") return;
    if (frame.id === undefined) frame.id = null;
    switch (frame.event.type) {
      case "sync":
        this._onSync(frame);
        return;
      case "unauthorized":
        this._onUnauthorized(frame);
        return;
      default:
        this._onChange(msg.data, frame);
    }
  }

  _onSync(frame) {
    // The sync answers the oldest pending join with exactly this stream, group and id (§3.7).
    for (const sub of this._subs.values()) {
      if (sub.state === "pending" && sub._sameTarget(frame)) {
        sub._sync(frame);
        return;
      }
    }
  }

  _onUnauthorized(frame) {
    for (const sub of this._subs.values()) {
      if (sub.state === "pending" && sub._sameTarget(frame)) {
        sub.state = "unauthorized";
        sub._call("onError", { type: "unauthorized", stream: sub.stream, group: sub.group, id: sub.itemId });
        return;
      }
    }
  }

  _onChange(text, frame) {
    // The server sends one copy per matching subscription (§3.9), back to back, as identical bytes.
    // The first copy goes to every matching live subscription; the other copies are skipped.
    const dupe = this._dupe;
    if (dupe !== null && dupe.remaining > 0 && dupe.text === text) {
      dupe.remaining -= 1;
      return;
    }
    const targets = [];
    for (const sub of this._subs.values()) {
      if (sub.state === "live" && sub._matches(frame)) targets.push(sub);
    }
    this._dupe = targets.length > 1 ? { text, remaining: targets.length - 1 } : null;
    for (const sub of targets) sub._apply(frame);
  }
}

export default StreamClient;
