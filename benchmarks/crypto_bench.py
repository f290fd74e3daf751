#!/usr/bin/env python3
"""Crypto per-op times on every backend, MLS end to end, and the worker's cold boot.

    python benchmarks/crypto_bench.py [--skip-node] [--skip-browser] [--boots N] [--quick]

1. pyca on CPython (this interpreter).
2. The noble JS backend inside Pyodide under Node (the tests/node harness:
   the same wheels and crypto bundle as the browser worker).
3. In Chromium's worker, measured from Python there (dev.exec inside an RPC
   call, the entry every SDK call has): noble, WebCrypto as the worker uses
   it (the hybrid: AES-GCM below 1 KiB through noble) and WebCrypto for every
   AES-GCM call ("webcrypto-all"), and the boot-time backend choice.
4. MLS end to end (benchmarks/mls_e2e_ops.py) through pyca on CPython and
   through noble and WebCrypto in Chromium's worker: KeyPackage generation,
   100 B protect+unprotect, a group of 100 built by one commit, a self-update.
5. Cold boot of the worker in Chromium: a new browser context (empty HTTP
   cache and storage) per run, from page.goto to #boot-status == "ready",
   and the worker's own figure (loadPyodide to ready).

Needs `python build.py --test` (the script runs it) and, for 3-5, Chromium
(PING_CHROMIUM or Debian's chromium). Prints figures; asserts nothing.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import statistics
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

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


@contextlib.contextmanager
def _chromium() -> Iterator[tuple[Any, str]]:
    """(browser, server URL): a fresh build served by ping_server, Debian's Chromium."""
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
                yield browser, url
            finally:
                browser.close()
    finally:
        server.terminate()
        server.wait()


def _wait_ready(page: Any) -> None:
    page.wait_for_function(
        "() => ['ready','failed'].includes(document.getElementById('boot-status').textContent)",
        timeout=120_000,
    )
    assert page.text_content("#boot-status") == "ready", page.text_content("#boot-detail")


def bench_boot(runs: int) -> list[tuple[float, float]]:
    results = []
    with _chromium() as (browser, url):
        for _ in range(runs):
            context = browser.new_context()
            page = context.new_page()
            t0 = time.perf_counter()
            page.goto(url + "/")
            _wait_ready(page)
            wall = time.perf_counter() - t0
            detail = page.text_content("#boot-detail") or ""
            worker_ms = float(detail.strip("(").split(" ms")[0])
            results.append((wall * 1000, worker_ms))
            context.close()
    return results


# Runs in the worker (dev.exec): the two benchmark files' sources, then each backend.
_IN_WORKER = """
import json
from pyodide_app.crypto import NobleProvider
from pyodide_app.webcrypto import WebCryptoProvider
from pyodide_app.crypto_select import last_selection

def _load(name, source):
    ns = {"__name__": name}
    exec(compile(source, name + ".py", "exec"), ns)
    return ns

_ops = _load("crypto_ops", CRYPTO_OPS)
_mls = _load("mls_e2e_ops", MLS_OPS)
_ops["TARGET_SECONDS"] = TARGET
providers = {"noble": NobleProvider(), "webcrypto": WebCryptoProvider(),
             "webcrypto-all": WebCryptoProvider(aead_min=0)}
ops = {name: _ops["run"](p) for name, p in providers.items()}
mls = {name: _mls["run"](providers[name], quick=QUICK) for name in ("noble", "webcrypto")}
result = json.dumps({"ops": ops, "mls": mls, "counts": providers["webcrypto"].counts,
                     "selection": last_selection().as_dict()})
"""


def bench_chromium(quick: bool) -> dict[str, Any]:
    """Per-op and MLS figures from Python in Chromium's worker, per backend."""
    code = (
        f"CRYPTO_OPS = {(ROOT / 'benchmarks' / 'crypto_ops.py').read_text()!r}\n"
        f"MLS_OPS = {(ROOT / 'benchmarks' / 'mls_e2e_ops.py').read_text()!r}\n"
        f"TARGET = {0.08 if quick else 0.25}\nQUICK = {quick}\n" + _IN_WORKER
    )
    with _chromium() as (browser, url):
        page = browser.new_page()
        page.goto(url + "/?dev=1")
        _wait_ready(page)
        page.set_default_timeout(1_800_000)
        out: dict[str, Any] = json.loads(page.evaluate("async (code) => await ping.call('dev.exec', {code})", code))
        return out


def _fmt(us: float) -> str:
    return f"{us / 1000:9.3f} ms" if us >= 1000 else f"{us:9.2f} us"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--skip-node", action="store_true")
    parser.add_argument("--skip-browser", action="store_true")
    parser.add_argument("--boots", type=int, default=5, help="cold boots in Chromium (default 5)")
    parser.add_argument("--quick", action="store_true", help="shorter timing rounds (noisier)")
    args = parser.parse_args()
    if args.quick:
        crypto_ops.TARGET_SECONDS = 0.08

    import mls_e2e_ops
    from ping_core.mls.crypto.pyca import PycaProvider

    pyca = bench_pyca()
    pyca_mls = mls_e2e_ops.run(PycaProvider(), quick=args.quick)
    node: dict[str, float] = {}
    if not args.skip_node:
        node, info = bench_node()
        print(f"Pyodide under Node: Python {info['python']}, backend {info['crypto']}, "
              f"boot {info['boot_ms']} ms (process start to ready {info['node_process_to_ready_s']} s)")  # fmt: skip
    chromium: dict[str, Any] = {"ops": {}, "mls": {}}
    if not args.skip_browser:
        chromium = bench_chromium(args.quick)
        sel = chromium["selection"]
        print(f"Chromium worker: boot chose {sel['backend']} ({sel['reason']}; probe {sel['probe_ms']} ms)")
    cols = [("pyca/CPython", pyca), ("noble/Node", node)] + [
        (f"{name}/Chromium", chromium["ops"].get(name, {})) for name in ("noble", "webcrypto", "webcrypto-all")
    ]
    print("\nper operation, from Python (best of 3 calibrated rounds); "
          "webcrypto = the hybrid the worker uses, webcrypto-all = also every AES-GCM through WebCrypto")  # fmt: skip
    print(f"  {'':<30}" + "".join(f"{title:>20}" for title, _ in cols) + "   noble/webcrypto")
    for op in pyca:
        row = "".join(f"{_fmt(col[op]) if op in col else '':>20}" for _, col in cols)
        nb, wc = chromium["ops"].get("noble", {}).get(op), chromium["ops"].get("webcrypto", {}).get(op)
        ratio = f"{nb / wc:8.2f}x" if nb and wc else ""
        print(f"  {op:<30}{row}   {ratio}")

    mls_cols = [("pyca/CPython", pyca_mls)] + [
        (f"{name}/Chromium", chromium["mls"].get(name, {})) for name in ("noble", "webcrypto")
    ]
    print("\nMLS end to end (benchmarks/mls_e2e_ops.py), milliseconds")
    print(f"  {'':<36}" + "".join(f"{title:>20}" for title, _ in mls_cols) + "   noble/webcrypto")
    for op in pyca_mls:
        row = "".join(f"{col[op]:17.2f} ms" if op in col else f"{'':>20}" for _, col in mls_cols)
        nb, wc = chromium["mls"].get("noble", {}).get(op), chromium["mls"].get("webcrypto", {}).get(op)
        ratio = f"{nb / wc:8.2f}x" if nb and wc else ""
        print(f"  {op:<36}{row}   {ratio}")
    if chromium.get("counts"):
        print(f"  (WebCrypto provider's calls during the Chromium runs: {chromium['counts']})")

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
