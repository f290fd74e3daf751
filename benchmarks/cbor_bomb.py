"""The shared-value CBOR bomb and normal records: ping_core.cbor's strict decoder against cbor2.

    python benchmarks/cbor_bomb.py [--old-limit-mib 2048] [--old-timeout 60]

1. The bomb (tests/core/test_cbor_strict.py builds the same bytes): the
   strict decoder's time to refuse it, and the decoder Ping had before
   (cbor2.loads, a type walk, canonical re-encoding compared) run in a
   subprocess under an address-space limit and a timeout.
2. Normal records: the strict decoder, the old path, and cbor2.loads alone
   (C extension, and the pure-Python code Pyodide runs).

Prints figures; asserts nothing.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import time
import timeit
from importlib import metadata
from pathlib import Path
from typing import Callable

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
# tests/ too: the strict-decoder tests import their helpers (reasons) as pytest lets them.
sys.path.insert(1, str(Path(__file__).resolve().parent.parent / "tests"))

import cbor2  # noqa: E402
import cbor2._decoder  # noqa: E402

from ping_core import cbor as codec  # noqa: E402
from ping_core.errors import InvalidInput  # noqa: E402

from tests.core.test_cbor_strict import reference_loads, shared_value_bomb  # noqa: E402


def old_loads(data: bytes) -> object:
    """The old decoder, untraced (MemoryError escapes it: that is the bug)."""
    return reference_loads(data, budget=None)


def per_call_us(fn: Callable[[], object], seconds: float = 0.3) -> float:
    """Median of 5 timings of as many calls as take about ``seconds``."""
    n = 1
    while timeit.timeit(fn, number=n) < seconds / 10:
        n *= 2
    runs = sorted(timeit.repeat(fn, number=n, repeat=5))
    return runs[2] / n * 1e6


def refuse(data: bytes) -> None:
    try:
        codec.loads(data, max_size=len(data))
    except InvalidInput:
        return
    raise AssertionError("the bomb decoded")


def child_old_bomb(limit_mib: int) -> None:
    """Run the old path on the bomb under an address-space limit; print outcome and time."""
    try:
        import resource

        resource.setrlimit(resource.RLIMIT_AS, (limit_mib << 20, limit_mib << 20))
    except (ImportError, ValueError, OSError):
        print("no memory limit", end="; ")
    bomb = shared_value_bomb()
    start = time.perf_counter()
    try:
        old_loads(bomb)
        outcome = "decoded"
    except BaseException as exc:  # MemoryError is the point of the measurement
        outcome = type(exc).__name__
    print(f"{outcome} after {time.perf_counter() - start:.2f} s")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--old-limit-mib", type=int, default=2048, help="address-space limit for the old path")
    parser.add_argument("--old-timeout", type=float, default=60.0)
    parser.add_argument("--child-old-bomb", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child_old_bomb:
        child_old_bomb(args.old_limit_mib)
        return

    print(f"python {sys.version.split()[0]}, cbor2 {metadata.version('cbor2')}")
    bomb = shared_value_bomb()
    print(f"shared-value bomb: {len(bomb)} B, expands to 16**6 copies of a 1000 B string (~16 GB)")
    print(f"  strict decoder refuses it   {per_call_us(lambda: refuse(bomb)):10.2f} us")
    cmd = [sys.executable, __file__, "--child-old-bomb", "--old-limit-mib", str(args.old_limit_mib)]
    try:
        out = subprocess.run(cmd, capture_output=True, text=True, timeout=args.old_timeout).stdout.strip()
    except subprocess.TimeoutExpired:
        out = f"still running after {args.old_timeout:.0f} s (killed)"
    print(f"  old path (cbor2 + walk + re-encode, {args.old_limit_mib} MiB limit): {out}")

    envelope = codec.dumps(
        {"v": 1, "conv": b"\x03" * 16, "epoch": 7, "kind": 1, "sender": b"\x01" * 32, "gen": 0,
         "hlc": [1_700_000_000_000, 3], "payload": b"\x00" * 200}
    )
    register = codec.dumps(
        {"v": 1, "info": {"v": 1, "user": b"\x01" * 32, "key": b"\x02" * 32, "label": "phone", "n": 1},
         "binding": {"v": 1, "sig": b"\x04" * 64}}
    )
    snapshot = codec.dumps({"v": 1, "convs": [{"id": b"\x05" * 16, "name": f"chat {i}", "epoch": i, "state": b"\x06" * 100}
                                              for i in range(200)]})
    welcome = codec.dumps({"v": 1, "payload": b"\x00" * 300_000})
    print(f"\n{'record':24} {'bytes':>8} {'strict':>10} {'old path':>10} {'cbor2 C':>10} {'cbor2 pure':>11}   (us per decode)")
    for name, data in [("envelope", envelope), ("RegisterDevice body", register), ("200-entry snapshot", snapshot),
                       ("300 KB Welcome", welcome)]:
        assert codec.loads(data) == reference_loads(data) == cbor2.loads(data)
        figures = [per_call_us(lambda: codec.loads(data, max_size=len(data))), per_call_us(lambda: old_loads(data)),
                   per_call_us(lambda: cbor2.loads(data)), per_call_us(lambda: cbor2._decoder.loads(data))]
        print(f"{name:24} {len(data):8} " + " ".join(f"{f:10.1f}" for f in figures[:3]) + f" {figures[3]:11.1f}")


if __name__ == "__main__":
    main()
