// Pyodide under Node for the test suite: boot ONCE, then run requests.
//
//   node [--experimental-wasm-stack-switching] tests/node/pyodide_host.mjs \
//        --dist DIR --tests DIR --pyproject FILE [--wheel FILE]...
//
// Boots Pyodide from DIST/pyodide, installs micropip and the wheels of
// DIST/manifest.json plus the extra --wheel files (pytest & co.), registers
// the noble crypto bundle (DIST/pingcrypto.mjs) as the JS module "pingcrypto"
// exactly as the browser worker does, calls pyodide_app.worker.boot(), and
// mounts the repository's tests folder at /ping/tests (NODEFS).
//
// Then it reads one JSON request per line on stdin and writes one JSON reply
// per line on stdout (Python's own output is captured, never mixed in):
//   {"id", "op": "pytest", "args": [...], "env": {...}}
//        -> {"id", "exit": int, "output": str, "reports": [{nodeid, outcome, when}]}
//   {"id", "op": "python", "code": str}   (runPythonAsync; last expression, JSON-able)
//        -> {"id", "result": any}
//   any failure -> {"id", "error": str}
// The first line it writes is {"ready": {...}} or {"boot_error": str}.
import { createInterface } from "node:readline";
import { parseArgs } from "node:util";
import path from "node:path";
import { pathToFileURL } from "node:url";

const { values: opts } = parseArgs({
  options: {
    dist: { type: "string" },
    tests: { type: "string" },
    pyproject: { type: "string" },
    wheel: { type: "string", multiple: true, default: [] },
  },
});

const out = (obj) => process.stdout.write(JSON.stringify(obj) + "\n");
let captured = [];
const capture = { batched: (s) => captured.push(s) };

async function boot() {
  const t0 = performance.now();
  const dist = path.resolve(opts.dist);
  const { loadPyodide } = await import(pathToFileURL(path.join(dist, "pyodide", "pyodide.mjs")).href);
  const py = await loadPyodide({ indexURL: path.join(dist, "pyodide") + path.sep, stdout: capture.batched, stderr: capture.batched });
  const FS = py.FS;
  FS.mkdirTree("/ping/dist");
  FS.mount(FS.filesystems.NODEFS, { root: dist }, "/ping/dist");
  FS.mkdirTree("/ping/tests");
  FS.mount(FS.filesystems.NODEFS, { root: path.resolve(opts.tests) }, "/ping/tests");
  FS.mkdirTree("/ping/extra");
  const extra = [];
  for (const w of opts.wheel) {
    const dst = "/ping/extra/" + path.basename(w);
    FS.writeFile(dst, await import("node:fs").then((fs) => fs.readFileSync(w)));
    extra.push("emfs:" + dst);
  }
  if (opts.pyproject) {
    FS.writeFile("/ping/pyproject.toml", await import("node:fs").then((fs) => fs.readFileSync(opts.pyproject)));
  }
  const manifest = JSON.parse(await import("node:fs").then((fs) => fs.readFileSync(path.join(dist, "manifest.json"), "utf8")));
  // loadPackage reads host paths under Node (not the Emscripten FS).
  await py.loadPackage(path.join(dist, "wheels", manifest.micropip), { messageCallback: () => {} });
  const micropip = py.pyimport("micropip");
  const wheels = manifest.wheels.map((w) => "emfs:/ping/dist/wheels/" + w).concat(extra);
  await micropip.install.callKwargs(wheels, { deps: false });
  micropip.destroy();
  const pingcrypto = await import(pathToFileURL(path.join(dist, "pingcrypto.mjs")).href);
  py.registerJsModule("pingcrypto", pingcrypto);
  const info = py.pyimport("pyodide_app.worker").boot().toJs({ dict_converter: Object.fromEntries });
  // Tests in Pyodide must not write 3.14 bytecode into the mounted repository.
  py.runPython("import sys; sys.dont_write_bytecode = True");
  py.runPython(HELPERS);
  return { py, info: { ...info, boot_ms: Math.round(performance.now() - t0) } };
}

// Runs pytest.main in this long-lived interpreter: forget the test modules of
// the previous run (same basenames in different folders would clash) and
// collect one report per test phase.
const HELPERS = `
import asyncio as _asyncio, json as _json, os as _os, sys as _sys


class _WebLoopRunner:
    """asyncio.Runner for Pyodide: runs on THE WebLoop (the only loop there).

    A new loop per test (pytest-asyncio's default) cannot work in Pyodide:
    the WebLoop is driven by JS and is always the running loop. With JSPI,
    run_until_complete blocks until the coroutine is done, as on CPython.
    """

    def __init__(self, *, debug=None, loop_factory=None):
        self._loop = None

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def close(self):
        pass

    def get_loop(self):
        if self._loop is None:
            self._loop = _asyncio.get_event_loop()
        return self._loop

    def run(self, coro, *, context=None):
        loop = self.get_loop()
        task = loop.create_task(coro, context=context)
        return loop.run_until_complete(task)


# Before pytest_asyncio imports it.
_asyncio.Runner = _asyncio.runners.Runner = _WebLoopRunner

def _ping_run_pytest(args, env):
    import pytest
    for name, mod in list(_sys.modules.items()):
        f = getattr(mod, "__file__", None) or ""
        if f.startswith("/ping/tests/"):
            del _sys.modules[name]
    _os.environ.update(env)
    reports = []

    class _Collect:
        def pytest_runtest_logreport(self, report):
            if report.when == "call" or report.outcome != "passed":
                reports.append({"nodeid": report.nodeid, "outcome": report.outcome, "when": report.when})

        def pytest_collectreport(self, report):
            if report.outcome != "passed":
                reports.append({"nodeid": report.nodeid, "outcome": report.outcome, "when": "collect"})

    _os.chdir("/ping")
    code = pytest.main(["-p", "no:cacheprovider", "--rootdir=/ping", *args], plugins=[_Collect()])
    return _json.dumps({"exit": int(code), "reports": reports})
`;

async function handle(state, req) {
  captured = [];
  if (req.op === "pytest") {
    // Entered through runPythonAsync so JSPI (when node has it) lets
    // pytest-asyncio block on the event loop inside Pyodide.
    state.py.globals.set("_ping_args", state.py.toPy(req.args || []));
    state.py.globals.set("_ping_env", state.py.toPy(req.env || {}));
    const res = JSON.parse(await state.py.runPythonAsync("_ping_run_pytest(_ping_args, _ping_env)"));
    return { exit: res.exit, reports: res.reports, output: captured.join("\n") };
  }
  if (req.op === "python") {
    const value = await state.py.runPythonAsync(req.code);
    const result = value && typeof value.toJs === "function" ? value.toJs({ dict_converter: Object.fromEntries }) : value;
    return { result, output: captured.join("\n") };
  }
  throw new Error(`unknown op ${req.op}`);
}

let state;
try {
  state = await boot();
  out({ ready: state.info });
} catch (e) {
  out({ boot_error: String((e && e.stack) || e) + "\n" + captured.join("\n") });
  process.exit(1);
}

const rl = createInterface({ input: process.stdin, crlfDelay: Infinity });
// One request at a time: the interpreter is single-threaded.
let chain = Promise.resolve();
rl.on("line", (line) => {
  if (!line.trim()) return;
  chain = chain.then(async () => {
    let req;
    try {
      req = JSON.parse(line);
      out({ id: req.id, ...(await handle(state, req)) });
    } catch (e) {
      out({ id: req && req.id, error: String((e && e.message) || e), output: captured.join("\n") });
    }
  });
});
rl.on("close", () => chain.then(() => process.exit(0)));
