"""Where the time of the two chained MLS rows goes, measured inside Chromium's worker.

    python benchmarks/browser_crypto_profile.py          # KeyPackage and 100 B protect+unprotect
    python benchmarks/browser_crypto_profile.py --ops    # also each primitive on each path

Starts the same served copy of dist/, ping_server and Chromium as
benchmarks/browser_bench.py, boots one Ping worker (``?dev=1``) and runs in it
(``dev.exec``, inside an RPC call like every SDK call), once V8 has tiered its
WebAssembly up (a pure-Python loop stopped getting faster):

* KeyPackage generation and a 100 B protect + unprotect round trip through the
  worker's default provider wrapped in a timer: per provider method the number
  of calls and the total time, and the time outside the provider (the engine);
* with ``--ops``: each primitive through noble (synchronous FFI), through the
  WebCrypto provider (its Crossing) and through the same provider waiting with
  plain ``run_sync(promise)`` (what a crossing cost before).

Prints figures; asserts nothing. Times are wall clock on a shared machine.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parent))

import browser_bench  # noqa: E402

IN_WORKER = r"""
import json, time
from ping_core.mls.crypto import default_provider
from ping_core.mls.group import Group, Signer, generate_key_package

class Timed:
    '''The provider with every method call timed (batch helpers find the same methods).'''
    def __init__(self, inner):
        self._inner = inner
        self.name = inner.name
        self.stats = {}
    def __getattr__(self, attr):
        fn = getattr(self._inner, attr)
        if not callable(fn):
            return fn
        stats = self.stats
        def timed(*a, **k):
            t0 = time.perf_counter()
            try:
                return fn(*a, **k)
            finally:
                s = stats.setdefault(attr, [0, 0.0])
                s[0] += 1
                s[1] += time.perf_counter() - t0
        return timed

def profile(label, crypto, setup, op, rounds=12, batch=10):
    '''Best of ``rounds`` means of ``batch`` calls: the whole op, and per provider method.'''
    state = setup(crypto)
    op(state)
    best = None
    for _ in range(rounds):
        crypto.stats.clear()
        t0 = time.perf_counter()
        for _ in range(batch):
            op(state)
        total = (time.perf_counter() - t0) / batch * 1e3
        if best is None or total < best[0]:
            best = (total, {k: [v[0] / batch, v[1] / batch * 1e3] for k, v in crypto.stats.items()})
    total, calls = best
    calls = dict(sorted(calls.items(), key=lambda kv: -kv[1][1]))
    inside = sum(v[1] for v in calls.values())
    return {"label": label, "ms": total, "crypto_ms": inside, "calls": calls}

def kp_setup(crypto):
    return Signer.generate(crypto, b"alice")

def kp_op(signer):
    generate_key_package(signer_crypto[0], signer, now=int(time.time()))

def rt_setup(crypto):
    alice, bob = Signer.generate(crypto, b"alice"), Signer.generate(crypto, b"bob")
    ga = Group.create(crypto, alice, clock=time.time)
    kb = generate_key_package(crypto, bob, now=int(time.time()))
    staged = ga.commit(add=[kb.message()])
    ga.merge_staged_commit(staged)
    gb = Group.join(crypto, staged.welcome, kb, bob, clock=time.time)
    return ga, gb

payload = b"m" * 100
def rt_op(groups):
    ga, gb = groups
    gb.process_message(ga.protect(payload))

base = default_provider()
timed = Timed(base)
signer_crypto = [timed]
out = {"backend": base.name, "settled_s": settled_s,
       "profiles": [profile("KeyPackage", timed, kp_setup, kp_op), profile("100 B protect+unprotect", timed, rt_setup, rt_op)]}

if OPS:
    from pyodide_app.crypto import NobleProvider
    from pyodide_app.webcrypto import WebCryptoProvider
    noble, wc = NobleProvider(), WebCryptoProvider(aead_min=0)
    slow = WebCryptoProvider(aead_min=0)
    slow._cross._settler = None  # the plain run_sync(promise) crossing, for reference
    sk, pk = noble.sign_keygen()
    sig = noble.sign(sk, payload)
    xa, xa_pub = noble.dh_keygen()
    xb, xb_pub = noble.dh_keygen()
    key, nonce, aad = bytes(16), bytes(12), b"a" * 40
    ct = noble.aead_seal(key, nonce, aad, payload)
    table = {
        "sign 100 B (same key)": lambda p: p.sign(sk, payload),
        "verify 100 B (same key)": lambda p: p.verify(pk, payload, sig),
        "dh_keygen": lambda p: p.dh_keygen(),
        "dh": lambda p: p.dh(xa, xb_pub),
        "aead_seal 100 B": lambda p: p.aead_seal(key, nonce, aad, payload),
        "aead_open 100 B": lambda p: p.aead_open(key, nonce, aad, ct),
        "aead_seal 1 KiB": lambda p: p.aead_seal(key, nonce, aad, payload * 10),
        "aead_seal 4 KiB": lambda p: p.aead_seal(key, nonce, aad, payload * 40),
    }
    paths = {"noble": noble, "webcrypto": wc, "run_sync": slow}
    # Best of 12 interleaved rounds of 10 calls: the minimum is what the path costs
    # when the machine lets it run (a shared machine adds noise, never speed).
    best = {name: {k: 1e9 for k in paths} for name in table}
    for _ in range(12):
        for name, fn in table.items():
            for k, prov in paths.items():
                t0 = time.perf_counter()
                for _ in range(10):
                    fn(prov)
                best[name][k] = min(best[name][k], (time.perf_counter() - t0) / 10 * 1e6)
    out["ops"] = best
result = json.dumps(out)
"""


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--ops", action="store_true", help="also time each primitive on each path")
    args = parser.parse_args()
    with browser_bench.served_dist() as dist, browser_bench.server_and_browser(dist) as (browser, url):
        page = browser_bench.open_bench_page(browser, url)
        info = page.evaluate(browser_bench.START_PING_WORKER, "?dev=1")
        if info.get("snapshot") == "made":  # measure a worker as users get it (restored)
            page.wait_for_timeout(3000)
            page.evaluate("window.pingWorker.worker.terminate()")
            page.evaluate(browser_bench.START_PING_WORKER, "?dev=1")
        page.wait_for_timeout(browser_bench.SETTLE_MS)
        code = f"OPS = {args.ops}\nSETTLE_LIMIT_S = {browser_bench.SETTLE_LIMIT_S}\n"
        out = browser_bench.run_in_worker(page, code + browser_bench.SETTLE_IN_WORKER + IN_WORKER)
    print(f"Chromium worker, {out['backend']} provider (tier-up settled after {out['settled_s']} s); "
          "per operation, best of 12 means of 10:")
    for prof in out["profiles"]:
        print(f"  {prof['label']}: {prof['ms']:.3f} ms, in the provider {prof['crypto_ms']:.3f} ms, "
              f"outside {prof['ms'] - prof['crypto_ms']:.3f} ms")
        for name, (calls, ms) in prof["calls"].items():
            print(f"    {name:<22}{calls:>6.2f} calls {ms:>9.3f} ms")
    if "ops" in out:
        print("  per call, microseconds, best of 12 rounds (noble: synchronous FFI; webcrypto: the provider with "
              "aead_min=0; run_sync: the same through plain run_sync(promise)):")
        for name, paths in out["ops"].items():
            print(f"    {name:<28}" + "".join(f"{k:>10} {v:8.1f}" for k, v in paths.items()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
