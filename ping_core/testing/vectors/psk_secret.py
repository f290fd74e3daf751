"""psk_secret.json: chained external PSKs (RFC 9420 §8.4)."""

from __future__ import annotations

from typing import Any

from ping_core.mls.crypto import CryptoProvider
from ping_core.mls.schedule.psk_secret import psk_secret
from ping_core.mls.structs.psk_id import PreSharedKeyID

from ping_core.testing.vectors.registry import expect_equal

__all__ = ["run"]


def run(case: dict[str, Any], crypto: CryptoProvider) -> None:
    h = bytes.fromhex
    psks = [(PreSharedKeyID.external(h(p["psk_id"]), h(p["psk_nonce"])), h(p["psk"])) for p in case["psks"]]
    expect_equal("psk_secret", psk_secret(crypto, psks), h(case["psk_secret"]))
