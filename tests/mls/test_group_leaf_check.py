"""The ``leaf_check`` policy hook (``LeafCheck``): every place a leaf enters a
group calls it with ``(new_leaf, previous_leaf)``, once the engine's own checks
passed; whatever it raises propagates unchanged and nothing changes; it is
policy, not state (not persisted), and successor groups inherit it."""

from __future__ import annotations

import time

from typing import Any

import pytest

from ping_core.errors import InvalidInput, MlsReason
from ping_core.mls import LeafCheck as TopLevelLeafCheck
from ping_core.mls.group import (
    CommitApplied,
    Group,
    LeafCheck,
    ProposalStored,
    validate_key_package,
)
from ping_core.mls.structs import LeafNode, LeafNodeSource

from test_group_support import PUBLIC, agree, commit_all, crypto, key_package, make_group, member, signer
from reasons import raises_reason


class Recorder:
    """A leaf_check that records its calls and refuses while ``error`` is set."""

    def __init__(self, error: BaseException | None = None) -> None:
        self.calls: list[tuple[LeafNode, LeafNode | None]] = []
        self.error = error

    def refuse(self) -> None:
        """Forget the calls so far and refuse from now on."""
        self.calls.clear()
        self.error = policy_error()

    def __call__(self, new: LeafNode, previous: LeafNode | None) -> None:
        self.calls.append((new, previous))
        if self.error is not None:
            raise self.error


def policy_error() -> InvalidInput:
    """A PingError subclass the engine also uses: it must come back as this very object."""
    return InvalidInput("not allowed by the application's policy")


def refused(group: Group, hook: Recorder, call: Any, *args: Any, **kw: Any) -> None:
    """``call(*args, **kw)`` raises exactly ``hook.error`` and ``group`` is byte-for-byte unchanged."""
    assert hook.error is not None
    before = group.to_bytes()
    with pytest.raises(type(hook.error)) as info:
        call(*args, **kw)
    assert info.value is hook.error
    assert group.to_bytes() == before


def leaf_of(group: Group, index: int) -> LeafNode:
    leaf = group.state.current.tree.leaf(index)
    assert leaf is not None
    return leaf


def test_the_type_is_exported() -> None:
    assert LeafCheck is TopLevelLeafCheck
    assert Group.create(crypto, signer("alice"), clock=time.time).leaf_check is None


# -- Adds ----------------------------------------------------------------------


def test_add_by_value_in_a_received_commit() -> None:
    a, b = make_group(2)
    kc = key_package(signer("carol"))
    staged = a.commit(add=[kc.message()])
    assert staged.message is not None
    hook = Recorder(policy_error())
    b.leaf_check = hook
    refused(b, hook, b.process_message, staged.message)
    assert hook.calls == [(kc.key_package.leaf_node, None)]
    hook.error = None
    result = b.process_message(staged.message)
    assert isinstance(result, CommitApplied) and result.added == (2,)
    assert hook.calls[-1] == (kc.key_package.leaf_node, None)


def test_adds_we_commit_are_checked() -> None:
    (a,) = make_group(1)
    kb, kc = key_package(signer("bob")), key_package(signer("carol"))
    hook = Recorder(policy_error())
    a.leaf_check = hook
    refused(a, hook, a.commit, add=[kb.message(), kc.message()])
    assert a.pending_commit is None
    assert hook.calls == [(kb.key_package.leaf_node, None)]  # the first refusal stops it
    hook.error = None
    hook.calls.clear()
    staged = a.commit(add=[kb.message(), kc.message()])
    assert hook.calls == [(kb.key_package.leaf_node, None), (kc.key_package.leaf_node, None)]
    a.merge_staged_commit(staged)


