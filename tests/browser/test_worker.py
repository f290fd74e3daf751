"""The browser worker end to end, in Chromium, from a running ping_server.

Boot to ``ready``, the crypto vectors of tests/core/test_crypto_vectors.py
through the worker's JS backends (noble and WebCrypto), CBOR, the IndexedDB blob store
across a reload, and the fetch bridge's TransportError.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
from pathlib import Path
from typing import Any

import cbor2
import pytest

from pingpage import PAGE_HELPERS, wait_ready

_spec = importlib.util.spec_from_file_location(
    "crypto_vectors", Path(__file__).resolve().parents[1] / "core" / "test_crypto_vectors.py"
)
assert _spec is not None and _spec.loader is not None
V = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(V)


def test_page_worker_reaches_ready(page, server_url: str) -> None:  # type: ignore[no-untyped-def]
    # Offline: every request of the page and its worker goes to our server.
    seen: list[str] = []
    foreign: list[str] = []

    def guard(route):  # type: ignore[no-untyped-def]
        seen.append(route.request.url)
        if route.request.url.startswith(server_url + "/"):
            route.continue_()
        else:
            foreign.append(route.request.url)
            route.abort()

    page.context.route("**/*", guard)
    page.goto(server_url + "/")
    wait_ready(page)
    assert not foreign, foreign
    assert any(url.endswith("/pyodide/pyodide.asm.wasm") for url in seen), seen
    assert page.text_content("#boot-status") == "ready"
    info = page.evaluate("window.ping.call('info')")
    # Chromium has JSPI and WebCrypto Ed25519/X25519: WebCrypto above noble
    # (tests/browser/test_webcrypto.py covers the choice and its fallbacks).
    assert info["crypto"] == "webcrypto"
    assert info["crypto_backends"] == ["webcrypto", "noble"]
    assert info["python"].startswith("3.14")
    assert info["platform"] == "emscripten"
    # Without ?dev=1 the dev.* methods are not there.
    assert not any(m.startswith("dev.") for m in info["methods"])


# -- crypto vectors through the worker -------------------------------------------------


def _vector_cases() -> list[tuple[str, str, list[Any], Any]]:
    """(id, op, args, expected) for every vector; hex strings stand for bytes."""
    cases: list[tuple[str, str, list[Any], Any]] = []

    def values(params: list[Any]) -> list[tuple[str, tuple[Any, ...]]]:
        return [(p.id, p.values) for p in params]

    for vid, (secret, public, message, sig) in values(V.ED25519):
        cases.append((f"ed25519-{vid}-public", "sign_public", [secret], public))
        cases.append((f"ed25519-{vid}-sign", "sign", [secret, message], sig))
        cases.append((f"ed25519-{vid}-verify", "verify", [public, message, sig], None))
        bad = sig[:-2] + format(int(sig[-2:], 16) ^ 1, "02x")
        cases.append((f"ed25519-{vid}-bad-sig", "verify", [public, message, bad], {"error": "InvalidSignature"}))
    for vid, (scalar, u, out) in values(V.X25519):
        cases.append((f"x25519-{vid}", "dh", [scalar, u], out))
    for vid, (ikm, salt, info, length, prk, okm) in values(V.HKDF):
        cases.append((f"hkdf-{vid}-extract", "hkdf_extract", [salt, ikm], prk))
        cases.append((f"hkdf-{vid}-expand", "hkdf_expand", [prk, info, length], okm))
    for vid, (key, data, mac) in values(V.HMAC):
        cases.append((f"hmac-{vid}", "hmac", [key, data], {"prefix": mac}))
    for vid, (key, nonce, aad, pt, ct, tag) in values(V.AES_GCM):
        cases.append((f"gcm-{vid}-seal", "aead_seal", [key, nonce, aad, pt], ct + tag))
        cases.append((f"gcm-{vid}-open", "aead_open", [key, nonce, aad, ct + tag], pt))
        tampered = ct + tag[:-2] + format(int(tag[-2:], 16) ^ 1, "02x")
        cases.append((f"gcm-{vid}-tampered", "aead_open", [key, nonce, aad, tampered], {"error": "DecryptionFailed"}))
    for vid, public in [(p.id, p.values[0]) for p in V.LOW_ORDER]:
        cases.append((f"x25519-low-order-{vid}", "dh", ["77" * 32, public], {"error": "InvalidKey"}))
    for i, public in enumerate(V.SMALL_ORDER_ED25519):
        cases.append((f"ed25519-small-order-{i}", "verify", [public, "00", "01" + "00" * 63], {"error": "InvalidKey"}))
    cases += [
        ("gcm-key-15", "aead_seal", ["00" * 15, "00" * 12, "", "00"], {"error": "InvalidKey"}),
        ("gcm-key-32", "aead_seal", ["00" * 32, "00" * 12, "", "00"], {"error": "InvalidKey"}),
        ("gcm-nonce-8", "aead_open", ["00" * 16, "00" * 8, "", "00" * 17], {"error": "InvalidKey"}),
        ("gcm-short", "aead_open", ["00" * 16, "00" * 12, "", "00" * 15], {"error": "DecryptionFailed"}),
        ("ed25519-secret-31", "sign", ["00" * 31, "00"], {"error": "InvalidKey"}),
        ("ed25519-public-33", "verify", ["00" * 33, "00", "00" * 64], {"error": "InvalidKey"}),
        ("ed25519-sig-63", "verify", [V.ED25519[0].values[1], "", V.ED25519[0].values[3][:126]],
         {"error": "InvalidSignature"}),
        ("x25519-public-31", "dh", ["77" * 32, "09" * 31], {"error": "InvalidKey"}),
        ("not-bytes", "hash", [5], {"error": "CryptoError"}),
        ("sha256-abc", "hash", [b"abc".hex()], "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"),
    ]  # fmt: skip
    return cases


RUN_CASES = """
async ([cases, backend]) => {
  const enc = (v) => v instanceof Uint8Array ? hex(v) : Array.isArray(v) ? v.map(enc) : (v ?? null);
  const out = [];
  for (const [id, op, args] of cases) {
    const r = await tryCall('dev.crypto', { op, backend, args: args.map((a) => typeof a === 'string' ? unhex(a) : a) });
    out.push(r.error ? { error: r.error.name } : enc(r.ok));
  }
  return out;
}
"""


def run_vector_cases(page, cases: list[tuple[str, str, list[Any], Any]], backend: str) -> list[str]:  # type: ignore[no-untyped-def]
    """Run ``cases`` through dev.crypto on ``backend``; the mismatches, described."""
    results = page.evaluate(RUN_CASES, [[[c[0], c[1], c[2]] for c in cases], backend])
    mismatches = []
    for (cid, _op, _args, expected), got in zip(cases, results, strict=True):
        if isinstance(expected, dict) and "prefix" in expected:
            ok = isinstance(got, str) and got.startswith(expected["prefix"])
        else:
            ok = got == expected
        if not ok:
            mismatches.append(f"{cid}: expected {expected!r}, got {got!r}")
    return mismatches


def counts_expected_total(cases: list[tuple[str, str, list[Any], Any]]) -> int:
    """How many of ``cases`` reach the WebCrypto-or-noble decision.

    Ed25519/X25519 calls with well-formed arguments; not hashing, not small
    AES-GCM (noble below 3072 bytes), not calls refused by argument checks.
    """
    curve_ops = {"sign_public", "sign", "verify", "dh", "dh_public", "sign_keygen", "dh_keygen"}
    refused = ("ed25519-small-order", "ed25519-secret-31", "ed25519-public-33", "ed25519-sig-63", "x25519-public-31")
    return sum(1 for cid, op, _args, _exp in cases if op in curve_ops and not cid.startswith(refused))


@pytest.mark.parametrize("backend", ["noble", "webcrypto", "webcrypto-all"])
def test_crypto_vectors_through_the_js_backends(ping_page, backend: str) -> None:  # type: ignore[no-untyped-def]
    cases = _vector_cases()
    mismatches = run_vector_cases(ping_page, cases, backend)
    assert not mismatches, "\n".join(mismatches)
    assert len(cases) >= 69
    if backend == "webcrypto":
        # The vectors went through WebCrypto itself; only the cases WebCrypto
        # rejects (low-order X25519 points) were re-run through noble.
        counts = ping_page.evaluate("ping.call('dev.crypto_counts', {backend: 'webcrypto'})")
        low_order = sum(1 for c in cases if c[0].startswith("x25519-low-order"))
        total = counts_expected_total(cases)
        single = {k: counts.pop(k, None) for k in ("webcrypto", "sync_entry", "fallback")}
        assert single == {"webcrypto": total - low_order, "sync_entry": 0, "fallback": low_order}
        # The vectors are single operations: no batch crossed (batches are tested in test_webcrypto).
        assert not any(counts.values()), counts


def test_x25519_iterated_through_the_worker(ping_page) -> None:  # type: ignore[no-untyped-def]
    # RFC 7748 section 5.2: 1 and 1000 iterations of k, u = X25519(k, u), k.
    result = ping_page.evaluate(
        """async () => {
            let k = new Uint8Array(32); k[0] = 9; let u = k.slice();
            const after = {};
            for (let i = 1; i <= 1000; i++) {
              const next = await ping.call('dev.crypto', { op: 'dh', args: [k, u] });
              u = k; k = next;
              if (i === 1 || i === 1000) after[i] = hex(k);
            }
            return after;
        }"""
    )
    assert result == {
        "1": "422c8e7a6227d7bca1350b3e2bb7279f7897b87bb6854b783c60e80311ae3079",
        "1000": "684cf59ba83309552800ef566f2f4d3c1c3887c49360e3875f2eb94d99532c51",
    }


def test_keys_made_in_the_worker_work_on_cpython(ping_page) -> None:  # type: ignore[no-untyped-def]
    # Cross-backend: a key pair and signature made by noble verify with pyca,
    # and a ciphertext sealed by noble opens with pyca.
    from ping_core.mls.crypto.pyca import PycaProvider

    made = ping_page.evaluate(
        """async () => {
            const [sk, pk] = await ping.call('dev.crypto', { op: 'sign_keygen', args: [] });
            const sig = await ping.call('dev.crypto', { op: 'sign', args: [sk, unhex('cafe')] });
            const ct = await ping.call('dev.crypto',
                { op: 'aead_seal', args: [new Uint8Array(16).fill(7), new Uint8Array(12), unhex('aa'), unhex('beef')] });
            const [a, aPub] = await ping.call('dev.crypto', { op: 'dh_keygen', args: [] });
            return { pk: hex(pk), sig: hex(sig), ct: hex(ct), a: hex(a), aPub: hex(aPub) };
        }"""
    )
    pyca = PycaProvider()
    pyca.verify(bytes.fromhex(made["pk"]), b"\xca\xfe", bytes.fromhex(made["sig"]))
    assert pyca.aead_open(bytes([7] * 16), bytes(12), b"\xaa", bytes.fromhex(made["ct"])) == b"\xbe\xef"
    assert pyca.dh_public(bytes.fromhex(made["a"])) == bytes.fromhex(made["aPub"])


# -- CBOR ------------------------------------------------------------------------------


def test_cbor_round_trip(ping_page) -> None:  # type: ignore[no-untyped-def]
    value = {
        "text": "héllo ✓",
        "ints": [0, 1, 23, 24, 255, 256, 65535, 65536, 2**32, 2**53 - 1, -1, -24, -25, -(2**40)],
        "float": 1.5,
        "flags": [True, False, None],
        "nested": {"list": [[], {}, [1, [2, [3]]]], "empty": ""},
    }
    result = ping_page.evaluate(
        """async (value) => {
            value.bytes = new Uint8Array([0, 1, 2, 255]);
            const r = await ping.call('dev.cbor_roundtrip', { value });
            return { encoded: hex(r.encoded), decoded: r.decoded, bytesBack: hex(r.decoded.bytes) };
        }""",
        value,
    )
    expected = dict(value, bytes=b"\x00\x01\x02\xff")
    # Byte-identical to cbor2 on CPython, and decoded back to the same value.
    assert bytes.fromhex(result["encoded"]) == cbor2.dumps(expected, canonical=True)
    assert result["bytesBack"] == "000102ff"
    decoded = dict(result["decoded"])
    del decoded["bytes"]
    assert decoded == value


# -- IndexedDB ---------------------------------------------------------------------------


def test_blob_survives_reload(ping_page) -> None:  # type: ignore[no-untyped-def]
    stored = ping_page.evaluate(
        """async () => {
            const blob = new Uint8Array(1 << 20);
            for (let off = 0; off < blob.length; off += 65536) crypto.getRandomValues(blob.subarray(off, off + 65536));
            await ping.call('dev.blob.put', { key: 'state/big', value: blob });
            await ping.call('dev.blob.put', { key: 'state/small', value: new Uint8Array([1, 2, 3]) });
            await ping.call('dev.blob.put', { key: 'other', value: new Uint8Array() });
            return { sha: hex(new Uint8Array(await crypto.subtle.digest('SHA-256', blob))) };
        }"""
    )
    ping_page.reload()
    wait_ready(ping_page)
    ping_page.evaluate(PAGE_HELPERS)
    after = ping_page.evaluate(
        """async () => {
            const blob = await ping.call('dev.blob.get', { key: 'state/big' });
            return {
              len: blob.length,
              sha: hex(new Uint8Array(await crypto.subtle.digest('SHA-256', blob))),
              keys: await ping.call('dev.blob.list', { prefix: 'state/' }),
              all: await ping.call('dev.blob.list', {}),
              missing: await ping.call('dev.blob.get', { key: 'nope' }),
              empty: hex(await ping.call('dev.blob.get', { key: 'other' })),
            };
        }"""
    )
    assert after == {
        "len": 1 << 20,
        "sha": stored["sha"],
        "keys": ["state/big", "state/small"],
        "all": ["other", "state/big", "state/small"],
        "missing": None,
        "empty": "",
    }


def test_blob_batches_are_atomic_and_checked(ping_page) -> None:  # type: ignore[no-untyped-def]
    result = ping_page.evaluate(
        """async () => {
            const b = (n) => new Uint8Array([n]);
            await ping.call('dev.blob.commit', { puts: { a: b(1), b: b(2), c: b(3) }, deletes: [] });
            await ping.call('dev.blob.commit', { puts: { d: b(4), a: b(9) }, deletes: ['b', 'zz'] });
            const afterBatch = await ping.call('dev.blob.list', {});
            // A bad value anywhere in a batch: nothing of it is written.
            const bad = await tryCall('dev.blob.commit', { puts: { e: b(5), f: 'not bytes' }, deletes: ['a'] });
            const badKey = await tryCall('dev.blob.put', { key: 5, value: b(1) });
            await ping.call('dev.blob.delete', { key: 'c' });
            const items = await ping.call('dev.blob.items', { prefix: '' });
            return {
              afterBatch, bad: bad.error.name, badKey: badKey.error.name,
              final: await ping.call('dev.blob.list', {}),
              items: items.map(([k, v]) => k + '=' + hex(v)),
              a: hex(await ping.call('dev.blob.get', { key: 'a' })),
            };
        }"""
    )
    assert result == {
        "afterBatch": ["a", "c", "d"],
        "bad": "InvalidInput",
        "badKey": "InvalidInput",
        "final": ["a", "d"],
        "items": ["a=09", "d=04"],
        "a": "09",
    }


# -- fetch bridge ------------------------------------------------------------------------


def test_fetch_bridge_errors(ping_page, server_url: str) -> None:  # type: ignore[no-untyped-def]
    result = ping_page.evaluate(
        """async (port) => ({
            health: await tryCall('dev.fetch', { url: '/api/health' })
                      .then((r) => r.ok ? { ok: { ...r.ok, body: new TextDecoder().decode(r.ok.body) } } : r),
            missing: await tryCall('dev.fetch', { url: '/api/no/such/route' }),
            method: await tryCall('dev.fetch', { url: '/api/health', method: 'DELETE' }),
            refused: await tryCall('dev.fetch', { url: 'http://127.0.0.1:' + port + '/' }),
        })""",
        _closed_port(),
    )
    health = result["health"]["ok"]
    assert health["status"] == 200 and health["content_type"] == "application/json"
    assert json.loads(health["body"])["status"] == "ok"
    missing = result["missing"]["error"]
    assert missing["name"] == "TransportError"
    assert (missing["status"], missing["code"]) == (404, "not_found")
    assert "no API route GET /api/no/such/route" in missing["message"]
    method = result["method"]["error"]
    assert (method["name"], method["status"], method["code"]) == ("TransportError", 405, "method_not_allowed")
    refused = result["refused"]["error"]
    assert (refused["name"], refused["status"], refused["code"]) == ("TransportError", None, None)


def _closed_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


# -- RPC robustness --------------------------------------------------------------------


def test_rpc_errors_always_answer(ping_page) -> None:  # type: ignore[no-untyped-def]
    result = ping_page.evaluate(
        """async () => ({
            unknown: await tryCall('no.such.method', {}),
            badParams: await tryCall('dev.crypto', { op: '__class__', args: [] }),
            typeError: await tryCall('dev.crypto', { op: 'sign', args: [1, 2, 3] }),
            many: (await Promise.all(Array.from({ length: 50 }, (_, i) => tryCall('ping', { i }))))
                    .map((r) => r.ok.echo.i),
        })"""
    )
    assert result["unknown"]["error"]["name"] == "InvalidInput"
    assert result["badParams"]["error"]["name"] == "InvalidInput"
    assert result["typeError"]["error"]["name"] == "TypeError"  # a wrong argument count is the caller's bug
    assert result["many"] == list(range(50))


def test_sha256_matches_cpython(ping_page) -> None:  # type: ignore[no-untyped-def]
    got = ping_page.evaluate("async () => hex(await ping.call('dev.crypto', {op: 'hash', args: [unhex('00ff')]}))")
    assert got == hashlib.sha256(b"\x00\xff").hexdigest()
