"""``python -m ping_server --host 127.0.0.1 --port 8080 [--db PATH|postgresql://...] [--dist DIR]``.

Prints ``ping_server: listening on http://HOST:PORT`` once it accepts
connections (``--port 0`` picks a free port; tests read the line).
"""

from __future__ import annotations

import argparse
import socket
import sys

from .api import ApiConfig
from .app import DEFAULT_DIST


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m ping_server", description="Ping's delivery service and web client.")
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1)")
    parser.add_argument("--port", type=int, default=8080, help="port (default 8080; 0 picks a free one)")
    parser.add_argument(
        "--db",
        default=None,
        help="SQLite file, or a postgresql:// URL (default: a private in-memory SQLite database, lost at exit)",
    )
    parser.add_argument("--dist", default=str(DEFAULT_DIST), help="built web client (python build.py)")
    parser.add_argument("--rate-limit", type=float, default=100.0, help="requests per second per device (0: off)")
    parser.add_argument("--rate-burst", type=float, default=200.0, help="burst size of the per-device limit")
    parser.add_argument("--poll-interval", type=float, default=0.5, help="long polls re-read the database this often (s)")
    parser.add_argument(
        "--sqlite-synchronous", default="FULL", choices=["FULL", "NORMAL", "EXTRA"], help="SQLite durability (default FULL)"
    )
    parser.add_argument(
        "--sqlite-batch", type=int, default=32,
        help="SQLite group commit: at most this many queued requests share one COMMIT, each in its own savepoint "
        "(1: one transaction per request; default 32)",
    )  # fmt: skip
    parser.add_argument(
        "--sqlite-thread", action="store_true",
        help="run SQLite on a writer thread instead of the event loop (for disks whose fsync takes milliseconds)",
    )  # fmt: skip
    parser.add_argument("--pool-size", type=int, default=8, help="PostgreSQL connections (default 8)")
    parser.add_argument("--log-level", default="info", choices=["critical", "error", "warning", "info", "debug"])
    parser.add_argument("--no-access-log", action="store_true", help="do not log each request")
    args = parser.parse_args(argv)

    import uvicorn

    from .service import build_app

    config = ApiConfig(rate_limit=args.rate_limit, rate_burst=args.rate_burst, poll_interval=args.poll_interval)
    try:
        app = build_app(
            db=args.db,
            dist=args.dist,
            config=config,
            sqlite_synchronous=args.sqlite_synchronous,
            sqlite_batch=args.sqlite_batch,
            sqlite_threaded=args.sqlite_thread,
            pool_size=args.pool_size,
        )
    except Exception as exc:  # the one place a startup failure becomes a readable line
        print(f"ping_server: cannot open the database: {exc}", file=sys.stderr)
        return 2
    if not app.state.dist_ready:
        print(f"ping_server: no web client in {args.dist} (run `python build.py`); serving the API only",
              file=sys.stderr)  # fmt: skip

    # Bind first, so the port is known (and printed) before serving; --port 0 then works.
    family = socket.AF_INET6 if ":" in args.host else socket.AF_INET
    # proto=IPPROTO_TCP matters: asyncio sets TCP_NODELAY on accepted connections only when the
    # listening socket says TCP, and without it each keep-alive answer waits ~40 ms (Nagle vs delayed ACK).
    sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((args.host, args.port))
    except OSError as exc:
        print(f"ping_server: cannot listen on {args.host}:{args.port}: {exc}", file=sys.stderr)
        return 2
    sock.listen(2048)  # connections queue from now on, even before uvicorn accepts them
    host, port = sock.getsockname()[:2]
    # Long polls hold requests up to 30 s; shutting down should not wait for all of them.
    config_u = uvicorn.Config(app, log_level=args.log_level, access_log=not args.no_access_log, timeout_graceful_shutdown=3)
    server = uvicorn.Server(config_u)
    shown = f"[{host}]" if family == socket.AF_INET6 else host
    print(f"ping_server: listening on http://{shown}:{port}", flush=True)
    server.run(sockets=[sock])
    return 0


if __name__ == "__main__":
    sys.exit(main())
