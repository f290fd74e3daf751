"""The PSK secret of an epoch from its chained pre-shared keys (RFC 9420 §8.4).

::

    psk_extracted[i] = Extract(0, psk[i])
    psk_input[i]     = ExpandWithLabel(psk_extracted[i], "derived psk", PSKLabel[i], Nh)
    psk_secret[0]    = 0
    psk_secret[i+1]  = Extract(psk_input[i], psk_secret[i])

with ``PSKLabel = { PreSharedKeyID id; uint16 index; uint16 count; }``. The
IDs are given encoded (or as structs that can write themselves), in the order
the Commit or GroupSecrets lists them; the order matters.
"""

from __future__ import annotations

from typing import Protocol, Sequence

from ping_core.errors import MlsError, MlsReason
from ping_core.mls.tls import Writer
from ping_core.mls.crypto import CryptoProvider

from ping_core.mls.primitives import NH, expand_with_label, zero_secret

__all__ = ["psk_secret", "MAX_PSKS", "Writable"]


class Writable(Protocol):
    """Anything that encodes itself (a ``PreSharedKeyID`` struct)."""

    def write(self, w: Writer) -> None: ...


# PSKLabel.count is a uint16.
MAX_PSKS = 0xFFFF


def psk_secret(crypto: CryptoProvider, psks: Sequence[tuple[bytes | Writable, bytes]]) -> bytes:
    """``psk_secret`` for ``psks`` = ``[(PreSharedKeyID, psk value), ...]``; all zero when empty.

    Raises ``MlsError`` for more PSKs than ``PSKLabel`` can count.
    """
    count = len(psks)
    if count > MAX_PSKS:
        raise MlsError(f"too many PSKs ({count})", reason=MlsReason.LIMIT_EXCEEDED)
    secret = zero_secret()
    count_bytes = count.to_bytes(2, "big")
    for index, (psk_id, value) in enumerate(psks):
        if isinstance(psk_id, bytes):
            id_bytes = psk_id
        else:
            w = Writer()
            psk_id.write(w)
            id_bytes = bytes(w.buf)
        label = id_bytes + index.to_bytes(2, "big") + count_bytes
        extracted = crypto.hkdf_extract(zero_secret(), value)
        psk_input = expand_with_label(crypto, extracted, b"derived psk", label, NH)
        secret = crypto.hkdf_extract(psk_input, secret)
    return secret
