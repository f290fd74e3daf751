"""crypto-basics.json: the labelled helpers of RFC 9420 §5."""

from __future__ import annotations

from typing import Any

from ping_core.mls import primitives as p
from ping_core.mls.crypto import CryptoProvider

from ping_core.testing.vectors.registry import expect_equal

__all__ = ["run"]


def run(case: dict[str, Any], crypto: CryptoProvider) -> None:
    h = bytes.fromhex

    v = case["ref_hash"]
    expect_equal("ref_hash", p.ref_hash(crypto, v["label"].encode(), h(v["value"])), h(v["out"]))

    v = case["expand_with_label"]
    got = p.expand_with_label(crypto, h(v["secret"]), v["label"].encode(), h(v["context"]), v["length"])
    expect_equal("expand_with_label", got, h(v["out"]))

    v = case["derive_secret"]
    expect_equal("derive_secret", p.derive_secret(crypto, h(v["secret"]), v["label"].encode()), h(v["out"]))

    v = case["derive_tree_secret"]
    got = p.derive_tree_secret(crypto, h(v["secret"]), v["label"].encode(), v["generation"], v["length"])
    expect_equal("derive_tree_secret", got, h(v["out"]))

    v = case["sign_with_label"]
    label, content = v["label"].encode(), h(v["content"])
    expect_equal("sign_with_label public key", crypto.sign_public(h(v["priv"])), h(v["pub"]))
    p.verify_with_label(crypto, h(v["pub"]), label, content, h(v["signature"]))
    # Ed25519 is deterministic: our signature must be the vector's.
    expect_equal("sign_with_label", p.sign_with_label(crypto, h(v["priv"]), label, content), h(v["signature"]))

    v = case["encrypt_with_label"]
    label, context, priv, pub = v["label"].encode(), h(v["context"]), h(v["priv"]), h(v["pub"])
    expect_equal("encrypt_with_label public key", crypto.dh_public(priv), pub)
    got = p.decrypt_with_label(crypto, priv, label, context, h(v["kem_output"]), h(v["ciphertext"]))
    expect_equal("decrypt_with_label", got, h(v["plaintext"]))
    kem_output, ciphertext = p.encrypt_with_label(crypto, pub, label, context, h(v["plaintext"]))
    got = p.decrypt_with_label(crypto, priv, label, context, kem_output, ciphertext)
    expect_equal("encrypt_with_label round trip", got, h(v["plaintext"]))
