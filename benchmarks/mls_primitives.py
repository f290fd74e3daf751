"""Throughput of the MLS engine's primitives on this machine (CPython).

    python benchmarks/mls_primitives.py [--seconds S] [--profile]

Prints:

* HPKE single-shot seal + open of 32 bytes (ops/s);
* secret-tree key derivation: one ratchet from generation 0 to 1000, both
  one generation at a time and as one jump (generations/s);
* PrivateMessage protect + unprotect of 100 B and 10 KiB application
  messages (msgs/s), sender and receiver with their own secret trees, wire
  encoding and decoding of the MLSMessage included. Goal for 100 B: 8,000/s.

``--profile`` runs the 100 B loop under cProfile and prints the top entries.
"""

from __future__ import annotations

import argparse
import cProfile
import pstats
import sys
import time
from pathlib import Path
from typing import Callable

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from ping_core.mls import hpke  # noqa: E402
from ping_core.mls.framing import epoch_framing, private_message  # noqa: E402
from ping_core.mls.tls import decode_exact, encode  # noqa: E402
from ping_core.mls.crypto import default_provider  # noqa: E402
from ping_core.mls.schedule.key_schedule import epoch_secrets  # noqa: E402
from ping_core.mls.tree.secret_tree import APPLICATION, RatchetConfig, SecretTree  # noqa: E402
from ping_core.mls.structs.content import PrivateMessage  # noqa: E402
from ping_core.mls.structs.group_info import GroupContext  # noqa: E402
from ping_core.mls.structs.message import MLSMessage  # noqa: E402

crypto = default_provider()


def rate(fn: Callable[[], object], seconds: float) -> float:
    """Calls per second of ``fn``: the best of several rounds over about ``seconds`` in all.

    Best-of (as ``timeit`` recommends) because other processes on a shared
    machine only ever make a round slower, never faster.
    """
    for _ in range(20):
        fn()
    # Size a round to about 0.2 s.
    n = 1
    while True:
        start = time.perf_counter()
        for _ in range(n):
            fn()
        elapsed = time.perf_counter() - start
        if elapsed >= 0.05:
            break
        n *= 2
    per_round = max(1, int(n * 0.2 / elapsed))
    best = 0.0
    deadline = time.perf_counter() + seconds
    while True:
        start = time.perf_counter()
        for _ in range(per_round):
            fn()
        elapsed = time.perf_counter() - start
        best = max(best, per_round / elapsed)
        if time.perf_counter() >= deadline:
            return best


def bench_hpke(seconds: float) -> float:
    sk, pk = crypto.dh_keygen()
    pt = bytes(32)

    def once() -> None:
        enc, ct = hpke.seal(crypto, pk, b"info", b"", pt)
        hpke.open(crypto, enc, sk, b"info", b"", ct, pk_r=pk)

    return rate(once, seconds)


def bench_secret_tree(seconds: float) -> tuple[float, float]:
    root = bytes(range(32))
    config = RatchetConfig(out_of_order_tolerance=0, maximum_forward_distance=1000)

    def stepwise() -> None:
        tree = SecretTree(crypto, root, 64, config)
        for g in range(1001):
            tree.consume(5, APPLICATION, g)

    def jump() -> None:
        tree = SecretTree(crypto, root, 64, config)
        tree.consume(5, APPLICATION, 1000)

    return rate(stepwise, seconds) * 1001, rate(jump, seconds) * 1001


class Pair:
    """Two members of one epoch: leaf 0 sends, leaf 1 receives."""

    def __init__(self, n_leaves: int = 2) -> None:
        self.sig_sk, self.sig_pk = crypto.sign_keygen()
        context = GroupContext(
            cipher_suite=1, group_id=b"benchmark group", epoch=7, tree_hash=bytes(32), confirmed_transcript_hash=bytes(32)
        )
        secrets = epoch_secrets(crypto, bytes(32), None, None, encode(context))
        config = RatchetConfig(out_of_order_tolerance=5, maximum_forward_distance=1 << 30)
        self.sender = epoch_framing.EpochFraming.create(crypto, context, secrets, n_leaves, config)
        self.receiver = epoch_framing.EpochFraming.create(crypto, context, secrets, n_leaves, config)
        keys = {0: self.sig_pk}
        self.signer_key = lambda content: keys[content.sender.leaf_index]

    def roundtrip(self, data: bytes) -> bytes:
        msg = private_message.protect_private(crypto, self.sender, 0, data, self.sig_sk)
        wire = encode(MLSMessage(msg))
        received = decode_exact(MLSMessage, wire).body
        assert isinstance(received, PrivateMessage)
        out = private_message.unprotect_private(crypto, self.receiver, received, self.signer_key).content.content.content
        assert isinstance(out, bytes)
        return out


def bench_messages(size: int, seconds: float) -> float:
    pair = Pair()
    data = bytes(size)
    assert pair.roundtrip(data) == data
    return rate(lambda: pair.roundtrip(data), seconds)


def bench_sign_verify(seconds: float) -> float:
    sk, pk = crypto.sign_keygen()
    m = bytes(200)
    sig = crypto.sign(sk, m)

    def once() -> None:
        crypto.sign(sk, m)
        crypto.verify(pk, m, sig)

    return rate(once, seconds)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=2.0, help="time per measurement")
    parser.add_argument("--profile", action="store_true", help="profile the 100 B message loop")
    args = parser.parse_args()
    s = args.seconds
    print(f"crypto provider: {crypto.name}; Python {sys.version.split()[0]}; best of rounds over {s:g} s each")
    if args.profile:
        pair = Pair()
        data = bytes(100)
        prof = cProfile.Profile()
        prof.enable()
        for _ in range(20000):
            pair.roundtrip(data)
        prof.disable()
        pstats.Stats(prof).sort_stats("tottime").print_stats(25)
        return
    print(f"HPKE seal+open, 32 B:                      {bench_hpke(s):>10,.0f} ops/s")
    stepwise, jump = bench_secret_tree(s)
    print(f"secret tree, generations 0..1000 one by one: {stepwise:>8,.0f} generations/s")
    print(f"secret tree, one jump to generation 1000:    {jump:>8,.0f} generations/s")
    print(f"(reference) Ed25519 sign+verify alone:     {bench_sign_verify(s):>10,.0f} pairs/s")
    print(f"PrivateMessage protect+unprotect, 100 B:   {bench_messages(100, s):>10,.0f} msgs/s (goal 8,000)")
    print(f"PrivateMessage protect+unprotect, 10 KiB:  {bench_messages(10 * 1024, s):>10,.0f} msgs/s")


if __name__ == "__main__":
    main()
