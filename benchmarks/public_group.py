"""A delivery service's PublicGroup on this machine (CPython): what verifying a commit costs.

    python benchmarks/public_group.py [--sizes 100,1000] [--runs 5]

For each group size N: the group is built by one commit of its creator adding
N-1 KeyPackages, then a few self-updates by other members populate the tree
("steady" state, as in a group that has lived a while). The service starts
from a GroupInfo (``PublicGroup.from_group_info``: signature and the full
tree validation). Then, each the median of ``--runs`` runs on the same
state (nothing merged): ``process_commit`` of a commit adding one member, one
removing a member, and a self-update (empty commit with a path), each with
the commit's size; and ``merge``, ``to_bytes`` and ``from_bytes``.

Prints figures only; asserts nothing.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path
from typing import Callable

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from ping_core.mls import default_provider  # noqa: E402
from ping_core.mls.group import Group, GroupConfig, PublicGroup, Signer, generate_key_package  # noqa: E402

crypto = default_provider()
PUBLIC = GroupConfig(encrypt_handshake=False)


def median_ms(fn: Callable[[], object], runs: int) -> float:
    times = []
    for _ in range(runs):
        t = time.perf_counter()
        fn()
        times.append((time.perf_counter() - t) * 1000)
    return statistics.median(times)


def build(n: int) -> tuple[Group, list[Group]]:
    """A group of ``n`` (creator plus a few joined members that self-update)."""
    creator = Group.create(crypto, Signer.generate(crypto, b"m0"), config=PUBLIC, clock=time.time)
    signers = [Signer.generate(crypto, f"m{i}".encode()) for i in range(1, n)]
    bundles = [generate_key_package(crypto, s, now=int(time.time())) for s in signers]
    staged = creator.commit(add=[b.message() for b in bundles])
    creator.merge_staged_commit(staged)
    # A few members join, so the tree fills in as it does in a living group.
    step = max(1, (n - 1) // 8)
    members = [Group.join(crypto, staged.welcome or b"", bundles[i], signers[i], config=PUBLIC, clock=time.time) for i in range(0, n - 1, step)]
    for m in members:
        upd = m.commit()
        m.merge_staged_commit(upd)
        for other in [creator, *members]:
            if other is not m:
                other.process_message(upd.message or b"")
    return creator, members


def bench(n: int, runs: int) -> None:
    t = time.perf_counter()
    creator, members = build(n)
    built = time.perf_counter() - t
    info = creator.group_info()
    t = time.perf_counter()
    pg = PublicGroup.from_group_info(crypto, info, clock=time.time)
    from_info = (time.perf_counter() - t) * 1000
    print(f"N={n}: group built in {built:.1f} s; from_group_info {from_info:.1f} ms ({len(info)} B GroupInfo)")
    cases = {
        "add one": creator.commit(add=[generate_key_package(crypto, Signer.generate(crypto, b"new"), now=int(time.time())).message()]),
    }
    creator.discard_staged_commit()
    cases["remove one"] = creator.commit(remove=[n - 1])
    creator.discard_staged_commit()
    cases["self-update"] = members[0].commit()
    members[0].discard_staged_commit()
    for name, staged in cases.items():
        message = staged.message or b""
        ms = median_ms(lambda: pg.process_commit(message), runs)
        print(f"  process_commit {name:<12} {ms:8.2f} ms   ({len(message)} B commit)")
    commit = pg.process_commit(cases["self-update"].message or b"")
    data = pg.to_bytes()
    print(f"  to_bytes {median_ms(pg.to_bytes, runs):8.2f} ms   ({len(data)} B)")
    print(f"  from_bytes {median_ms(lambda: PublicGroup.from_bytes(crypto, data, clock=time.time), runs):8.2f} ms")
    t = time.perf_counter()
    pg.merge(commit)
    print(f"  merge {(time.perf_counter() - t) * 1000:8.3f} ms")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="100,1000")
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()
    print(f"Python {sys.version.split()[0]}, medians of {args.runs} runs")
    for n in (int(x) for x in args.sizes.split(",")):
        bench(n, args.runs)


if __name__ == "__main__":
    main()
