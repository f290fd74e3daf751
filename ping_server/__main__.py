"""``python -m ping_server --host 127.0.0.1 --port 8080 [--db PATH|postgresql://...] [--dist DIR]``.

Prints ``ping_server: listening on http://HOST:PORT (HTTP, LOOP)`` once it
accepts connections (``--port 0`` picks a free port; tests read the line).
HTTP is uvicorn's parser (httptools when installed, the ``server`` extra's
``uvicorn[standard]``, else h11) and LOOP the event loop (uvloop when
installed, else asyncio); ``--http`` / ``--loop`` choose explicitly.
"""

from __future__ import annotations

import argparse
import importlib.util
import socket
import sys
from typing import TYPE_CHECKING

from ping_core.transport.base import DeliveryLimits

from .api import ApiConfig
from .app import DEFAULT_DIST
from .push import PushConfig

if TYPE_CHECKING:
    import uvicorn


# The DeliveryLimits fields with an option each: (option, field, help); 0 turns a limit off.
_LIMIT_OPTIONS = (
    ("--inbox-limit", "inbox_entries", "unacknowledged Welcomes a device's inbox holds (then 409 inbox_full)"),
    ("--inbox-bytes", "inbox_bytes", "bytes a device's inbox holds (each entry at the size its recipient downloads)"),
    ("--stranger-welcomes-per-sender", "stranger_per_sender",
     "unacknowledged Welcomes one account that shares no conversation with a device may leave in its inbox "
     "(then 409 invite_limit)"),
    ("--stranger-welcomes", "stranger_entries", "unacknowledged Welcomes from all such accounts together per device"),
    ("--stranger-welcome-bytes", "stranger_bytes", "their bytes per device"),
    ("--conversation-max-envelopes", "conversation_envelopes", "envelopes one conversation's log holds (then 413 quota_exceeded)"),
    ("--conversation-max-bytes", "conversation_bytes", "bytes one conversation's log holds"),
    ("--account-max-bytes", "account_bytes",
     "bytes one account stores: its devices' log envelopes, Welcome payloads (once) and KeyPackages"),
    ("--claims-per-claimer", "claims_per_claimer",
     "one-time KeyPackages of one device another account may claim per window (then its last-resort one)"),
    ("--claims-per-device", "claims_per_device", "one-time KeyPackages one device hands out to other accounts per window"),
)  # fmt: skip


def main(argv: list[str] | None = None) -> int:
    """Run the server until it is stopped: 0 (130 after Ctrl-C); 2 with a line on stderr when a
    module, the database or the address is not usable."""
    args = _parser().parse_args(argv)

    import uvicorn

    from .service import build_app

    http = _pick(args.http, "httptools", "h11")
    loop = _pick(args.loop, "uvloop", "asyncio")
    for name in (http, loop):
        if name in ("httptools", "uvloop") and importlib.util.find_spec(name) is None:
            print(f"ping_server: {name} is not installed (pip install 'ping-core[server]')", file=sys.stderr)
            return 2
    config = _api_config(args)
    try:
        app = build_app(
            db=args.db,
            dist=args.dist,
            config=config,
            sqlite_synchronous=args.sqlite_synchronous,
            sqlite_batch=args.sqlite_batch,
            sqlite_threaded=args.sqlite_thread,
            sqlite_commit_thread=False if args.sqlite_commit_on_loop else None,
            pool_size=args.pool_size,
        )
    except Exception as exc:  # the one place a startup failure becomes a readable line
        print(f"ping_server: cannot open the database: {exc}", file=sys.stderr)
        return 2
    if not app.state.dist_ready:
        print(f"ping_server: no web client in {args.dist} (run `python build.py`); serving the API only",
              file=sys.stderr)  # fmt: skip

    # Bind first, so the port is known (and printed) before serving; --port 0 then works.
    try:
        sock = _listen(args.host, args.port)
    except OSError as exc:
        print(f"ping_server: cannot listen on {args.host}:{args.port}: {exc}", file=sys.stderr)
        return 2
    host, port = sock.getsockname()[:2]
    # Long polls hold requests up to 30 s; shutting down should not wait for all of them.
    config_u = uvicorn.Config(
        app,
        http=http,
        loop=loop,
        log_level=args.log_level,
        access_log=not args.no_access_log,
        timeout_graceful_shutdown=3,
        server_header=False,
        # The per-address limit keys on the client address: take it from X-Forwarded-For only
        # when a trusted proxy is named (uvicorn would trust any local client by default).
        proxy_headers=args.forwarded_allow_ips is not None,
        forwarded_allow_ips=args.forwarded_allow_ips,
    )
    server = _server(config_u)
    shown = f"[{host}]" if sock.family == socket.AF_INET6 else host
    print(f"ping_server: listening on http://{shown}:{port} ({http}, {loop})", flush=True)
    try:
        server.run(sockets=[sock])
    except KeyboardInterrupt:  # uvicorn shut down cleanly, then re-raised the Ctrl-C it caught
        return 130
    return 0


