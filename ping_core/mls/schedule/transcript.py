"""Transcript hashes, confirmation tags and membership tags (RFC 9420 §8.2, §6.2).

::

    confirmed_transcript_hash[n] = Hash(interim_transcript_hash[n-1] || ConfirmedTranscriptHashInput[n])
    interim_transcript_hash[n]   = Hash(confirmed_transcript_hash[n] || InterimTranscriptHashInput[n])
    confirmation_tag             = MAC(confirmation_key, confirmed_transcript_hash)
    membership_tag               = MAC(membership_key, AuthenticatedContentTBM)

For a new group, ``confirmed_transcript_hash[0]`` is empty and
``interim_transcript_hash[0]`` is derived from it and epoch 0's confirmation
tag like any other. Verifiers compare MACs in constant time and raise
``MlsError`` (``InvalidSignature`` is reserved for signatures).
"""

from __future__ import annotations

import hmac as _hmac

from ping_core.errors import MlsError, MlsReason
from ping_core.mls.tls import opaque
from ping_core.mls.crypto import CryptoProvider
from ping_core.mls.structs.content import AuthenticatedContent

__all__ = [
    "confirmed_transcript_hash",
    "interim_transcript_hash",
    "confirmation_tag",
    "verify_confirmation_tag",
    "membership_tag",
    "verify_membership_tag",
    "commit_transcript_hashes",
]


def confirmed_transcript_hash(crypto: CryptoProvider, interim_before: bytes, confirmed_input: bytes) -> bytes:
    """``Hash(interim_transcript_hash[n-1] || ConfirmedTranscriptHashInput)`` (the input encoded)."""
    return crypto.hash(interim_before + confirmed_input)


def interim_transcript_hash(crypto: CryptoProvider, confirmed: bytes, tag: bytes) -> bytes:
    """``Hash(confirmed_transcript_hash || InterimTranscriptHashInput{ MAC confirmation_tag; })``."""
    return crypto.hash(confirmed + opaque(tag))


def confirmation_tag(crypto: CryptoProvider, confirmation_key: bytes, confirmed: bytes) -> bytes:
    """``MAC(confirmation_key, confirmed_transcript_hash)``."""
    return crypto.hmac(confirmation_key, confirmed)


def verify_confirmation_tag(crypto: CryptoProvider, confirmation_key: bytes, confirmed: bytes, tag: bytes) -> None:
    """Returns when ``tag`` is the confirmation tag of ``confirmed``; ``MlsError`` otherwise."""
    if not _hmac.compare_digest(crypto.hmac(confirmation_key, confirmed), tag):
        raise MlsError("confirmation tag does not verify", reason=MlsReason.BAD_TAG)


def membership_tag(crypto: CryptoProvider, membership_key: bytes, tbm: bytes) -> bytes:
    """``MAC(membership_key, AuthenticatedContentTBM)`` (``tbm`` encoded)."""
    return crypto.hmac(membership_key, tbm)


def verify_membership_tag(crypto: CryptoProvider, membership_key: bytes, tbm: bytes, tag: bytes) -> None:
    """Returns when ``tag`` is the membership tag of ``tbm``; ``MlsError`` otherwise."""
    if not _hmac.compare_digest(crypto.hmac(membership_key, tbm), tag):
        raise MlsError("membership tag does not verify", reason=MlsReason.BAD_TAG)


def commit_transcript_hashes(
    crypto: CryptoProvider, interim_before: bytes, commit: AuthenticatedContent
) -> tuple[bytes, bytes]:
    """``(confirmed, interim)`` transcript hashes after the commit ``commit``.

    ``commit`` must carry its confirmation tag (a commit's auth data always
    does); ``MlsError`` otherwise. The tag itself is *not* verified here: it
    is checked against the new epoch's ``confirmation_key`` with
    :func:`verify_confirmation_tag`, once the key schedule ran.
    """
    tag = commit.auth.confirmation_tag
    if tag is None:
        raise MlsError("a commit needs a confirmation tag", reason=MlsReason.MALFORMED)
    confirmed = confirmed_transcript_hash(crypto, interim_before, commit.confirmed_transcript_hash_input())
    return confirmed, interim_transcript_hash(crypto, confirmed, tag)
