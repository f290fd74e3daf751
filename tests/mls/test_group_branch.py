"""Subgroup branching (RFC 9420 §11.3): ``Group.branch`` and joining with
``branch_from``; every rule a joiner checks, with forged Welcomes; the old group
carries on untouched."""

from __future__ import annotations

import time

from typing import Any, Sequence

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ping_core.errors import MlsError, MlsReason
from ping_core.conversation_name import ConversationName, name_of
from ping_core.mls.group import Group, KeyPackageBundle, Signer
from ping_core.mls.group.commit import create_commit
from ping_core.mls.group.staged import StagedCommit
from ping_core.mls.structs import (
    Add,
    Extension,
    PreSharedKey,
    PreSharedKeyID,
    ResumptionPSKUsage,
)

from test_group_support import (
    PUBLIC,
    agree,
    app_data,
    commit_all,
    crypto,
    forge_commit,
    forge_proposal,
    key_package,
    lenient_sender,
    make_group,
    member,
    signer,
)
from reasons import raises_reason

BRANCH = ResumptionPSKUsage.BRANCH

# make_group(5): alice, bob, carol, dave, erin at leaves 0..4, epoch 1.
_FIVE: list[Group] | None = None


def five() -> list[Group]:
    """A fresh group of five (alice .. erin) at epoch 1."""
    return make_group(5)


def shared_five() -> list[Group]:
    """One group of five for the property test: branching never changes it."""
    global _FIVE
    if _FIVE is None:
        _FIVE = make_group(5)
    return _FIVE


def branch_psk(old: Group, *, usage: ResumptionPSKUsage = BRANCH, epoch: int | None = None, group_id: bytes | None = None) -> PreSharedKey:
    return PreSharedKey(
        PreSharedKeyID.resumption(
            usage, old.group_id if group_id is None else group_id, old.epoch if epoch is None else epoch, crypto.random(32)
        )
    )


def forged_first_commit(
    creator: Signer,
    old: Group,
    proposals: Sequence[Any],
    *,
    group_id: bytes = b"forged branch",
    usage: ResumptionPSKUsage = BRANCH,
    empty_commits_before: int = 0,
) -> StagedCommit:
    """A new group of ``creator`` whose commit carries ``proposals`` (PSKs
    resolved from ``old``), with none of ``Group.branch``'s creator checks."""
    new = Group.create(crypto, creator, group_id=group_id, config=PUBLIC, extensions=old.extensions, clock=time.time)
    for _ in range(empty_commits_before):
        new.merge_staged_commit(new.commit())
    return create_commit(new.state, by_value=list(proposals), include_pending=False, psks=old.psk_source(), psk_usage=usage)


def join_refused(
    welcome: bytes, bundle: KeyPackageBundle, old: Group, reason: MlsReason, match: str | None = None, **kw: Any
) -> None:
    """Joining ``welcome`` with ``bundle`` fails for ``reason`` (its message matching ``match``,
    when given) and changes nothing in ``old``."""
    before = old.to_bytes()
    kw.setdefault("branch_from", old)
    kw.setdefault("clock", time.time)
    with pytest.raises(MlsError, match=match) as info:
        Group.join(crypto, welcome, bundle, old.signer, **kw)
    assert info.value.reason is reason, info.value
    assert old.to_bytes() == before


def test_branch_three_of_five_agree_and_talk() -> None:
    a, b, c, d, e = five()
    before = [g.to_bytes() for g in (a, b, c, d, e)]
    kc, ke = key_package(c.signer), key_package(e.signer)
    sub_a, staged = a.branch([kc.message(), ke.message()], group_id=b"subgroup")
    assert a.to_bytes() == before[0]  # branching does not touch the old group
    assert staged.result.psks == 1 and staged.welcome is not None
    assert sub_a.pending_commit is staged and sub_a.epoch == 0
    sub_a.merge_staged_commit(staged)
    sub_c = Group.join(crypto, staged.welcome, kc, c.signer, branch_from=c, clock=time.time)
    sub_e = Group.join(crypto, staged.welcome, ke, e.signer, branch_from=e, clock=time.time)
    subgroup = [sub_a, sub_c, sub_e]
    agree(subgroup)
    assert [g.to_bytes() for g in (a, b, c, d, e)] == before
    for g in subgroup:
        assert g.group_id == b"subgroup" and g.epoch == 1
        assert [m.identity for m in g.members()] == [b"alice", b"carol", b"erin"]
        assert g.group_context.cipher_suite == a.group_context.cipher_suite
        assert g.group_context.version == a.group_context.version
        assert g.extensions == a.extensions
    assert sub_a.epoch_authenticator != a.epoch_authenticator
    assert sub_a.export_secret(b"x", b"", 32) != a.export_secret(b"x", b"", 32)
    # Application messages every way.
    for sender in subgroup:
        msg = sender.protect(b"from " + member(sender, sender.own_leaf_index).identity)
        for g in subgroup:
            if g is not sender:
                assert app_data(g.process_message(msg)).startswith(b"from ")
    # The subgroup evolves on its own: a commit by a joiner, processed by the others.
    commit_all(sub_e, subgroup, remove=[1])
    agree([sub_a, sub_e])
    assert sub_c.removed and sub_a.epoch == 2
    # Bob and dave are not in it: the Welcome is not for their KeyPackages.
    kb = key_package(b.signer)
    with raises_reason(MlsReason.BAD_WELCOME):
        Group.join(crypto, staged.welcome, kb, b.signer, branch_from=b, clock=time.time)
    # The old group carries on with all five: messages, then a commit.
    old = [a, b, c, d, e]
    msg = d.protect(b"old group still works")
    for g in (a, b, c, e):
        assert app_data(g.process_message(msg)) == b"old group still works"
    commit_all(b, old)
    agree(old)
    assert a.epoch == 2 and a.member_count == 5


