// Ping's module worker: boots Pyodide offline from this server's dist/ and
// answers RPC requests from the page through pyodide_app.rpc (table put together
// by pyodide_app.worker.boot).
//
// Messages to the page:
//   {type: "boot", stage: "loading runtime" | "installing packages" | "starting" | "ready" | "failed", ...}
//   {id, result} | {id, error: {name, message[, status, code]}}
//   {type: "event", event}       an SDK event (pyodide_app/sdk/) made in THIS worker
// SDK events also go to the BroadcastChannel "ping-events", so the other tabs
// (and their pages) of the origin see them; the page listens to both and the
// events are idempotent (messages carry their server seq).
// Every request gets exactly one reply, also when boot failed or Python threw.
//
// Start it with `new Worker(new URL("./worker.mjs?dev=1", ...), {type: "module"})`;
// URL parameters:
//   dev=1          adds the dev.* RPC methods (see pyodide_app/devtools.py)
//   crypto=noble   never use WebCrypto (default "auto": WebCrypto when it works)
//   jspi=0         (with dev=1) hide JSPI from Pyodide, as in Safari: tests the fallback
//   profile=NAME   the local profile (account) this worker serves (default "default")
//   server=ORIGIN  the Ping server (default: this origin)
//
// New RPC methods are declared in Python (@rpc in a feature module of
// pyodide_app, registered by pyodide_app.worker.boot), never here. How
// Python is entered (always asynchronously): see pyboot.mjs.
import { bootPython, errorOf } from "./pyboot.mjs";

const BASE = new URL("./", import.meta.url);
const PARAMS = new URL(import.meta.url).searchParams;
const DEV = PARAMS.get("dev") === "1";
const CRYPTO = PARAMS.get("crypto") === "noble" ? "noble" : "auto";
const PROFILE = PARAMS.get("profile") || "default"; // checked by Python (pyodide_app.sdk.check_profile)
const SERVER = PARAMS.get("server") || "";
if (DEV && PARAMS.get("jspi") === "0") {
  // Pyodide looks for these when it loads (as Safari lacks them).
  delete WebAssembly.Suspending;
  delete WebAssembly.Suspender;
  delete WebAssembly.promising;
}

// Tags this worker's events, so its page can tell them from the other tabs' copies.
const WORKER_ID = crypto.randomUUID();

function progress(stage, extra = {}) {
  self.postMessage({ type: "boot", stage, worker_id: WORKER_ID, ...extra });
}

const channel = typeof BroadcastChannel === "function" ? new BroadcastChannel("ping-events") : null;
const host = {
  /** Called by Python (pyodide_app.sdk) with a plain event object. */
  emit(event) {
    event.origin = WORKER_ID;
    self.postMessage({ type: "event", event });
    if (channel) channel.postMessage(event);
  },
};

async function boot() {
  const { handle, info, manifest, ms } = await bootPython({
    base: BASE,
    options: { dev: DEV, crypto: CRYPTO, context: "worker", profile: PROFILE, server: SERVER },
    host,
    progress,
  });
  progress("ready", { ms, build: manifest.build, ...info });
  return handle;
}

const booted = boot();
booted.catch((e) => progress("failed", { error: errorOf(e) }));

self.onmessage = async (event) => {
  const msg = event.data;
  if (!msg || typeof msg !== "object" || !("id" in msg)) return;
  let reply;
  try {
    const handle = await booted;
    reply = await handle(msg);
  } catch (e) {
    reply = { id: msg.id, error: errorOf(e) };
  }
  try {
    self.postMessage(reply);
  } catch (e) {
    // The reply could not be cloned: still answer.
    self.postMessage({ id: msg.id, error: { name: "DataCloneError", message: String(e.message || e) } });
  }
};