def test_add_proposal_and_its_commit_by_reference() -> None:
    a, b, c = make_group(3)
    kd = key_package(signer("dave"))
    proposal = a.propose_add(kd.message())
    hook = Recorder(policy_error())
    b.leaf_check = hook
    # The proposal: refused, not stored.
    refused(b, hook, b.process_message, proposal.message)
    assert b.pending_proposals == []
    assert hook.calls == [(kd.key_package.leaf_node, None)]
    hook.error = None
    stored = b.process_message(proposal.message)
    assert isinstance(stored, ProposalStored) and stored.ref == proposal.ref
    c.process_message(proposal.message)
    # The commit that names it by reference: checked again when it is applied.
    staged = a.commit()
    assert staged.message is not None
    hook.refuse()
    refused(b, hook, b.process_message, staged.message)
    assert hook.calls == [(kd.key_package.leaf_node, None)]
    assert [p.ref for p in b.pending_proposals] == [proposal.ref]
    hook.error = None
    a.merge_staged_commit(staged)
    for g in (b, c):
        assert isinstance(g.process_message(staged.message), CommitApplied)
    agree([a, b, c])


def test_our_own_add_proposal_is_checked() -> None:
    a, _ = make_group(2)
    kd = key_package(signer("dave"))
    hook = Recorder(policy_error())
    a.leaf_check = hook
    refused(a, hook, a.propose_add, kd.message())
    assert a.pending_proposals == [] and hook.calls == [(kd.key_package.leaf_node, None)]


# -- Updates and commit paths --------------------------------------------------


def test_update_proposal_gets_the_senders_current_leaf() -> None:
    a, b, c = make_group(3)
    old_b = leaf_of(a, 1)
    proposal = b.propose_update()
    hook = Recorder(policy_error())
    a.leaf_check = hook
    refused(a, hook, a.process_message, proposal.message)
    assert a.pending_proposals == []
    ((new, previous),) = hook.calls
    assert previous == old_b and new.leaf_node_source == LeafNodeSource.UPDATE and new != old_b
    assert new.encryption_key != old_b.encryption_key and new.signature_key == old_b.signature_key
    hook.error = None
    a.process_message(proposal.message)
    # c commits the Update by reference; a checks it again with the same previous leaf.
    c.process_message(proposal.message)
    staged = c.commit()
    assert staged.message is not None
    hook.refuse()
    refused(a, hook, a.process_message, staged.message)
    assert hook.calls == [(new, old_b)]
    hook.error = None
    c.merge_staged_commit(staged)
    result = a.process_message(staged.message)
    assert isinstance(result, CommitApplied) and result.updated == (1,)
    assert (new, old_b) in hook.calls
    b.process_message(staged.message)
    agree([a, b, c])


def test_commit_path_leaf_gets_the_committers_current_leaf() -> None:
    a, b, c = make_group(3)
    old_b = leaf_of(a, 1)
    staged = b.commit()  # an empty commit: a self-update through the path
    assert staged.message is not None
    new_b = staged.next_state.tree.leaf(1) if staged.next_state is not None else None
    assert new_b is not None and new_b.leaf_node_source == LeafNodeSource.COMMIT
    hook = Recorder(policy_error())
    a.leaf_check = hook
    refused(a, hook, a.process_message, staged.message)
    assert hook.calls == [(new_b, old_b)]
    hook.error = None
    b.merge_staged_commit(staged)
    assert isinstance(a.process_message(staged.message), CommitApplied)
    assert leaf_of(a, 1) == new_b
    c.process_message(staged.message)
    agree([a, b, c])


def test_a_commit_we_create_does_not_check_our_own_path_leaf() -> None:
    a, b = make_group(2)
    hook = Recorder(policy_error())
    a.leaf_check = hook
    commit_all(a, [a, b])  # our own path: no call
    assert hook.calls == []


def test_a_commit_that_removes_us_still_checks_the_path_leaf() -> None:
    a, b, c = make_group(3)
    staged = a.commit(remove=[1])
    assert staged.message is not None
    hook = Recorder(policy_error())
    b.leaf_check = hook
    refused(b, hook, b.process_message, staged.message)
    assert hook.calls == [(staged.next_state.tree.leaf(0) if staged.next_state else None, leaf_of(b, 0))]
    assert b.active


# -- external commits and joins ------------------------------------------------


