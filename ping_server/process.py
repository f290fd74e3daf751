"""Start ``python -m ping_server`` as a child process and learn its URL (tests, benchmarks, tools).

The server prints ``ping_server: listening on http://HOST:PORT (HTTP, LOOP)``
once its socket accepts connections (``--port 0`` picks a free port);
:func:`spawn` waits for that line (:func:`start` also returns what it says
about the HTTP parser and event loop).
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import threading
from pathlib import Path
from typing import IO

__all__ = ["spawn", "start", "stop", "REPO_ROOT"]

REPO_ROOT = Path(__file__).resolve().parent.parent


def spawn(
    *args: str, db: str | None = None, python: str | None = None, stderr: IO[bytes] | int | None = None, timeout: float = 30.0
) -> tuple[subprocess.Popen[bytes], str]:
    """Start a server on 127.0.0.1 (a free port) with this checkout's code; return (process, URL).
    See :func:`start`."""
    proc, url, _ = start(*args, db=db, python=python, stderr=stderr, timeout=timeout)
    return proc, url


def start(
    *args: str, db: str | None = None, python: str | None = None, stderr: IO[bytes] | int | None = None, timeout: float = 30.0
) -> tuple[subprocess.Popen[bytes], str, str]:
    """Start a server on 127.0.0.1 (a free port) with this checkout's code; return (process, URL,
    "HTTP, LOOP" as the server names its HTTP parser and event loop).

    ``args`` are more ``ping_server`` options; ``db`` its ``--db``; ``python``
    the interpreter (default: this one). The web client is not served. Raises
    ``RuntimeError`` (after stopping the child) when no URL came within ``timeout``.
    """
    cmd = [python or sys.executable, "-m", "ping_server", "--host", "127.0.0.1", "--port", "0",
           "--dist", str(REPO_ROOT / "no-web-client"), "--log-level", "warning", "--no-access-log", *args]  # fmt: skip
    if db is not None:
        cmd += ["--db", db]
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(p for p in (str(REPO_ROOT), os.environ.get("PYTHONPATH")) if p))
    proc = subprocess.Popen(cmd, cwd=REPO_ROOT, stdout=subprocess.PIPE, stderr=stderr, env=env)
    found: list[tuple[str, str]] = []

    def read() -> None:
        assert proc.stdout is not None
        for raw in proc.stdout:
            match = re.search(rb"listening on (http://\S+)(?: \(([^)]*)\))?", raw)
            if match:
                found.append((match.group(1).decode(), (match.group(2) or b"?").decode()))
                return

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    reader.join(timeout)
    if not found:
        proc.kill()
        proc.wait()
        raise RuntimeError(f"ping_server did not start within {timeout} s (exit status {proc.returncode})")
    return proc, found[0][0], found[0][1]


def stop(proc: subprocess.Popen[bytes], timeout: float = 10.0) -> None:
    """Stop a server started here: SIGTERM, then SIGKILL after ``timeout`` seconds; reaps it and
    closes its stdout pipe."""
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    if proc.stdout is not None:
        proc.stdout.close()
