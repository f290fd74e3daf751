"""psk_secret chaining (the official values are in psk_secret.json)."""

from __future__ import annotations

from ping_core.mls.tls import Writer
from ping_core.mls.crypto import default_provider
from ping_core.mls.schedule.psk_secret import psk_secret

crypto = default_provider()


class _Id:
    def __init__(self, raw: bytes) -> None:
        self.raw = raw

    def write(self, w: Writer) -> None:
        w.raw(self.raw)


def test_empty_is_zero() -> None:
    assert psk_secret(crypto, []) == bytes(32)


def test_order_and_ids_matter() -> None:
    a, b = (b"\x01\x01a\x01n", b"k" * 32), (b"\x01\x01b\x01n", b"l" * 32)
    ab = psk_secret(crypto, [a, b])
    assert ab != psk_secret(crypto, [b, a])
    assert ab != psk_secret(crypto, [a, (b[0], b"m" * 32)])
    assert psk_secret(crypto, [a]) != psk_secret(crypto, [a, b])
    # An ID given as a struct is encoded the same as given as bytes.
    assert psk_secret(crypto, [(_Id(a[0]), a[1]), b]) == ab
