"""Load on one ping_server process: N clients x M messages through real HTTP, on loopback only.

    python benchmarks/server_load.py                       # 50 clients x 200 messages, SQLite file
    python benchmarks/server_load.py --db postgresql://...   # the same on PostgreSQL
    python benchmarks/server_load.py --clients 10 --messages 50 --group 5

Starts ``python -m ping_server`` on 127.0.0.1 (a free port) over a fresh SQLite
file in a temporary directory (or the given database), registers the clients
(one device each, ``HttpTransport``), puts them in conversations of ``--group``
members (the first member creates it and welcomes the others), then every
client sends its messages one after another (each ``send`` awaited) while a
receiver per client long-polls its conversation (``fetch_since(wait_ms=...)``).
Payloads are opaque bytes (sender, number, send time, padding): this measures
the delivery service and the transport, not MLS.

Prints msgs/s (messages sent / time from the first send to the last delivery),
deliveries/s, p50/p99/max send-to-receive latency over every delivery to every
other member, request counts, the CPU time of the server and of this process
(also per message), and the load average before and after (other work on the
machine shares its cores). Checks, and exits 1 on failure, that every member
received every message of its conversation exactly once, that all members saw
the same order, and that each sender's messages kept their order. Bounded by
``--timeout``.

The load generator is one process: the clients share one event loop (uvloop
when installed, ``--client-loop``), each an ``HttpTransport`` (which signs
every request, as a real client does). By default each sends through a
``ConnectionPool`` of its own (``--client pool``: HttpTransport's lean HTTP/1.1
path, less CPU per request, since the clients share the machine's cores with
the server); ``--client httpx`` measures HttpTransport's default, an
``httpx.AsyncClient`` per transport. ``--server-http`` / ``--server-loop``
/ ``--sqlite-commit-on-loop`` select the server's HTTP parser, event loop and
where SQLite commits, to compare configurations.
"""

from __future__ import annotations

import argparse
import asyncio
import importlib.util
import os
import resource
import statistics
import struct
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from ping_core.clock import Hlc  # noqa: E402
from ping_core.device import LocalDevice  # noqa: E402
from ping_core.identity import Identity  # noqa: E402
from ping_core.ids import ConversationId  # noqa: E402
from ping_core.message import MessageEnvelope, MessageKind  # noqa: E402
from ping_core.sync import SyncCursor  # noqa: E402
from ping_core.transport.http import ConnectionPool, HttpTransport  # noqa: E402

_HEADER = struct.Struct(">HId")  # sender index, message number, send time (perf_counter)


@dataclass
class Client:
    index: int
    device: LocalDevice
    transport: HttpTransport
    pool: ConnectionPool | None = None  # the transport's pool (--client pool), closed with it
    conv: ConversationId | None = None
    received: list[tuple[int, int, int]] = field(default_factory=list)  # (seq, sender, number)
    latencies: list[float] = field(default_factory=list)
    fetches: int = 0
    sends: int = 0


def cpu_seconds(pid: int, tid: int | None = None) -> float:
    """User + system CPU time of a process, or of one of its threads (Linux /proc)."""
    path = f"/proc/{pid}/stat" if tid is None else f"/proc/{pid}/task/{tid}/stat"
    fields = Path(path).read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


