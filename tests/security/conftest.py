"""Fixtures for the attack suite: a real ``ping_server`` process on loopback (SQLite file) and
unmodified clients made by ``ping_core.connect``.

Each test here plays an attacker (a hostile member, a stranger, a hostile
network in front of the server) against the real server and real clients;
loops are bounded and every wait has a deadline.
"""

from __future__ import annotations

import secrets
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path

import pytest

from ping_core.client import MessagingClient
from ping_core.connect import connect

from .support import ClientFactory, Server


@pytest.fixture
def server_factory(tmp_path: Path) -> Iterator[Callable[..., Server]]:
    """Start servers with extra ``ping_server`` options; all are stopped at the end of the test."""
    started: list[Server] = []

    def start(*extra: str) -> Server:
        server = Server(tmp_path, *extra)
        started.append(server)
        return server

    yield start
    for server in started:
        server.stop()


@pytest.fixture
def server(server_factory: Callable[..., Server]) -> Server:
    """A server with rate limits off (tests that need limits start their own)."""
    return server_factory("--rate-limit", "0", "--address-rate-limit", "0")


@pytest.fixture
async def clients(tmp_path: Path) -> AsyncIterator[ClientFactory]:
    """``await clients(server, "alice")``: an unmodified client (``ping_core.connect``) with its own
    state folder; extra keyword arguments go to ``connect``. Transports are closed at the end."""
    made: list[MessagingClient] = []

    async def make(server: Server, label: str, **kwargs: object) -> MessagingClient:
        folder = tmp_path / f"client-{label}-{secrets.token_hex(3)}"
        client = await connect(server.url, folder, label, **kwargs)  # type: ignore[arg-type]
        made.append(client)
        return client

    yield make
    for client in made:
        await client.transport.aclose()  # type: ignore[attr-defined]