def _parser() -> argparse.ArgumentParser:
    """The command line (options listed in --help in the order added here)."""
    parser = argparse.ArgumentParser(prog="python -m ping_server", description="Ping's delivery service and web client.")
    _add_server_options(parser)
    _add_limit_options(parser)
    _add_push_options(parser)
    _add_http_options(parser)
    return parser


def _add_server_options(parser: argparse.ArgumentParser) -> None:
    """Address, database and its engine's knobs, the rate limits."""
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
    parser.add_argument(
        "--sqlite-commit-on-loop", action="store_true",
        help="SQLite: COMMIT (and its fsync) on the event loop too, instead of the committer thread",
    )  # fmt: skip
    parser.add_argument("--pool-size", type=int, default=8, help="PostgreSQL connections (default 8)")
    parser.add_argument(
        "--address-rate-limit", type=float, default=10.0,
        help="unauthenticated requests (failed authentication, new devices' registrations) per second per client "
        "address (0: off; default 10)",
    )  # fmt: skip
    parser.add_argument("--address-rate-burst", type=float, default=100.0, help="burst of the per-address limit (default 100)")


def _add_limit_options(parser: argparse.ArgumentParser) -> None:
    """The abuse limits (DeliveryLimits) and the bounds on requests still being read."""
    d = DeliveryLimits()
    for option, field, text in _LIMIT_OPTIONS:
        default = getattr(d, field)
        parser.add_argument(option, type=int, default=default, dest=field, help=f"{text} (default {default}; 0: off)")
    parser.add_argument(
        "--claim-window", type=float, default=d.claim_window_ms / 1000,
        help=f"the KeyPackage claim window in seconds (default {d.claim_window_ms // 1000})",
    )  # fmt: skip
    parser.add_argument(
        "--body-timeout", type=float, default=30.0,
        help="a request body must arrive whole within this many seconds (default 30; then 408 and the connection closed)",
    )  # fmt: skip
    parser.add_argument(
        "--max-pending", type=int, default=256,
        help="requests not authenticated yet (reading their body or being verified) at once (default 256; then 429)",
    )  # fmt: skip
    parser.add_argument(
        "--max-pending-per-address", type=int, default=32, help="... of them from one client address (default 32; 0: no bound)"
    )


