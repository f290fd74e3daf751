// Ping's module worker: boots Pyodide offline from this server's dist/ and
// answers RPC requests from the page through pyodide_app.worker.
//
// Messages to the page:
//   {type: "boot", stage: "loading runtime" | "installing packages" | "starting" | "ready" | "failed", ...}
//   {id, result} | {id, error: {name, message[, status, code]}}
// Every request gets exactly one reply, also when boot failed or Python threw.
//
// Start it with `new Worker(new URL("./worker.mjs?dev=1", ...), {type: "module"})`;
// URL parameters:
//   dev=1          adds the dev.* RPC methods (see pyodide_app/devtools.py)
//   crypto=noble   never use WebCrypto (default "auto": WebCrypto when it works)
//   jspi=0         (with dev=1) hide JSPI from Pyodide, as in Safari: tests the fallback
//
// How Python is entered: ASYNCHRONOUSLY, always. With JSPI (Chromium) the
// crypto provider may block on WebCrypto's promises (pyodide.ffi.run_sync),
// which only works under an asynchronous entry. boot() is called through
// callPromising, and each RPC request through the async Python function
// pyodide_app.worker.handle_message (every step of its task runs with stack
// switching allowed). New RPC methods go into Python's table
// (pyodide_app.worker.register_method), never here; JS code added to this
// worker that calls into Python must enter it the same way (an async Python
// function, or callPromising), or crypto falls back to noble for that call.
import { loadPyodide } from "./pyodide/pyodide.mjs";
import * as pingcrypto from "./pingcrypto.mjs";
import * as pingidb from "./pingidb.mjs";

const BASE = new URL("./", import.meta.url);
const PARAMS = new URL(import.meta.url).searchParams;
const DEV = PARAMS.get("dev") === "1";
const CRYPTO = PARAMS.get("crypto") === "noble" ? "noble" : "auto";
if (DEV && PARAMS.get("jspi") === "0") {
  // Pyodide looks for these when it loads (as Safari lacks them).
  delete WebAssembly.Suspending;
  delete WebAssembly.Suspender;
  delete WebAssembly.promising;
}
// The same test Pyodide makes: can Python be entered with stack switching?
const JSPI = "Suspending" in WebAssembly || "Suspender" in WebAssembly;

function progress(stage, extra = {}) {
  self.postMessage({ type: "boot", stage, ...extra });
}

function errorOf(e) {
  // A PythonError carries the Python class in .type; keep only the last line
  // of its message (the traceback stays in the worker's console).
  const name = (e && (e.type || e.name)) || "Error";
  let message = String((e && e.message) || e);
  if (e && e.type) {
    const lines = message.trim().split("\n");
    message = lines[lines.length - 1];
  }
  return { name, message };
}

async function boot() {
  const t0 = performance.now();
  progress("loading runtime");
  const res = await fetch(new URL("manifest.json", BASE), { cache: "no-cache" });
  if (!res.ok) throw new Error(`manifest.json: HTTP ${res.status}`);
  const manifest = await res.json();
  const pyodide = await loadPyodide({ indexURL: new URL("pyodide/", BASE).href });
  progress("installing packages");
  const wheel = (name) => new URL(`wheels/${name}`, BASE).href;
  // micropip's wheel hash differs from pyodide-lock.json, so load it by URL.
  await pyodide.loadPackage(wheel(manifest.micropip), { messageCallback: () => {} });
  const micropip = pyodide.pyimport("micropip");
  // Dependencies are listed in install order in the manifest: no index needed.
  await micropip.install.callKwargs(manifest.wheels.map(wheel), { deps: false });
  micropip.destroy();
  pyodide.registerJsModule("pingcrypto", pingcrypto);
  pyodide.registerJsModule("pingidb", pingidb);
  progress("starting");
  const app = pyodide.pyimport("pyodide_app.worker");
  const options = { dev: DEV, crypto: CRYPTO };
  // Entered as every RPC call will be: asynchronously when the runtime can
  // switch stacks, so boot can tell whether WebCrypto is usable.
  const result = JSPI ? await app.boot.callPromising(options) : app.boot(options);
  const info = result.toJs({ dict_converter: Object.fromEntries });
  result.destroy();
  // An async Python function: each call runs as a WebLoop task (JSPI allowed).
  const handle = app.handle_message;
  progress("ready", { ms: Math.round(performance.now() - t0), build: manifest.build, ...info });
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
