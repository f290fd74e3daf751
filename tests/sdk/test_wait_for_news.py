"""``MessagingClient.wait_for_news``: one long poll over every open conversation and the Welcome inbox."""

from __future__ import annotations

import asyncio
import time

import pytest

import ping_core.syncer
from ping_core.errors import InvalidInput
from ping_core.sync import News
from ping_core.transport.base import MAX_FETCH_WAIT_MS

from .support import NOW, Device, World, pair


async def _quiet(*devices: Device) -> None:
    """Every device synced and its inbox empty: nothing is news."""
    for d in devices:
        await d.join_welcomes()
        await d.sync()
        assert not await d.client.wait_for_news(0)


async def _later(delay: float, step: object) -> None:
    await asyncio.sleep(delay)
    await step  # type: ignore[misc]


async def test_news_at_once_then_nothing_after_the_sync() -> None:
    w = World()
    a, b = await w.device("alice"), await w.device("bob")
    first, second = await pair(w, a, b), await pair(w, a, b, "second")
    await _quiet(a, b)
    await a.client.send(second, b"hello", NOW)
    start = time.monotonic()
    news = await b.client.wait_for_news(5000)
    assert time.monotonic() - start < 1
    assert news == News((second,), (), False) and news
    assert b.client.sync_position(second) < w.service.log(second)[-1].seq
    assert [m.plaintext for m in await b.sync()] == [b"hello"]
    assert not await b.client.wait_for_news(0)
    assert first in [m.id for m in b.client.list_conversations()]


async def test_waits_for_a_message_in_any_conversation() -> None:
    w = World()
    a, b = await w.device("alice"), await w.device("bob")
    convs = [await pair(w, a, b, f"c{i}") for i in range(3)]
    await _quiet(a, b)
    poster = asyncio.create_task(_later(0.1, a.client.send(convs[2], b"late", NOW)))
    news = await b.client.wait_for_news(10_000)
    await poster
    assert news.conversations == (convs[2],) and not news.welcomes


async def test_waits_for_a_welcome() -> None:
    w = World()
    a, c = await w.device("alice"), await w.device("carol")
    await _quiet(a, c)
    conv = await a.client.create_conversation("new", NOW)
    kp = await c.claim()
    poster = asyncio.create_task(_later(0.1, a.client.add_members(conv, [(c.device_id, kp)], NOW)))
    news = await c.client.wait_for_news(10_000)
    await poster
    assert news == News((), (), True)
    assert await c.join_welcomes() == [conv]
    assert (await c.client.wait_for_news(0)).conversations == (conv,)  # its log, from before the join
    await c.sync()
    assert not await c.client.wait_for_news(0)


async def test_deadline_and_bad_timeouts() -> None:
    w = World()
    a = await w.device("alice")
    await _quiet(a)
    start = time.monotonic()
    assert await a.client.wait_for_news(200) == News()
    assert time.monotonic() - start >= 0.19
    for bad in (-1, MAX_FETCH_WAIT_MS + 1, 1.5, "10"):
        with pytest.raises(InvalidInput):
            await a.client.wait_for_news(bad)  # type: ignore[arg-type]


async def test_a_removed_conversation_is_news_then_reported_once() -> None:
    w = World()
    a, b = await w.device("alice"), await w.device("bob")
    conv = await pair(w, a, b)
    await _quiet(a, b)
    leaf = next(m.leaf_index for m in a.client.members(conv) if m.device_id == b.device_id)
    await a.client.remove_members(conv, [leaf], NOW)
    assert (await b.client.wait_for_news(5000)).conversations == (conv,)  # the removing Commit
    await b.sync()
    assert await b.client.wait_for_news(5000) == News((), (conv,), False)
    start = time.monotonic()
    assert await b.client.wait_for_news(200) == News()  # not again: the loop does not spin on it
    assert time.monotonic() - start >= 0.19
    # A Welcome may readmit it: then it is watched again.
    await a.client.add_members(conv, [(b.device_id, await b.claim())], NOW)
    assert (await b.client.wait_for_news(5000)).welcomes
    assert (await b.client.wait_for_news(0)).forbidden == ()


async def test_more_conversations_than_one_watch_takes(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(ping_core.syncer, "MAX_WATCH_CONVERSATIONS", 1)
    w = World()
    a, b = await w.device("alice"), await w.device("bob")
    convs = [await pair(w, a, b, f"c{i}") for i in range(2)]
    await _quiet(a, b)
    watches = len([c for c in w.service.calls if c[0] == "watch"])
    poster = asyncio.create_task(_later(0.1, a.client.send(convs[1], b"late", NOW)))
    news = await b.client.wait_for_news(10_000)
    await poster
    assert news.conversations == (convs[1],)
    assert len([c for c in w.service.calls if c[0] == "watch"]) - watches == 3  # b's device group and two chats
