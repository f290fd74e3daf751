#!/usr/bin/env python3
"""Crypto per-op times on every backend, and the browser worker's cold boot.

    python benchmarks/crypto_bench.py [--skip-node] [--skip-browser] [--boots N]

1. pyca on CPython (this interpreter).
2. The noble JS backend inside Pyodide under Node (the tests/node harness:
   the same wheels and crypto bundle as the browser worker).
3. Cold boot of the worker in Chromium: a new browser context (empty HTTP
   cache and storage) per run, from page.goto to #boot-status == "ready",
   and the worker's own figure (loadPyodide to ready).

Needs `python build.py --test` (the script runs it) and, for 3, Chromium
(PING_CHROMIUM or Debian's chromium). Prints figures; asserts nothing.
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))
sys.path.insert(0, str(ROOT / "tests" / "node"))
sys.path.insert(0, str(ROOT / "tests" / "browser"))

import crypto_ops  # noqa: E402


def bench_pyca() -> dict[str, float]:
    from ping_core.mls.crypto.pyca import PycaProvider

    return crypto_ops.run(PycaProvider())


def bench_node() -> tuple[dict[str, float], dict[str, object]]:
    from pyodide_node import PyodideNode, build_for_tests

    wheels = build_for_tests()
    t0 = time.perf_counter()
    host = PyodideNode(wheels=wheels)
    started = time.perf_counter() - t0
    try:
        source = (ROOT / "benchmarks" / "crypto_ops.py").read_text()
        code = (
            "import json\n"
            "_ns = {}\n"
            f"exec(compile({source!r}, 'crypto_ops.py', 'exec'), _ns)\n"
            "from ping_core.mls.crypto import default_provider\n"
            "_p = default_provider()\n"
            "json.dumps([_p.name, _ns['run'](_p)])\n"
        )
        import json

        name, figures = json.loads(host.python(code))
        assert name == "noble", name
        return figures, {"node_process_to_ready_s": round(started, 2), **host.info}
    finally:
        host.close()


def bench_boot(runs: int) -> list[tuple[float, float]]:
    import socket

    from playwright.sync_api import sync_playwright

    from conftest import CHROMIUM, CHROMIUM_ARGS

    import build

    build.build()
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    server = subprocess.Popen(
        [sys.executable, "-m", "ping_server", "--port", str(port), "--log-level", "warning"], cwd=ROOT
    )
    url = f"http://127.0.0.1:{port}"
    results = []
    try:
        for _ in range(100):
            try:
                urllib.request.urlopen(url + "/api/health", timeout=1).close()
                break
            except OSError:
                time.sleep(0.1)
        with sync_playwright() as pw:
            browser = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
            try:
                for _ in range(runs):
                    context = browser.new_context()
                    page = context.new_page()
                    t0 = time.perf_counter()
                    page.goto(url + "/")
                    page.wait_for_function(
                        "() => ['ready','failed'].includes(document.getElementById('boot-status').textContent)",
                        timeout=120_000,
                    )
                    wall = time.perf_counter() - t0
                    assert page.text_content("#boot-status") == "ready"
                    detail = page.text_content("#boot-detail") or ""
                    worker_ms = float(detail.strip("(").split(" ms")[0])
                    results.append((wall * 1000, worker_ms))
                    context.close()
            finally:
                browser.close()
    finally:
        server.terminate()
        server.wait()
    return results


def _fmt(us: float) -> str:
    return f"{us / 1000:9.3f} ms" if us >= 1000 else f"{us:9.2f} us"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--skip-node", action="store_true")
    parser.add_argument("--skip-browser", action="store_true")
    parser.add_argument("--boots", type=int, default=5, help="cold boots in Chromium (default 5)")
    args = parser.parse_args()

    pyca = bench_pyca()
    node: dict[str, float] = {}
    if not args.skip_node:
        node, info = bench_node()
        print(f"Pyodide under Node: Python {info['python']}, backend {info['crypto']}, "
              f"boot {info['boot_ms']} ms (process start to ready {info['node_process_to_ready_s']} s)")  # fmt: skip
    print(f"\nper operation (best of 3 calibrated rounds)     {'pyca/CPython':>12}   {'noble/Pyodide+Node':>18}   ratio")
    for op, us in pyca.items():
        js = node.get(op)
        ratio = f"{js / us:7.1f}x" if js else ""
        print(f"  {op:<44} {_fmt(us)}   {_fmt(js) if js else '':>18}   {ratio}")

    if not args.skip_browser:
        boots = bench_boot(args.boots)
        walls = [w for w, _ in boots]
        workers = [m for _, m in boots]
        print(f"\nworker cold boot in Chromium ({len(boots)} runs, new context each):")
        print(f"  page.goto -> #boot-status 'ready': median {statistics.median(walls):.0f} ms "
              f"(min {min(walls):.0f}, max {max(walls):.0f})")  # fmt: skip
        print(f"  inside the worker (manifest -> ready): median {statistics.median(workers):.0f} ms "
              f"(min {min(workers):.0f}, max {max(workers):.0f})")  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())
