"""The SDK end to end in a few lines: pair, converse, add, rename, remove, restart."""

from __future__ import annotations

from .support import NOW, World, assert_agree, converse, pair

async def test_smoke() -> None:
    w = World()
    alice = await w.device("alice")
    bob = await w.device("bob")
    conv = await pair(w, alice, bob)
    assert_agree(conv, [alice, bob])
    await converse(conv, [alice, bob])
    carol = await w.device("carol")
    await alice.client.add_members(conv, [(carol.device_id, await carol.claim())], NOW)
    assert await carol.join_welcomes() == [conv]
    await bob.sync()
    assert_agree(conv, [alice, bob, carol])
    await converse(conv, [alice, bob, carol])
    await bob.client.set_conversation_name(conv, "renamed", NOW)
    await alice.sync()
    await carol.sync()
    assert_agree(conv, [alice, bob, carol])
    assert alice.client.list_conversations()[-1].name == "renamed"
    leaf = alice.client._state.convs[conv].leaves[carol.device_id]
    await alice.client.remove_members(conv, [leaf], NOW)
    await bob.sync()
    await carol.sync()
    assert_agree(conv, [alice, bob])
    await converse(conv, [alice, bob])
    await alice.restart()
    await bob.restart()
    await converse(conv, [alice, bob])
