"""The engine reads no clock: the time is always its caller's.

KeyPackage lifetimes (RFC 9420 §7.2, §10.1) are dated by ``now=`` and by the
``clock=`` every group and public group is given. With the host's clock made to
fail, a whole group lifecycle still runs on a given clock; a KeyPackage is valid
or not by that clock alone; no engine module imports a clock.
"""

from __future__ import annotations

import ast
import time
from pathlib import Path

import pytest

import ping_core.mls
from ping_core.errors import MlsReason
from ping_core.mls.group import (
    CLOCK_SKEW_S,
    DEFAULT_LIFETIME_S,
    ApplicationMessage,
    Clock,
    Group,
    PublicGroup,
    generate_key_package,
    validate_key_package,
)

from test_group_support import PUBLIC, crypto, signer
from reasons import raises_reason

T = 1_900_000_000  # a fixed time (2030), far from the host's
ENGINE = Path(ping_core.mls.__file__).parent
# The interop driver's stdin/stdout shell reads the host's clock for the driver, as it reads stdin.
CLOCK_READERS = {ENGINE / "interop.py"}
CLOCK_MODULES = {"time", "datetime"}


def _at(t: float) -> Clock:
    """A clock stopped at ``t``."""
    return lambda: t


@pytest.fixture
def no_host_clock(monkeypatch: pytest.MonkeyPatch) -> None:
    """The host's clock raises: any engine read of it fails the test."""

    def refuse() -> float:
        raise AssertionError("the engine read the host's clock")

    monkeypatch.setattr(time, "time", refuse)
    monkeypatch.setattr(time, "time_ns", refuse)


def test_no_engine_module_imports_a_clock() -> None:
    readers = []
    for path in sorted(ENGINE.rglob("*.py")):
        if path in CLOCK_READERS:
            continue
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            names = (
                [a.name for a in node.names]
                if isinstance(node, ast.Import)
                else [node.module or ""] if isinstance(node, ast.ImportFrom) else []
            )
            if any(n.split(".")[0] in CLOCK_MODULES for n in names):
                readers.append(f"{path.relative_to(ENGINE)}:{node.lineno}")
    assert readers == []


@pytest.mark.usefixtures("no_host_clock")
def test_a_group_lifecycle_runs_on_the_given_clock() -> None:
    alice = Group.create(crypto, signer("alice"), config=PUBLIC, clock=_at(T))
    bob_signer = signer("bob")
    bob_kp = generate_key_package(crypto, bob_signer, now=T)
    staged = alice.commit(add=[bob_kp.message()])
    alice.merge_staged_commit(staged)
    assert staged.welcome is not None
    bob = Group.join(crypto, staged.welcome, bob_kp, bob_signer, clock=_at(T + 60))
    public = PublicGroup.from_group_info(crypto, alice.group_info(), clock=_at(T + 60))
    assert public.epoch == bob.epoch == alice.epoch
    out = bob.process_message(alice.protect(b"hi"))
    assert isinstance(out, ApplicationMessage) and out.data == b"hi"
    restored = Group.from_bytes(crypto, bob.to_bytes(), clock=_at(T + 120))
    assert restored.epoch == bob.epoch


@pytest.mark.usefixtures("no_host_clock")
def test_key_package_lifetime_follows_the_given_time() -> None:
    kp = generate_key_package(crypto, signer("bob"), now=T)
    lifetime = kp.key_package.leaf_node.lifetime
    assert lifetime is not None
    assert (lifetime.not_before, lifetime.not_after) == (T - CLOCK_SKEW_S, T + DEFAULT_LIFETIME_S)
    validate_key_package(crypto, kp.message(), now=T)
    validate_key_package(crypto, kp.message(), now=None)  # no time given: no time checked
    with raises_reason(MlsReason.BAD_LIFETIME):
        validate_key_package(crypto, kp.message(), now=T + DEFAULT_LIFETIME_S + 1)
    with raises_reason(MlsReason.BAD_LIFETIME):
        validate_key_package(crypto, kp.message(), now=T - CLOCK_SKEW_S - 1)


@pytest.mark.usefixtures("no_host_clock")
def test_a_group_dates_adds_by_its_clock() -> None:
    """An Add of a KeyPackage valid at ``T`` is refused by a group whose clock reads past its
    lifetime, and accepted once the clock is set back (the clock is policy, settable)."""
    late = T + DEFAULT_LIFETIME_S + 1
    alice = Group.create(crypto, signer("alice"), config=PUBLIC, clock=_at(late))
    kp = generate_key_package(crypto, signer("bob"), now=T)
    before = alice.to_bytes()
    with raises_reason(MlsReason.BAD_LIFETIME):
        alice.commit(add=[kp.message()])
    assert alice.to_bytes() == before
    alice.clock = _at(T)
    alice.merge_staged_commit(alice.commit(add=[kp.message()]))
    assert alice.member_count == 2
