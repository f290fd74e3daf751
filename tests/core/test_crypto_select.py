"""The worker's boot-time crypto choice (pyodide_app.crypto_select), pure parts on CPython.

In the browser: tests/browser/test_webcrypto.py (Chromium picks WebCrypto,
jspi=0 and crypto=noble workers pick noble).
"""

from __future__ import annotations

from collections.abc import Callable

import pytest

from ping_core.errors import InvalidKey, MlsReason
from ping_core.mls.crypto.pyca import PycaProvider
from pyodide_app.crypto_select import decide, probe


def _never() -> bool:
    raise AssertionError("this check must not run")


def _ok(value: bool = True) -> Callable[[], bool]:
    return lambda: value


def test_noble_requested_runs_no_check() -> None:
    choice = decide("noble", jspi=_never, subtle=_never, run_probe=_never)  # type: ignore[arg-type]
    assert (choice.backend, choice.reason, choice.probe_ms) == ("noble", "noble requested by the host", None)


def test_no_jspi_means_noble_without_probing() -> None:
    choice = decide("auto", jspi=_ok(False), subtle=_never, run_probe=_never)  # type: ignore[arg-type]
    assert choice.backend == "noble"
    assert choice.reason.startswith("no JSPI")


def test_no_subtle_means_noble() -> None:
    choice = decide("auto", jspi=_ok(), subtle=_ok(False), run_probe=_never)  # type: ignore[arg-type]
    assert choice.backend == "noble"
    assert "crypto.subtle" in choice.reason


def test_failed_probe_means_noble_and_says_why() -> None:
    choice = decide("auto", jspi=_ok(), subtle=_ok(), run_probe=lambda: "X25519 differs from RFC 7748")
    assert choice.backend == "noble"
    assert choice.reason == "WebCrypto probe failed: X25519 differs from RFC 7748"
    assert choice.probe_ms is not None


@pytest.mark.parametrize("mode", ["auto", None, "webcrypto", 7])
def test_webcrypto_when_everything_works(mode: object) -> None:
    # Unknown modes count as "auto": boot never fails over an option.
    choice = decide(mode, jspi=_ok(), subtle=_ok(), run_probe=lambda: None)
    assert choice.backend == "webcrypto"
    assert choice.as_dict()["backend"] == "webcrypto"


def test_probe_passes_a_correct_backend() -> None:
    # pyca computes the same known answers and refuses the all-zero point.
    assert probe(PycaProvider()) is None


class _Nondeterministic(PycaProvider):
    def sign(self, secret: bytes, message: bytes) -> bytes:
        return bytes(64)


class _AcceptsZero(PycaProvider):
    def dh(self, secret: bytes, public: bytes) -> bytes:
        if public == bytes(32):
            return bytes(32)
        return super().dh(secret, public)


class _Throws(PycaProvider):
    def dh_keygen(self) -> tuple[bytes, bytes]:
        raise TypeError("not supported")


class _AcceptsAnything(PycaProvider):
    def verify(self, public: bytes, message: bytes, signature: bytes) -> None:
        return None


class _RefusesKeys(PycaProvider):
    def sign_public(self, secret: bytes) -> bytes:
        raise InvalidKey("no Ed25519 here", reason=MlsReason.INVALID_KEY)


@pytest.mark.parametrize(
    ("provider", "problem"),
    [
        (_Nondeterministic(), "Ed25519 signature differs from RFC 8032 (not deterministic?)"),
        (_AcceptsZero(), "X25519 accepted the all-zero point"),
        (_Throws(), "TypeError: not supported"),
        (_AcceptsAnything(), "Ed25519 accepted a signature of another message"),
        (_RefusesKeys(), "InvalidKey: no Ed25519 here"),
    ],
)
def test_probe_names_what_is_wrong(provider: PycaProvider, problem: str) -> None:
    assert probe(provider) == problem
