"""``python -m ping_server --host 127.0.0.1 --port 8080 [--db PATH] [--dist DIR]``."""

from __future__ import annotations

import argparse
import sys

from .app import DEFAULT_DIST, create_app


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m ping_server", description="Ping's delivery service and web client.")
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1)")
    parser.add_argument("--port", type=int, default=8080, help="port (default 8080; 0 picks a free one)")
    parser.add_argument("--db", default=None, help="database file (default: in memory)")
    parser.add_argument("--dist", default=str(DEFAULT_DIST), help="built web client (python build.py)")
    parser.add_argument("--log-level", default="info", choices=["critical", "error", "warning", "info", "debug"])
    args = parser.parse_args(argv)

    import uvicorn

    app = create_app(dist=args.dist, db=args.db)
    if not app.state.dist_ready:
        print(f"ping_server: no web client in {args.dist} (run `python build.py`); serving the API only",
              file=sys.stderr)  # fmt: skip
    uvicorn.run(app, host=args.host, port=args.port, log_level=args.log_level)
    return 0


if __name__ == "__main__":
    sys.exit(main())
