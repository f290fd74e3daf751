// Bare Pyodide boot for benchmarks/browser_bench.py: loadPyodide from the served
// dist/pyodide/ in a module worker, nothing else (no wheels, no Ping). Posts
// {ms} (loadPyodide alone, measured here) once Python answers.
import { loadPyodide } from "../pyodide/pyodide.mjs";

const t0 = performance.now();
const pyodide = await loadPyodide({ indexURL: new URL("../pyodide/", import.meta.url).href });
pyodide.runPython("1 + 1");
self.postMessage({ ms: performance.now() - t0 });
