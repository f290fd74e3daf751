// Ping's SDK for web pages: a Promise per MessagingClient operation, run by a
// Pyodide module worker of this origin, and the SDK's events.
//
//   import { Ping } from "/ping.js";
//   const ping = await Ping.open({ account: "work", onProgress: (stage) => ... });
//   const me = await ping.status();              // {state: "none" | "linking" | "ready", ...}
//   if (me.state === "none") await ping.createAccount("alice");
//   const conv = await ping.createConversation("lunch");   // or () for an unnamed one
//   await ping.invite(conv.id, bobUserId);         // adds every device of that user
//   await ping.send(conv.id, "hello");             // or a Uint8Array
//   ping.on("messages", ({ conv, messages }) => ...);   // each {bytes, text, ...}
//   await ping.startLive();                        // sync rounds + long poll -> events
//
// Types: ping.d.ts (next to this file). The method <-> RPC name table is
// pyodide_app (each handler declares its name); docs/browser-sdk.md lists them
// and tests/browser/test_types.py checks that this file, ping.d.ts and the
// doc agree with it.
//
// Every method returns a Promise. A failed call rejects with a PingError whose
// .name is the Python exception class (TransportError, InvalidInput, ...) and,
// for TransportError, .status and .code; for an MLS refusal (MlsError and its
// subclasses), .reason (e.g. "bad_signature") and .peerFault (a peer's message
// was bad, not the call). If the worker fails to boot or dies,
// every pending and later call rejects. `call(method, params)` reaches any RPC
// method by its name.
//
// Profiles: `account` in Ping.open is a local profile name (default
// "default"); each profile holds one account in its own IndexedDB database
// under its own Web Lock, and gets its own worker. Events of the other
// profiles (from other tabs or the service worker) are not delivered here.
//
// Ids (user, device, conversation) are lowercase hex strings; times are ms since 1970.
import { enablePush as enablePushWith, disablePush as disablePushWith } from "./pingpush.mjs";

export class PingError extends Error {
  constructor({ name, message, status = null, code = null, reason = null, peer_fault = null }) {
    super(message);
    this.name = name || "PingError";
    this.status = status;
    this.code = code;
    this.reason = reason;
    this.peerFault = peer_fault;
  }
}

const PROFILE = /^[A-Za-z0-9_.-]{1,64}$/;

export class Ping {
  /**
   * Boots a worker for the local profile `account` and resolves once it answers.
   * `server`: the Ping server's origin (default: this page's; another origin must
   * allow it by CORS and be in the page's CSP connect-src). `ack`: "auto" (a message
   * is the page's once stored) or "manual" (delivered again, also after a reload,
   * until ackMessages). `onProgress(stage, info)`: boot stages ("loading runtime",
   * "installing packages", "starting", "ready", "failed").
   */
  static async open({
    server = null,
    account = "default",
    onProgress = null,
    ack = null,
    dev = false,
    workerUrl = new URL("./worker.mjs", import.meta.url),
  } = {}) {
    if (typeof account !== "string" || !PROFILE.test(account)) {
      throw new PingError({ name: "InvalidInput", message: "account is a profile name: 1..64 of A-Z a-z 0-9 _ . -" });
    }
    if (ack !== null && ack !== "auto" && ack !== "manual") {
      throw new PingError({ name: "InvalidInput", message: 'ack is "auto" or "manual"' });
    }
    const url = new URL(workerUrl, import.meta.url);
    url.searchParams.set("profile", account);
    if (server !== null) url.searchParams.set("server", new URL(server, location.href).origin);
    if (dev) url.searchParams.set("dev", "1");
    const ping = new Ping(new Worker(url, { type: "module" }), account, onProgress);
    try {
      await ping.ready;
      if (ack !== null) await ping.settings({ ack });
    } catch (e) {
      ping.terminate();
      throw e;
    }
    return ping;
  }

  /**
   * The same without waiting: the Ping at once, its `ready` Promise resolving with the
   * worker's ready info (for pages that render before the worker is up).
   */
  static start({ workerUrl = new URL("./worker.mjs", import.meta.url), dev = false, onBoot = null, account = "default" } = {}) {
    const url = new URL(workerUrl, import.meta.url);
    if (!url.searchParams.has("profile")) url.searchParams.set("profile", account);
    if (dev) url.searchParams.set("dev", "1");
    return new Ping(new Worker(url, { type: "module" }), url.searchParams.get("profile"), onBoot);
  }

