"""Hostile bytes from a peer are the peer's fault: every refusal of a mutated message,
Welcome, KeyPackage or GroupInfo is an ``MlsError`` whose reason has origin PEER; damaged
stored state is CORRUPT_STATE and a wrong call is the caller's (origin LOCAL).

A refusal of LOCAL origin (INVALID_ARGUMENT, CORRUPT_STATE, ...) here would tell the
application to fix its own call when the fault is in what it received, so it would
retry or report the wrong party. The receiver's state is checked unchanged too.
"""

from __future__ import annotations

import time

from hypothesis import given, settings
from hypothesis import strategies as st

from ping_core.errors import MlsError, MlsReason
from ping_core.mls import Group, KeyPackageBundle, PublicGroup, validate_key_package

from core.fuzz import mutated
from reasons import raises_reason
from test_group_support import crypto, key_package, make_group, signer


def _peer_refusal(call, *args, **kw) -> None:  # type: ignore[no-untyped-def]
    """Run ``call``; an MlsError must be a peer's fault."""
    try:
        call(*args, **kw)
    except MlsError as exc:
        assert exc.is_peer_fault, f"{type(exc).__name__}({exc}) has local reason {exc.reason.name}"


def _world() -> dict[str, object]:
    """Valid inputs for ``b`` (all of one epoch): a's application message, c's proposal, a's
    commit (a PublicMessage: the groups send handshakes in the clear), a Welcome, a KeyPackage
    and a GroupInfo."""
    a, b, c = make_group(3)
    app = a.protect(b"hello")
    proposal = c.propose_update().message
    staged = a.commit()
    assert staged.message is not None
    a.discard_staged_commit()
    newcomer = signer("newcomer")
    bundle = key_package(newcomer)
    add = a.commit(add=[bundle.message()])
    assert add.welcome is not None
    a.discard_staged_commit()
    return {
        "b": b.to_bytes(),
        "messages": [app, proposal, staged.message],
        "welcome": add.welcome,
        "bundle": bundle,
        "newcomer": newcomer,
        "key_package": bundle.message(),
        "group_info": a.group_info(),
    }


WORLD = _world()


def _receiver() -> Group:
    return Group.from_bytes(crypto, WORLD["b"], clock=time.time)  # type: ignore[arg-type]


@settings(max_examples=60)
@given(data=st.data(), which=st.integers(0, 2))
def test_a_mutated_message_is_the_senders_fault(data: st.DataObject, which: int) -> None:
    b = _receiver()
    before = b.to_bytes()
    message = data.draw(mutated(WORLD["messages"][which]))  # type: ignore[index]
    try:
        b.process_message(message)
    except MlsError as exc:
        assert exc.is_peer_fault, f"{type(exc).__name__}({exc}) has local reason {exc.reason.name}"
        assert b.to_bytes() == before
    else:
        return  # a mutation the message survives (e.g. in authenticated padding)


@settings(max_examples=60)
@given(data=st.data())
def test_a_mutated_welcome_is_the_inviters_fault(data: st.DataObject) -> None:
    welcome = data.draw(mutated(WORLD["welcome"]))  # type: ignore[arg-type]
    _peer_refusal(Group.join, crypto, welcome, WORLD["bundle"], WORLD["newcomer"], clock=time.time)


@settings(max_examples=60)
@given(data=st.data())
def test_a_mutated_key_package_is_its_owners_fault(data: st.DataObject) -> None:
    kp = data.draw(mutated(WORLD["key_package"]))  # type: ignore[arg-type]
    _peer_refusal(validate_key_package, crypto, kp, now=int(time.time()))


@settings(max_examples=60)
@given(data=st.data())
def test_a_mutated_group_info_is_the_servers_fault(data: st.DataObject) -> None:
    info = data.draw(mutated(WORLD["group_info"]))  # type: ignore[arg-type]
    _peer_refusal(PublicGroup.from_group_info, crypto, info, clock=time.time)
    _peer_refusal(Group.join_external, crypto, info, signer("outsider"), clock=time.time)


@settings(max_examples=60)
@given(data=st.data())
def test_mutated_stored_state_is_corrupt_state(data: st.DataObject) -> None:
    """Our own stored bytes, damaged: CORRUPT_STATE (this device's fault), never a peer's."""
    stored = data.draw(mutated(WORLD["b"]))  # type: ignore[arg-type]
    try:
        Group.from_bytes(crypto, stored, clock=time.time)
    except MlsError as exc:
        assert exc.reason is MlsReason.CORRUPT_STATE, f"{type(exc).__name__}({exc}) has reason {exc.reason.name}"
    bundle = data.draw(mutated(WORLD["bundle"].to_bytes()))  # type: ignore[attr-defined]
    try:
        KeyPackageBundle.from_bytes(crypto, bundle)
    except MlsError as exc:
        assert exc.reason is MlsReason.CORRUPT_STATE, f"{type(exc).__name__}({exc}) has reason {exc.reason.name}"


def test_local_misuse_is_the_callers_fault() -> None:
    """The same engine says LOCAL when the call is wrong."""
    b = _receiver()
    with raises_reason(MlsReason.INVALID_ARGUMENT):
        b.process_message("not bytes")  # type: ignore[arg-type]
    with raises_reason(MlsReason.INVALID_ARGUMENT):
        Group.create(crypto, signer("x"), group_id=b"", clock=time.time)
    b.propose_update()
    with raises_reason(MlsReason.WRONG_STATE) as info:
        b.protect(b"proposals are pending")
    assert not info.value.is_peer_fault