async def run(
    url: str, n_clients: int, n_messages: int, group: int, payload_size: int, wait_ms: int, interval_ms: int = 0,
    client_kind: str = "pool",
) -> dict[str, object]:  # fmt: skip
    """Register, set up the conversations, then send and receive; the figures and the problems found.
    ``client_kind``: "pool" (a ConnectionPool per transport) or "httpx" (HttpTransport's default)."""
    clients = []
    for i in range(n_clients):
        ident = Identity.generate()
        dev = LocalDevice.generate(ident.user_id, f"load-{i}", 1)
        pool = ConnectionPool() if client_kind == "pool" else None
        t = HttpTransport.for_device(url, dev, pool=pool)
        await t.register_device(dev.info(1), ident.device_binding(dev.device_id))
        clients.append(Client(i, dev, t, pool))
    groups = [clients[i : i + group] for i in range(0, n_clients, group)]
    for members in groups:
        conv = ConversationId.new()
        creator = members[0]
        await creator.transport.send(MessageEnvelope(conv, 0, MessageKind.COMMIT, creator.device.device_id, 0, Hlc(1, 0), b"setup"))
        if len(members) > 1:
            await creator.transport.set_next_welcome_recipients(conv, [m.device.device_id for m in members[1:]])
            await creator.transport.send(MessageEnvelope(conv, 0, MessageKind.WELCOME, creator.device.device_id, 0, Hlc(1, 0), b"w"))
        for m in members:
            m.conv = conv

    padding = b"\x00" * max(0, payload_size - _HEADER.size)
    start = asyncio.Event()

    async def sender(c: Client) -> None:
        assert c.conv is not None
        await start.wait()
        for n in range(n_messages):
            payload = _HEADER.pack(c.index, n, time.perf_counter()) + padding
            await c.transport.send(MessageEnvelope(c.conv, 1, MessageKind.APPLICATION, c.device.device_id, 0, Hlc(1, 0), payload))
            c.sends += 1

    async def receiver(c: Client, expected: int) -> float:
        assert c.conv is not None
        cursor = SyncCursor(1)  # after the setup Commit
        while len(c.received) < expected:
            page = await c.transport.fetch_since(c.conv, cursor, 256, wait_ms=wait_ms)
            c.fetches += 1
            now = time.perf_counter()
            for env in page:
                sender_index, number, sent = _HEADER.unpack_from(env.payload)
                c.received.append((env.seq, sender_index, number))
                if sender_index != c.index:
                    c.latencies.append(now - sent)
            if page:
                cursor = SyncCursor(page[-1].seq)
                if interval_ms and len(c.received) < expected:
                    # A client that syncs at most every interval_ms: later messages batch into one fetch.
                    await asyncio.sleep(interval_ms / 1000)
        return time.perf_counter()

    receivers = [asyncio.create_task(receiver(c, len(members) * n_messages)) for members in groups for c in members]
    senders = [asyncio.create_task(sender(c)) for c in clients]
    await asyncio.sleep(0.2)  # let every receiver start its long poll
    t0 = time.perf_counter()
    start.set()
    await asyncio.gather(*senders)
    t_sent = time.perf_counter()
    ends = await asyncio.gather(*receivers)
    t_end = max(ends)
    for c in clients:
        await c.transport.aclose()
        if c.pool is not None:
            await c.pool.aclose()

    # Checks: exactly once, same order for every member, each sender's order kept.
    problems = []
    for members in groups:
        reference = members[0].received
        for m in members:
            if m.received != reference:
                problems.append(f"client {m.index} saw another order than client {members[0].index}")
            seqs = [s for s, _, _ in m.received]
            if seqs != sorted(set(seqs)):
                problems.append(f"client {m.index}: duplicated or out-of-order seqs")
            keys = {(s, n) for _, s, n in m.received}
            if len(keys) != len(m.received) or keys != {(o.index, n) for o in members for n in range(n_messages)}:
                problems.append(f"client {m.index}: lost or duplicated messages")
            for o in members:
                numbers = [n for _, s, n in m.received if s == o.index]
                if numbers != list(range(n_messages)):
                    problems.append(f"client {m.index}: sender {o.index}'s messages reordered")
    latencies = sorted(x for c in clients for x in c.latencies)
    sent = sum(c.sends for c in clients)
    return {
        "sent": sent,
        "deliveries": sum(len(c.received) for c in clients),
        "elapsed": t_end - t0,
        "send_phase": t_sent - t0,
        "fetches": sum(c.fetches for c in clients),
        "latencies": latencies,
        "problems": problems,
    }


def spawn_server(extra: list[str], db: str, python: str | None) -> tuple[Any, str, str]:
    """Start the server; (process, URL, "PARSER, LOOP" as it reports them)."""
    from ping_server.process import start

    return start(*extra, db=db, python=python)


def _client_loop(choice: str) -> str:
    if choice == "auto":
        return "uvloop" if importlib.util.find_spec("uvloop") is not None else "asyncio"
    return choice


