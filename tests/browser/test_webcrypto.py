"""The WebCrypto backend in Chromium's worker: choice at boot, results, fallbacks.

- Chromium (JSPI + WebCrypto Ed25519/X25519) boots on WebCrypto; a worker
  without JSPI (``jspi=0``, as Safari) or told ``crypto=noble`` boots on
  noble, and the WebCrypto provider there answers through noble.
- Every call from a synchronous entry goes to noble; a WebCrypto that rejects
  everything still gives the right answers (through noble).
- WebCrypto's results equal pyca's on CPython for fresh random keys and
  messages (more keys than the caches hold, AES-GCM around the size where
  the hybrid switches), and it raises the same errors.
- The standard vectors through each backend are in test_worker.py.
"""

from __future__ import annotations

import hashlib
import json
import random
from typing import Any

import pytest

from ping_core.errors import DecryptionFailed, InvalidKey, InvalidSignature
from ping_core.mls.crypto.pyca import PycaProvider
from pyodide_app.webcrypto import AEAD_WEBCRYPTO_MIN
from test_worker import _vector_cases, counts_expected_total, run_vector_cases

RFC8032_SK = "9d61b19deffd5a60ba844af492ec2cc44449c5697b326919703bac031cae7f60"
RFC8032_SIG = "e5564300c360ac729086e2cc806e828a84877f1eb8e5d974d873e065224901555fb8821590a33bacc61e39701cf9b46bd25bf5f0595bbe24655141438e7a100b"


def _exec(page, code: str) -> Any:  # type: ignore[no-untyped-def]
    """Run ``code`` in the worker (dev.exec, inside an RPC task); its global ``result`` as JSON."""
    return json.loads(page.evaluate("async (code) => await ping.call('dev.exec', {code})", code))


# -- the choice at boot ------------------------------------------------------------------


def test_chromium_boots_on_webcrypto(ping_page) -> None:  # type: ignore[no-untyped-def]
    info = ping_page.evaluate("ping.call('info')")
    assert info["crypto"] == "webcrypto"
    assert info["crypto_backends"] == ["webcrypto", "noble"]
    selection = info["crypto_selection"]
    assert selection["backend"] == "webcrypto"
    assert selection["reason"] == "JSPI and WebCrypto Ed25519/X25519 work here"
    assert selection["probe_ms"] > 0
    assert ping_page.evaluate("ping.ready.then((r) => r.crypto)") == "webcrypto"


START_WORKER = """
async (query) => {
  const { Ping } = await import('/ping.js');
  const other = Ping.start({ workerUrl: '/worker.mjs?' + query, dev: true });
  const ready = await other.ready;
  window.ping = other;  // the page helpers (tryCall, RUN_CASES) now talk to it
  return { crypto: ready.crypto, reason: ready.crypto_reason, info: await other.call('info') };
}
"""


@pytest.mark.parametrize(
    ("query", "reason"),
    [
        ("jspi=0", "no JSPI: Python was entered synchronously or the runtime cannot switch stacks (e.g. Safari)"),
        ("crypto=noble", "noble requested by the host"),
    ],
)
def test_workers_that_must_not_use_webcrypto_boot_on_noble(ping_page, query: str, reason: str) -> None:  # type: ignore[no-untyped-def]
    booted = ping_page.evaluate(START_WORKER, query)
    assert booted["crypto"] == "noble"
    assert booted["reason"] == reason
    assert booted["info"]["crypto_backends"] == ["noble"]
    assert booted["info"]["crypto_selection"]["backend"] == "noble"
    # The WebCrypto provider itself still answers every vector there...
    cases = _vector_cases()
    mismatches = run_vector_cases(ping_page, cases, "webcrypto")
    assert not mismatches, "\n".join(mismatches)
    counts = ping_page.evaluate("ping.call('dev.crypto_counts', {backend: 'webcrypto'})")
    can_run_sync = _exec(
        ping_page, "import json\nfrom pyodide.ffi import can_run_sync\nresult = json.dumps(can_run_sync())"
    )
    if query == "jspi=0":
        # ...through noble: no call could block on a promise.
        assert can_run_sync is False
        assert counts["webcrypto"] == 0 and counts["fallback"] == 0
        assert counts["sync_entry"] == counts_expected_total(cases)
    else:
        assert can_run_sync is True
        # WebCrypto answered, except the low-order X25519 points it rejects.
        low_order = sum(1 for c in cases if c[0].startswith("x25519-low-order"))
        assert counts["fallback"] == low_order and counts["sync_entry"] == 0
        assert counts["webcrypto"] + low_order == counts_expected_total(cases)


