"""welcome.json: decrypt a Welcome, verify its GroupInfo (RFC 9420 §12.4.3.1)."""

from __future__ import annotations

from typing import Any

from ping_core.errors import MlsError, MlsReason
from ping_core.mls import welcome_seal as w
from ping_core.mls.tls import decode_exact, encode
from ping_core.mls.crypto import CryptoProvider
from ping_core.mls.structs.group_info import GroupInfo
from ping_core.mls.structs.key_package import KeyPackage
from ping_core.mls.structs.message import MLSMessage
from ping_core.mls.structs.welcome import Welcome

from ping_core.testing.vectors.registry import VectorMismatch, expect_equal

__all__ = ["run"]


def run(case: dict[str, Any], crypto: CryptoProvider) -> None:
    h = bytes.fromhex
    kp_msg = h(case["key_package"])
    key_package = decode_exact(MLSMessage, kp_msg).body
    welcome = decode_exact(MLSMessage, h(case["welcome"])).body
    if not isinstance(key_package, KeyPackage) or not isinstance(welcome, Welcome):
        raise VectorMismatch("key_package / welcome have the wrong wire formats")
    # The reference is over the KeyPackage exactly as received (after the
    # MLSMessage's version and wire_format); our re-encoding must agree.
    expect_equal("key_package re-encoding", encode(key_package), kp_msg[4:])
    ref = w.key_package_ref(crypto, kp_msg[4:])
    init_priv = h(case["init_priv"])
    expect_equal("init key", crypto.dh_public(init_priv), key_package.init_key)
    signer_pub = h(case["signer_pub"])

    def signer_key(info: GroupInfo) -> bytes:
        return signer_pub

    joined = w.decrypt_welcome(crypto, welcome, ref, init_priv, signer_key, init_public_key=key_package.init_key)
    gc = joined.group_info.group_context
    expect_equal("group context bytes", joined.group_context_bytes, encode(gc))
    # A wrong signer key must be refused.
    try:
        w.decrypt_welcome(crypto, welcome, ref, init_priv, lambda info: crypto.sign_keygen()[1])
    except MlsError as exc:
        expect_equal("refusal of the wrong signer key", exc.reason, MlsReason.BAD_SIGNATURE)
    else:
        raise VectorMismatch("the GroupInfo verified with the wrong signer key")