def test_external_commit_joiner_leaf_has_no_previous_leaf() -> None:
    a, b = make_group(2)
    es = signer("erin")
    joiner_hook = Recorder()
    e, commit = Group.join_external(crypto, a.group_info(), es, leaf_check=joiner_hook, clock=time.time)
    assert e.leaf_check is joiner_hook
    # The joiner checked every leaf of the tree it received (no previous leaf).
    assert joiner_hook.calls == [(leaf_of(a, 0), None), (leaf_of(a, 1), None)]
    hook = Recorder(policy_error())
    a.leaf_check = hook
    refused(a, hook, a.process_message, commit)
    new_leaf = leaf_of(e, e.own_leaf_index)
    assert hook.calls == [(new_leaf, None)] and new_leaf.signature_key == es.public_key
    hook.error = None
    result = a.process_message(commit)
    assert isinstance(result, CommitApplied) and result.external
    b.process_message(commit)
    agree([a, b, e])


def test_external_join_refused_by_the_hook() -> None:
    a, _ = make_group(2)
    error = policy_error()
    with pytest.raises(InvalidInput) as info:
        Group.join_external(crypto, a.group_info(), signer("erin"), leaf_check=Recorder(error), clock=time.time)
    assert info.value is error


def test_join_from_welcome_checks_every_leaf_of_the_tree() -> None:
    a, b = make_group(2)
    cs = signer("carol")
    kc = key_package(cs)
    staged = commit_all(a, [a, b], add=[kc.message()])
    welcome = staged.welcome or b""
    hook = Recorder(policy_error())
    with pytest.raises(InvalidInput) as info:
        Group.join(crypto, welcome, kc, cs, leaf_check=hook, clock=time.time)
    assert info.value is hook.error
    assert hook.calls == [(leaf_of(a, 0), None)]  # refused at the first leaf
    hook.error = None
    hook.calls.clear()
    c = Group.join(crypto, welcome, kc, cs, leaf_check=hook, clock=time.time)
    assert c.leaf_check is hook
    assert hook.calls == [(leaf_of(a, i), None) for i in range(3)]
    agree([a, b, c])


def test_join_from_welcome_checks_after_the_tree_validated() -> None:
    """A tree that does not validate never reaches the hook."""
    a, b = make_group(2)
    cs = signer("carol")
    kc = key_package(cs)
    staged = a.commit(add=[kc.message()], ratchet_tree_extension=False)
    a.merge_staged_commit(staged)
    hook = Recorder()
    wrong_tree = b.ratchet_tree()  # the previous epoch's tree: its hash does not match
    with raises_reason(MlsReason.BAD_TREE):
        Group.join(crypto, staged.welcome or b"", kc, cs, ratchet_tree=wrong_tree, leaf_check=hook, clock=time.time)
    assert hook.calls == []
    Group.join(crypto, staged.welcome or b"", kc, cs, ratchet_tree=a.ratchet_tree(), leaf_check=hook, clock=time.time)
    assert len(hook.calls) == 3


# -- KeyPackages on their own --------------------------------------------------


def test_validate_key_package() -> None:
    kb = key_package(signer("bob"))
    hook = Recorder()
    assert validate_key_package(crypto, kb.message(), leaf_check=hook, now=int(time.time())) == kb.key_package
    assert hook.calls == [(kb.key_package.leaf_node, None)]
    hook.error = policy_error()
    with pytest.raises(InvalidInput) as info:
        validate_key_package(crypto, kb.message(), leaf_check=hook, now=int(time.time()))
    assert info.value is hook.error
    # An invalid KeyPackage is refused before the hook is asked.
    hook = Recorder()
    raw = bytearray(kb.message())
    raw[-1] ^= 1
    with raises_reason(MlsReason.BAD_SIGNATURE):
        validate_key_package(crypto, bytes(raw), leaf_check=hook, now=int(time.time()))
    assert hook.calls == []


