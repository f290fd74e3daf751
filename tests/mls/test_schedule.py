"""Key schedule API behaviour (the official values are in key-schedule.json)."""

from __future__ import annotations


from ping_core.errors import MlsReason
from ping_core.mls.schedule import key_schedule as schedule
from ping_core.mls.crypto import default_provider
from reasons import raises_reason

crypto = default_provider()
GC = b"group context bytes"


def test_zero_defaults_and_joiner_path() -> None:
    init = schedule.new_init_secret(crypto)
    a = schedule.epoch_secrets(crypto, init, None, None, GC)
    b = schedule.epoch_secrets(crypto, init, bytes(32), bytes(32), GC)
    assert a.encode() == b.encode()
    assert a.joiner_secret is not None and a.welcome is not None
    c = schedule.epoch_secrets_from_joiner(crypto, a.joiner_secret, None, GC)
    assert c.encode() == a.encode() and c.welcome == a.welcome
    assert schedule.welcome_secrets(crypto, a.joiner_secret, None) == a.welcome
    # Every input matters.
    assert schedule.epoch_secrets(crypto, init, None, None, GC + b"x").encode() != a.encode()
    assert schedule.epoch_secrets(crypto, init, b"\x01" * 32, None, GC).encode() != a.encode()
    assert schedule.epoch_secrets(crypto, init, None, b"\x01" * 32, GC).encode() != a.encode()


def test_encode_decode_and_erasure() -> None:
    s = schedule.epoch_secrets(crypto, bytes(32), None, None, GC)
    restored = schedule.EpochSecrets.decode(s.encode())
    assert restored.encode() == s.encode() and restored.joiner_secret is None
    erased = s.without_encryption_secret().without_welcome()
    assert erased.encryption_secret == bytes(32) and erased.welcome is None
    assert erased.membership_key == s.membership_key
    with raises_reason(MlsReason.CORRUPT_STATE):
        schedule.EpochSecrets.decode(s.encode()[:-1])
    assert s.membership_key.hex() not in repr(s) and s.welcome is not None
    assert s.welcome.key.hex() not in repr(s.welcome)


def test_exporter() -> None:
    s = schedule.epoch_secrets(crypto, bytes(32), None, None, GC)
    a = schedule.mls_exporter(crypto, s.exporter_secret, b"label", b"ctx", 16)
    assert len(a) == 16
    assert a != schedule.mls_exporter(crypto, s.exporter_secret, b"label", b"ctx2", 16)
    assert a != schedule.mls_exporter(crypto, s.exporter_secret, b"label2", b"ctx", 16)
    with raises_reason(MlsReason.INVALID_ARGUMENT):
        schedule.mls_exporter(crypto, s.exporter_secret, b"label", b"ctx", 1 << 16)


def test_external_key_pair() -> None:
    s = schedule.epoch_secrets(crypto, bytes(32), None, None, GC)
    sk, pk = schedule.external_key_pair(crypto, s.external_secret)
    assert crypto.dh_public(sk) == pk
