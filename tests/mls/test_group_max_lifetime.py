"""The application's maximum total leaf lifetime (RFC 9420 §7.2).

"Applications MUST define a maximum total lifetime that is acceptable for a
LeafNode, and reject any LeafNode where the total lifetime is longer than this
duration." The engine sets none by default (ts-mls and the test vectors use
very long lifetimes); the application gives one to ``validate_key_package``
and to its groups (``Group.max_lifetime_s``, not stored in the group state).
Every entry point of a key_package leaf is covered: KeyPackage validation,
our own Adds, received Add proposals, Adds in received commits (by value and
by reference), and the tree received on joining. A refusal changes nothing.
"""

from __future__ import annotations

import time

import pytest

from ping_core.errors import MlsReason
from ping_core.mls.group import Group, GroupConfig, KeyPackageBundle, Signer, validate_key_package
from ping_core.mls.group.keypackage import CLOCK_SKEW_S, DEFAULT_LIFETIME_S
from ping_core.mls.structs import Lifetime
from ping_core.mls.tree import check_lifetime_span

from test_group_support import PUBLIC, crypto, key_package, make_group, signer
from reasons import raises_reason

LIMIT = DEFAULT_LIFETIME_S + CLOCK_SKEW_S  # what a default KeyPackage spans
TEN_YEARS = 10 * 365 * 24 * 3600


def _long_lived(name: str = "mallory") -> bytes:
    return key_package(signer(name), lifetime_s=TEN_YEARS).message()


# -- KeyPackages on their own ----------------------------------------------------


def test_engine_default_sets_no_maximum() -> None:
    assert validate_key_package(crypto, _long_lived(), now=int(time.time())).leaf_node.lifetime is not None
    alice = Group.create(crypto, signer("alice"), config=PUBLIC, clock=time.time)
    assert alice.max_lifetime_s is None
    alice.merge_staged_commit(alice.commit(add=[_long_lived()]))
    assert alice.member_count == 2


def test_validate_key_package_refuses_a_longer_lifetime_with_or_without_the_clock() -> None:
    # The message names the refused leaf (the reason cannot).
    with raises_reason(MlsReason.LIFETIME_TOO_LONG, match="^the KeyPackage's leaf: "):
        validate_key_package(crypto, _long_lived(), max_lifetime_s=LIMIT, now=int(time.time()))
    with raises_reason(MlsReason.LIFETIME_TOO_LONG):
        validate_key_package(crypto, _long_lived(), max_lifetime_s=LIMIT, now=None)
    # A default KeyPackage spans exactly the limit: accepted; one second less is not.
    ordinary = key_package(signer("bob")).message()
    assert validate_key_package(crypto, ordinary, max_lifetime_s=LIMIT, now=int(time.time()))
    with raises_reason(MlsReason.LIFETIME_TOO_LONG):
        validate_key_package(crypto, ordinary, max_lifetime_s=LIMIT - 1, now=int(time.time()))


def test_check_lifetime_span_bounds() -> None:
    check_lifetime_span(Lifetime(100, 200), 100)
    check_lifetime_span(Lifetime(100, 2**64 - 1), None)
    check_lifetime_span(Lifetime(200, 100), 0)  # an inverted window spans nothing (the clock check refuses it)
    with raises_reason(MlsReason.LIFETIME_TOO_LONG):
        check_lifetime_span(Lifetime(100, 201), 100)
    with raises_reason(MlsReason.BAD_LIFETIME):
        check_lifetime_span(None, None)


# -- the group policy --------------------------------------------------------------


def test_policy_is_not_stored_and_is_checked() -> None:
    alice = Group.create(crypto, signer("alice"), config=PUBLIC, max_lifetime_s=LIMIT, clock=time.time)
    assert alice.max_lifetime_s == LIMIT
    data = alice.to_bytes()
    alice.max_lifetime_s = None
    assert alice.to_bytes() == data
    assert Group.from_bytes(crypto, data, clock=time.time).max_lifetime_s is None
    assert Group.from_bytes(crypto, data, max_lifetime_s=5, clock=time.time).max_lifetime_s == 5
    assert Group.from_records(crypto, alice.records(), max_lifetime_s=7, clock=time.time).max_lifetime_s == 7
    for bad in (-1, True, 1.5, "90"):
        with raises_reason(MlsReason.INVALID_ARGUMENT):
            alice.max_lifetime_s = bad  # type: ignore[assignment]
    assert alice.max_lifetime_s is None


def test_own_commit_and_proposal_refuse_a_long_lived_key_package() -> None:
    alice = Group.create(crypto, signer("alice"), config=PUBLIC, max_lifetime_s=LIMIT, clock=time.time)
    before = alice.to_bytes()
    # The message names the refused leaf (the reason cannot).
    with raises_reason(MlsReason.LIFETIME_TOO_LONG, match="^leaf node: "):
        alice.commit(add=[key_package(signer("bob")).message(), _long_lived()])
    with raises_reason(MlsReason.LIFETIME_TOO_LONG):
        alice.propose_add(_long_lived())
    assert alice.to_bytes() == before
    alice.merge_staged_commit(alice.commit(add=[key_package(signer("bob")).message()]))
    assert alice.member_count == 2


