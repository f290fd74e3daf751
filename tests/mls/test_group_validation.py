"""Every invalid message is refused with a clear MlsError and changes nothing
(RFC 9420 §12.1-§12.4.3): the group's to_bytes() is the same afterwards."""

from __future__ import annotations

import time

import dataclasses
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ping_core.errors import InvalidSignature, MlsError, PingError, MlsReason
from ping_core.mls.tls import encode
from ping_core.mls.group import Group
from ping_core.mls.structs import (
    Add,
    Extension,
    ExternalInit,
    ExternalSender,
    ExternalSenders,
    GroupContextExtensions,
    LeafNodeSource,
    PreSharedKey,
    PreSharedKeyID,
    PublicMessage,
    ReInit,
    Remove,
    ResumptionPSKUsage,
    Update,
)

from test_group_support import (
    agree,
    app_data,
    commit_all,
    crypto,
    forge_commit,
    forge_external_commit,
    forge_proposal,
    key_package,
    lenient_sender,
    make_group,
    public_body,
    reframe,
    signer,
)
from reasons import raises_reason


def refused(g: Group, message: bytes, reason: MlsReason | None = None, exc: type[MlsError] = MlsError) -> None:
    """``g`` refuses ``message`` (an ``exc`` of ``reason``, when given) and stays byte-identical."""
    before = g.to_bytes()
    with pytest.raises(exc) as info:
        g.process_message(message)
    assert reason is None or info.value.reason is reason, info.value
    assert g.to_bytes() == before


@pytest.fixture
def trio() -> list[Group]:
    groups = make_group(3)
    commit_all(groups[0], groups)  # parents populated, epoch 2
    return groups


# -- framing --------------------------------------------------------------------


def test_wrong_group_and_wrong_epoch(trio: list[Group]) -> None:
    a, b, _ = trio
    refused(b, forge_commit(a, [], group_id=b"another group"), MlsReason.WRONG_GROUP)
    refused(b, forge_commit(a, [], epoch=a.epoch + 1), MlsReason.WRONG_EPOCH)
    refused(b, forge_commit(a, [], epoch=a.epoch - 1), MlsReason.WRONG_EPOCH)
    refused(b, b"\x00\x01\x00\x03" + b"\x00", None)  # not a group message (and malformed)
    refused(b, b"\x00\x02\x00\x01", None)  # unknown version


def test_bad_signature_membership_tag_and_confirmation_tag(trio: list[Group]) -> None:
    a, b, c = trio
    staged = a.commit(remove=[2], encrypt=False)
    body = public_body(staged.message or b"")
    sig = bytearray(body.auth.signature)
    sig[0] ^= 1
    bad_sig = dataclasses.replace(body, auth=dataclasses.replace(body.auth, signature=bytes(sig)))
    refused(b, reframe(b, bad_sig), None, InvalidSignature)
    bad_mt = PublicMessage(body.content, body.auth, bytes(32))
    refused(b, b"\x00\x01\x00\x01" + encode(bad_mt), MlsReason.BAD_TAG)
    tag = bytearray(body.auth.confirmation_tag or b"")
    tag[3] ^= 0x80
    bad_tag = dataclasses.replace(body, auth=dataclasses.replace(body.auth, confirmation_tag=bytes(tag)))
    refused(b, reframe(b, bad_tag), MlsReason.BAD_TAG)
    # The genuine commit still applies afterwards.
    a.merge_staged_commit(staged)
    b.process_message(staged.message or b"")
    agree([a, b])


