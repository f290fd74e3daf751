"""Fixtures for the delivery-service tests: real server processes (uvicorn) on free ports, over
SQLite files and PostgreSQL databases, and direct database inspection.

PostgreSQL: ``PING_TEST_POSTGRES`` is an admin URL of a server where the
role may create databases (default ``postgresql://ping:ping@127.0.0.1:5432/postgres``,
what ``.ci/run`` sets up). Each test session creates a fresh database and
drops it at the end. Without a reachable server the PostgreSQL tests are
skipped, unless ``PING_REQUIRE_POSTGRES=1`` (CI), which makes them fail.
"""

from __future__ import annotations

import os
import secrets
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import pytest
from serverproc import Inspector, ServerProcess

DEFAULT_PG_ADMIN = "postgresql://ping:ping@127.0.0.1:5432/postgres"
# The session's servers: no rate limits and no KeyPackage claim limits (tests that need limits
# start servers of their own); every other limit at its default.
UNLIMITED = ("--rate-limit", "0", "--address-rate-limit", "0", "--claims-per-claimer", "0", "--claims-per-device", "0")


def _pg_admin() -> str:
    return os.environ.get("PING_TEST_POSTGRES", DEFAULT_PG_ADMIN)


def _with_dbname(url: str, name: str) -> str:
    parts = urlsplit(url)
    return urlunsplit((parts.scheme, parts.netloc, "/" + name, parts.query, parts.fragment))


@pytest.fixture(scope="session")
def postgres_db() -> Iterator[str]:
    """A fresh PostgreSQL database for this session (dropped at the end)."""
    try:
        import psycopg
    except ImportError:
        if os.environ.get("PING_REQUIRE_POSTGRES") == "1":
            raise
        pytest.skip("psycopg is not installed (pip install 'ping-core[postgres]')")
    admin = _pg_admin()
    try:
        conn = psycopg.connect(admin, autocommit=True, connect_timeout=5)
    except psycopg.Error as exc:
        if os.environ.get("PING_REQUIRE_POSTGRES") == "1":
            raise
        pytest.skip(f"no PostgreSQL at PING_TEST_POSTGRES ({type(exc).__name__}); .ci/run starts one")
    name = f"ping_test_{secrets.token_hex(6)}"
    conn.execute(f"CREATE DATABASE {name}")
    try:
        yield _with_dbname(admin, name)
    finally:
        conn.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
        conn.close()


@pytest.fixture(scope="session")
def server_logs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("ping-server")


@pytest.fixture(scope="session")
def sqlite_server(server_logs: Path) -> Iterator[ServerProcess]:
    server = ServerProcess(str(server_logs / "ping.sqlite"), *UNLIMITED, log_dir=server_logs)
    yield server
    server.stop()


@pytest.fixture(scope="session")
def postgres_server(postgres_db: str, server_logs: Path) -> Iterator[ServerProcess]:
    server = ServerProcess(postgres_db, *UNLIMITED, "--poll-interval", "0.1", log_dir=server_logs)
    yield server
    server.stop()


@pytest.fixture(scope="session")
def postgres_server_2(postgres_db: str, postgres_server: ServerProcess, server_logs: Path) -> Iterator[ServerProcess]:
    """A second server process on the SAME PostgreSQL database."""
    server = ServerProcess(postgres_db, *UNLIMITED, "--poll-interval", "0.1", log_dir=server_logs)
    yield server
    server.stop()


@pytest.fixture(params=["sqlite", "postgres"])
def server(request: pytest.FixtureRequest) -> ServerProcess:
    """The server process of each database (parametrized)."""
    fixture = "sqlite_server" if request.param == "sqlite" else "postgres_server"
    result: ServerProcess = request.getfixturevalue(fixture)
    return result


@pytest.fixture
def inspector(server: ServerProcess) -> Inspector:
    assert server.db is not None
    return Inspector(server.db)