  constructor(worker, profile, onProgress) {
    this.worker = worker;
    this.profile = profile;
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
    worker.onmessage = (event) => this._onMessage(event.data, onProgress);
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
        if (ev && ev.profile !== undefined && ev.profile !== this.profile) return; // another account
        this._dispatch(ev);
      };
    }
  }

  _onMessage(msg, onProgress) {
    if (msg && msg.type === "boot") {
      this.stage = msg.stage;
      if (msg.worker_id) this.workerId = msg.worker_id;
      if (onProgress) onProgress(msg.stage, msg);
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

  /** Calls an RPC method by name; resolves with its result or rejects with a PingError. */
  call(method, params = {}) {
    if (this.failure) return Promise.reject(this.failure);
    const id = this.nextId++;
    return new Promise((resolve, reject) => {
      this.pending.set(id, { resolve, reject });
      this.worker.postMessage({ id, method, params });
    });
  }

  /** Subscribes to events of `type` (see ping.d.ts PingEventMap, or "*"); returns the unsubscribe function. */
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

  // -- the worker -------------------------------------------------------------------

  ping(echo = {}) { return this.call("ping", echo); }
  info() { return this.call("info"); }

  // -- account ----------------------------------------------------------------------

  status() { return this.call("account.status"); }
  createAccount(label) { return this.call("account.create", { label }); }
  whoami() { return this.call("account.whoami"); }
  /** Sets what is given ({autoJoin?, notify?, ack?}) and resolves with all settings of this profile. */
  settings({ autoJoin, notify, ack } = {}) {
    const params = {};
    if (autoJoin !== undefined) params.auto_join = autoJoin;
    if (notify !== undefined) params.notify = notify;
    if (ack !== undefined) params.ack = ack;
    return this.call("account.settings", params);
  }
  profiles() { return this.call("account.profiles"); }
  devices() { return this.call("account.devices"); }
  labels(userIds) { return this.call("directory.labels", { users: userIds }); }
  revoke(deviceId) { return this.call("device.revoke", { device_id: deviceId }); }
  async freshKeyPackage({ lastResort = false } = {}) {
    return (await this.call("device.key_package", { last_resort: lastResort })).key_package;
  }
  admitDeviceToChats(deviceId, chats) {
    return this.call("device.admit_to_chats", {
      device_id: deviceId,
      chats: chats.map(({ conv, keyPackage }) => ({ conv, key_package: keyPackage })),
    });
  }

  // -- conversations ------------------------------------------------------------------

  conversations() { return this.call("conversation.list"); }
  createConversation(name = null) { return this.call("conversation.create", { name }); }
  invite(conv, userId) { return this.call("conversation.invite", { conv, user_id: userId }); }
  rename(conv, name) { return this.call("conversation.rename", { conv, name }); }
  removeUser(conv, userId) { return this.call("conversation.remove_user", { conv, user_id: userId }); }
  addMembers(conv, members, { userId = null } = {}) {
    return this.call("conversation.add_members", {
      conv,
      members: members.map(({ deviceId, keyPackage }) => ({ device_id: deviceId, key_package: keyPackage })),
      user_id: userId,
    });
  }
  removeMembers(conv, { leaves = [], devices = [] } = {}) {
    return this.call("conversation.remove_members", { conv, leaves, devices });
  }
  members(conv) { return this.call("conversation.members", { conv }); }
  messages(conv, limit = 200) { return this.call("conversation.messages", { conv, limit }); }
  send(conv, payload) { return this.call("conversation.send", { conv, payload }); }
  async exportConversationSecret(conv, label, context = new Uint8Array(0), length = 32) {
    return (await this.call("conversation.export_secret", { conv, label, context, length })).secret;
  }
  async exportStateSnapshot(conv) { return (await this.call("conversation.export_snapshot", { conv })).snapshot; }
  importStateSnapshot(snapshot) { return this.call("conversation.import_snapshot", { snapshot }); }
  joinConversation(welcome) { return this.call("conversation.join", { welcome }); }
  async processEnvelope(envelope) { return (await this.call("conversation.process_envelope", { envelope })).message; }
  async commitPendingProposals() { return (await this.call("conversation.commit_proposals")).committed; }

  // -- invitations and messages ----------------------------------------------------------

  invitations() { return this.call("invitation.list"); }
  acceptInvitation(conv) { return this.call("invitation.accept", { conv }); }
  declineInvitation(conv) { return this.call("invitation.decline", { conv }); }
  pendingMessages() { return this.call("message.pending"); }
  ackMessages(messages) {
    return this.call("message.ack", { messages: messages.map(({ conv, seq }) => ({ conv, seq })) });
  }
  sync() { return this.call("sync.run"); }

  // -- linking --------------------------------------------------------------------------

  linkRequest(label) { return this.call("link.request", { label }); }
  linkFinish(grant, timeoutS = 300) { return this.call("link.finish", { grant, timeout_s: timeoutS }); }
  linkCancel() { return this.call("link.cancel"); }
  linkGrant(request, withAccountKey = false) {
    return this.call("link.grant", { request, with_account_key: withAccountKey });
  }
  linkAdmit(request, timeoutS = 300) { return this.call("link.admit", { request, timeout_s: timeoutS }); }

  // -- live updates -----------------------------------------------------------------------

  startLive({ intervalMs = 2000 } = {}) { return this.call("live.start", { interval_ms: intervalMs }); }
  stopLive() { return this.call("live.stop"); }
  focus(conv) { return this.call("live.focus", { conv }); }

  // -- encryption at rest and push ------------------------------------------------------------

  vaultStatus() { return this.call("vault.status"); }
  setPassphrase(passphrase) { return this.call("vault.set_passphrase", { passphrase }); }
  unlock(passphrase) { return this.call("vault.unlock", { passphrase }); }
  lock() { return this.call("vault.lock"); }
  pushStatus() { return this.call("push.status"); }
  enablePush(opts = {}) { return enablePushWith(this, opts); }
  disablePush() { return disablePushWith(this); }

  // -- the service worker ----------------------------------------------------------

  /**
   * Registers the module service worker (static/sw.mjs): offline app shell and
   * cold-start sync. Resolves with the registration, or null where service
   * workers are unavailable (e.g. not a secure context).
   */
  static async registerServiceWorker(url = new URL("./sw.mjs", import.meta.url)) {
    if (!("serviceWorker" in navigator)) return null;
    return await navigator.serviceWorker.register(url, { type: "module", scope: "./" });
  }

  /**
   * Asks the service worker for a cold-start sync ({type: "sync"}, sw.mjs runs
   * "sw.cold_sync" for every profile) and resolves with its result. Rejects when
   * no service worker is active.
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
