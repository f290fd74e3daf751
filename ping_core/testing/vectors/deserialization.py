"""The ``deserialization`` family: RFC 9420 variable-length integer headers.

Each case gives ``vlbytes_header`` (hex) and ``length``: the header must
decode strictly (minimal, not reserved, nothing left over) to ``length``, and
encoding ``length`` must give the header back.
"""

from __future__ import annotations

from typing import Any

from ping_core.mls.tls import Reader, varint
from ping_core.mls.crypto import CryptoProvider

from ping_core.testing.vectors.registry import expect_equal


def run(case: dict[str, Any], crypto: CryptoProvider) -> None:
    header = bytes.fromhex(case["vlbytes_header"])
    length = case["length"]
    r = Reader(header)
    got = r.varint()
    r.expect_end()
    expect_equal("decoded length", got, length)
    expect_equal("encoded header", varint(length), header)


__all__ = ["run"]
