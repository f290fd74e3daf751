// Boots Ping's Python (Pyodide + our wheels) in a worker or the service worker.
//
// Shared by worker.mjs (module web worker) and sw.mjs (module service worker).
// A service worker may not use dynamic import(), so it imports the runtime
// statically and passes `createPyodideModule` (Pyodide then skips its own
// import of pyodide.asm.mjs); a web worker passes nothing.
//
// How Python is entered: ASYNCHRONOUSLY, always (see pyodide_app/rpc.py).
// With JSPI (Chromium) the crypto provider may block on WebCrypto's promises,
// which only works under an asynchronous entry: boot() is called through
// callPromising and each RPC request through the async Python function
// pyodide_app.rpc.handle_message.
//
// Cold start from a memory snapshot (docs/browser-boot.md). The first boot of
// a build runs Pyodide with `_makeSnapshot`, puts the wheels on sys.path,
// imports Ping, copies the WebAssembly memory and stores it (pysnapshot.mjs)
// before pyodide_app.worker.boot() runs; every later boot of the same build, in
// any page worker or the service worker of the origin, restores that memory
// instead (`_loadSnapshot`): Python starts with Ping already imported. A
// missing, stale, corrupt or failing snapshot means a normal boot, which
// stores a new one. Snapshot rules Pyodide imposes, and how they are met:
// - Every JS object Python holds at snapshot time must be found again after the
//   restore. Pyodide records the property path from the global object of each
//   one Python reached through it, so the JS modules are registered through
//   that path: they live in globalThis.__pingjs (set before every boot, so the
//   restored paths find this context's modules and host).
// - The file system is not in the memory: the wheels are zip files on
//   sys.path (zipimport, no micropip), their bytes stored with the memory and
//   written back to the same paths before Python runs.
// - Nothing per session is in it: it is taken before boot() (no database,
//   crypto choice or RPC method is in the image).
import { loadPyodide } from "./pyodide/pyodide.mjs";
import * as pingcrypto from "./pingcrypto.mjs";
import * as pingidb from "./pingidb.mjs";
import * as pinglocks from "./pinglocks.mjs";
import * as stored from "./pysnapshot.mjs";

// Where the wheels live in Pyodide's file system (on sys.path as zip files).
const WHEEL_DIR = "/lib/ping-wheels";
// Imported on every normal boot: what boot() and the first screen use, so a
// restored runtime imports nothing on its way to ready. A boot that takes the
// snapshot also imports, before taking it, what is otherwise imported on first
// use (pyodide_app.worker.import_on_demand: vault, push, dev tools,
// pyodide.http); a boot without the snapshot leaves that for later.
const BOOT_IMPORTS = ["pyodide_app.rpc", "pyodide_app.worker", "pyodide_app.crypto_select", "pyodide_app.sdk", "pyodide.ffi"];
// The JS modules Python imports, by name (the host comes from the caller).
const JS_MODULES = { pingcrypto, pingidb, pinglocks };

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

/** Snapshots unless the context's URL says `snapshot=0` (e.g. worker.mjs?snapshot=0, for benchmarks). */
function snapshotsWanted() {
  try {
    return new URL(self.location.href).searchParams.get("snapshot") !== "0";
  } catch {
    return true;
  }
}

function since(t) {
  return Math.round(performance.now() - t);
}

async function fetchWheels(base, manifest) {
  const names = manifest.wheels;
  return Promise.all(
    names.map(async (name) => {
      const res = await fetch(new URL(`wheels/${name}`, base));
      if (!res.ok) throw new Error(`wheels/${name}: HTTP ${res.status}`);
      return { name, bytes: new Uint8Array(await res.arrayBuffer()) };
    }),
  );
}

/** Writes the wheels where sys.path (set before the snapshot) expects them. */
function writeWheels(pyodide, wheels) {
  pyodide.FS.mkdirTree(WHEEL_DIR);
  for (const { name, bytes } of wheels) pyodide.FS.writeFile(`${WHEEL_DIR}/${name}`, bytes);
}

/**
 * A fresh runtime with Ping imported. With `makeSnapshot` it is started with
 * `_makeSnapshot` and the memory image is taken right after the imports:
 * resolves with {pyodide, memory, wheels, stages}.
 */
async function coldRuntime({ base, manifest, config, makeSnapshot, progress }) {
  const stages = {};
  let t = performance.now();
  const wheelsP = fetchWheels(base, manifest);
  wheelsP.catch(() => {}); // awaited below; no unhandled rejection meanwhile
  const pyodide = await loadPyodide({ ...config, _makeSnapshot: makeSnapshot });
  stages.runtime_ms = since(t);
  progress("installing packages");
  t = performance.now();
  const wheels = await wheelsP;
  writeWheels(pyodide, wheels);
  pyodide.globals.set("_ping_wheels", wheels.map(({ name }) => `${WHEEL_DIR}/${name}`));
  pyodide.runPython("import sys; sys.path[0:0] = _ping_wheels; del _ping_wheels");
  // Registered through the path Pyodide can replay after a restore (see top).
  const reachable = makeSnapshot ? pyodide._api.config.jsglobals.__pingjs : globalThis.__pingjs;
  for (const name of Object.keys(globalThis.__pingjs)) pyodide.registerJsModule(name, reachable[name]);
  pyodide.runPython(BOOT_IMPORTS.map((m) => `import ${m}`).join("\n"));
  if (makeSnapshot) pyodide.runPython("import pyodide_app.worker; pyodide_app.worker.import_on_demand()");
  stages.packages_ms = since(t);
  let memory = null;
  if (makeSnapshot) {
    t = performance.now();
    memory = pyodide.makeMemorySnapshot();
    stages.snapshot_make_ms = since(t);
  }
  return { pyodide, memory, wheels, stages };
}