def test_private_message_tampering(trio: list[Group]) -> None:
    a, b, _ = trio
    msg = a.protect(b"payload")
    for i in (6, 20, len(msg) // 2, len(msg) - 1):
        t = bytearray(msg)
        t[i] ^= 0x01
        refused(b, bytes(t))
    refused(b, msg + b"\x00", MlsReason.MALFORMED)
    assert app_data(b.process_message(msg)) == b"payload"
    refused(b, msg, MlsReason.REPLAY)


# -- proposal lists (§12.2) -----------------------------------------------------


def test_duplicate_adds(trio: list[Group]) -> None:
    a, b, _ = trio
    kp = key_package(signer("dave")).key_package
    refused(b, forge_commit(a, [Add(kp), Add(kp)]), MlsReason.BAD_PROPOSAL)


def test_add_of_an_existing_member(trio: list[Group]) -> None:
    a, b, _ = trio
    kp = key_package(b.signer).key_package
    refused(b, forge_commit(a, [Add(kp)]), MlsReason.BAD_PROPOSAL)
    # ... unless that member is removed in the same commit (then only the forged
    # confirmation tag is wrong).
    refused(b, forge_commit(a, [Remove(1), Add(kp)]), MlsReason.BAD_COMMIT)


def test_removing_a_blank_leaf_or_the_committer(trio: list[Group]) -> None:
    a, b, _ = trio
    refused(b, forge_commit(a, [Remove(7)]), MlsReason.BAD_PROPOSAL)
    refused(b, forge_commit(a, [Remove(0)]), MlsReason.BAD_PROPOSAL)
    refused(b, forge_commit(a, [Remove(2), Remove(2)]), MlsReason.BAD_PROPOSAL)


def test_update_by_the_committer(trio: list[Group]) -> None:
    a, b, _ = trio
    leaf = a.member(0)
    assert leaf is not None
    refused(b, forge_commit(a, [Update(a.state.current.own_leaf_node())]), MlsReason.BAD_PROPOSAL)


def test_update_and_remove_of_the_same_leaf(trio: list[Group]) -> None:
    a, b, c = trio
    p = c.propose_update()
    for g in (a, b):
        g.process_message(p.message)
    refused(b, forge_commit(a, [p.ref, Remove(2)]), MlsReason.BAD_PROPOSAL)


def test_a_member_keeps_its_credential(trio: list[Group]) -> None:
    # §5.3.1: a replacement leaf must present a valid successor credential;
    # Ping's policy is the same credential. A member may not rename itself
    # into someone else by an Update or by its commit's path leaf.
    from ping_core.mls.primitives import sign_with_label
    from ping_core.mls.structs import Credential, LeafNode
    from ping_core.mls.tree.treekem import commit_leaf_maker

    a, b, c = trio
    mallory = Credential.basic(b"mallory")
    own = c.state.current.own_leaf_node()
    leaf = dataclasses.replace(
        own, encryption_key=crypto.dh_keygen()[1], credential=mallory, leaf_node_source=LeafNodeSource.UPDATE,
        lifetime=None, parent_hash=None,
    )
    tbs = leaf.tbs(c.group_id, c.own_leaf_index)
    leaf = dataclasses.replace(leaf, signature=sign_with_label(crypto, c.signer.private_key, b"LeafNodeTBS", tbs))
    assert isinstance(leaf, LeafNode)
    refused(b, forge_proposal(c, Update(leaf)), MlsReason.BAD_PROPOSAL)
    # The same leaf with c's own credential is a valid Update.
    honest = c.propose_update()
    assert b.process_message(honest.message)

    def renamed(crypto_: Any, base: LeafNode, *args: Any) -> Any:
        return commit_leaf_maker(crypto_, dataclasses.replace(base, credential=mallory), *args)

    with lenient_sender(commit_leaf_maker=renamed):
        forged = a.commit(include_pending=False, force_path=True)
    assert forged.message is not None
    refused(b, forged.message, MlsReason.BAD_PROPOSAL)
    a.discard_staged_commit()
    commit_all(a, [a, b, c], include_pending=False)  # an honest path is still fine


def test_commit_without_required_path(trio: list[Group]) -> None:
    a, b, _ = trio
    refused(b, forge_commit(a, [Remove(2)]), MlsReason.BAD_COMMIT)
    refused(b, forge_commit(a, []), MlsReason.BAD_COMMIT)
    refused(b, forge_commit(a, [GroupContextExtensions(())]), MlsReason.BAD_COMMIT)


def test_group_context_extensions_rules(trio: list[Group]) -> None:
    a, b, _ = trio
    refused(b, forge_commit(a, [GroupContextExtensions(()), GroupContextExtensions(())]), MlsReason.BAD_PROPOSAL)
    unsupported = Extension(0xFF00, b"x")
    refused(b, forge_proposal(a, GroupContextExtensions((unsupported,))), MlsReason.UNSUPPORTED)
    refused(b, forge_proposal(a, GroupContextExtensions((Extension(2, b""),))), MlsReason.BAD_PROPOSAL)
    dup = Extension.of(ExternalSenders(()))
    refused(b, forge_proposal(a, GroupContextExtensions((dup, dup))), MlsReason.BAD_PROPOSAL)


def test_reinit_with_other_proposals_and_external_init(trio: list[Group]) -> None:
    a, b, _ = trio
    reinit = ReInit(group_id=b"new", cipher_suite=1)
    refused(b, forge_commit(a, [reinit, Remove(2)]), MlsReason.BAD_PROPOSAL)
    refused(b, forge_commit(a, [ExternalInit(bytes(32))]), MlsReason.BAD_PROPOSAL)
    refused(b, forge_proposal(a, ExternalInit(bytes(32))), MlsReason.BAD_PROPOSAL)
    refused(b, forge_proposal(a, ReInit(group_id=b"x", version=0, cipher_suite=1)), MlsReason.BAD_PROPOSAL)


def test_psk_rules(trio: list[Group]) -> None:
    a, b, _ = trio
    short = PreSharedKeyID.external(b"id", b"short")
    refused(b, forge_commit(a, [PreSharedKey(short)]), MlsReason.BAD_PROPOSAL)
    refused(b, forge_proposal(a, PreSharedKey(short)), MlsReason.BAD_PROPOSAL)
    reinit = PreSharedKeyID.resumption(ResumptionPSKUsage.REINIT, a.group_id, 1, bytes(32))
    refused(b, forge_proposal(a, PreSharedKey(reinit)), MlsReason.BAD_PROPOSAL)
    unknown = PreSharedKeyID.external(b"nobody knows", bytes(32))
    refused(b, forge_commit(a, [PreSharedKey(unknown)]), MlsReason.UNKNOWN_PSK)
    same = PreSharedKeyID.external(b"k", bytes(32))
    refused(b, forge_commit(a, [PreSharedKey(same), PreSharedKey(same)]), MlsReason.BAD_PROPOSAL)


def test_unknown_proposal_reference(trio: list[Group]) -> None:
    a, b, _ = trio
    refused(b, forge_commit(a, [bytes(32)]), MlsReason.BAD_COMMIT)


# -- KeyPackages (§10.1) --------------------------------------------------------


def test_invalid_key_packages(trio: list[Group]) -> None:
    a, b, _ = trio
    kp = key_package(signer("dave")).key_package
    bad_sig = dataclasses.replace(kp, signature=bytes(64))
    refused(b, forge_commit(a, [Add(bad_sig)]), None, InvalidSignature)
    refused(b, forge_proposal(a, Add(bad_sig)), None, InvalidSignature)
    other_suite = dataclasses.replace(kp, cipher_suite=2)
    refused(b, forge_commit(a, [Add(other_suite)]), MlsReason.BAD_KEY_PACKAGE)
    expired = key_package(signer("erin"), now=1000, lifetime_s=10).key_package
    refused(b, forge_commit(a, [Add(expired)]), MlsReason.BAD_LIFETIME)
    same_keys = dataclasses.replace(kp, init_key=kp.leaf_node.encryption_key)
    refused(b, forge_commit(a, [Add(same_keys)]), MlsReason.BAD_KEY_PACKAGE)
    leaf_bad = dataclasses.replace(kp, leaf_node=dataclasses.replace(kp.leaf_node, signature=bytes(64)))
    refused(b, forge_commit(a, [Add(leaf_bad)]), None, MlsError)
    # The committer refuses them too, before anything is sent.
    before = a.to_bytes()
    with raises_reason(MlsReason.BAD_LIFETIME):
        a.commit(add=[expired])
    with raises_reason(MlsReason.BAD_PROPOSAL):
        a.commit(add=[kp, kp])
    assert a.to_bytes() == before


def test_required_capabilities(trio: list[Group]) -> None:
    from ping_core.mls.structs import Capabilities, RequiredCapabilities

    a, b, c = trio
    need = Extension.of(RequiredCapabilities(extension_types=(0xF0A1,)))
    commit_all(a, [a, b, c], extensions=[need])
    plain = key_package(signer("dave"), capabilities=Capabilities(extensions=()))
    with raises_reason(MlsReason.UNSUPPORTED):
        a.commit(add=[plain.message()])
    refused(b, forge_commit(a, [Add(plain.key_package)]), MlsReason.UNSUPPORTED)
    ok = key_package(signer("erin"))
    commit_all(a, [a, b, c], add=[ok.message()])


def test_leaf_extensions_of_default_types_need_not_be_listed(trio: list[Group]) -> None:
    # §7.2: default extension types (application_id, ...) are never listed in
    # capabilities, so a leaf may carry one unlisted; a non-default one must be
    # listed. KeyPackage generation, standalone validation and Add agree.
    from ping_core.mls.group import validate_key_package
    from ping_core.mls.structs import ApplicationId

    a, b, c = trio
    app_id = Extension.of(ApplicationId(b"device 7"))
    kb = key_package(signer("dave"), leaf_extensions=(app_id,))
    assert 1 not in kb.key_package.leaf_node.capabilities.extensions
    validate_key_package(crypto, kb.message(), now=int(time.time()))
    commit_all(a, [a, b, c], add=[kb.message()])
    with raises_reason(MlsReason.BAD_LEAF):
        key_package(signer("erin"), leaf_extensions=(Extension(0xFF00, b""),))


# -- senders --------------------------------------------------------------------


def test_sender_authorisation(trio: list[Group]) -> None:
    from test_group import _external_proposal

    from ping_core.mls.structs import Sender

    a, b, _ = trio
    kp = key_package(signer("dave")).key_package
    # No external_senders extension: an external sender is refused.
    server = signer("server")
    refused(b, _external_proposal(b.group_id, b.epoch, Sender.external(0), Remove(1), server.private_key), MlsReason.UNKNOWN_SENDER)
    # A new member may only propose adding itself.
    refused(b, _external_proposal(b.group_id, b.epoch, Sender.new_member_proposal(), Remove(1), server.private_key), None)
    # An external sender may not send Update.
    ext = Extension.of(ExternalSenders((ExternalSender(server.public_key, server.credential),)))
    commit_all(a, trio, extensions=[ext])
    upd = Update(b.state.current.own_leaf_node())
    refused(b, _external_proposal(b.group_id, b.epoch, Sender.external(0), upd, server.private_key), MlsReason.SENDER_NOT_ALLOWED)
    assert kp


def test_external_commit_rules(trio: list[Group]) -> None:
    a, b, _ = trio
    eve = signer("eve")
    refused(b, forge_external_commit(a, [], eve), MlsReason.BAD_PROPOSAL)
    refused(b, forge_external_commit(a, [ExternalInit(bytes(32)), ExternalInit(bytes(32))], eve), MlsReason.BAD_PROPOSAL)
    refused(b, forge_external_commit(a, [ExternalInit(bytes(32)), bytes(32)], eve), MlsReason.BAD_COMMIT)
    kp = key_package(signer("dave")).key_package
    refused(b, forge_external_commit(a, [ExternalInit(bytes(32)), Add(kp)], eve), MlsReason.BAD_PROPOSAL)
    refused(b, forge_external_commit(a, [ExternalInit(bytes(32)), Remove(1)], eve), MlsReason.BAD_COMMIT)
    # A resync by b itself (same credential) must still bring a new encryption key,
    # as an Update of the removed leaf would (§12.4.3.2).
    old = b.state.current.own_leaf_node()
    same_key = dataclasses.replace(old, leaf_node_source=LeafNodeSource.COMMIT, lifetime=None, parent_hash=b"")
    _, _, c = trio
    refused(c, forge_external_commit(a, [ExternalInit(bytes(32)), Remove(1)], b.signer, leaf=same_key), MlsReason.BAD_COMMIT)


def test_removed_member_refuses_handshakes(trio: list[Group]) -> None:
    a, b, c = trio
    staged = a.commit(remove=[2])
    a.merge_staged_commit(staged)
    c.process_message(staged.message or b"")
    b.process_message(staged.message or b"")
    nxt = a.commit()
    refused(c, nxt.message or b"", MlsReason.WRONG_STATE)


# -- property: a failed process changes nothing ----------------------------------


_GROUP = make_group(3)
commit_all(_GROUP[0], _GROUP)
_MESSAGES: dict[str, bytes] = {}


def _messages() -> dict[str, bytes]:
    if not _MESSAGES:
        a, b, c = _GROUP
        _MESSAGES["application"] = a.protect(b"property test message", b"ad")
        _MESSAGES["public proposal"] = a.propose_add(key_package(signer("p1")).message(), encrypt=False).message
        _MESSAGES["private proposal"] = c.propose_add(key_package(signer("p2")).message(), encrypt=True).message
        _MESSAGES["public commit"] = a.commit(encrypt=False, include_pending=False).message or b""
        _MESSAGES["private commit"] = c.commit(encrypt=True, include_pending=False).message or b""
    return _MESSAGES


@settings(max_examples=300, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    kind=st.sampled_from(["application", "public proposal", "private proposal", "public commit", "private commit"]),
    data=st.data(),
)
def test_mutated_messages_change_nothing(kind: str, data: Any) -> None:
    msg = bytearray(_messages()[kind])
    how = data.draw(st.sampled_from(["flip", "truncate", "append", "splice"]))
    if how == "flip":
        i = data.draw(st.integers(0, len(msg) - 1))
        msg[i] ^= data.draw(st.integers(1, 255))
    elif how == "truncate":
        msg = msg[: data.draw(st.integers(0, len(msg) - 1))]
    elif how == "append":
        msg += data.draw(st.binary(min_size=1, max_size=8))
    else:
        i = data.draw(st.integers(0, len(msg)))
        msg[i:i] = data.draw(st.binary(min_size=1, max_size=4))
    b = _GROUP[1]
    before = b.to_bytes()
    with pytest.raises(PingError):
        b.process_message(bytes(msg))
    assert b.to_bytes() == before


@settings(max_examples=200, suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(data=st.data())
def test_structurally_random_commits_change_nothing(data: Any) -> None:
    """Commits with random (well-formed) proposals and paths, validly signed and
    tagged by a member, so they reach the deep checks: refused with a PingError
    (never another exception), the group unchanged."""
    from strategies import proposal_or_refs, update_paths

    a, b, _ = _GROUP
    proposals = data.draw(st.lists(proposal_or_refs, max_size=4))
    path = data.draw(st.none() | update_paths)
    before = b.to_bytes()
    with pytest.raises(PingError):
        b.process_message(forge_commit(a, proposals, path))
    assert b.to_bytes() == before


@settings(max_examples=200, suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(data=st.data())
def test_structurally_random_proposals_change_nothing_or_are_stored(data: Any) -> None:
    from strategies import proposals

    a, b, _ = _GROUP
    proposal = data.draw(proposals)
    encrypt = data.draw(st.booleans())
    before = b.to_bytes()
    try:
        b.process_message(forge_proposal(a, proposal, encrypt=encrypt))
    except PingError:
        assert b.to_bytes() == before
    else:  # a random proposal that is valid (a Remove of a member, say): stored
        assert len(b.pending_proposals) >= 1
        b.state.proposals = type(b.state.proposals)()  # forget it again for the next example
