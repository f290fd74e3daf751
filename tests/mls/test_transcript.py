"""Transcript hashes and tags (the official values are in transcript-hashes.json)."""

from __future__ import annotations


from ping_core.errors import MlsReason
from ping_core.mls.schedule import transcript as t
from ping_core.mls.tls import opaque
from ping_core.mls.crypto import default_provider
from ping_core.mls.structs.commit import Commit
from ping_core.mls.structs.enums import WireFormat
from ping_core.mls.structs.content import AuthenticatedContent, FramedContent, FramedContentAuthData, Sender
from reasons import raises_reason

crypto = default_provider()


def commit(tag: bytes | None) -> AuthenticatedContent:
    fc = FramedContent(b"g", 1, Sender.member(0), b"", Commit(()))
    return AuthenticatedContent(WireFormat.PUBLIC_MESSAGE, fc, FramedContentAuthData(b"sig", tag))


def test_chain() -> None:
    ac = commit(b"T" * 32)
    confirmed, interim = t.commit_transcript_hashes(crypto, b"i" * 32, ac)
    assert confirmed == crypto.hash(b"i" * 32 + ac.confirmed_transcript_hash_input())
    assert interim == crypto.hash(confirmed + opaque(b"T" * 32))
    with raises_reason(MlsReason.MALFORMED):
        t.commit_transcript_hashes(crypto, b"i" * 32, replace_tag(ac))


def replace_tag(ac: AuthenticatedContent) -> AuthenticatedContent:
    return AuthenticatedContent(ac.wire_format, ac.content, FramedContentAuthData(ac.auth.signature, None))


def test_tags() -> None:
    key = b"k" * 32
    tag = t.confirmation_tag(crypto, key, b"confirmed")
    t.verify_confirmation_tag(crypto, key, b"confirmed", tag)
    for args in ((b"x" * 32, b"confirmed", tag), (key, b"other", tag), (key, b"confirmed", tag[:-1] + b"\x00")):
        with raises_reason(MlsReason.BAD_TAG):
            t.verify_confirmation_tag(crypto, *args)
    m = t.membership_tag(crypto, key, b"tbm")
    t.verify_membership_tag(crypto, key, b"tbm", m)
    with raises_reason(MlsReason.BAD_TAG):
        t.verify_membership_tag(crypto, key, b"tbm2", m)
