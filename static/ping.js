// Ping's page API: a Promise per RPC call to the Pyodide worker.
//
//   import { Ping } from "./ping.js";
//   const ping = Ping.start({ onBoot: (stage, info) => ... });
//   await ping.ready;                       // resolves with the worker's ready info
//   const info = await ping.call("info");   // rejects with a PingError on failure
//
// A failed call rejects with a PingError whose .name is the Python exception
// class (TransportError, InvalidInput, ...) and, for TransportError, .status and
// .code. If the worker fails to boot or dies, every pending and later call rejects.

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
    this.failure = null;
    this.stage = "starting worker";
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
  }

  _onMessage(msg, onBoot) {
    if (msg && msg.type === "boot") {
      this.stage = msg.stage;
      if (onBoot) onBoot(msg.stage, msg);
      if (msg.stage === "ready") this._resolveReady(msg);
      if (msg.stage === "failed") this._fail(new PingError(msg.error || { name: "BootError", message: "boot failed" }));
      return;
    }
    const call = msg && this.pending.get(msg.id);
    if (!call) return;
    this.pending.delete(msg.id);
    if (msg.error) call.reject(new PingError(msg.error));
    else call.resolve(msg.result);
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

  /** Stops the worker; pending calls reject. */
  terminate() {
    this.worker.terminate();
    this._fail(new PingError({ name: "WorkerError", message: "terminated" }));
  }
}
