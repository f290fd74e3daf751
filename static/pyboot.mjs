// Boots Ping's Python (Pyodide + our wheels) in a worker or the service worker.
//
// Shared by worker.mjs (module web worker) and sw.mjs (module service worker).
// A service worker may not use dynamic import(), so it imports the runtime
// statically and passes `createPyodideModule` (Pyodide then skips its own
// import of pyodide.asm.mjs); a web worker passes nothing.
//
// How Python is entered: ASYNCHRONOUSLY, always (see pyodide_app/worker.py).
// With JSPI (Chromium) the crypto provider may block on WebCrypto's promises,
// which only works under an asynchronous entry: boot() is called through
// callPromising and each RPC request through the async Python function
// pyodide_app.worker.handle_message.
import { loadPyodide } from "./pyodide/pyodide.mjs";
import * as pingcrypto from "./pingcrypto.mjs";
import * as pingidb from "./pingidb.mjs";
import * as pinglocks from "./pinglocks.mjs";

/** The Python class and last line of a PythonError (the traceback stays in the console). */
export function errorOf(e) {
  const name = (e && (e.type || e.name)) || "Error";
  let message = String((e && e.message) || e);
  if (e && e.type) {
    const lines = message.trim().split("\n");
    message = lines[lines.length - 1];
  }
  return { name, message };
}

/**
 * Loads Pyodide from `base` (the dist/ URL), installs the wheels listed in
 * manifest.json, registers the JS modules Python uses (pingcrypto, pingidb,
 * pinglocks, and `host` as "pinghost": its emit(event) carries SDK events)
 * and calls pyodide_app.worker.boot(options).
 * Resolves with {handle, info, manifest, ms}; `handle(request)` answers one RPC request.
 */
export async function bootPython({ base, options, host, progress = () => {}, createPyodideModule = undefined }) {
  const t0 = performance.now();
  // The same test Pyodide makes: can Python be entered with stack switching?
  const jspi = "Suspending" in WebAssembly || "Suspender" in WebAssembly;
  progress("loading runtime");
  const res = await fetch(new URL("manifest.json", base), { cache: "no-cache" });
  if (!res.ok) throw new Error(`manifest.json: HTTP ${res.status}`);
  const manifest = await res.json();
  const config = { indexURL: new URL("pyodide/", base).href };
  if (createPyodideModule) config.createPyodideModule = createPyodideModule;
  const pyodide = await loadPyodide(config);
  progress("installing packages");
  const wheel = (name) => new URL(`wheels/${name}`, base).href;
  // micropip's wheel hash differs from pyodide-lock.json, so load it by URL.
  await pyodide.loadPackage(wheel(manifest.micropip), { messageCallback: () => {} });
  const micropip = pyodide.pyimport("micropip");
  // Dependencies are listed in install order in the manifest: no index needed.
  await micropip.install.callKwargs(manifest.wheels.map(wheel), { deps: false });
  micropip.destroy();
  pyodide.registerJsModule("pingcrypto", pingcrypto);
  pyodide.registerJsModule("pingidb", pingidb);
  pyodide.registerJsModule("pinglocks", pinglocks);
  if (host) pyodide.registerJsModule("pinghost", host);
  progress("starting");
  const app = pyodide.pyimport("pyodide_app.worker");
  // Entered as every RPC call will be: asynchronously when the runtime can
  // switch stacks, so boot can tell whether WebCrypto is usable.
  const result = jspi ? await app.boot.callPromising(options) : app.boot(options);
  const info = result.toJs({ dict_converter: Object.fromEntries });
  result.destroy();
  // An async Python function: each call runs as a WebLoop task (JSPI allowed).
  const handle = app.handle_message;
  return { handle, info, manifest, ms: Math.round(performance.now() - t0), pyodide };
}
