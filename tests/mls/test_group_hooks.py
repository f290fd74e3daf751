"""The engine's public hooks and views: ``process_message(check_sender=)`` refuses with nothing
changed, ``signature_key(leaf, epoch)``, ``StagedCommit.added_members()`` and ``HistoryView``."""

from __future__ import annotations

import time

from typing import Any

import pytest

from ping_core.errors import MlsError, MlsReason
from ping_core.mls.group import (
    ApplicationMessage,
    CommitApplied,
    Group,
    GroupConfig,
    HistoryView,
    ProposalStored,
    SenderInfo,
    StagedCommit,
)
from ping_core.mls.structs import ContentType, Remove, SenderType

from test_group_support import PUBLIC, agree, commit_all, crypto, key_package, make_group, member, signer
from reasons import raises_reason

ENCRYPTED = GroupConfig(encrypt_handshake=True)


class Refused(Exception):
    pass


def refuse(seen: list[SenderInfo]) -> Any:
    def hook(info: SenderInfo) -> None:
        seen.append(info)
        raise Refused

    return hook


def snapshot(g: Group) -> dict[str, bytes]:
    """Every record of ``g`` (equal before and after: nothing changed)."""
    return g.records()


@pytest.mark.parametrize("config", [PUBLIC, ENCRYPTED], ids=["public", "encrypted"])
def test_refused_application_message_changes_nothing(config: GroupConfig) -> None:
    a, b = make_group(2, config=config)
    msg = a.protect(b"hello", b"aad")
    before = snapshot(b)
    seen: list[SenderInfo] = []
    with pytest.raises(Refused):
        b.process_message(msg, check_sender=refuse(seen))
    assert snapshot(b) == before
    (info,) = seen
    assert info.sender.sender_type == SenderType.MEMBER and info.leaf_index == 0
    assert info.signature_key == member(b, 0).signature_key == a.signer.public_key
    assert (info.epoch, info.content_type, info.authenticated_data, info.proposal, info.own) == (
        b.epoch, ContentType.APPLICATION, b"aad", None, False
    )
    # The generation was not consumed: the same message decrypts once accepted.
    accepted: list[SenderInfo] = []
    out = b.process_message(msg, check_sender=accepted.append)
    assert isinstance(out, ApplicationMessage) and out.data == b"hello" and accepted == seen
    with raises_reason(MlsReason.REPLAY):
        b.process_message(msg)  # and only once


def test_hook_runs_after_authentication() -> None:
    """A message that does not authenticate never reaches the hook."""
    a, b = make_group(2)
    msg = bytearray(a.protect(b"hello"))
    msg[-1] ^= 1
    seen: list[SenderInfo] = []
    with raises_reason(MlsReason.DECRYPTION_FAILED):
        b.process_message(bytes(msg), check_sender=seen.append)
    assert seen == []


@pytest.mark.parametrize("config", [PUBLIC, ENCRYPTED], ids=["public", "encrypted"])
def test_refused_proposal_is_not_stored(config: GroupConfig) -> None:
    a, b, c = make_group(3, config=config)
    prop = b.propose_remove(2)
    before = snapshot(a)
    seen: list[SenderInfo] = []
    with pytest.raises(Refused):
        a.process_message(prop.message, check_sender=refuse(seen))
    assert snapshot(a) == before and a.pending_proposals == []
    (info,) = seen
    assert info.content_type == ContentType.PROPOSAL and info.leaf_index == 1
    assert isinstance(info.proposal, Remove) and info.proposal.removed == 2
    assert info.signature_key == b.signer.public_key
    out = a.process_message(prop.message, check_sender=lambda i: None)
    assert isinstance(out, ProposalStored) and [p.ref for p in a.pending_proposals] == [prop.ref]