def test_any_exception_propagates_unchanged() -> None:
    class Custom(Exception):
        pass

    a, b = make_group(2)
    staged = a.commit(add=[key_package(signer("carol")).message()])
    assert staged.message is not None
    hook = Recorder(Custom("no"))
    b.leaf_check = hook
    refused(b, hook, b.process_message, staged.message)


# -- policy, not state ---------------------------------------------------------


def test_not_persisted_and_given_again_on_load() -> None:
    hook = Recorder()
    a = Group.create(crypto, signer("alice"), config=PUBLIC, leaf_check=hook, clock=time.time)
    assert a.leaf_check is hook
    data = a.to_bytes()
    assert Group.from_bytes(crypto, data, clock=time.time).leaf_check is None
    assert Group.from_records(crypto, a.records(), clock=time.time).leaf_check is None
    assert Group.from_bytes(crypto, data, leaf_check=hook, clock=time.time).leaf_check is hook
    assert Group.from_records(crypto, a.records(), leaf_check=hook, clock=time.time).leaf_check is hook
    # Setting or clearing it does not change the stored state.
    a.leaf_check = None
    assert a.to_bytes() == data
    # A loaded group uses the hook it was given.
    restored = Group.from_bytes(crypto, data, leaf_check=Recorder(policy_error()), clock=time.time)
    assert restored.leaf_check is not None
    with pytest.raises(InvalidInput):
        restored.commit(add=[key_package(signer("bob")).message()])


def test_branch_inherits_the_hook() -> None:
    a, b = make_group(2)
    hook = Recorder()
    a.leaf_check = hook
    kb = key_package(b.signer)
    sub, staged = a.branch([kb.message()])
    assert sub.leaf_check is hook
    assert hook.calls == [(kb.key_package.leaf_node, None)]  # the Add of the first commit
    sub.merge_staged_commit(staged)
    # A joiner with branch_from inherits its old group's hook when it gives none.
    b_hook = Recorder()
    b.leaf_check = b_hook
    sub_b = Group.join(crypto, staged.welcome or b"", kb, b.signer, branch_from=b, clock=time.time)
    assert sub_b.leaf_check is b_hook and len(b_hook.calls) == 2
    other = Recorder()
    assert Group.join(crypto, staged.welcome or b"", kb, b.signer, branch_from=b, leaf_check=other, clock=time.time).leaf_check is other


def test_branch_refused_by_the_inherited_hook() -> None:
    a, b = make_group(2)
    hook = Recorder(policy_error())
    a.leaf_check = hook
    refused(a, hook, a.branch, [key_package(b.signer).message()])


def test_reinit_inherits_the_hook() -> None:
    a, b = make_group(2)
    p = b.propose_reinit(group_id=b"second generation")
    a.process_message(p.message)
    commit_all(a, [a, b])
    hook = Recorder()
    a.leaf_check = hook
    kb = key_package(b.signer)
    new_a, staged = a.reinit_group([kb.message()])
    assert new_a.leaf_check is hook and hook.calls == [(kb.key_package.leaf_node, None)]
    new_a.merge_staged_commit(staged)
    b_hook = Recorder()
    b.leaf_check = b_hook
    new_b = Group.join(crypto, staged.welcome or b"", kb, b.signer, reinit_from=b, clock=time.time)
    assert new_b.leaf_check is b_hook and len(b_hook.calls) == 2
    agree([new_a, new_b])


def test_hook_sees_members_by_identity() -> None:
    """A realistic policy: only credentials of a known set may join."""
    allowed = {b"alice", b"bob", b"carol"}

    def only_known(new: LeafNode, previous: LeafNode | None) -> None:
        if new.credential.identity not in allowed:
            raise InvalidInput(f"{new.credential.identity!r} may not join")

    a, b = make_group(2)
    a.leaf_check = only_known
    with pytest.raises(InvalidInput, match="mallory"):
        a.commit(add=[key_package(signer("mallory")).message()])
    staged = commit_all(a, [a, b], add=[key_package(signer("carol")).message()])
    assert staged.result.added == (2,) and member(a, 2).identity == b"carol"

