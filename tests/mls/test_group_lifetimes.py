"""Leaf lifetimes in a received tree (RFC 9420 §7.3): checked on join by default, and skippable.

A member who never sends an Update or a commit with a path keeps its
KeyPackage's lifetime in its leaf; once that has passed, a joiner that checks
refuses the whole tree, naming the leaf.
"""

from __future__ import annotations

import time


from ping_core.errors import MlsReason
from ping_core.mls.group import Group

from test_group_support import PUBLIC, crypto, key_package, signer
from reasons import raises_reason

LATER = 3600.0  # seconds after bob's 60-second KeyPackage lifetime began


def _group_with_short_lived_bob() -> Group:
    """alice's group of alice and bob, whose leaf's lifetime ends a minute from now."""
    alice = Group.create(crypto, signer("alice"), config=PUBLIC, clock=time.time)
    bob = key_package(signer("bob"), lifetime_s=60)
    staged = alice.commit(add=[bob.message()])
    alice.merge_staged_commit(staged)
    return alice


def test_join_refuses_a_tree_with_an_expired_leaf_by_default() -> None:
    alice = _group_with_short_lived_bob()
    carol_signer = signer("carol")
    carol = key_package(carol_signer)
    staged = alice.commit(add=[carol.message()])
    alice.merge_staged_commit(staged)
    assert staged.welcome is not None
    later = lambda: time.time() + LATER  # noqa: E731

    with raises_reason(MlsReason.BAD_LIFETIME):
        Group.join(crypto, staged.welcome, carol, carol_signer, config=PUBLIC, clock=later)

    # Now (bob's lifetime still running) the same Welcome is fine; later, only with the check off.
    assert Group.join(crypto, staged.welcome, carol, carol_signer, config=PUBLIC, clock=time.time).epoch == alice.epoch
    joined = Group.join(crypto, staged.welcome, carol, carol_signer, config=PUBLIC, clock=later, check_lifetimes=False)
    assert joined.epoch_authenticator == alice.epoch_authenticator


def test_external_join_checks_lifetimes_too() -> None:
    alice = _group_with_short_lived_bob()
    info = alice.group_info()
    dave = signer("dave")
    later = lambda: time.time() + LATER  # noqa: E731

    with raises_reason(MlsReason.BAD_LIFETIME):
        Group.join_external(crypto, info, dave, config=PUBLIC, clock=later)

    group, commit = Group.join_external(crypto, info, dave, config=PUBLIC, clock=later, check_lifetimes=False)
    alice.process_message(commit)
    assert group.epoch_authenticator == alice.epoch_authenticator