# -- entries and failures ------------------------------------------------------------------


def test_a_synchronous_entry_uses_noble_for_that_call(ping_page) -> None:  # type: ignore[no-untyped-def]
    # JS calling Python synchronously (a callback) cannot switch stacks: that
    # one call goes to noble, with the same result, and nothing fails.
    result = _exec(
        ping_page,
        f"""
import json
from js import Array
from pyodide.ffi import can_run_sync, create_proxy
from ping_core.mls.crypto import default_provider

p = default_provider()
sk = bytes.fromhex({RFC8032_SK!r})
before = dict(p.counts)
seen = {{}}

def callback(*args):
    seen["can_run_sync"] = can_run_sync()
    seen["sig"] = p.sign(sk, b"").hex()
    return 1

proxy = create_proxy(callback)
Array.of(0).forEach(proxy)  # a synchronous JS entry into Python (no eval: the page's CSP forbids it)
proxy.destroy()
outer = p.sign(sk, b"").hex()
result = json.dumps({{"name": p.name, "outer_can": can_run_sync(), "outer": outer, **seen,
                      "before": before, "after": dict(p.counts)}})
""",
    )
    assert result["name"] == "webcrypto"
    assert result["outer_can"] is True and result["can_run_sync"] is False
    assert result["sig"] == result["outer"] == RFC8032_SIG
    assert result["after"]["sync_entry"] == result["before"]["sync_entry"] + 1
    assert result["after"]["webcrypto"] == result["before"]["webcrypto"] + 1


def test_a_webcrypto_that_rejects_everything_still_gives_right_answers(ping_page) -> None:  # type: ignore[no-untyped-def]
    result = _exec(
        ping_page,
        """
import json
from types import SimpleNamespace
from js import DOMException, Promise
from ping_core.errors import CryptoError, DecryptionFailed, InvalidKey
from pyodide_app.crypto import NobleProvider
from pyodide_app.crypto_select import probe
from pyodide_app.webcrypto import WebCryptoProvider

# A WebCrypto helper module whose every method returns a rejected Promise (made in Python:
# the page's CSP forbids evaluating JS).
class Rejecting:
    def __getattr__(self, name):
        return lambda *args: Promise.reject(DOMException.new("no", "NotSupportedError"))


broken = Rejecting()
noble = NobleProvider()
p = WebCryptoProvider(SimpleNamespace(webcrypto=broken), noble=noble, aead_min=0)
sk, pk = bytes(range(32)), noble.sign_public(bytes(range(32)))
sig = p.sign(sk, b"m")
p.verify(pk, b"m", sig)
a, a_pub = p.dh_keygen()
b, b_pub = p.sign_keygen()
key, nonce = bytes(16), bytes(12)
sealed = p.aead_seal(key, nonce, b"", b"x" * 5000)
errors = []
for call in (lambda: p.dh(a, bytes(32)), lambda: p.aead_open(key, nonce, b"", sealed[:-1] + b"\\0")):
    try:
        call()
    except CryptoError as exc:
        errors.append(type(exc).__name__)
strict = WebCryptoProvider(SimpleNamespace(webcrypto=broken), noble=noble, strict=True)
result = json.dumps({
    "sig": sig == noble.sign(sk, b"m"),
    "pub": p.sign_public(sk) == pk and p.dh_public(a) == a_pub and noble.sign_public(b) == b_pub,
    "dh": p.dh(a, noble.dh_public(bytes(range(32)))) == noble.dh(a, noble.dh_public(bytes(range(32)))),
    "aead": p.aead_open(key, nonce, b"", sealed) == b"x" * 5000 and sealed == noble.aead_seal(key, nonce, b"", b"x" * 5000),
    "errors": errors,
    "counts": p.counts,
    "probe": probe(strict),
})
""",
    )
    assert result["sig"] and result["pub"] and result["dh"] and result["aead"]
    assert result["errors"] == ["InvalidKey", "DecryptionFailed"]
    assert result["counts"]["webcrypto"] == 0 and result["counts"]["fallback"] == 11
    # The boot probe would have refused this WebCrypto (and kept noble).
    assert result["probe"].startswith("CryptoError: ") and "WebCrypto" in result["probe"]


