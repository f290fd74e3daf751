// Ping's module worker: boots Pyodide offline from this server's dist/ and
// answers RPC requests from the page through pyodide_app.worker.
//
// Messages to the page:
//   {type: "boot", stage: "loading runtime" | "installing packages" | "starting" | "ready" | "failed", ...}
//   {id, result} | {id, error: {name, message[, status, code]}}
// Every request gets exactly one reply, also when boot failed or Python threw.
//
// Start it with `new Worker(new URL("./worker.mjs?dev=1", ...), {type: "module"})`;
// `dev=1` adds the dev.* RPC methods (see pyodide_app/devtools.py).
import { loadPyodide } from "./pyodide/pyodide.mjs";
import * as pingcrypto from "./pingcrypto.mjs";
import * as pingidb from "./pingidb.mjs";

const BASE = new URL("./", import.meta.url);
const DEV = new URL(import.meta.url).searchParams.get("dev") === "1";

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
  const info = app.boot({ dev: DEV }).toJs({ dict_converter: Object.fromEntries });
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
