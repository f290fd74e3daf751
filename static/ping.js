// Ping's page API: a Promise per call to the Pyodide worker, and SDK events.
//
//   import { Ping } from "./ping.js";
//   const ping = Ping.start({ onBoot: (stage, info) => ... });
//   await ping.ready;                          // resolves with the worker's ready info
//   const me = await ping.status();            // {state: "none" | "linking" | "ready", ...}
//   if (me.state === "none") await ping.createAccount("alice");
//   const conv = await ping.createConversation("lunch");
//   await ping.invite(conv.id, bobUserId);      // adds every device of that user
//   await ping.send(conv.id, "hello");
//   ping.on("messages", ({ conv, messages }) => ...);
//   await ping.startLive();                     // sync rounds + long poll -> events
//   ping.focus(conv.id);                        // the conversation on screen
//
// Every method returns a Promise. A failed call rejects with a PingError whose
// .name is the Python exception class (TransportError, InvalidInput, ...) and,
// for TransportError, .status and .code. If the worker fails to boot or dies,
// every pending and later call rejects. `call(method, params)` reaches any RPC
// method (the table is in pyodide_app/sdk.py); the named methods below wrap them.
//
// Events (ping.on(type, fn) returns an unsubscribe function; type "*" gets all):
//   {type: "messages", conv, messages: [{conv, seq, user, device, text, time, epoch}]}
//   {type: "conversations", changed: [conv id, ...]}   created, joined, renamed, members changed
//   {type: "status", online, error}                    this tab's live sync
//   {type: "account", state}                           account created or linked
// They come from this tab's worker, from the other tabs' workers and from the
// service worker (BroadcastChannel "ping-events"): a message event can arrive
// more than once; (conv, seq) identifies a message.
//
// Ids (user, device, conversation) are lowercase hex strings; times are ms since 1970.

export class PingError extends Error {
  constructor({ name, message, status = null, code = null }) {
    super(message);
    this.name = name || "PingError";
    this.status = status;
    this.code = code;
  }
}

export class Ping {
  /** Starts the worker. `dev` adds the dev.* methods (tests, diagnostics). */
  static start({ workerUrl = new URL("./worker.mjs", import.meta.url), dev = false, onBoot = null } = {}) {
    const url = new URL(workerUrl, import.meta.url);
    if (dev) url.searchParams.set("dev", "1");
    return new Ping(new Worker(url, { type: "module" }), onBoot);
  }

  constructor(worker, onBoot) {
    this.worker = worker;
    this.nextId = 1;
    this.pending = new Map();
    this.listeners = new Map();
    this.failure = null;
    this.stage = "starting worker";
    this.workerId = null;
    this.ready = new Promise((resolve, reject) => {
      this._resolveReady = resolve;
      this._rejectReady = reject;
    });
    this.ready.catch(() => {}); // callers that never await .ready get no unhandled rejection
    worker.onmessage = (event) => this._onMessage(event.data, onBoot);
    worker.onerror = (event) => {
      event.preventDefault?.();
      this._fail(new PingError({ name: "WorkerError", message: event.message || "the worker failed" }));
    };
    worker.onmessageerror = () => this._fail(new PingError({ name: "WorkerError", message: "unreadable message" }));
    if (typeof BroadcastChannel === "function") {
      this.channel = new BroadcastChannel("ping-events");
      this.channel.onmessage = (event) => {
        const ev = event.data;
        // This tab's worker already delivered its own events directly.
        if (ev && ev.origin && ev.origin === this.workerId) return;
        if (ev && ev.type === "status") return; // another tab's live sync
        this._dispatch(ev);
      };
    }
  }

  _onMessage(msg, onBoot) {
    if (msg && msg.type === "boot") {
      this.stage = msg.stage;
      if (msg.worker_id) this.workerId = msg.worker_id;
      if (onBoot) onBoot(msg.stage, msg);
      if (msg.stage === "ready") this._resolveReady(msg);
      if (msg.stage === "failed") this._fail(new PingError(msg.error || { name: "BootError", message: "boot failed" }));
      return;
    }
    if (msg && msg.type === "event") {
      this._dispatch(msg.event);
      return;
    }
    const call = msg && this.pending.get(msg.id);
    if (!call) return;
    this.pending.delete(msg.id);
    if (msg.error) call.reject(new PingError(msg.error));
    else call.resolve(msg.result);
  }

  _dispatch(event) {
    if (!event || typeof event.type !== "string") return;
    for (const key of [event.type, "*"]) {
      for (const fn of this.listeners.get(key) || []) {
        try {
          fn(event);
        } catch (e) {
          console.error("ping: event listener failed", e);
        }
      }
    }
  }

  _fail(error) {
    if (this.failure) return;
    this.failure = error;
    this._rejectReady(error);
    for (const call of this.pending.values()) call.reject(error);
    this.pending.clear();
  }

  /** Calls an RPC method; resolves with its result or rejects with a PingError. */
  call(method, params = {}) {
    if (this.failure) return Promise.reject(this.failure);
    const id = this.nextId++;
    return new Promise((resolve, reject) => {
      this.pending.set(id, { resolve, reject });
      this.worker.postMessage({ id, method, params });
    });
  }

  /** Subscribes to events of `type` ("messages", "conversations", "status", "account" or "*"). */
  on(type, fn) {
    if (!this.listeners.has(type)) this.listeners.set(type, new Set());
    this.listeners.get(type).add(fn);
    return () => this.listeners.get(type).delete(fn);
  }

