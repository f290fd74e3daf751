"""A hostile member against a real ``ping_server`` (issue 10, items 2 and 3): junk commits,
commits for another epoch or signed by someone else, and a pre-auth CBOR bomb.

Before, the server advanced a conversation's epoch on any envelope of kind Commit: one member
posting random bytes froze the group for good (every later Commit, including the one removing
the attacker, got 409 epoch_advanced) while the attacker kept reading. Now Ping clients send
handshake messages as PublicMessages with the new epoch's GroupInfo, and the server verifies
each Commit against the group's public state before it stores anything.
"""

from __future__ import annotations

import os
import time

import httpx
import pytest

from ping_core.clock import Hlc
from ping_core.errors import TransportError
from ping_core.message import MessageEnvelope, MessageKind
from ping_core.sync import SyncCursor

from .support import ClientFactory, Server


async def _chat(server: Server, clients: ClientFactory) -> tuple[object, object, object]:
    alice = await clients(server, "alice")
    eve = await clients(server, "eve")
    chat = await alice.create_conversation("chat", 1)
    await alice.add_members(chat, await alice.transport.claim_key_packages(eve.user_id()), 1, for_user=eve.user_id())
    for env in await eve.transport.fetch_welcomes():
        await eve.join_conversation(env, 1)
    return alice, eve, chat


@pytest.mark.parametrize("junk", ["random bytes", "an application message", "a replayed commit", "another epoch's commit"])
async def test_a_junk_commit_is_refused_with_nothing_stored_and_the_group_goes_on(
    server: Server, clients: ClientFactory, junk: str
) -> None:
    alice, eve, chat = await _chat(server, clients)
    group = eve._state.convs[chat].group
    log_before = await alice.transport.fetch_since(chat, SyncCursor(), 100)
    epoch = group.epoch
    if junk == "random bytes":
        payload, at = os.urandom(300), epoch
    elif junk == "an application message":
        payload, at = group.protect(b"not a commit"), epoch
    elif junk == "a replayed commit":
        (payload,) = [e.payload for e in log_before if e.kind is MessageKind.COMMIT][-1:]
        at = epoch
    else:
        staged = group.commit(force_path=True)
        payload, at = staged.message, epoch + 5
    envelope = MessageEnvelope(chat, at, MessageKind.COMMIT, eve.device_id(), 0, Hlc(int(time.time() * 1000), 0), payload)
    with pytest.raises(TransportError) as refused:
        await eve.transport.send(envelope)
    assert refused.value.code in ("invalid_commit", "epoch_advanced", "invalid_request")
    assert await alice.transport.fetch_since(chat, SyncCursor(), 100) == log_before  # nothing stored
    # The group is not frozen: Alice removes Eve, and Eve reads nothing after that.
    eve_leaf = next(m.leaf_index for m in alice.members(chat) if m.device_id == eve.device_id())
    await alice.remove_members(chat, [eve_leaf], 2)
    await alice.send(chat, b"after eve", 3)
    assert {m.device_id for m in alice.members(chat)} == {alice.device_id()}
    # Eve may read up to the Commit that removed her, nothing after it.
    served = await eve.transport.fetch_since(chat, eve._state.convs[chat].cursor, 100)
    assert served and served[-1].kind is MessageKind.COMMIT
    with pytest.raises(TransportError) as forbidden:
        await eve.transport.fetch_since(chat, SyncCursor(served[-1].seq), 100)
    assert forbidden.value.status == 403


async def test_a_commit_signed_by_a_non_member_is_refused(server: Server, clients: ClientFactory) -> None:
    """Mallory (not a member) posts a commit made in a group of her own under the chat's id."""
    alice, eve, chat = await _chat(server, clients)
    mallory = await clients(server, "mallory")
    with pytest.raises(TransportError) as refused:
        await mallory.transport.send(MessageEnvelope(chat, 1, MessageKind.COMMIT, mallory.device_id(), 0, Hlc(1, 0), os.urandom(64)))
    assert refused.value.status in (400, 403)
    await alice.send(chat, b"still fine", 2)
    assert [m.plaintext for m in await eve.sync_conversations(3)] == [b"still fine"]


def _head(major: int, arg: int) -> bytes:
    if arg < 24:
        return bytes([major << 5 | arg])
    for info, size in ((24, 1), (25, 2), (26, 4), (27, 8)):
        if arg < 1 << (8 * size):
            return bytes([major << 5 | info]) + arg.to_bytes(size, "big")
    raise ValueError(arg)


def _shared_value_bomb(width: int = 16, levels: int = 6, leaf: int = 1000) -> bytes:
    """A RegisterDevice-shaped body whose "info" expands to ``width ** levels`` copies of a
    ``leaf``-byte string with RFC 8746 shared values (tag 28 marks, tag 29 refers back)."""

    def text(t: str) -> bytes:
        return _head(3, len(t)) + t.encode()

    items = [_head(6, 28) + _head(2, leaf) + b"\x00" * leaf]
    for i in range(levels):
        items.append(_head(6, 28) + _head(4, width) + (_head(6, 29) + _head(0, i)) * width)
    info = _head(4, len(items)) + b"".join(items)
    return _head(5, 3) + text("v") + _head(0, 1) + text("info") + info + text("binding") + _head(5, 0)


async def test_a_cbor_bomb_is_refused_before_any_expansion(server: Server) -> None:
    """The shared-value body (about 1.4 KB, expanding to 16 GB) to ``POST /v1/devices``: before,
    it stalled the server's event loop for 11 s and ended in MemoryError. Now it is refused at
    once (the strict decoder refuses its first tag), and the server's memory does not move."""
    bomb = _shared_value_bomb()
    assert len(bomb) < 2000
    rss = server.rss_kib()
    async with httpx.AsyncClient(base_url=server.url, timeout=10) as http:
        started = time.monotonic()
        for _ in range(20):
            answer = await http.post("/v1/devices", content=bomb, headers={"content-type": "application/cbor"})
            assert 400 <= answer.status_code < 500
        assert time.monotonic() - started < 5
        assert (await http.get("/v1/accounts/" + "00" * 32 + "/devices")).status_code < 500  # still answering
    assert server.rss_kib() - rss < 20_000
