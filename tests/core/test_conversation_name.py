"""Ping's conversation-name extension, on the SDK side of the engine (ping_core.conversation_name).

The wire format is the one the engine carried before the extension moved
out: type 0xF0A1, payload ``opaque name<V>`` (UTF-8). A group state written
by that engine (``named_group_v1.hex``: alice's group "café team" with bob,
epoch 1) still loads, names itself, and renames. The groups' extensions_check
refuses a malformed name wherever GroupContext extensions change; without it
the engine carries the payload as opaque bytes.
"""

from __future__ import annotations

import time
from pathlib import Path


from ping_core.conversation_name import (
    MAX_CONVERSATION_NAME,
    PING_CAPABILITIES,
    PING_CONVERSATION_NAME,
    ConversationName,
    check_extensions,
    name_of,
    with_name,
)
from ping_core.errors import MlsDecodeError, MlsReason
from ping_core.mls.tls import encode
from ping_core.mls.crypto import default_provider
from ping_core.mls.group import Group, GroupConfig, Signer, default_capabilities, generate_key_package
from ping_core.mls.structs import Extension
from reasons import raises_reason

crypto = default_provider()
STORED = bytes.fromhex((Path(__file__).parent / "named_group_v1.hex").read_text().strip())
PUBLIC = GroupConfig(encrypt_handshake=False)


def test_wire_format_is_unchanged() -> None:
    ext = Extension.of(ConversationName("café"))
    assert ext.extension_type == PING_CONVERSATION_NAME == 0xF0A1
    raw = "café".encode()
    assert ext.extension_data == bytes((len(raw),)) + raw  # opaque<V>: one-byte varint length
    assert encode(ext) == b"\xf0\xa1" + bytes((len(raw) + 1, len(raw))) + raw


def test_name_bounds_and_utf8() -> None:
    assert name_of([Extension.of(ConversationName("x" * MAX_CONVERSATION_NAME))]) == "x" * MAX_CONVERSATION_NAME
    with raises_reason(MlsReason.INVALID_ARGUMENT):
        Extension.of(ConversationName("x" * (MAX_CONVERSATION_NAME + 1)))
    bad = Extension(PING_CONVERSATION_NAME, b"\x02\xff\xfe")
    with raises_reason(MlsReason.MALFORMED, MlsDecodeError):
        check_extensions([bad])
    with raises_reason(MlsReason.MALFORMED, MlsDecodeError):
        check_extensions([Extension(PING_CONVERSATION_NAME, b"\x05ab")])  # truncated


def test_with_name_and_name_of() -> None:
    other = Extension(0xF0B0, b"kept")
    named = with_name([other], "a")
    assert name_of(named) == "a" and named[0] == other
    renamed = with_name(named, "b")
    assert name_of(renamed) == "b" and len(renamed) == 2
    assert with_name(renamed, None) == [other] and name_of([other]) is None


def test_ping_capabilities_advertise_the_extension() -> None:
    assert PING_CAPABILITIES.extensions == (PING_CONVERSATION_NAME,)
    assert default_capabilities(extensions=(PING_CONVERSATION_NAME,)) == PING_CAPABILITIES


def test_a_stored_named_group_still_loads_and_renames() -> None:
    alice = Group.from_bytes(crypto, STORED, clock=time.time, extensions_check=check_extensions)
    assert (alice.epoch, alice.member_count, alice.group_id) == (1, 2, b"named group")
    assert name_of(alice.extensions) == "café team"
    assert alice.to_bytes() == STORED  # loads and writes back byte for byte
    staged = alice.commit(extensions=with_name(alice.extensions, "renamed"))
    alice.merge_staged_commit(staged)
    assert name_of(alice.extensions) == "renamed"


def _pair(**hooks: object) -> tuple[Group, Group]:
    """alice (no hook) and bob (``hooks``), Ping clients in one group."""
    s_alice, s_bob = Signer.generate(crypto, b"alice"), Signer.generate(crypto, b"bob")
    alice = Group.create(crypto, s_alice, config=PUBLIC, capabilities=PING_CAPABILITIES, clock=time.time)
    kb = generate_key_package(crypto, s_bob, now=int(time.time()), capabilities=PING_CAPABILITIES)
    staged = alice.commit(add=[kb.message()])
    alice.merge_staged_commit(staged)
    assert staged.welcome is not None
    bob = Group.join(crypto, staged.welcome, kb, s_bob, config=PUBLIC, clock=time.time, **hooks)  # type: ignore[arg-type]
    return alice, bob


def test_extensions_check_refuses_a_malformed_name_and_changes_nothing() -> None:
    alice, bob = _pair(extensions_check=check_extensions)
    bad = [Extension(PING_CONVERSATION_NAME, b"\x02\xff\xfe")]
    # The engine alone carries an application's payload as opaque bytes...
    staged = alice.commit(extensions=bad)
    # ...the application's check refuses it: in a received commit,
    before = bob.to_bytes()
    with raises_reason(MlsReason.MALFORMED, MlsDecodeError):
        bob.process_message(staged.message or b"")
    assert bob.to_bytes() == before
    # as a proposal received by reference,
    alice.discard_staged_commit()
    proposal = alice.propose_group_context_extensions(bad)
    with raises_reason(MlsReason.MALFORMED, MlsDecodeError):
        bob.process_message(proposal.message)
    assert bob.to_bytes() == before and bob.pending_proposals == []
    # and in our own commits, proposals and new groups.
    with raises_reason(MlsReason.MALFORMED, MlsDecodeError):
        bob.commit(extensions=bad)
    with raises_reason(MlsReason.MALFORMED, MlsDecodeError):
        bob.propose_group_context_extensions(bad)
    assert bob.to_bytes() == before
    with raises_reason(MlsReason.MALFORMED, MlsDecodeError):
        Group.create(
            crypto, bob.signer, capabilities=PING_CAPABILITIES, extensions=bad, clock=time.time, extensions_check=check_extensions
        )
    # A well-formed name passes the check.
    good = alice.commit(extensions=with_name((), "fine"))
    assert bob.process_message(good.message or b"") is not None and name_of(bob.extensions) == "fine"


def test_extensions_check_is_policy_inherited_and_reloadable() -> None:
    alice, bob = _pair(extensions_check=check_extensions)
    assert bob.extensions_check is check_extensions and alice.extensions_check is None
    again = Group.from_bytes(crypto, bob.to_bytes(), clock=time.time)
    assert again.extensions_check is None  # not stored: given again on load
    again = Group.from_records(crypto, bob.records(), clock=time.time, extensions_check=check_extensions)
    assert again.extensions_check is check_extensions