@pytest.mark.parametrize("config", [PUBLIC, ENCRYPTED], ids=["public", "encrypted"])
def test_refused_commit_changes_nothing(config: GroupConfig) -> None:
    a, b, c = make_group(3, config=config)
    staged = b.commit(remove=[2])
    b.merge_staged_commit(staged)
    assert staged.message is not None
    before = snapshot(a)
    seen: list[SenderInfo] = []
    for merge in (True, False):
        with pytest.raises(Refused):
            a.process_message(staged.message, merge=merge, check_sender=refuse(seen))
        assert snapshot(a) == before and a.epoch == staged.base_epoch
    assert [(i.content_type, i.leaf_index, i.signature_key) for i in seen] == [(ContentType.COMMIT, 1, b.signer.public_key)] * 2
    assert isinstance(a.process_message(staged.message, check_sender=lambda i: None), CommitApplied)
    agree([a, b])


def test_external_commit_sender_is_the_joiner() -> None:
    a, b = make_group(2)
    joiner = signer("erin")
    e, commit = Group.join_external(crypto, a.group_info(), joiner, clock=time.time)
    seen: list[SenderInfo] = []
    with pytest.raises(Refused):
        a.process_message(commit, check_sender=refuse(seen))
    (info,) = seen
    assert info.sender.sender_type == SenderType.NEW_MEMBER_COMMIT and info.leaf_index is None
    assert info.signature_key == joiner.public_key
    staged = a.process_message(commit, merge=False)
    assert isinstance(staged, StagedCommit)
    assert [m.signature_key for m in staged.added_members()] == [joiner.public_key]


def test_own_echoes_are_checked_too() -> None:
    a, b = make_group(2)
    staged = a.commit()
    assert staged.message is not None
    seen: list[SenderInfo] = []
    with pytest.raises(Refused):
        a.process_message(staged.message, check_sender=refuse(seen))
    assert a.pending_commit is staged and a.epoch == staged.base_epoch
    out = a.process_message(staged.message, check_sender=seen.append)
    assert isinstance(out, CommitApplied) and out.own and a.epoch == staged.epoch
    again = a.process_message(staged.message, check_sender=seen.append)
    assert isinstance(again, CommitApplied) and again.already_applied
    prop = a.propose_remove(1)
    assert isinstance(a.process_message(prop.message, check_sender=seen.append), ProposalStored)
    assert all(i.own and i.signature_key == a.signer.public_key for i in seen)
    assert [i.content_type for i in seen] == [ContentType.COMMIT] * 3 + [ContentType.PROPOSAL]
    assert [i.epoch for i in seen] == [staged.base_epoch] * 3 + [staged.epoch]


def test_added_members_of_our_commit() -> None:
    (a,) = make_group(1)
    bundles = [key_package(signer(n)) for n in ("bob", "carol")]
    staged = a.commit(add=[b.message() for b in bundles])
    added = staged.added_members()
    assert [m.leaf_index for m in added] == list(staged.result.added) == [1, 2]
    assert [m.signature_key for m in added] == [b.key_package.leaf_node.signature_key for b in bundles]
    assert a.commit().added_members() == []


def test_signature_key_of_current_and_past_epochs() -> None:
    a, b, c = make_group(3, config=GroupConfig(encrypt_handshake=False, max_past_epochs=1))
    carol_key = c.signer.public_key
    e0 = a.epoch
    assert a.signature_key(2) == a.signature_key(2, e0) == carol_key
    commit_all(a, [a, b, c], remove=[2])
    assert a.signature_key(2) is None  # blank now
    assert a.signature_key(2, e0) == carol_key  # still known for late messages of e0
    assert a.retained_epochs == (e0, e0 + 1)
    commit_all(a, [a, b])
    assert a.signature_key(2, e0) is None  # e0's state is gone
    assert a.signature_key(99) is None