# -- the same results as pyca, on fresh random inputs --------------------------------------

CROSS_CHECK = """
import json
from ping_core.errors import CryptoError
from ping_core.mls.crypto import default_provider

p = default_provider()
assert p.name == "webcrypto", p.name
before = dict(p.counts)
h = bytes.fromhex
data = json.loads(DATA)

def attempt(fn):
    try:
        out = fn()
    except CryptoError as exc:
        return {"error": type(exc).__name__}
    return out.hex() if isinstance(out, bytes) else out

out = {"sign": [], "dh": [], "aead": []}
for i, (seed, msg, bad) in enumerate(data["sign"]):
    if i % 2:  # the public key first (key imported with it), or the signature first
        pub = p.sign_public(h(seed))
        sig = p.sign(h(seed), h(msg))
    else:
        sig = p.sign(h(seed), h(msg))
        pub = p.sign_public(h(seed))
    out["sign"].append([pub.hex(), sig.hex(), attempt(lambda: p.verify(pub, h(msg), sig)),
                        attempt(lambda: p.verify(pub, h(msg), h(bad)))])
for scalar, u in data["dh"]:
    out["dh"].append([p.dh_public(h(scalar)).hex(), attempt(lambda: p.dh(h(scalar), h(u)))])
for key, nonce, aad, pt in data["aead"]:
    ct = p.aead_seal(h(key), h(nonce), h(aad), h(pt))
    tampered = ct[:-1] + bytes([ct[-1] ^ 1])
    out["aead"].append([ct.hex(), attempt(lambda: p.aead_open(h(key), h(nonce), h(aad), ct)),
                        attempt(lambda: p.aead_open(h(key), h(nonce), h(aad), tampered))])
after = dict(p.counts)
out["counts"] = {k: after[k] - before[k] for k in after}
result = json.dumps(out)
"""

# Sizes around the hybrid's switch to WebCrypto for AES-GCM (AEAD_WEBCRYPTO_MIN bytes).
AEAD_SIZES = sorted(
    {0, 1, 15, 16, 17, 100, 3072, 5000, 65536, 70001, AEAD_WEBCRYPTO_MIN - 17, AEAD_WEBCRYPTO_MIN - 16}
    | {AEAD_WEBCRYPTO_MIN - 1, AEAD_WEBCRYPTO_MIN, AEAD_WEBCRYPTO_MIN + 1}
)