/** A runtime restored from the stored snapshot: {pyodide, stages}; throws when it cannot be used. */
async function restoredRuntime({ config, snapshot }) {
  const t = performance.now();
  const pyodide = await loadPyodide({ ...config, _loadSnapshot: snapshot.memory });
  writeWheels(pyodide, snapshot.wheels);
  // The image must hold Ping, and the JS modules must answer through their paths.
  pyodide.runPython("import pyodide_app.worker, pingcrypto, pingidb, pinglocks, pinghost");
  return { pyodide, stages: { runtime_ms: since(t) } };
}

/**
 * Loads Pyodide from `base` (the dist/ URL) with Ping's wheels and its JS
 * modules (pingcrypto, pingidb, pinglocks, and `host` as "pinghost": its
 * emit(event) carries SDK events), from the origin's memory snapshot when one
 * of this build is stored, and calls pyodide_app.worker.boot(options).
 * `snapshot` (default: true unless the context's URL has snapshot=0) allows
 * restoring and taking snapshots.
 * Resolves with {handle, info, manifest, ms, pyodide, stored}; `handle(request)`
 * answers one RPC request; `info` is boot()'s answer plus `snapshot`
 * ("restored" | "made" | "off" | "unsaved"), `snapshot_reason` (why the stored
 * one was not used, or null) and `boot_stages` (ms per stage); `stored`
 * resolves once a snapshot taken by this boot is committed (true) or not (false).
 * The same `info` is kept as globalThis.pingBoot (diagnostics; the service
 * worker has no ready message).
 */
export async function bootPython({
  base,
  options,
  host,
  progress = () => {},
  createPyodideModule = undefined,
  snapshot = snapshotsWanted(),
}) {
  const t0 = performance.now();
  // The same test Pyodide makes: can Python be entered with stack switching?
  const jspi = "Suspending" in WebAssembly || "Suspender" in WebAssembly;
  progress("loading runtime");
  const res = await fetch(new URL("manifest.json", base), { cache: "no-cache" });
  if (!res.ok) throw new Error(`manifest.json: HTTP ${res.status}`);
  const manifest = await res.json();
  const config = { indexURL: new URL("pyodide/", base).href };
  if (createPyodideModule) config.createPyodideModule = createPyodideModule;
  globalThis.__pingjs = { ...Object.fromEntries(Object.entries(JS_MODULES).map(([k, m]) => [k, { ...m }])), pinghost: host || {} };
  const stages = { manifest_ms: since(t0) };
  const key = stored.snapshotKey(manifest, jspi);

  let runtime = null;
  let state = snapshot ? "made" : "off";
  let reason = snapshot ? null : "disabled";
  if (snapshot) {
    const t = performance.now();
    let found = null;
    try {
      found = await stored.read(key);
      if (!found) reason = "none stored";
    } catch (e) {
      reason = e.reason || String(e);
    }
    stages.snapshot_load_ms = since(t);
    if (found) {
      try {
        runtime = await restoredRuntime({ config, snapshot: found });
        state = "restored";
      } catch (e) {
        console.warn("Ping: the stored Python snapshot failed to restore; booting without it:", e);
        reason = `restore failed: ${errorOf(e).message}`;
      }
    }
  }
  let storedP = Promise.resolve(false);
  if (!runtime) {
    if (snapshot && reason !== "none stored") await stored.remove();
    runtime = await coldRuntime({ base, manifest, config, makeSnapshot: snapshot, progress });
    if (runtime.memory) {
      const madeMs = runtime.stages.snapshot_make_ms;
      storedP = stored.write(key, runtime.memory, runtime.wheels, madeMs);
      runtime.memory = null;
      storedP.then((ok) => {
        if (!ok && globalThis.pingBoot) globalThis.pingBoot.snapshot = "unsaved";
      });
    }
  }
  Object.assign(stages, runtime.stages);
  const { pyodide } = runtime;

  progress("starting");
  const t = performance.now();
  const app = pyodide.pyimport("pyodide_app.worker");
  // Entered as every RPC call will be: asynchronously when the runtime can
  // switch stacks, so boot can tell whether WebCrypto is usable.
  const result = jspi ? await app.boot.callPromising(options) : app.boot(options);
  const info = result.toJs({ dict_converter: Object.fromEntries });
  result.destroy();
  stages.python_start_ms = since(t);
  const ms = since(t0);
  stages.total_ms = ms;
  Object.assign(info, { snapshot: state, snapshot_reason: reason, boot_stages: stages });
  globalThis.pingBoot = { ...info, build: manifest.build, ms };
  // An async Python function: each call runs as a WebLoop task (JSPI allowed).
  const handle = pyodide.pyimport("pyodide_app.rpc").handle_message;
  return { handle, info, manifest, ms, pyodide, stored: storedP };
}