def test_branched_group_survives_serialization() -> None:
    a, b, c, _, _ = five()
    kb = key_package(b.signer)
    sub_a, staged = a.branch([kb], extensions=[Extension.of(ConversationName("side chat"))])
    sub_a.merge_staged_commit(staged)
    sub_b = Group.join(crypto, staged.welcome or b"", kb, b.signer, branch_from=b, clock=time.time)
    assert len(sub_a.group_id) == 32 and sub_a.group_id != a.group_id
    assert name_of(sub_b.extensions) == "side chat" and name_of(a.extensions) is None
    restored_a = Group.from_bytes(crypto, sub_a.to_bytes(), clock=time.time)
    restored_b = Group.from_bytes(crypto, sub_b.to_bytes(), clock=time.time)
    assert restored_a.to_bytes() == sub_a.to_bytes() and restored_b.to_bytes() == sub_b.to_bytes()
    records = Group.from_records(crypto, sub_b.records(), clock=time.time)
    assert records.to_bytes() == sub_b.to_bytes()
    agree([restored_a, restored_b, records])
    assert app_data(restored_b.process_message(restored_a.protect(b"after restore"))) == b"after restore"
    commit_all(restored_b, [restored_a, restored_b])
    agree([restored_a, restored_b])


def test_creator_refuses_what_is_not_a_subgroup() -> None:
    a, b, c, _, _ = five()
    before = a.to_bytes()
    stranger = key_package(signer("zoe"))
    with raises_reason(MlsReason.INVALID_ARGUMENT):
        a.branch([key_package(b.signer), stranger])
    other_device = key_package(signer("carol"))  # carol's account, another signature key
    with raises_reason(MlsReason.INVALID_ARGUMENT):
        a.branch([other_device])
    with raises_reason(MlsReason.BAD_PROPOSAL):
        a.branch([key_package(a.signer)])
    with raises_reason(MlsReason.INVALID_ARGUMENT):
        a.branch([key_package(b.signer)], group_id=a.group_id)
    with raises_reason(MlsReason.INVALID_ARGUMENT):
        a.branch([])
    assert a.to_bytes() == before
    # A removed member branches nothing.
    commit_all(a, [a, b, c], remove=[2])
    assert c.removed
    with raises_reason(MlsReason.WRONG_STATE):
        c.branch([key_package(b.signer)])


def test_join_needs_the_old_group_at_the_named_epoch() -> None:
    a, b, c, _, _ = five()
    kb = key_package(b.signer)
    sub_a, staged = a.branch([kb])
    welcome = staged.welcome or b""
    join_refused(welcome, kb, b, MlsReason.INVALID_ARGUMENT, branch_from=None)
    join_refused(welcome, kb, b, MlsReason.INVALID_ARGUMENT, branch_from=None, reinit_from=b)
    join_refused(welcome, kb, b, MlsReason.INVALID_ARGUMENT, reinit_from=b)
    other = make_group(2, names=["bob", "yann"])[0]
    join_refused(welcome, kb, b, MlsReason.INVALID_ARGUMENT, branch_from=other)
    # The old group moved on: the PSK still resolves (retained), but names a past epoch.
    commit_all(a, [a, b, c])
    join_refused(welcome, kb, b, MlsReason.WRONG_EPOCH)


def test_join_checks_the_welcome_is_a_branch() -> None:
    a, b, c, _, _ = five()
    kb = key_package(b.signer)
    # A plain Welcome (no resumption PSK) does not branch anything.
    plain = make_group(2)[0]
    ks = key_package(b.signer)
    staged = plain.commit(add=[ks])
    join_refused(staged.welcome or b"", ks, b, MlsReason.INVALID_ARGUMENT)
    # A resumption PSK of the old group with usage application is no branch PSK.
    app = forged_first_commit(a.signer, b, [Add(kb.key_package), branch_psk(b, usage=ResumptionPSKUsage.APPLICATION)],
                              usage=ResumptionPSKUsage.APPLICATION)
    join_refused(app.welcome or b"", kb, b, MlsReason.INVALID_ARGUMENT)
    # A reinit Welcome is refused with branch_from: the usage decides.
    p = b.propose_reinit(group_id=b"reinit")
    for g in (a, c):
        g.process_message(p.message)
    commit_all(a, [a, b, c])
    kb2 = key_package(b.signer)
    _, reinit_staged = a.reinit_group([kb2])
    join_refused(reinit_staged.welcome or b"", kb2, b, MlsReason.INVALID_ARGUMENT)