def test_history_view_reads_current_and_past_epochs_only() -> None:
    a, b = make_group(2, config=GroupConfig(encrypt_handshake=False, max_past_epochs=2))
    late = a.protect(b"late from e1")
    commit_all(b, [a, b])
    current = a.protect(b"now")
    view = b.export_history_view()
    assert view.epochs == (b.epoch - 1, b.epoch) and view.group_id == b.group_id
    assert view.signature_key(0, b.epoch) == a.signer.public_key
    # An independent copy: the group and the view each decrypt the same message once.
    assert view.decrypt(late).data == b"late from e1"
    assert b.process_message(late).data == b"late from e1"  # type: ignore[union-attr]
    assert view.decrypt(current).data == b"now"
    with raises_reason(MlsReason.REPLAY):
        view.decrypt(current)  # its generation is consumed
    commit_all(b, [a, b])
    with raises_reason(MlsReason.WRONG_EPOCH):
        view.decrypt(a.protect(b"a later epoch"))
    with raises_reason(MlsReason.MALFORMED):
        view.decrypt(b.commit().message or b"")  # only application messages


def test_history_view_hook_and_records() -> None:
    a, b = make_group(2)
    view = b.export_history_view()
    view.mark_saved()
    msg = a.protect(b"x", b"ad")
    seen: list[SenderInfo] = []
    with pytest.raises(Refused):
        view.decrypt(msg, check_sender=refuse(seen))
    assert not view.changed_records()
    assert seen[0].signature_key == a.signer.public_key and seen[0].authenticated_data == b"ad"
    records = view.records()
    assert view.decrypt(msg).data == b"x"
    ch = view.changed_records()
    assert ch.written and all(n.startswith(f"st:{b.epoch}:") for n in {*ch.written, *ch.deleted})
    # A copy from the records as they were still reads the message; the saved one does not.
    assert HistoryView.from_records(crypto, records).decrypt(msg).data == b"x"
    updated = {k: v for k, v in {**records, **ch.written}.items() if k not in ch.deleted}
    with raises_reason(MlsReason.REPLAY):
        HistoryView.from_records(crypto, updated).decrypt(msg)


def test_history_view_forget_before() -> None:
    a, b = make_group(2, config=GroupConfig(encrypt_handshake=False, max_past_epochs=3))
    commit_all(a, [a, b])
    commit_all(a, [a, b])
    view = b.export_history_view()
    view.mark_saved()
    first = view.epochs[0]
    view.forget_before(first + 1)
    assert first not in view and view.epochs[0] == first + 1
    ch = view.changed_records()
    assert f"past:{first}" in ch.deleted and not ch.written
    assert set(HistoryView.from_records(crypto, view.records()).epochs) == set(view.epochs)
    with raises_reason(MlsReason.WRONG_STATE):
        view.forget_before(b.epoch + 1)
    assert view.epochs[-1] == b.epoch


@pytest.mark.parametrize(
    "mutate",
    [
        lambda r: {},
        lambda r: {**r, "tree": b""},
        lambda r: {**r, "past:01": next(v for k, v in r.items() if k.startswith("past:"))},
        lambda r: {k: v for k, v in r.items() if k.startswith("st:")},
        lambda r: {**r, next(k for k in r if k.startswith("past:")): b"\x01junk"},
    ],
    ids=["empty", "foreign name", "non-canonical epoch", "no past record", "malformed past record"],
)
def test_history_view_from_malformed_records(mutate: Any) -> None:
    a, b = make_group(2)
    with pytest.raises(MlsError):
        HistoryView.from_records(crypto, mutate(b.export_history_view().records()))


def test_history_view_of_two_groups_is_refused() -> None:
    (a,) = make_group(1)
    other = Group.create(crypto, signer("zed"), group_id=b"another group", clock=time.time)
    commit_all(other, [other])
    while other.epoch <= a.epoch:
        commit_all(other, [other])
    mixed = {**a.export_history_view().records(), **other.export_history_view().records()}
    assert len([k for k in mixed if k.startswith("past:")]) == 2
    with raises_reason(MlsReason.CORRUPT_STATE):
        HistoryView.from_records(crypto, mixed)
