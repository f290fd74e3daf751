"""``build_app``: the whole server (web client, health, delivery service API) over one database.

The API routes are answered by :class:`ping_server.asgi.PingApp` directly;
the rest (health, the web client, JSON 404s, the lifespan that opens and
closes the database) by the Starlette app of :func:`ping_server.app.create_app`.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from pathlib import Path

from starlette.applications import Starlette

from .api import Api, ApiConfig
from .app import create_app
from .asgi import PingApp
from .db import open_database

__all__ = ["build_app"]


def build_app(
    *,
    db: str | None = None,
    dist: Path | str | None = None,
    config: ApiConfig | None = None,
    sqlite_synchronous: str = "FULL",
    sqlite_batch: int = 32,
    sqlite_threaded: bool = False,
    sqlite_commit_thread: bool | None = None,
    pool_size: int = 8,
) -> PingApp:
    """The server app (``app.state`` holds ``api``, ``dist_ready``, ``db_kind``). ``db``: a SQLite
    file path, a ``postgresql://`` URL, or None for a private in-memory SQLite database (gone when
    the process ends). The database is opened (and its schema created or migrated) here, so a bad
    ``db`` fails at once; it is closed at shutdown."""
    database = open_database(
        db,
        sqlite_synchronous=sqlite_synchronous,
        sqlite_batch=sqlite_batch,
        sqlite_threaded=sqlite_threaded,
        sqlite_commit_thread=sqlite_commit_thread,
        pool_size=pool_size,
    )
    api = Api(database, config)

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        database.on_append(api.notifier.notify)  # other processes' appends wake our long polls
        pruner = asyncio.create_task(api.prune_nonces_forever())
        await api.push.start()  # the VAPID key: loaded, or made once and kept
        try:
            yield
        finally:
            pruner.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await pruner
            await api.push.close()
            await database.close()

    shell = create_app(dist=dist, db=db, state={"api": api}, lifespan=lifespan)
    shell.state.db_kind = database.kind
    return PingApp(api.router(), shell, shell.state)