def test_results_match_pyca_on_random_inputs(ping_page) -> None:  # type: ignore[no-untyped-def]
    rng = random.Random(20240611)
    rand = rng.randbytes
    # 300 signing keys and 300 X25519 scalars: more than the 256 cached per kind.
    sign = []
    for i in range(300):
        sig = rand(64)
        sign.append([rand(32).hex(), rand(i % 257).hex(), sig.hex()])
    dh = [[rand(32).hex(), rand(32).hex()] for _ in range(300)]
    aead = [[rand(16).hex(), rand(12).hex(), rand(rng.choice([0, 7, 40])).hex(), rand(n).hex()] for n in AEAD_SIZES]
    data = json.dumps({"sign": sign, "dh": dh, "aead": aead})
    got = _exec(ping_page, f"DATA = {data!r}\n" + CROSS_CHECK)

    pyca = PycaProvider()
    for (seed, msg, _bad), (pub, sig, ok, refused) in zip(sign, got["sign"], strict=True):
        assert pub == pyca.sign_public(bytes.fromhex(seed)).hex()
        assert sig == pyca.sign(bytes.fromhex(seed), bytes.fromhex(msg)).hex()
        assert ok is None and refused == {"error": "InvalidSignature"}
    for (scalar, u), (pub, shared) in zip(dh, got["dh"], strict=True):
        assert pub == pyca.dh_public(bytes.fromhex(scalar)).hex()
        try:
            expected: Any = pyca.dh(bytes.fromhex(scalar), bytes.fromhex(u)).hex()
        except InvalidKey:
            expected = {"error": "InvalidKey"}
        assert shared == expected
    for (key, nonce, aad, pt), (ct, opened, tampered) in zip(aead, got["aead"], strict=True):
        args = (bytes.fromhex(key), bytes.fromhex(nonce), bytes.fromhex(aad))
        assert ct == pyca.aead_seal(*args, bytes.fromhex(pt)).hex()
        assert opened == pt
        assert tampered == {"error": "DecryptionFailed"}
        with pytest.raises(DecryptionFailed):
            pyca.aead_open(*args, bytes.fromhex(ct)[:-1] + bytes([bytes.fromhex(ct)[-1] ^ 1]))
    # Ed25519 and X25519 went through WebCrypto; AES-GCM from AEAD_WEBCRYPTO_MIN
    # bytes on; only the tampered large ciphertexts were re-run through noble.
    big_open = sum(1 for n in AEAD_SIZES if n + 16 >= AEAD_WEBCRYPTO_MIN)
    big_seal = sum(1 for n in AEAD_SIZES if n >= AEAD_WEBCRYPTO_MIN)
    assert big_seal >= 5
    assert got["counts"]["sync_entry"] == 0
    assert got["counts"]["fallback"] == big_open
    assert got["counts"]["webcrypto"] == 300 * 4 + 300 * 2 + big_seal + big_open


# -- Ed25519: cofactorless verification, as pyca (OpenSSL) ---------------------------------

_P = 2**255 - 19
_L = 2**252 + 27742317777372353535851937790883648493
_D = -121665 * pow(121666, _P - 2, _P) % _P


def _add(p1: tuple[int, int], p2: tuple[int, int]) -> tuple[int, int]:
    (x1, y1), (x2, y2) = p1, p2
    t = _D * x1 * x2 * y1 * y2 % _P
    return ((x1 * y2 + x2 * y1) * pow(1 + t, _P - 2, _P) % _P, (y1 * y2 + x1 * x2) * pow(1 - t, _P - 2, _P) % _P)


def _mul(n: int, point: tuple[int, int]) -> tuple[int, int]:
    acc = (0, 1)
    while n:
        if n & 1:
            acc = _add(acc, point)
        point, n = _add(point, point), n >> 1
    return acc


