"""MLS operations end to end through one crypto provider (shared by CPython and the worker).

Self-contained (imports the standard library and ping_core only):
crypto_bench.py also sends this file's source into the browser worker, where
it runs through each backend. Times are medians in milliseconds.
"""

from __future__ import annotations

import statistics
import time
from typing import Any, Callable


def _median_ms(fn: Callable[[], Any], runs: int, batch: int = 10) -> float:
    """Median over ``runs`` samples of the mean of ``batch`` calls.

    Batches because a browser worker's clock is coarse (Chromium rounds
    performance.now() to 100 us without cross-origin isolation).
    """
    samples = []
    for _ in range(runs):
        t0 = time.perf_counter()
        for _ in range(batch):
            fn()
        samples.append((time.perf_counter() - t0) / batch)
    return statistics.median(samples) * 1000


def run(crypto: Any, n: int = 100, quick: bool = False) -> dict[str, float]:
    """Milliseconds per operation for suite-1 MLS through ``crypto``.

    KeyPackage generation; 100 B protect + unprotect in a group of two; a group
    of ``n`` built by ONE commit of the creator (commit + merge, and the last
    joiner's join); in that group a self-update commit and its processing by
    another member (fresh tree: the committer encrypts to ~n-1 leaves).
    """
    from ping_core.mls.group import Group, Signer, generate_key_package

    reps = 3 if quick else 9
    out: dict[str, float] = {}
    alice = Signer.generate(crypto, b"alice")
    bob = Signer.generate(crypto, b"bob")
    generate_key_package(crypto, alice, now=int(time.time()))
    out["KeyPackage generation"] = _median_ms(lambda: generate_key_package(crypto, alice, now=int(time.time())), reps)

    group_a = Group.create(crypto, alice, clock=time.time)
    bundle = generate_key_package(crypto, bob, now=int(time.time()))
    staged = group_a.commit(add=[bundle.message()])
    group_a.merge_staged_commit(staged)
    assert staged.welcome is not None
    group_b = Group.join(crypto, staged.welcome, bundle, bob, clock=time.time)
    payload = b"m" * 100

    def round_trip() -> None:
        group_b.process_message(group_a.protect(payload))

    round_trip()
    out["protect+unprotect 100 B"] = _median_ms(round_trip, reps)

    signers = [Signer.generate(crypto, f"member {i}".encode()) for i in range(n)]
    bundles = [generate_key_package(crypto, s, now=int(time.time())) for s in signers[1:]]
    creator = Group.create(crypto, signers[0], clock=time.time)
    t0 = time.perf_counter()
    big = creator.commit(add=[b.message() for b in bundles])
    creator.merge_staged_commit(big)
    out[f"group of {n}: one add commit"] = (time.perf_counter() - t0) * 1000
    assert big.welcome is not None
    t0 = time.perf_counter()
    last = Group.join(crypto, big.welcome, bundles[-1], signers[-1], clock=time.time)
    out[f"group of {n}: join"] = (time.perf_counter() - t0) * 1000

    t0 = time.perf_counter()
    update = creator.commit()
    creator.merge_staged_commit(update)
    out[f"group of {n}: self-update commit"] = (time.perf_counter() - t0) * 1000
    assert update.message is not None
    t0 = time.perf_counter()
    last.process_message(update.message)
    out[f"group of {n}: process it"] = (time.perf_counter() - t0) * 1000
    return out
