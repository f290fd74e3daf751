"""The sender data of a PrivateMessage (RFC 9420 §6.3.2): who sent it, at which generation.

``SenderData = { uint32 leaf_index; uint32 generation; opaque reuse_guard[4]; }`` is
sealed with a key and nonce derived from the epoch's ``sender_data_secret`` and the
first ``Nh`` bytes of the content ciphertext (``ciphertext_sample``), under
``SenderDataAAD = { group_id, epoch, content_type }``; the reuse guard is XORed
into the content nonce (§6.3.1).
"""

from __future__ import annotations

from ping_core.mls.crypto import CryptoProvider
from ping_core.mls.crypto.provider import sample_context
from ping_core.mls.primitives import NK, NN
from ping_core.mls.tls import opaque
from ping_core.mls.tree.secret_tree import RatchetKey

__all__ = [
    "SENDER_DATA_LEN",
    "SENDER_DATA_CT_LEN",
    "SD_KEY_INFO",
    "SD_NONCE_INFO",
    "sender_data_key_nonce",
    "guarded_nonce",
    "sender_data_bytes",
]

SENDER_DATA_LEN = 12  # uint32 leaf_index, uint32 generation, reuse_guard[4]
SENDER_DATA_CT_LEN = SENDER_DATA_LEN + 16  # + the AEAD tag

# ExpandWithLabel(sender_data_secret, "key"/"nonce", ciphertext_sample, Nk/Nn):
# the KDFLabel up to the sample is fixed.
SD_KEY_INFO = NK.to_bytes(2, "big") + opaque(b"MLS 1.0 key")
SD_NONCE_INFO = NN.to_bytes(2, "big") + opaque(b"MLS 1.0 nonce")


def sender_data_key_nonce(crypto: CryptoProvider, secret: bytes, ciphertext: bytes) -> list[bytes]:
    """``[key, nonce]`` of the sender data (§6.3.2): ``ExpandWithLabel(secret, "key"/"nonce",
    ciphertext_sample, Nk/Nn)``, the sample being the first ``Nh`` bytes of the content
    ciphertext (all of it when shorter); one provider call for both."""
    sample = sample_context(ciphertext)
    return crypto.hkdf_expand_many(secret, ((SD_KEY_INFO + sample, NK), (SD_NONCE_INFO + sample, NN)))


def guarded_nonce(nonce: bytes, reuse_guard: bytes) -> bytes:
    """The content nonce with its first four bytes XORed with ``reuse_guard`` (§6.3.1)."""
    head = int.from_bytes(nonce[:4], "big") ^ int.from_bytes(reuse_guard, "big")
    return head.to_bytes(4, "big") + nonce[4:]


def sender_data_bytes(leaf: int, step: RatchetKey, reuse_guard: bytes) -> bytes:
    """SenderData = uint32 leaf_index, uint32 generation, opaque reuse_guard[4] (§6.3.2)."""
    return leaf.to_bytes(4, "big") + step.generation.to_bytes(4, "big") + reuse_guard