def _refused_then_followed(alice: Group, bob: Group, commit: bytes) -> None:
    """With the maximum, bob refuses alice's ``commit`` and stays byte for byte as he
    was; the commit is otherwise fine: without the maximum bob follows alice."""
    bob.max_lifetime_s = LIMIT
    before = bob.to_bytes()
    with raises_reason(MlsReason.LIFETIME_TOO_LONG):
        bob.process_message(commit)
    assert bob.to_bytes() == before
    bob.max_lifetime_s = None
    bob.process_message(commit)
    assert bob.epoch_authenticator == alice.epoch_authenticator


@pytest.mark.parametrize("config", [PUBLIC, GroupConfig()], ids=["public", "private"])
def test_received_commit_adding_by_value_is_refused_and_changes_nothing(config: GroupConfig) -> None:
    alice, bob = make_group(2, config=config)
    staged = alice.commit(add=[_long_lived()])  # alice sets no maximum
    alice.merge_staged_commit(staged)
    assert staged.message is not None
    _refused_then_followed(alice, bob, staged.message)


@pytest.mark.parametrize("config", [PUBLIC, GroupConfig()], ids=["public", "private"])
def test_received_add_proposal_and_commit_by_reference_are_refused(config: GroupConfig) -> None:
    alice, bob = make_group(2, config=config)
    proposal = alice.propose_add(_long_lived())
    bob.max_lifetime_s = LIMIT
    before = bob.to_bytes()
    with raises_reason(MlsReason.LIFETIME_TOO_LONG):
        bob.process_message(proposal.message)
    assert bob.to_bytes() == before
    assert not bob.pending_proposals

    # Stored while bob set no maximum, the proposal is checked again when a commit covers it.
    bob.max_lifetime_s = None
    bob.process_message(proposal.message)
    staged = alice.commit()
    alice.merge_staged_commit(staged)
    assert staged.message is not None
    _refused_then_followed(alice, bob, staged.message)


def _group_with_long_lived_member() -> tuple[Group, bytes, KeyPackageBundle, Signer]:
    """alice's group with mallory (10-year leaf), a Welcome for carol, carol's bundle and signer."""
    alice = Group.create(crypto, signer("alice"), config=PUBLIC, clock=time.time)
    alice.merge_staged_commit(alice.commit(add=[_long_lived()]))
    carol_signer = signer("carol")
    carol = key_package(carol_signer)
    staged = alice.commit(add=[carol.message()])
    alice.merge_staged_commit(staged)
    assert staged.welcome is not None
    return alice, staged.welcome, carol, carol_signer


def test_join_refuses_a_tree_with_a_long_lived_leaf_even_without_clock_checks() -> None:
    alice, welcome, carol, carol_signer = _group_with_long_lived_member()
    for check in (True, False):
        # The message names the refused leaf (the reason cannot).
        with raises_reason(MlsReason.LIFETIME_TOO_LONG, match="^leaf 1: "):
            Group.join(crypto, welcome, carol, carol_signer, config=PUBLIC, check_lifetimes=check, max_lifetime_s=LIMIT, clock=time.time)
    joined = Group.join(crypto, welcome, carol, carol_signer, config=PUBLIC, check_lifetimes=False, clock=time.time)
    assert joined.epoch_authenticator == alice.epoch_authenticator and joined.max_lifetime_s is None
    # Every leaf of an ordinary group fits the limit, the creator's own included; the group keeps the policy.
    ordinary = Group.create(crypto, signer("alice"), config=PUBLIC, clock=time.time)
    dave_signer = signer("dave")
    dave = key_package(dave_signer)
    staged = ordinary.commit(add=[dave.message()])
    assert staged.welcome is not None
    assert Group.join(crypto, staged.welcome, dave, dave_signer, config=PUBLIC, max_lifetime_s=LIMIT, clock=time.time).max_lifetime_s == LIMIT


def test_external_join_refuses_a_tree_with_a_long_lived_leaf() -> None:
    alice, _, _, _ = _group_with_long_lived_member()
    info = alice.group_info()
    # The message names the refused leaf (the reason cannot).
    with raises_reason(MlsReason.LIFETIME_TOO_LONG, match="^leaf 1: "):
        Group.join_external(crypto, info, signer("erin"), config=PUBLIC, check_lifetimes=False, max_lifetime_s=LIMIT, clock=time.time)
    group, commit = Group.join_external(crypto, info, signer("erin"), config=PUBLIC, clock=time.time)
    alice.process_message(commit)
    assert group.epoch_authenticator == alice.epoch_authenticator


def test_a_branch_keeps_the_policy() -> None:
    alice, bob = make_group(2)
    alice.max_lifetime_s = LIMIT
    with raises_reason(MlsReason.LIFETIME_TOO_LONG):
        alice.branch([key_package(bob.signer, lifetime_s=TEN_YEARS).message()])
    sub, _ = alice.branch([key_package(bob.signer).message()])
    assert sub.max_lifetime_s == LIMIT
