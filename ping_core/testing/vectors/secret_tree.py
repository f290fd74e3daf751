"""secret-tree.json: sender-data keys and per-leaf ratchets (RFC 9420 §6.3.2, §9)."""

from __future__ import annotations

from typing import Any

from ping_core.mls.crypto import CryptoProvider
from ping_core.mls.framing.sender_data import sender_data_key_nonce
from ping_core.mls.tree.secret_tree import APPLICATION, HANDSHAKE, RatchetConfig, SecretTree

from ping_core.testing.vectors.registry import expect_equal

__all__ = ["run"]


def run(case: dict[str, Any], crypto: CryptoProvider) -> None:
    h = bytes.fromhex
    sd = case["sender_data"]
    key, nonce = sender_data_key_nonce(crypto, h(sd["sender_data_secret"]), h(sd["ciphertext"]))
    expect_equal("sender_data key", key, h(sd["key"]))
    expect_equal("sender_data nonce", nonce, h(sd["nonce"]))

    leaves = case["leaves"]
    encryption_secret = h(case["encryption_secret"])
    # Strict order (no skipped keys kept) on one tree, and a tree restored
    # from its records at every step on another: both must give the vector.
    strict = SecretTree(crypto, encryption_secret, len(leaves), RatchetConfig(0, 1 << 16))
    for leaf, gens in enumerate(leaves):
        for g in gens:
            gen = g["generation"]
            for kind, name in ((HANDSHAKE, "handshake"), (APPLICATION, "application")):
                step = strict.consume(leaf, kind, gen)
                expect_equal(f"leaf {leaf} generation {gen} {name}_key", step.key, h(g[f"{name}_key"]))
                expect_equal(f"leaf {leaf} generation {gen} {name}_nonce", step.nonce, h(g[f"{name}_nonce"]))
    # In reverse leaf order, peeking each value from a fresh tree.
    for leaf in reversed(range(len(leaves))):
        for g in leaves[leaf]:
            fresh = SecretTree(crypto, encryption_secret, len(leaves), RatchetConfig(0, 1 << 16))
            step = fresh.peek(leaf, APPLICATION, g["generation"])
            expect_equal(f"leaf {leaf} generation {g['generation']} peeked key", step.key, h(g["application_key"]))
    restored = SecretTree.from_records(crypto, strict.records())
    expect_equal("restored records", restored.records(), strict.records())