def _decode(b: bytes) -> tuple[int, int]:
    y = int.from_bytes(b, "little")
    sign, y = y >> 255, y & ((1 << 255) - 1)
    x2 = (y * y - 1) * pow(_D * y * y + 1, _P - 2, _P) % _P
    x = pow(x2, (_P + 3) // 8, _P)
    if (x * x - x2) % _P:
        x = x * pow(2, (_P - 1) // 4, _P) % _P
    if x & 1 != sign:
        x = _P - x
    return x, y


def _encode(point: tuple[int, int]) -> bytes:
    return (point[1] | ((point[0] & 1) << 255)).to_bytes(32, "little")


def _signature_with_torsion(seed: bytes, message: bytes) -> tuple[bytes, bytes]:
    """(public key, signature) whose R carries a point of order 8.

    S = r + k*a for R = rB + T: the cofactored equation [8]SB = [8]R + [8]kA
    holds, the cofactorless one SB = R + kA does not. RFC 8032 allows either
    check; signers who do this make members disagree unless every backend
    checks the same way.
    """
    digest = hashlib.sha512(seed).digest()
    a = (int.from_bytes(digest[:32], "little") & ((1 << 254) - 8)) | (1 << 254)
    base = _decode((4 * pow(5, _P - 2, _P) % _P).to_bytes(32, "little"))
    public = _encode(_mul(a, base))
    torsion = _decode(bytes.fromhex("c7176a703d4dd84fba3c0b760d10670f2a2053fa2c39ccc64ec7fd7792ac037a"))
    r = int.from_bytes(hashlib.sha512(digest[32:] + message).digest(), "little") % _L
    big_r = _encode(_add(_mul(r, base), torsion))
    k = int.from_bytes(hashlib.sha512(big_r + public + message).digest(), "little") % _L
    return public, big_r + ((r + k * a) % _L).to_bytes(32, "little")


VERIFY = "async ([pub, sig, backend]) => tryCall('dev.crypto', {op: 'verify', backend, args: [unhex(pub), unhex('68656c6c6f'), unhex(sig)]})"
# The PingError's MLS fields as the page sees them (ping.js from the worker's error reply).
VERIFY_REASON = """async ([pub, sig, backend]) => {
  try { await window.ping.call('dev.crypto', {op: 'verify', backend, args: [unhex(pub), unhex('68656c6c6f'), unhex(sig)]}); }
  catch (e) { return [e.name, e.reason, e.peerFault]; }
  return null;
}"""


@pytest.mark.parametrize("backend", ["webcrypto", "noble"])
def test_ed25519_verification_is_cofactorless_like_pyca(ping_page, backend: str) -> None:  # type: ignore[no-untyped-def]
    public, signature = _signature_with_torsion(bytes(range(32)), b"hello")
    pyca = PycaProvider()
    assert pyca.sign_public(bytes(range(32))) == public
    with pytest.raises(InvalidSignature):
        pyca.verify(public, b"hello", signature)
    got = ping_page.evaluate(VERIFY, [public.hex(), signature.hex(), backend])
    assert got.get("error", {}).get("name") == "InvalidSignature", got
    # The refusal reaches the page with its reason, as data.
    refused = ping_page.evaluate(VERIFY_REASON, [public.hex(), signature.hex(), backend])
    assert refused == ["InvalidSignature", "bad_signature", True], refused


# -- the crossing ----------------------------------------------------------------------------


def test_a_crossing_waits_without_an_event_loop_turn(ping_page) -> None:  # type: ignore[no-untyped-def]
    # pyodide_app.webcrypto.Crossing: a WebCrypto call schedules nothing on the
    # WebLoop (plain run_sync(promise) schedules the Future's callbacks there, a
    # macrotask per call), gives the same bytes as that path, and a helper that
    # rejects or does not exist raises and leaves nothing pending.
    result = _exec(
        ping_page,
        """
import asyncio, json
from ping_core.mls.crypto import default_provider
from pyodide_app.webcrypto import WebCryptoProvider

p = default_provider()
plain = WebCryptoProvider()
plain._cross._settler = None  # what run_sync(helper(...)) alone does
loop = asyncio.get_event_loop()
scheduled = []
cls = type(loop)
original = cls.call_soon, cls.call_later

def spy_soon(self, callback, *args, **kwargs):
    scheduled.append("soon")
    return original[0](self, callback, *args, **kwargs)

def spy_later(self, delay, callback, *args, **kwargs):
    scheduled.append("later")
    return original[1](self, delay, callback, *args, **kwargs)

sk = bytes(range(32))
msg = b"crossing"
out = {"immediate": p._cross.immediate, "plain_immediate": plain._cross.immediate}
cls.call_soon, cls.call_later = spy_soon, spy_later
try:
    sig = p.sign(sk, msg)
    p.verify(p.sign_public(sk), msg, sig)
    shared = p.dh(bytes([9]) * 32, p.dh_public(bytes([5]) * 32))
    sealed = p.aead_seal(bytes(16), bytes(12), b"ad", bytes(5000))
    out["immediate_turns"] = len(scheduled)
    del scheduled[:]
    out["same"] = (sig == plain.sign(sk, msg) and shared == plain.dh(bytes([9]) * 32, plain.dh_public(bytes([5]) * 32))
                   and sealed == plain.aead_seal(bytes(16), bytes(12), b"ad", bytes(5000)))
    out["plain_turns"] = len(scheduled)
finally:
    cls.call_soon, cls.call_later = original
errors = []
for name, args in (("noSuchHelper", ()), ("gcmOpen", (p._to_js(bytes(28 + 16)), 0))):
    try:
        p._cross.call(name, *args)
        errors.append("resolved")
    except Exception as exc:
        errors.append(type(exc).__name__)
out["errors"] = errors
out["pending"] = len(p._cross._pending)
result = json.dumps(out)
""",
    )
    assert result["immediate"] is True and result["plain_immediate"] is False
    assert result["same"] is True
    assert result["immediate_turns"] == 0
    assert result["plain_turns"] > 0  # the spy sees the turns it is there to count
    assert result["errors"] == ["_Rejected", "_Rejected"]
    assert result["pending"] == 0


# -- concurrency ----------------------------------------------------------------------------


def test_concurrent_requests_interleave_at_crypto_calls_and_stay_correct(ping_page) -> None:  # type: ignore[no-untyped-def]
    # While one request waits for WebCrypto, another runs (as at an await):
    # documented in pyodide_app/webcrypto.py. Results stay right.
    code = """
import builtins, json
from ping_core.mls.crypto import default_provider
log = builtins.__dict__.setdefault("_ping_interleave_log", [])
p = default_provider()
sigs = []
for i in range(8):
    sigs.append(p.sign(bytes([TAG]) * 32, bytes([i])).hex())
    log.append(TAG)
result = json.dumps(sigs)
"""
    got = ping_page.evaluate(
        """async (code) => Promise.all([1, 2, 3].map((tag) =>
            ping.call('dev.exec', {code: code.replaceAll('TAG', String(tag))})))""",
        code,
    )
    pyca = PycaProvider()
    for tag, sigs in zip([1, 2, 3], got, strict=True):
        assert json.loads(sigs) == [pyca.sign(bytes([tag]) * 32, bytes([i])).hex() for i in range(8)]
    log = _exec(ping_page, "import builtins, json\nresult = json.dumps(builtins._ping_interleave_log)")
    assert sorted(log) == [1] * 8 + [2] * 8 + [3] * 8
    assert log != sorted(log), "the three requests ran one after another: no stack switch happened"


# -- batches ---------------------------------------------------------------------------------


def test_batches_answer_like_the_single_calls_in_one_crossing_each(ping_page) -> None:  # type: ignore[no-untyped-def]
    # The engine's batches (ping_core.mls.crypto.provider): one WebCrypto call per
    # batch, results checked against pyca on CPython, every refusal kept.
    result = _exec(
        ping_page,
        """
import json
from ping_core.errors import InvalidKey, InvalidSignature
from ping_core.mls.crypto import default_provider
from ping_core.mls.crypto.provider import aead_seal_many, dh_keygen_many, encap_dh_many, keygen_and_sign, prefetch_verify

p = default_provider()
out = {"name": p.name}
sk, pk = p.sign_keygen()
good = p.sign(sk, b"good")
small_order = bytes(32)
before = dict(p.counts)
prefetch_verify(p, [(pk, b"good", good), (pk, b"bad", good), (small_order, b"x", good)])
after_prefetch = dict(p.counts)
p.verify(pk, b"good", good)
try:
    p.verify(pk, b"bad", good)
    out["bad"] = "accepted"
except InvalidSignature:
    out["bad"] = "InvalidSignature"
try:
    p.verify(small_order, b"x", good)
    out["small_order"] = "accepted"
except InvalidKey:
    out["small_order"] = "InvalidKey"
out["prefetch_batches"] = after_prefetch["batches"] - before["batches"]
out["prefetched"] = p.counts["prefetched"] - before["prefetched"]
recipients = [p.dh_keygen() for _ in range(3)]
before = dict(p.counts)
encaps = encap_dh_many(p, [r[1] for r in recipients] + [bytes(32), b"short"])
out["encap_batches"] = p.counts["batches"] - before["batches"]
out["encap_ok"] = [p.dh(r[0], e[0]) == e[1] for r, e in zip(recipients, encaps[:3])]
out["encap_errors"] = [type(e).__name__ for e in encaps[3:]]
items = [(bytes([i]) * 16, bytes(12), b"aad", bytes(i * 40)) for i in range(4)]
out["seal"] = [c.hex() for c in aead_seal_many(p, items)]
out["pairs"] = [[a.hex(), b.hex()] for a, b in dh_keygen_many(p, 2)]
out["single_pairs"] = [[a.hex(), b.hex()] for a, b in (p.dh_keygen() for _ in range(3))]
seed = bytes(range(32))
before = dict(p.counts)
pairs, sigs = keygen_and_sign(p, seed, 1, [b"A" + bytes(32), b"head" + bytes(64) + b"tail"], [(0, 1, 0), (1, 4, -1)])
out["templates_calls"] = p.counts["webcrypto"] - before["webcrypto"]
out["templates"] = [[a.hex(), b.hex()] for a, b in pairs] + [[s.hex() for s in sigs]]
result = json.dumps(out)
""",
    )
    assert result["name"] == "webcrypto"
    assert (result["bad"], result["small_order"]) == ("InvalidSignature", "InvalidKey")
    assert result["prefetch_batches"] == 1 and result["prefetched"] == 2  # the small-order key was left out
    assert result["encap_batches"] == 1 and result["encap_ok"] == [True, True, True]
    assert result["encap_errors"] == ["InvalidKey", "InvalidKey"]
    pyca = PycaProvider()
    items = [(bytes([i]) * 16, bytes(12), b"aad", bytes(i * 40)) for i in range(4)]
    assert result["seal"] == [pyca.aead_seal(*item).hex() for item in items]
    assert all(pyca.dh_public(bytes.fromhex(sk)) == bytes.fromhex(pk) for sk, pk in result["pairs"])
    # Fresh pairs come from WebCrypto's generateKey (the scalar read from its PKCS #8 export).
    assert all(pyca.dh_public(bytes.fromhex(sk)) == bytes.fromhex(pk) for sk, pk in result["single_pairs"])
    assert len({sk for sk, _ in result["single_pairs"] + result["pairs"]}) == 5
    seed = bytes(range(32))
    (sk_hex, pk_hex), (sig1_hex, sig2_hex) = result["templates"]
    assert pyca.dh_public(bytes.fromhex(sk_hex)) == bytes.fromhex(pk_hex)
    sig1 = pyca.sign(seed, b"A" + bytes.fromhex(pk_hex))
    assert sig1_hex == sig1.hex() and sig2_hex == pyca.sign(seed, b"head" + sig1 + b"tail").hex()
    assert result["templates_calls"] == 1


# -- a PrivateMessage's protection in one crossing -----------------------------------------

# Runs in the worker and on CPython (pyca): the same inputs give the same bytes.
SEAL_CASES = """
from ping_core.errors import CryptoError
from ping_core.mls.tls import encode, opaque
from ping_core.mls.crypto.provider import sign_and_encrypt
from ping_core.mls.framing.epoch_framing import EpochFraming
from ping_core.mls.framing.private_message import protect_private
from ping_core.mls.tree.secret_tree import SecretTree

def seal_inputs(i):
    seed = bytes([i + 1]) * 32
    content = (bytes([i]) * 16, bytes([i + 2]) * 12, b"aad" * i, b"h" * (i * 700), b"t" * (i % 3) * 9)
    sender_data = (bytes([i + 3]) * 32, b"key label", b"nonce label", b"sd aad", bytes(range(12)))
    return seed, b"signed %d" % i * (i + 1), content, sender_data

def seal_errors(crypto):
    seed, to_sign, content, sender_data = seal_inputs(1)
    errors = []
    for args in [
        (bytes(31), to_sign, content, sender_data),
        (seed, "text", content, sender_data),
        (seed, to_sign, (bytes(15),) + content[1:], sender_data),
        (seed, to_sign, content[:1] + (bytes(11),) + content[2:], sender_data),
        (seed, to_sign, content[:3] + (None,) + content[4:], sender_data),
        (seed, to_sign, content, (None,) + sender_data[1:]),
        (seed, to_sign, content, sender_data[:1] + (None,) + sender_data[2:]),
    ]:
        try:
            sign_and_encrypt(crypto, *args)
            errors.append("accepted")
        except CryptoError as exc:
            errors.append(f"{type(exc).__name__}: {exc}")
    return errors

def framed_messages(crypto):
    gid = b"group"
    context = b"\\x00\\x01\\x00\\x01" + opaque(gid) + (7).to_bytes(8, "big") + b"the rest of the context"
    ep = EpochFraming(gid, 7, context, bytes(range(32)), bytes(32), SecretTree(crypto, bytes(range(1, 33)), 4))
    out = []
    for n, (data, ad, padding) in enumerate([(b"", b"", 0), (b"m" * 100, b"ad", 0), (b"x" * 3000, b"", 13)]):
        msg = protect_private(crypto, ep, 2, data, bytes([9]) * 32, authenticated_data=ad, padding=padding,
                              reuse_guard=bytes([n, 1, 2, 3]))
        out.append(encode(msg).hex())
    return out
"""


def test_sign_and_encrypt_is_one_crossing_with_the_reference_bytes_and_errors(ping_page) -> None:  # type: ignore[no-untyped-def]
    result = _exec(
        ping_page,
        SEAL_CASES
        + """
import json
from types import SimpleNamespace
from js import DOMException, Promise
from ping_core.mls.crypto import default_provider
from pyodide_app.crypto import NobleProvider
from pyodide_app.webcrypto import WebCryptoProvider

p = default_provider()
out = {"name": p.name, "sealed": [], "crossings": [], "errors": []}
for i in range(4):
    for _ in range(2):  # the key imported with the first call, cached for the second
        before = dict(p.counts)
        sealed = sign_and_encrypt(p, *seal_inputs(i))
        out["sealed"].append([part.hex() for part in sealed])
        out["crossings"].append(p.counts["webcrypto"] - before["webcrypto"] + 10 * (p.counts["fallback"] - before["fallback"]))
out["errors"] = seal_errors(p)

class Rejecting:
    def __getattr__(self, name):
        return lambda *args: Promise.reject(DOMException.new("no", "NotSupportedError"))

broken = WebCryptoProvider(SimpleNamespace(webcrypto=Rejecting()), noble=NobleProvider())
out["rejected"] = [part.hex() for part in sign_and_encrypt(broken, *seal_inputs(2))]
out["rejected_fallbacks"] = broken.counts["fallback"]
before = dict(p.counts)
out["framed"] = framed_messages(p)
out["framed_crossings"] = p.counts["webcrypto"] - before["webcrypto"]
result = json.dumps(out)
""",
    )
    from ping_core.mls.crypto.provider import sign_and_encrypt

    pyca = PycaProvider()
    namespace: dict[str, Any] = {}
    exec(SEAL_CASES, namespace)  # noqa: S102
    want = [[part.hex() for part in sign_and_encrypt(pyca, *namespace["seal_inputs"](i))] for i in range(4)]
    assert result["name"] == "webcrypto"
    assert result["sealed"] == [w for w in want for _ in range(2)]
    assert result["crossings"] == [1] * 8  # one WebCrypto call each, no fallback
    # The single calls' checks, in their order, with their words.
    assert result["errors"] == namespace["seal_errors"](pyca)
    assert [e.split(":")[0] for e in result["errors"]] == ["InvalidKey", "CryptoError", "InvalidKey", "InvalidKey"] + ["CryptoError"] * 3
    # A WebCrypto that rejects: the single calls answer, with the same bytes.
    assert result["rejected"] == want[2] and result["rejected_fallbacks"] >= 1
    # Whole PrivateMessages: byte for byte what pyca frames on CPython, one crossing each.
    assert result["framed"] == namespace["framed_messages"](pyca)
    assert result["framed_crossings"] == 3
