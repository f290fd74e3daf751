"""transcript-hashes.json: transcript hashes and the confirmation tag of a commit (§8.2)."""

from __future__ import annotations

from typing import Any

from ping_core.mls.schedule import transcript
from ping_core.mls.tls import decode_exact, encode
from ping_core.mls.crypto import CryptoProvider
from ping_core.mls.structs.content import AuthenticatedContent

from ping_core.testing.vectors.registry import expect_equal

__all__ = ["run"]


def run(case: dict[str, Any], crypto: CryptoProvider) -> None:
    h = bytes.fromhex
    raw = h(case["authenticated_content"])
    content = decode_exact(AuthenticatedContent, raw)
    expect_equal("authenticated_content re-encoding", encode(content), raw)
    confirmed, interim = transcript.commit_transcript_hashes(crypto, h(case["interim_transcript_hash_before"]), content)
    expect_equal("confirmed_transcript_hash_after", confirmed, h(case["confirmed_transcript_hash_after"]))
    expect_equal("interim_transcript_hash_after", interim, h(case["interim_transcript_hash_after"]))
    tag = content.auth.confirmation_tag
    assert tag is not None
    key = h(case["confirmation_key"])
    expect_equal("confirmation_tag", transcript.confirmation_tag(crypto, key, confirmed), tag)
    transcript.verify_confirmation_tag(crypto, key, confirmed, tag)