def _add_push_options(parser: argparse.ArgumentParser) -> None:
    """Web Push (PushConfig)."""
    pd = PushConfig()
    parser.add_argument("--no-push", action="store_true", help="no Web Push (the push routes answer 404)")
    parser.add_argument(
        "--vapid-key-file", default=None,
        help="the VAPID private key as a PEM file (created, mode 0600, when missing); default: kept in the database",
    )  # fmt: skip
    parser.add_argument(
        "--vapid-subject", default=pd.subject,
        help=f"the VAPID contact (RFC 8292 'sub': a mailto: or https: URL; default {pd.subject})",
    )  # fmt: skip
    parser.add_argument(
        "--push-interval", type=float, default=pd.interval,
        help=f"at most one push per device per this many seconds (default {pd.interval})",
    )  # fmt: skip
    parser.add_argument("--push-ttl", type=int, default=pd.ttl, help=f"push TTL in seconds (default {pd.ttl})")
    parser.add_argument(
        "--push-allow-http-loopback", action="store_true",
        help="TESTS ONLY: accept http://127.0.0.1:PORT push endpoints (a local fake push service)",
    )  # fmt: skip


def _add_http_options(parser: argparse.ArgumentParser) -> None:
    """HTTP parser, event loop, proxies, logging."""
    parser.add_argument("--http", default="auto", choices=["auto", "httptools", "h11"], help="HTTP parser (auto: httptools when installed)")
    parser.add_argument("--loop", default="auto", choices=["auto", "uvloop", "asyncio"], help="event loop (auto: uvloop when installed)")
    parser.add_argument(
        "--forwarded-allow-ips", default=None,
        help="trust X-Forwarded-For/-Proto from these proxy addresses (comma-separated, '*' for any); "
        "default: none, the client address is the TCP peer's",
    )  # fmt: skip
    parser.add_argument("--log-level", default="info", choices=["critical", "error", "warning", "info", "debug"])
    parser.add_argument("--no-access-log", action="store_true", help="do not log each request")


def _api_config(args: argparse.Namespace) -> ApiConfig:
    """The API's configuration from the parsed options."""
    return ApiConfig(
        rate_limit=args.rate_limit,
        rate_burst=args.rate_burst,
        address_rate_limit=args.address_rate_limit,
        address_rate_burst=args.address_rate_burst,
        limits=DeliveryLimits(
            **{field: getattr(args, field) for _, field, _ in _LIMIT_OPTIONS},
            claim_window_ms=max(1, round(args.claim_window * 1000)),
        ),
        body_timeout=args.body_timeout,
        max_pending=args.max_pending,
        max_pending_per_address=args.max_pending_per_address,
        poll_interval=args.poll_interval,
        push=PushConfig(
            enabled=not args.no_push,
            key_file=args.vapid_key_file,
            subject=args.vapid_subject,
            interval=max(0.0, args.push_interval),
            ttl=max(0, args.push_ttl),
            allow_http_loopback=args.push_allow_http_loopback,
        ),
    )


def _listen(host: str, port: int) -> socket.socket:
    """A TCP socket bound to ``host``:``port`` and listening (OSError when the address is not usable)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    # proto=IPPROTO_TCP matters: asyncio sets TCP_NODELAY on accepted connections only when the
    # listening socket says TCP, and without it each keep-alive answer waits ~40 ms (Nagle vs delayed ACK).
    sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError:
        sock.close()
        raise
    sock.listen(2048)  # connections queue from now on, even before uvicorn accepts them
    return sock


def _server(config: uvicorn.Config) -> uvicorn.Server:
    """uvicorn's server, whose shutdown first lets the open long polls answer.

    Otherwise each would hold its connection until the graceful shutdown time
    is over and then be cancelled mid-wait.
    """
    import uvicorn

    class Server(uvicorn.Server):
        async def shutdown(self, sockets: list[socket.socket] | None = None) -> None:
            api = getattr(getattr(self.config.app, "state", None), "api", None)
            if api is not None:
                api.begin_shutdown()
            await super().shutdown(sockets)

    return Server(config)


def _pick(choice: str, optional: str, fallback: str) -> str:
    """``auto``: the optional module when it is installed, else the fallback."""
    if choice != "auto":
        return choice
    return optional if importlib.util.find_spec(optional) is not None else fallback


if __name__ == "__main__":
    sys.exit(main())