  /** Stops the worker; pending calls reject. */
  terminate() {
    this.worker.terminate();
    if (this.channel) this.channel.close();
    this._fail(new PingError({ name: "WorkerError", message: "terminated" }));
  }

  // -- the SDK (see pyodide_app/sdk.py for each method's exact result) ---------------

  /** {state: "none" | "linking" | "ready", user_id, device_id, label, request?} */
  status() { return this.call("account.status"); }
  /** A new account with this browser as its first device (registered with the server). */
  createAccount(label) { return this.call("account.create", { label }); }
  /** {user_id, device_id, label, registered} */
  whoami() { return this.call("whoami"); }
  /** [{id, name, epoch, member_count, created_at, last}] newest activity first. */
  conversations() { return this.call("conversations"); }
  createConversation(name) { return this.call("conversation.create", { name }); }
  /** Adds every device of `userId`: {added}. */
  invite(conv, userId) { return this.call("conversation.invite", { conv, user_id: userId }); }
  rename(conv, name) { return this.call("conversation.rename", { conv, name }); }
  /** Removes every device of `userId`: {removed}. */
  remove(conv, userId) { return this.call("conversation.remove", { conv, user_id: userId }); }
  /** [{user_id, device_id, leaf, label, me}]; user_id null: the leaf proves no account. */
  members(conv) { return this.call("conversation.members", { conv }); }
  /** Pending invitations: [{conv, name, inviter, inviter_device, members, received_ms}]. */
  invitations() { return this.call("invitations"); }
  acceptInvitation(conv) { return this.call("invitation.accept", { conv }); }
  /** Declines: the server ends the membership the Welcome opened. */
  declineInvitation(conv) { return this.call("invitation.decline", { conv }); }
  /** {auto_join}: with autoJoin given, sets it first (join every invitation without asking). */
  settings(autoJoin) { return this.call("settings", autoJoin === undefined ? {} : { auto_join: autoJoin }); }
  /** The newest `limit` stored messages, oldest first. */
  messages(conv, limit = 200) { return this.call("messages", { conv, limit }); }
  /** Resolves with the stored message once the server accepted it. */
  send(conv, text) { return this.call("send", { conv, text }); }
  /** One sync round now: {messages, conversations}. */
  sync() { return this.call("sync"); }
  /** Device labels from the directory: {device_id: {label, user_id}}. */
  labels(userIds) { return this.call("labels", { users: userIds }); }
  /** This account's devices: [{device_id, label, created_at, this}]. */
  devices() { return this.call("devices"); }
  /** Removes a device of this account from every chat and revokes it at the server. */
  revoke(deviceId) { return this.call("device.revoke", { device_id: deviceId }); }
  /** This browser as a new device: {code} to give to a linked device. */
  linkRequest(label) { return this.call("link.request", { label }); }
  /** Finish linking with the grant code; resolves once the ticket arrived (whoami). */
  linkFinish(grant, timeoutS = 300) { return this.call("link.finish", { grant, timeout_s: timeoutS }); }
  linkCancel() { return this.call("link.cancel"); }
  /** This browser's account admits a new device: {grant} for the request code.
   * withAccountKey: the new device also gets the account key (it can then link and revoke devices). */
  linkGrant(request, withAccountKey = false) { return this.call("link.grant", { request, with_account_key: withAccountKey }); }
  /** Waits for the new device, sends its ticket, adds it to every chat: {device_id, admitted, failed}. */
  linkAdmit(request, timeoutS = 300) { return this.call("link.admit", { request, timeout_s: timeoutS }); }
  /** Live updates: a long poll over every chat and the Welcome inbox wakes the sync rounds; rounds every `intervalMs` (30 s at least while the long poll works) as a fallback. */
  startLive({ intervalMs = 2000 } = {}) { return this.call("live.start", { interval_ms: intervalMs }); }
  stopLive() { return this.call("live.stop"); }
  /** The conversation on screen (a round runs when it changes); null for none. */
  focus(conv) { return this.call("live.focus", { conv }); }

  // -- the service worker ----------------------------------------------------------

  /**
   * Registers the module service worker (static/sw.mjs): offline app shell and
   * cold-start sync. Resolves with the registration, or null where service
   * workers are unavailable (e.g. not a secure context).
   */
  static async registerServiceWorker(url = new URL("./sw.mjs", import.meta.url)) {
    if (!("serviceWorker" in navigator)) return null;
    const registration = await navigator.serviceWorker.register(url, { type: "module", scope: "./" });
    return registration;
  }

  /**
   * Asks the service worker for a cold-start sync ({type: "sync"}): it boots
   * Python, takes the account's lock, syncs, stores what it decrypted and
   * answers {ok, result | error}. Rejects when no service worker is active.
   */
  static async swSync({ timeoutMs = 120000 } = {}) {
    const registration = await navigator.serviceWorker.ready;
    const sw = registration.active;
    if (!sw) throw new PingError({ name: "ServiceWorkerError", message: "no active service worker" });
    return await new Promise((resolve, reject) => {
      const { port1, port2 } = new MessageChannel();
      const timer = setTimeout(() => reject(new PingError({ name: "ServiceWorkerError", message: "no answer" })), timeoutMs);
      port1.onmessage = (event) => {
        clearTimeout(timer);
        const reply = event.data || {};
        if (reply.ok) resolve(reply.result);
        else reject(new PingError(reply.error || { name: "ServiceWorkerError", message: "failed" }));
      };
      sw.postMessage({ type: "sync" }, [port2]);
    });
  }
}
