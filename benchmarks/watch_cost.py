"""What long-polling watches of conversations that do not exist cost the server.

    python benchmarks/watch_cost.py [--watchers 20] [--unknown 999] [--seconds 10] [--repo DIR]

Starts ``python -m ping_server`` (SQLite file, default ``--poll-interval`` 0.5 s) from ``--repo``
(default: this checkout; pass an older checkout, e.g. ``git archive <rev> | tar -x -C DIR``, to
compare), registers ``--watchers`` devices, and lets each hold ``POST /v1/watch`` long polls
(30 s each, re-issued) naming ``--unknown`` conversation ids nobody has posted to, plus one
conversation of its own (1,000 in all, the most one watch may name). Prints the server process's CPU time (user + system, from /proc) per
second of wall time over ``--seconds``, and per re-read interval per watch.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import re
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from ping_core.clock import Hlc  # noqa: E402
from ping_core.device import LocalDevice  # noqa: E402
from ping_core.identity import Identity  # noqa: E402
from ping_core.ids import ConversationId  # noqa: E402
from ping_core.message import MessageEnvelope, MessageKind  # noqa: E402
from ping_core.transport.http import ConnectionPool, HttpTransport  # noqa: E402

HERE = Path(__file__).resolve().parent.parent


def start_server(repo: Path, db: str) -> tuple[subprocess.Popen[bytes], str]:
    cmd = [sys.executable, "-m", "ping_server", "--host", "127.0.0.1", "--port", "0", "--db", db, "--dist", str(repo / "none"),
           "--rate-limit", "0", "--address-rate-limit", "0", "--no-access-log", "--log-level", "warning"]  # fmt: skip
    env = dict(os.environ, PYTHONPATH=str(repo))
    proc = subprocess.Popen(cmd, cwd=repo, stdout=subprocess.PIPE, env=env)
    url: list[str] = []

    def read() -> None:
        assert proc.stdout is not None
        for line in proc.stdout:
            m = re.search(rb"listening on (http://\S+)", line)
            if m:
                url.append(m.group(1).decode())
                return

    t = threading.Thread(target=read, daemon=True)
    t.start()
    t.join(30)
    if not url:
        proc.kill()
        raise RuntimeError("the server did not start")
    return proc, url[0]


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


async def main(args: argparse.Namespace) -> None:
    folder = tempfile.mkdtemp(prefix="ping-watch-cost-")
    proc, url = start_server(Path(args.repo).resolve(), os.path.join(folder, "w.sqlite"))
    pool = ConnectionPool()
    stop = asyncio.Event()
    try:
        transports = []
        for i in range(args.watchers):
            ident = Identity.generate()
            dev = LocalDevice.generate(ident.user_id, f"w{i}", 1)
            t = HttpTransport(url, dev.signing_secret, pool=pool, timeout=60)
            await t.register_device(dev.info(1), ident.device_binding(dev.device_id))
            mine = ConversationId.new()
            await t.send(MessageEnvelope(mine, 0, MessageKind.APPLICATION, dev.device_id, 0, Hlc(1, 0), b"x"))
            positions = {mine: 1, **{ConversationId.new(): 0 for _ in range(args.unknown)}}
            transports.append((t, positions))

        answers = [0]

        async def watcher(t: HttpTransport, positions: dict[ConversationId, int]) -> None:
            while not stop.is_set():
                await t.watch(positions, wait_ms=30_000)  # an error ends the benchmark (gathered below)
                answers[0] += 1

        tasks = [asyncio.create_task(watcher(t, p)) for t, p in transports]
        await asyncio.sleep(2)  # every watch is waiting
        failed = [task for task in tasks if task.done()]
        if failed:
            raise RuntimeError(f"a watch failed: {failed[0].exception()!r}")
        cpu0, wall0 = cpu_seconds(proc.pid), time.monotonic()
        await asyncio.sleep(args.seconds)
        cpu = cpu_seconds(proc.pid) - cpu0
        wall = time.monotonic() - wall0
        rereads = args.watchers * wall / 0.5
        print(
            f"{args.watchers} watches x {args.unknown} unknown conversations, {wall:.1f} s: server CPU {cpu / wall * 100:5.1f}% "
            f"of a core ({cpu / rereads * 1e3:.2f} ms per watch per 0.5 s re-read)  [{args.repo}]"
        )
        assert answers[0] == 0 and not any(task.done() for task in tasks), "every watch should still be waiting"
        stop.set()
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
    finally:
        proc.terminate()
        proc.wait(10)
        await pool.aclose()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--watchers", type=int, default=20)
    parser.add_argument("--unknown", type=int, default=999)
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--repo", default=str(HERE))
    asyncio.run(main(parser.parse_args()))
