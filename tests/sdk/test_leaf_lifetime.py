"""Ping's maximum total leaf lifetime (RFC 9420 §7.2), ``MAX_LEAF_LIFETIME_S``.

Every KeyPackage Ping makes fits it; a KeyPackage that spans longer (here ten
years) cannot be added, a received proposal or commit that adds one is refused
and changes nothing, and a Welcome into a tree holding one is refused.
"""

from __future__ import annotations

import dataclasses
import time


from ping_core.conversation_name import PING_CAPABILITIES
from ping_core.client import MAX_LEAF_LIFETIME_S, AdmitChatStatus
from ping_core.clock import Hlc
from ping_core.errors import MlsError, MlsReason
from reasons import raises_reason
from ping_core.ids import ConversationId
from ping_core.message import MessageEnvelope, MessageKind
from ping_core.mls.tls import decode_exact
from ping_core.mls.crypto import default_provider
from ping_core.mls.group import CLOCK_SKEW_S, DEFAULT_LIFETIME_S, Group, Signer, generate_key_package
from ping_core.mls.structs import KeyPackage, MLSMessage

from .support import NOW, Device, World, pair

crypto = default_provider()
TEN_YEARS = 10 * 365 * 24 * 3600


def _long_lived(d: Device) -> bytes:
    """A KeyPackage of ``d`` (its own device key: the DeviceId check passes) valid for ten years."""
    return generate_key_package(crypto, d.client._state.signer, lifetime_s=TEN_YEARS, now=int(time.time()), capabilities=PING_CAPABILITIES).message()


def _snapshot(d: Device, conv: ConversationId) -> tuple[object, ...]:
    group = d.client._state.convs[conv].group
    assert group is not None
    return dict(d.client._state.store.items()), d.blobs.snapshot(), group.to_bytes()


def _group_of(d: Device, conv: ConversationId) -> Group:
    """A copy of ``d``'s group with no maximum: what a client without Ping's rule would send from."""
    group = d.client._state.convs[conv].group
    assert group is not None
    return Group.from_bytes(crypto, group.to_bytes(), clock=time.time)


async def test_ping_key_packages_fit_the_limit() -> None:
    w = World()
    a = await w.device("alice")
    assert MAX_LEAF_LIFETIME_S == DEFAULT_LIFETIME_S + CLOCK_SKEW_S == 90 * 24 * 3600 + 3600
    for last_resort in (False, True):
        t0 = int(time.time())
        body = decode_exact(MLSMessage, await a.client.fresh_key_package(last_resort=last_resort)).body
        t1 = int(time.time())
        assert isinstance(body, KeyPackage) and body.leaf_node.lifetime is not None
        lt = body.leaf_node.lifetime
        assert lt.not_after - lt.not_before == MAX_LEAF_LIFETIME_S  # exactly the limit, so it fits
        # Backdated by the skew margin on the wall clock, never dated ahead.
        assert t0 - CLOCK_SKEW_S <= lt.not_before <= t1 - CLOCK_SKEW_S
    conv = await a.client.create_conversation("solo", NOW)
    group = a.client._state.convs[conv].group
    assert group is not None and group.max_lifetime_s == MAX_LEAF_LIFETIME_S


async def test_a_ten_year_key_package_cannot_be_added() -> None:
    w = World()
    a, b, m = await w.device("alice"), await w.device("bob"), await w.device("mallory")
    conv = await pair(w, a, b)
    await m.raw_transport.publish_key_packages([_long_lived(m)])
    claimed = await a.client.transport.claim_key_packages(m.client.user_id())
    assert [d for d, _ in claimed] == [m.device_id]
    before, log_len = _snapshot(a, conv), len(w.service.log(conv))
    # The message names the refused leaf (the reason cannot).
    with raises_reason(MlsReason.LIFETIME_TOO_LONG, match="^the KeyPackage's leaf: "):
        await a.client.add_members(conv, claimed, NOW)
    assert _snapshot(a, conv) == before and len(w.service.log(conv)) == log_len
    # admit_device_to_chats treats it as any other invalid KeyPackage: that chat Failed.
    (outcome,) = await a.client.admit_device_to_chats(m.device_id, [(conv, _long_lived(m))], NOW)
    assert isinstance(outcome.status, AdmitChatStatus.Failed) and isinstance(outcome.status.exception, MlsError)
    assert "spans" in outcome.status.error
    assert _snapshot(a, conv) == before
    # An ordinary KeyPackage of the same device is fine.
    await a.client.add_members(conv, [(m.device_id, await m.claim())], NOW)
    assert await m.join_welcomes() == [conv]


async def test_received_commit_or_proposal_adding_one_is_refused_and_changes_nothing() -> None:
    w = World()
    a, b, m = await w.device("alice"), await w.device("bob"), await w.device("mallory")
    conv = await pair(w, a, b)
    rogue = _group_of(a, conv)  # alice's device, as a client without the limit
    staged = rogue.commit(add=[_long_lived(m)])
    assert staged.message is not None
    commit = MessageEnvelope(conv, rogue.epoch, MessageKind.COMMIT, a.device_id, 0, Hlc.ZERO, staged.message)
    proposal = dataclasses.replace(
        commit, kind=MessageKind.PROPOSAL, payload=_group_of(a, conv).propose_add(_long_lived(m)).message
    )
    for env in (commit, proposal):
        before = _snapshot(b, conv)
        with raises_reason(MlsReason.LIFETIME_TOO_LONG):
            await b.client.process_envelope(env, NOW)
        assert _snapshot(b, conv) == before
    # Through the log too: sync skips the commit and bob stays at his epoch.
    epoch = b.client._state.convs[conv].group.epoch  # type: ignore[union-attr]
    await a.raw_transport.set_next_commit_group_info(conv, rogue.group_info_after(staged))
    await a.raw_transport.send(commit)  # the service does not check lifetimes (members do)
    await b.sync()
    assert b.client._state.convs[conv].group.epoch == epoch  # type: ignore[union-attr]
    assert len(b.client.members(conv)) == 2


async def test_a_welcome_into_a_tree_with_a_long_lived_leaf_is_refused() -> None:
    w = World()
    b, m = await w.device("bob"), await w.device("mallory")
    conv_id = ConversationId.new(NOW)
    outsider = Group.create(crypto, Signer.generate(crypto, b"someone"), group_id=conv_id.value, clock=time.time)  # no limit
    outsider.merge_staged_commit(outsider.commit(add=[_long_lived(m)]))
    staged = outsider.commit(add=[await b.claim()])
    outsider.merge_staged_commit(staged)
    assert staged.welcome is not None
    env = MessageEnvelope(conv_id, outsider.epoch, MessageKind.WELCOME, m.device_id, 0, Hlc.ZERO, staged.welcome)
    before = dict(b.client._state.store.items())
    # The message names the refused leaf (the reason cannot).
    with raises_reason(MlsReason.LIFETIME_TOO_LONG, match="^leaf 1: "):
        await b.client.join_conversation(env, NOW)
    assert dict(b.client._state.store.items()) == before  # nothing joined, the KeyPackage's keys kept
    assert conv_id not in b.client._state.convs


async def test_loaded_groups_carry_the_limit() -> None:
    w = World()
    a, b = await w.device("alice"), await w.device("bob")
    conv = await pair(w, a, b)
    for d in (a, b):
        await d.restart()
        group = d.client._state.convs[conv].group
        assert group is not None and group.max_lifetime_s == MAX_LEAF_LIFETIME_S