def _run_on(loop: str, work: Any) -> Any:
    if loop == "uvloop":
        import uvloop

        with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
            return runner.run(work)
    return asyncio.run(work)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--clients", type=int, default=50)
    parser.add_argument("--messages", type=int, default=200, help="messages per client")
    parser.add_argument("--group", type=int, default=5, help="members per conversation")
    parser.add_argument("--payload", type=int, default=256, help="payload bytes per message")
    parser.add_argument("--wait-ms", type=int, default=10_000, help="long-poll wait")
    parser.add_argument(
        "--receive-interval-ms", type=int, default=0,
        help="after a non-empty page a receiver pauses this long before fetching again (batches deliveries)",
    )  # fmt: skip
    parser.add_argument("--db", default=None, help="postgresql:// URL (default: a fresh SQLite file)")
    parser.add_argument("--sqlite-synchronous", default="FULL", choices=["FULL", "NORMAL"])
    parser.add_argument("--sqlite-batch", type=int, default=32, help="SQLite group commit size (1: one transaction per request)")
    parser.add_argument("--sqlite-thread", action="store_true", help="SQLite on a writer thread (server option)")
    parser.add_argument("--pool-size", type=int, default=8, help="PostgreSQL connections of the server")
    parser.add_argument("--timeout", type=float, default=600, help="give up after this many seconds")
    parser.add_argument(
        "--client", default="pool", choices=["pool", "httpx"],
        help="how the clients' HttpTransports send: a lean ConnectionPool each (default) or their default httpx client",
    )  # fmt: skip
    parser.add_argument("--client-loop", default="auto", choices=["auto", "uvloop", "asyncio"], help="this process's event loop")
    parser.add_argument("--server-http", default="auto", choices=["auto", "httptools", "h11"], help="the server's HTTP parser")
    parser.add_argument("--server-loop", default="auto", choices=["auto", "uvloop", "asyncio"], help="the server's event loop")
    parser.add_argument("--sqlite-commit-on-loop", action="store_true", help="the server commits SQLite on its event loop")
    parser.add_argument(
        "--server-python", default=None,
        help="the Python that runs the server (e.g. a venv with uvicorn's optional httptools/uvloop); default: this one",
    )  # fmt: skip
    args = parser.parse_args()

    load_before = Path("/proc/loadavg").read_text().split()[0] if Path("/proc/loadavg").exists() else "?"
    with tempfile.TemporaryDirectory(prefix="ping-load-") as tmp:
        db = args.db or str(Path(tmp) / "load.sqlite")
        extra = ["--rate-limit", "0", "--address-rate-limit", "0", "--sqlite-synchronous", args.sqlite_synchronous]
        extra += ["--sqlite-batch", str(args.sqlite_batch), "--http", args.server_http, "--loop", args.server_loop]
        extra += ["--sqlite-thread"] if args.sqlite_thread else []
        extra += ["--sqlite-commit-on-loop"] if args.sqlite_commit_on_loop else []
        extra += ["--pool-size", str(args.pool_size)]
        proc, url, server_impl = spawn_server(extra, db, args.server_python)
        client_loop = _client_loop(args.client_loop)
        try:
            cpu0_server = cpu_seconds(proc.pid)
            cpu0_loop = cpu_seconds(proc.pid, proc.pid)  # the main thread runs the event loop
            usage0 = resource.getrusage(resource.RUSAGE_SELF)
            work = run(
                url, args.clients, args.messages, args.group, args.payload, args.wait_ms, args.receive_interval_ms,
                args.client,
            )  # fmt: skip
            result = _run_on(client_loop, asyncio.wait_for(work, args.timeout))
            server_cpu = cpu_seconds(proc.pid) - cpu0_server
            loop_cpu = cpu_seconds(proc.pid, proc.pid) - cpu0_loop
            usage1 = resource.getrusage(resource.RUSAGE_SELF)
            client_cpu = (usage1.ru_utime - usage0.ru_utime) + (usage1.ru_stime - usage0.ru_stime)
        finally:
            proc.terminate()
            proc.wait(10)

    lat = result["latencies"]
    assert isinstance(lat, list)
    elapsed = float(result["elapsed"])  # type: ignore[arg-type]
    sent = int(result["sent"])  # type: ignore[call-overload]
    where = "writer thread" if args.sqlite_thread else "event loop"
    sqlite = f"sqlite (synchronous={args.sqlite_synchronous}, batch {args.sqlite_batch}, {where})"
    kind = f"postgres (pool {args.pool_size})" if args.db else sqlite
    load_after = Path("/proc/loadavg").read_text().split()[0] if Path("/proc/loadavg").exists() else "?"
    where_commit = ", commit on the loop" if args.sqlite_commit_on_loop else ""
    print(f"server_load: {args.clients} clients x {args.messages} messages, conversations of {args.group}, "
          f"{args.payload}-byte payloads, {kind}{where_commit}, receive interval {args.receive_interval_ms} ms, "
          f"{os.cpu_count()} cores, load average before {load_before} / after {load_after}")  # fmt: skip
    sending = "a ConnectionPool each" if args.client == "pool" else "HttpTransport's default httpx.AsyncClient each"
    print(f"  server: {server_impl}; clients: one process, {client_loop} loop, --client {args.client} ({sending})")
    print(f"  sent {sent} messages in {elapsed:.2f} s: {sent / elapsed:,.0f} msgs/s "
          f"(send phase {float(result['send_phase']):.2f} s)")  # type: ignore[arg-type]  # fmt: skip
    print(f"  deliveries {result['deliveries']} ({int(result['deliveries']) / elapsed:,.0f}/s), "  # type: ignore[call-overload]
          f"{result['fetches']} fetch requests")  # fmt: skip
    if lat:
        p50 = statistics.quantiles(lat, n=100)[49] if len(lat) > 1 else lat[0]
        p99 = statistics.quantiles(lat, n=100)[98] if len(lat) > 1 else lat[0]
        print(f"  send-to-receive latency: p50 {p50 * 1000:.1f} ms, p99 {p99 * 1000:.1f} ms, max {lat[-1] * 1000:.1f} ms "
              f"over {len(lat)} deliveries to other members")  # fmt: skip
    print(f"  CPU: server {server_cpu:.1f} s ({server_cpu / sent * 1e3:.2f} ms/msg; its event-loop thread "
          f"{loop_cpu:.1f} s, busy {loop_cpu / elapsed:.0%} of the run), "
          f"clients (this process) {client_cpu:.1f} s ({client_cpu / sent * 1e3:.2f} ms/msg)")  # fmt: skip
    problems = result["problems"]
    assert isinstance(problems, list)
    if problems:
        print("  FAILED checks:")
        for p in problems[:20]:
            print("   ", p)
        return 1
    print("  checks: no message lost, duplicated or reordered; every member saw the same order")
    return 0


if __name__ == "__main__":
    sys.exit(main())
