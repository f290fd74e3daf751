"""Ed25519 verification and X25519 on two threads (ping_core.mls.crypto.threaded) and the pyca
methods built on them: the same verdicts, results and errors as pyca's one-at-a-time calls.

Skipped, saying so, where the module cannot reach OpenSSL (one CPU, no libcrypto)."""

from __future__ import annotations

import os

import pytest

from ping_core.errors import CryptoError, InvalidKey, InvalidSignature, MlsReason
from ping_core.mls.crypto import threaded
from ping_core.mls.crypto.provider import prefetch_verify
from ping_core.mls.crypto.pyca import PycaProvider
from reasons import raises_reason

pytestmark = pytest.mark.skipif(not threaded.AVAILABLE, reason="threaded OpenSSL unavailable (one CPU or no libcrypto)")

N = 2 * threaded.MIN_BATCH + 3  # enough for both threads, odd


def _signed(crypto: PycaProvider, n: int) -> list[tuple[bytes, bytes, bytes]]:
    out = []
    for i in range(n):
        sk, pk = crypto.sign_keygen()
        msg = os.urandom(40 + i)
        out.append((pk, msg, crypto.sign(sk, msg)))
    return out


def _pyca_verdict(crypto: PycaProvider, item: tuple[bytes, bytes, bytes]) -> bool:
    try:
        crypto.verify(*item)
    except InvalidSignature:
        return False
    return True


def test_verify_many_agrees_with_pyca_on_good_and_bad_signatures() -> None:
    crypto = PycaProvider()
    items = _signed(crypto, N)
    pk, msg, sig = items[3]
    items[3] = (pk, msg + b"x", sig)  # wrong message
    items[7] = (items[7][0], items[7][1], bytes(64))  # garbage signature
    items[9] = (items[8][0], items[9][1], items[9][2])  # another member's key
    flipped = bytearray(items[11][2])
    flipped[0] ^= 1
    items[11] = (items[11][0], items[11][1], bytes(flipped))
    verdicts = threaded.verify_many(items)
    assert verdicts == [_pyca_verdict(PycaProvider(), it) for it in items]
    assert verdicts.count(False) == 4


def test_prefetched_verdicts_answer_verify_in_order_with_the_same_errors() -> None:
    crypto = PycaProvider()
    items = _signed(crypto, N)
    items[5] = (items[5][0], items[5][1] + b"!", items[5][2])
    prefetch_verify(crypto, items)
    assert len(crypto._verdicts) == N  # computed ahead: verify() below pops them
    for i, item in enumerate(items):
        if i == 5:
            with raises_reason(MlsReason.BAD_SIGNATURE, InvalidSignature):
                crypto.verify(*item)
        else:
            crypto.verify(*item)
    assert not crypto._verdicts  # each verdict answers one call
    with pytest.raises(InvalidSignature):
        crypto.verify(*items[5])  # asked again: pyca's own answer, the same


def test_a_prefetched_verdict_is_what_verify_answers() -> None:
    """The verdict path is really taken (a planted verdict decides), so the test above can fail."""
    crypto = PycaProvider()
    items = _signed(crypto, N)
    prefetch_verify(crypto, items)
    pk, msg, sig = items[0]
    crypto._verdicts[(pk, sig, msg)] = False
    with pytest.raises(InvalidSignature):
        crypto.verify(pk, msg, sig)


def test_prefetch_leaves_bad_keys_and_small_batches_to_verify() -> None:
    crypto = PycaProvider()
    items = _signed(crypto, N)
    items[2] = (bytes(32), items[2][1], items[2][2])  # small-order key: check_ed25519_public refuses it
    items[4] = (items[4][0], items[4][1], items[4][2][:63])  # short signature
    prefetch_verify(crypto, items)
    assert len(crypto._verdicts) == N - 2
    with pytest.raises(InvalidKey):
        crypto.verify(*items[2])
    with pytest.raises(InvalidSignature):
        crypto.verify(*items[4])
    small = PycaProvider()
    prefetch_verify(small, items[: threaded.MIN_BATCH - 1])
    assert not small._verdicts


def test_encap_dh_many_on_two_threads_matches_dh_and_its_errors() -> None:
    crypto = PycaProvider()
    recipients = [crypto.dh_keygen() for _ in range(N)]
    publics = [pk for _, pk in recipients]
    publics[4] = bytes(32)  # low order: all-zero shared secret
    publics[6] = b"short"
    results = crypto.encap_dh_many(publics)
    for i, ((sk, _), r) in enumerate(zip(recipients, results)):
        if i == 4:
            assert isinstance(r, InvalidKey) and "all zero" in str(r)
        elif i == 6:
            assert isinstance(r, CryptoError) and "32 bytes" in str(r)
        else:
            assert not isinstance(r, CryptoError)
            ephemeral, shared = r
            assert crypto.dh(sk, ephemeral) == shared
    assert len({r[0] for r in results if not isinstance(r, CryptoError)}) == N - 2  # fresh keys
    raw = threaded.encap_dh_many([(os.urandom(32), pk) for pk in publics[:3]])
    assert all(r is not None for r in raw)