def test_join_refuses_leaves_without_counterpart() -> None:
    a, b, c, _, _ = five()
    kb = key_package(b.signer)
    zoe = key_package(signer("zoe"))
    staged = forged_first_commit(a.signer, a, [Add(kb.key_package), Add(zoe.key_package), branch_psk(a)])
    # The message names the member without a counterpart (the reason cannot).
    join_refused(staged.welcome or b"", kb, b, MlsReason.BAD_WELCOME, match=r"leaf 2 .*no counterpart")
    # The creator is checked too: alice's account, another device (signature key).
    kb = key_package(b.signer)
    staged = forged_first_commit(signer("alice"), a, [Add(kb.key_package), branch_psk(a)])
    join_refused(staged.welcome or b"", kb, b, MlsReason.BAD_WELCOME, match=r"leaf 0 .*no counterpart")
    # Carol's account with another device's KeyPackage.
    kb = key_package(b.signer)
    carol2 = key_package(signer("carol"))
    staged = forged_first_commit(a.signer, a, [Add(kb.key_package), Add(carol2.key_package), branch_psk(a)])
    join_refused(staged.welcome or b"", kb, b, MlsReason.BAD_WELCOME)
    # The same forgery made of members only is accepted: the check is the only difference.
    kb, kc = key_package(b.signer), key_package(c.signer)
    staged = forged_first_commit(a.signer, a, [Add(kb.key_package), Add(kc.key_package), branch_psk(a)])
    assert Group.join(crypto, staged.welcome or b"", kb, b.signer, branch_from=b, clock=time.time).epoch == 1


def test_join_refuses_other_epochs_group_ids_and_two_links() -> None:
    a, b, _, _, _ = five()
    kb = key_package(b.signer)
    staged = forged_first_commit(a.signer, a, [Add(kb.key_package), branch_psk(a)], empty_commits_before=1)
    assert staged.result.epoch == 2
    join_refused(staged.welcome or b"", kb, b, MlsReason.BAD_WELCOME)
    kb = key_package(b.signer)
    staged = forged_first_commit(a.signer, a, [Add(kb.key_package), branch_psk(a)], group_id=a.group_id)
    join_refused(staged.welcome or b"", kb, b, MlsReason.BAD_WELCOME)
    # Two branch PSKs: the committer refuses to build it ...
    kb = key_package(b.signer)
    with raises_reason(MlsReason.BAD_PROPOSAL):
        forged_first_commit(a.signer, a, [Add(kb.key_package), branch_psk(a), branch_psk(a)])
    # ... and a joiner refuses it when forged.
    with lenient_sender(validate_resumption_links=lambda psks: None):
        staged = forged_first_commit(a.signer, a, [Add(kb.key_package), branch_psk(a), branch_psk(a)])
    join_refused(staged.welcome or b"", kb, b, MlsReason.BAD_PROPOSAL)


def test_branch_psks_are_refused_anywhere_else() -> None:
    a, b, c, _, _ = five()
    before = b.to_bytes()
    for message in (forge_proposal(a, branch_psk(a)), forge_commit(a, [branch_psk(a)])):
        with raises_reason(MlsReason.BAD_PROPOSAL):
            b.process_message(message)
        assert b.to_bytes() == before
    with raises_reason(MlsReason.BAD_PROPOSAL):
        a.commit(proposals=[branch_psk(a)])
    # Nor in a later commit of the branched group itself.
    kb = key_package(b.signer)
    sub_a, staged = a.branch([kb])
    sub_a.merge_staged_commit(staged)
    with raises_reason(MlsReason.BAD_PROPOSAL):
        sub_a.commit(proposals=[branch_psk(a)])


@settings(max_examples=min(25, settings().max_examples))
@given(creator=st.integers(0, 4), others=st.sets(st.integers(0, 4), min_size=1, max_size=4))
def test_any_subset_branches_and_agrees(creator: int, others: set[int]) -> None:
    old = shared_five()
    others.discard(creator)
    if not others:
        others = {(creator + 1) % 5}
    before = old[creator].to_bytes()
    bundles = {i: key_package(old[i].signer) for i in sorted(others)}
    sub, staged = old[creator].branch([b.message() for b in bundles.values()])
    sub.merge_staged_commit(staged)
    joined = [Group.join(crypto, staged.welcome or b"", bundles[i], old[i].signer, branch_from=old[i], clock=time.time) for i in bundles]
    agree([sub, *joined])
    names = {member(old[0], i).identity for i in {creator, *others}}
    assert {m.identity for m in sub.members()} == names
    assert old[creator].to_bytes() == before
