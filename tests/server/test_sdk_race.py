"""Two members commit for the same epoch at once through a real server (MessagingClient over
HttpTransport): exactly one wins, the other's client rolls back, retries and succeeds, and every
member ends on the same epoch and the same exported secret."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

from serverproc import ServerProcess

from ping_core.connect import connect
from ping_core.errors import TransportError
from ping_core.ids import ConversationId

NOW = 1_700_000_000_000


async def _join(client: Any) -> None:
    welcomes = await client.transport.fetch_welcomes()
    for w in welcomes:
        await client.join_conversation(w, NOW)
    if welcomes:
        await client.transport.ack_welcomes(welcomes[-1].seq)


def _epoch(client: Any, conv: ConversationId) -> int:
    (meta,) = [m for m in client.list_conversations() if m.id == conv]
    return int(meta.epoch)


async def test_concurrent_renames_one_wins_the_other_retries(server: ServerProcess, tmp_path: Path) -> None:
    clients = [await connect(server.url, tmp_path / name, name, key_packages=2, now_ms=NOW) for name in ("a", "b", "c")]
    a, b, c = clients
    try:
        conv = await a.create_conversation("race", NOW)
        for other in (b, c):
            await a.add_members(conv, await a.transport.claim_key_packages(other.user_id()), NOW)
            await _join(other)
        await b.sync_conversations(NOW)
        await c.sync_conversations(NOW)
        for round_ in range(5):
            start = _epoch(a, conv)
            assert _epoch(b, conv) == start
            results = await asyncio.gather(
                a.set_conversation_name(conv, f"a{round_}", NOW), b.set_conversation_name(conv, f"b{round_}", NOW), return_exceptions=True
            )
            losers = [(x, r) for x, r in zip((a, b), results) if isinstance(r, BaseException)]
            assert len(losers) == 1, results
            loser, error = losers[0]
            assert isinstance(error, TransportError) and (error.status, error.code) == (409, "epoch_advanced")
            # The loser rolled back: it catches up, then its retry wins the next epoch.
            await loser.sync_conversations(NOW)
            assert _epoch(loser, conv) == start + 1
            await loser.set_conversation_name(conv, f"retry{round_}", NOW)
            for x in clients:
                await x.sync_conversations(NOW)
            assert {_epoch(x, conv) for x in clients} == {start + 2}
            secrets = {x.export_conversation_secret(conv, "race", b"", 32) for x in clients}
            assert len(secrets) == 1
            names = {next(m.name for m in x.list_conversations() if m.id == conv) for x in clients}
            assert names == {f"retry{round_}"}
    finally:
        for x in clients:
            await x.transport.aclose()  # type: ignore[attr-defined]
