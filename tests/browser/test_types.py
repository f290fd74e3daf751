"""The page API's one RPC table: Python's declared names = ping.js = ping.d.ts = docs; tsc checks the example page."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
STATIC = ROOT / "static"
TSC = ROOT / "node_modules" / ".bin" / "tsc"
TSC_ARGS = ["--noEmit", "--strict", "--allowJs", "--checkJs", "--target", "es2022", "--module", "es2022",
            "--moduleResolution", "bundler", "--lib", "es2022,dom,dom.iterable"]  # fmt: skip
# Registered by other modules (vault.py, push.py) when present in the tree.
OPTIONAL = ("vault.", "push.")


def python_table() -> set[str]:
    """The names the worker registers (the SDK's handler groups and the worker's own; vault/push
    are checked by the next test)."""
    from pyodide_app import info, rpc
    from pyodide_app.sdk import HANDLERS

    return {name for group in HANDLERS for name, _ in rpc.declared(group)} | {n for n, _ in rpc.declared(info)}


def test_every_handler_group_is_registered() -> None:
    """A handler group of pyodide_app.sdk left out of HANDLERS would declare names nobody registers."""
    import pyodide_app.sdk as sdk
    from pyodide_app.sdk.core import RpcHandlers

    assert set(RpcHandlers.__subclasses__()) == set(sdk.HANDLERS)
    assert len(sdk.HANDLERS) == len(set(sdk.HANDLERS))


def quoted_calls(text: str) -> set[str]:
    return set(re.findall(r'call\("([a-z_]+\.[a-z_.]+|ping|info)"', text))


def test_the_four_tables_agree() -> None:
    py = python_table()
    js = quoted_calls((STATIC / "ping.js").read_text()) | quoted_calls((STATIC / "pingpush.mjs").read_text())
    js |= set(re.findall(r'method: "([a-z_.]+)"', (STATIC / "sw.mjs").read_text()))  # the service worker's own
    dts_block = (STATIC / "ping.d.ts").read_text().split("export type RpcMethod =")[1].split(";")[0]
    dts = set(re.findall(r'"([^"]+)"', dts_block))
    doc = set(re.findall(r"^\| `([a-z_.]+)` \|", (ROOT / "docs" / "browser-sdk.md").read_text(), re.M))
    for name, table in (("ping.js", js), ("ping.d.ts", dts), ("docs/browser-sdk.md", doc)):
        assert py - table == set(), f"{name} lacks {sorted(py - table)}"
        extra = {n for n in table - py if not n.startswith(OPTIONAL)}
        assert extra == set(), f"{name} has names Python does not register: {sorted(extra)}"


def test_on_demand_modules_names_match() -> None:
    """vault.* and push.* (registered on demand, pyodide_app.worker.ON_DEMAND) are in ping.d.ts."""
    from pyodide_app import worker

    added = {name for names in worker.ON_DEMAND.values() for name in names}
    assert {n.split(".")[0] + "." for n in added} == set(OPTIONAL)
    dts = (STATIC / "ping.d.ts").read_text()
    assert all(f'"{n}"' in dts for n in added), sorted(added)


@pytest.mark.skipif(not TSC.exists() or shutil.which("node") is None, reason="npm ci installs typescript")
def test_example_page_type_checks_against_ping_d_ts(tmp_path: Path) -> None:
    ok = subprocess.run([str(TSC), *TSC_ARGS, str(STATIC / "example.mjs")], capture_output=True, text=True)
    assert ok.returncode == 0, ok.stdout + ok.stderr
    # The check bites: a wrong payload type is an error.
    for name in ("ping.js", "ping.d.ts", "pingpush.mjs"):
        shutil.copy(STATIC / name, tmp_path / name)
    bad = tmp_path / "bad.mjs"
    bad.write_text('// @ts-check\nimport { Ping } from "./ping.js";\nawait (await Ping.open()).send("c", 42);\n')
    fail = subprocess.run([str(TSC), *TSC_ARGS, str(bad)], capture_output=True, text=True)
    assert fail.returncode != 0 and "TS2345" in fail.stdout, fail.stdout
