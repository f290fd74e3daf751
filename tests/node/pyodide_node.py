"""Drive one Pyodide interpreter under Node from CPython (tests and benchmarks).

:class:`PyodideNode` starts ``node tests/node/pyodide_host.mjs`` once, which
boots Pyodide from dist/ with the same wheels and noble crypto bundle as the
browser worker, and then runs pytest (or a snippet of Python) inside it on
request. See pyodide_host.mjs for the line protocol.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
HOST = Path(__file__).resolve().parent / "pyodide_host.mjs"
# Booting Pyodide takes ~2 s here; give slow CI machines plenty.
BOOT_TIMEOUT = 180.0


@dataclass
class PytestRun:
    """What one pytest run inside Pyodide gave."""

    exit_code: int
    output: str
    reports: list[dict[str, str]] = field(default_factory=list)

    def count(self, outcome: str) -> int:
        return sum(1 for r in self.reports if r["outcome"] == outcome and r["when"] in ("call", "setup"))

    @property
    def failures(self) -> list[str]:
        return [f"{r['nodeid']} ({r['when']})" for r in self.reports if r["outcome"] == "failed"]


def _jspi_flag(node: str) -> list[str]:
    """The V8 flag that gives Pyodide JSPI on this node, if it has one.

    With JSPI, Python entered through runPythonAsync can block on the event
    loop (``run_until_complete``), which pytest-asyncio needs inside Pyodide.
    """
    try:
        v8 = subprocess.run([node, "--v8-options"], capture_output=True, text=True, timeout=30).stdout
    except (OSError, subprocess.TimeoutExpired):
        return []
    for flag in ("--experimental-wasm-jspi", "--experimental-wasm-stack-switching"):
        if flag in v8:
            return [flag]
    return []


class PyodideNode:
    """One long-lived Pyodide under Node; not thread-safe (one request at a time)."""

    def __init__(self, *, dist: Path = ROOT / "dist", tests: Path = ROOT / "tests", wheels: list[Path] = ()) -> None:  # type: ignore[assignment]
        node = shutil.which("node")
        if node is None:
            raise RuntimeError("node is not on PATH: Node 20+ is needed for the Pyodide tests")
        if not (dist / "manifest.json").is_file():
            raise RuntimeError(f"{dist} is not built: run `python build.py --test`")
        cmd = [node, *_jspi_flag(node), str(HOST), "--dist", str(dist), "--tests", str(tests),
               "--pyproject", str(ROOT / "pyproject.toml")]  # fmt: skip
        for wheel in wheels:
            cmd += ["--wheel", str(wheel)]
        self._proc = subprocess.Popen(
            cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
            text=True, cwd=ROOT, env={**os.environ, "NODE_NO_WARNINGS": "1"},
        )  # fmt: skip
        self._next_id = 0
        self._stderr: list[str] = []
        threading.Thread(target=self._drain_stderr, daemon=True).start()
        first = self._read_line(BOOT_TIMEOUT)
        if "ready" not in first:
            self.close()
            raise RuntimeError(f"Pyodide did not boot under node: {first.get('boot_error', first)}")
        self.info: dict[str, Any] = first["ready"]

    def _drain_stderr(self) -> None:
        assert self._proc.stderr is not None
        for line in self._proc.stderr:
            self._stderr.append(line)

    def _read_line(self, timeout: float) -> dict[str, Any]:
        assert self._proc.stdout is not None
        result: list[str] = []
        reader = threading.Thread(target=lambda: result.append(self._proc.stdout.readline()), daemon=True)  # type: ignore[union-attr]
        reader.start()
        reader.join(timeout)
        if not result:
            self.close()
            raise RuntimeError(f"no answer from the Pyodide host within {timeout:.0f} s")
        if not result[0]:
            raise RuntimeError("the Pyodide host exited:\n" + "".join(self._stderr[-40:]))
        return json.loads(result[0])  # type: ignore[no-any-return]

    def _request(self, payload: dict[str, Any], timeout: float) -> dict[str, Any]:
        assert self._proc.stdin is not None
        self._next_id += 1
        payload = {"id": self._next_id, **payload}
        self._proc.stdin.write(json.dumps(payload) + "\n")
        self._proc.stdin.flush()
        reply = self._read_line(timeout)
        if reply.get("id") != payload["id"]:
            raise RuntimeError(f"out-of-order reply from the Pyodide host: {reply}")
        if "error" in reply:
            raise RuntimeError(f"Pyodide host: {reply['error']}\n{reply.get('output', '')}")
        return reply

    def pytest(self, args: list[str], env: dict[str, str] | None = None, timeout: float = 1200.0) -> PytestRun:
        """Run pytest inside Pyodide; paths are relative to the repository root (tests/...)."""
        reply = self._request({"op": "pytest", "args": args, "env": env or {}}, timeout)
        return PytestRun(exit_code=reply["exit"], output=reply["output"], reports=reply["reports"])

    def python(self, code: str, timeout: float = 600.0) -> Any:
        """Run ``code`` with runPythonAsync; returns its last expression (JSON-able values)."""
        return self._request({"op": "python", "code": code}, timeout)["result"]

    def close(self) -> None:
        if self._proc.poll() is None:
            try:
                assert self._proc.stdin is not None
                self._proc.stdin.close()
                self._proc.wait(timeout=10)
            except (OSError, subprocess.TimeoutExpired):
                self._proc.kill()
                self._proc.wait()


def build_for_tests() -> list[Path]:
    """Bring dist/ up to date and return the pytest wheels (build.py --test)."""
    sys.path.insert(0, str(ROOT))
    try:
        import build
    finally:
        sys.path.pop(0)
    build.build(with_test_wheels=True)
    return build.test_wheel_paths()
