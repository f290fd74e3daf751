"""The MLS group engine on this machine (CPython): medians of real operations.

    python benchmarks/mls_group.py [--quick] [--sizes 10,100,500,1000,5000] [--profile ROW]

Prints, each as the median of several runs (the count is shown):

* KeyPackage generation (per KeyPackage, and KeyPackages/s);
* a group of N built by ONE commit of the creator adding N-1 KeyPackages:
  the commit (``Group.commit`` + merge), the last joiner's ``Group.join``
  (Welcome with the ratchet tree, full tree validation), the Welcome's size;
* in groups of 100 and 1000: a self-update commit and its processing by
  another member, a remove commit and its processing. Two tree states: "fresh"
  (right after the one big add commit: every parent node blank, so the
  committer encrypts its path secrets to ~N-1 leaves) and "steady" (the
  committer's copath subtrees populated by earlier commits, as in a group that
  has lived a while: log2(N) encryptions);
* state: ``to_bytes``/``from_bytes`` time and size, and the bytes of the
  records that change when one application message is sent
  (``changed_records`` after ``protect``), for several group sizes.

Goals (issue 4): KeyPackages >= 5,000/s; N=500 add commit <= 150 ms and join
<= 50 ms; N=100 self-update commit <= 10 ms and its processing <= 2 ms; bytes
persisted per application message independent of group size.

``--profile ROW`` runs one row under cProfile and prints where the time goes:
``kp``, ``add:N``, ``join:N``, ``update:N``, ``process-update:N`` (a tree whose copath is
populated), ``fresh-update:N``, ``fresh-process:N`` (the first self-update after the big add).
"""

from __future__ import annotations

import argparse
import cProfile
import pstats
import statistics
import sys
import time
from pathlib import Path
from typing import Any, Callable, TypeVar

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from ping_core.mls.crypto import default_provider  # noqa: E402
from ping_core.mls.group import (  # noqa: E402
    CommitApplied,
    Group,
    GroupConfig,
    KeyPackageBundle,
    Signer,
    StagedCommit,
    generate_key_package,
)

crypto = default_provider()
CONFIG = GroupConfig(encrypt_handshake=True, max_past_epochs=1)


def median_ms(samples: list[float]) -> float:
    return statistics.median(samples) * 1000


T = TypeVar("T")


def timed(fn: Callable[[], T]) -> tuple[float, T]:
    t = time.perf_counter()
    out = fn()
    return time.perf_counter() - t, out


# -- KeyPackages ----------------------------------------------------------------


def bench_key_packages(count: int) -> float:
    s = Signer.generate(crypto, b"bench")
    for _ in range(20):
        generate_key_package(crypto, s, now=int(time.time()))
    samples = []
    for _ in range(5):
        t = time.perf_counter()
        for _ in range(count):
            generate_key_package(crypto, s, now=int(time.time()))
        samples.append((time.perf_counter() - t) / count)
    return statistics.median(samples)


# -- building groups ------------------------------------------------------------


class Built:
    """A group of N made by one commit, with the creator and a few joined members."""

    def __init__(self, n: int, joined: int = 3) -> None:
        self.n = n
        self.signers = [Signer.generate(crypto, f"member {i}".encode()) for i in range(n)]
        self.bundles: list[KeyPackageBundle] = [generate_key_package(crypto, s, now=int(time.time())) for s in self.signers[1:]]
        self.creator = Group.create(crypto, self.signers[0], config=CONFIG, clock=time.time)
        self.commit_s, staged = timed(lambda: self._commit())
        assert staged.welcome is not None
        self.welcome: bytes = staged.welcome
        # The last joiner's join is timed; a few more members join (untimed) to act later.
        last = n - 1
        self.join_s, g = timed(lambda: Group.join(crypto, self.welcome, self.bundles[last - 1], self.signers[last], config=CONFIG, clock=time.time))
        self.members: dict[int, Group] = {0: self.creator, last: g}
        self._log = []
        self._removed = set()
        for leaf in self._spread(joined):
            if leaf not in self.members:
                self.members[leaf] = Group.join(crypto, self.welcome, self.bundles[leaf - 1], self.signers[leaf], config=CONFIG, clock=time.time)

    def _commit(self) -> StagedCommit:
        staged = self.creator.commit(add=[b.message() for b in self.bundles])
        self.creator.merge_staged_commit(staged)
        return staged

    def _spread(self, k: int) -> list[int]:
        return [max(1, (i + 1) * self.n // (k + 1)) for i in range(k)]

    def commit_by(self, leaf: int, **kw: Any) -> tuple[float, bytes]:
        g = self.members[leaf]
        dt, staged = timed(lambda: g.commit(**kw))
        g.merge_staged_commit(staged)
        assert staged.message is not None
        return dt, staged.message

    def deliver(self, committer: int, message: bytes, timed_leaf: int | None = None) -> float:
        dt = 0.0
        for leaf, g in list(self.members.items()):
            if leaf == committer or not g.active:
                continue
            t, r = timed(lambda: g.process_message(message))
            assert isinstance(r, CommitApplied)
            if r.removed_self:
                del self.members[leaf]
            if leaf == timed_leaf:
                dt = t
        return dt

    def populate_copath(self, leaf: int) -> None:
        """Make ``leaf``'s copath subtree roots non-blank: one member inside each
        copath subtree commits a self-update (joined for the purpose)."""
        from ping_core.mls.tree import treemath

        tree_leaves = self.creator.state.current.tree.n_leaves
        x = 2 * leaf
        for c in treemath.copath(x, tree_leaves):
            first, end = treemath.subtree_leaves(c)
            target = min(first, self.n - 1)
            if target >= self.n or target == leaf:
                continue
            if target not in self.members:
                self.members[target] = Group.join(crypto, self.welcome, self.bundles[target - 1], self.signers[target], config=CONFIG, clock=time.time) if target else self.creator
                # Joined late: catch up on the commits since the Welcome.
                for msg in self._log:
                    self.members[target].process_message(msg)
            _, msg = self.commit_by(target)
            self._log.append(msg)
            self.deliver(target, msg)

    _log: list[bytes]
    _removed: set[int]


def bench_build(n: int, runs: int) -> tuple[float, float, int]:
    commits, joins = [], []
    size = 0
    for _ in range(runs):
        b = Built(n, joined=0)
        commits.append(b.commit_s)
        joins.append(b.join_s)
        size = len(b.welcome)
    return median_ms(commits), median_ms(joins), size


def bench_updates(n: int, runs: int) -> dict[str, float]:
    out: dict[str, float] = {}
    b = Built(n, joined=2)
    leaves = sorted(b.members)
    committer, receiver = leaves[1], leaves[-1]
    # Fresh tree: parents blank.
    dt, msg = b.commit_by(committer)
    b._log.append(msg)
    out["fresh update"] = dt * 1000
    out["fresh process"] = b.deliver(committer, msg, receiver) * 1000
    # Steady state: copath subtrees populated.
    b.populate_copath(committer)
    ups, procs = [], []
    for _ in range(runs):
        dt, msg = b.commit_by(committer)
        b._log.append(msg)
        ups.append(dt)
        procs.append(b.deliver(committer, msg, receiver))
    out["steady update"] = median_ms(ups)
    out["steady process"] = median_ms(procs)
    rms, rps = [], []
    for _ in range(runs):
        victim = next(x for x in range(2, n) if x not in b.members and x not in b._removed)
        b._removed.add(victim)
        dt, msg = b.commit_by(committer, remove=[victim])
        b._log.append(msg)
        rms.append(dt)
        rps.append(b.deliver(committer, msg, receiver))
    out["remove"] = median_ms(rms)
    out["process remove"] = median_ms(rps)
    g = b.members[committer]
    to_b, blob = timed(g.to_bytes)
    from_b, _ = timed(lambda: Group.from_bytes(crypto, blob, clock=time.time))
    out["to_bytes ms"] = to_b * 1000
    out["from_bytes ms"] = from_b * 1000
    out["state bytes"] = len(blob)
    first, later = per_message_bytes(g)
    out["first message bytes"] = first
    out["per-message bytes"] = later
    return out


def _sent_bytes(g: Group) -> int:
    g.mark_saved()
    g.protect(b"x" * 100)
    ch = g.changed_records()
    g.mark_saved()
    return sum(len(k) + len(v) for k, v in ch.written.items()) + sum(len(k) for k in ch.deleted)


def per_message_bytes(g: Group) -> tuple[int, int]:
    """Bytes of the records written and names deleted by one send: the first send
    of the epoch (our leaf's secret-tree path is derived: O(log N) records) and
    the next ones (our leaf's ratchet record only)."""
    return _sent_bytes(g), _sent_bytes(g)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="fewer runs, no N=5000")
    ap.add_argument("--sizes", default=None, help="comma-separated N for the build rows")
    ap.add_argument("--profile", default=None, help="profile one row: kp, add:N, join:N, update:N, process-update:N, fresh-update:N, fresh-process:N")
    args = ap.parse_args()
    if args.profile:
        return profile(args.profile)
    sizes = [int(x) for x in (args.sizes or ("10,100,500,1000" if args.quick else "10,100,500,1000,5000")).split(",")]
    print(f"crypto backend: {crypto.name}; Python {sys.version.split()[0]}")
    per_kp = bench_key_packages(200 if args.quick else 1000)
    print(f"KeyPackage generation: {per_kp * 1e6:.0f} us each, {1 / per_kp:,.0f}/s (goal >= 5,000/s)")
    print()
    print(f"{'N':>6} {'runs':>4} {'add commit ms':>14} {'last join ms':>13} {'Welcome bytes':>14}")
    for n in sizes:
        runs = 1 if n >= 5000 else (3 if n >= 500 else 5)
        if args.quick:
            runs = 1 if n >= 500 else 3
        c, j, size = bench_build(n, runs)
        print(f"{n:>6} {runs:>4} {c:>14.1f} {j:>13.1f} {size:>14,}")
    print("goals: N=500 add commit <= 150 ms, join <= 50 ms")
    print()
    for n in (100, 1000):
        runs = 3 if args.quick else 7
        r = bench_updates(n, runs)
        print(f"group of {n} (median of {runs}; 'fresh' = first commit after the one big add):")
        print(f"  self-update commit: steady {r['steady update']:.1f} ms, fresh {r['fresh update']:.1f} ms")
        print(f"  its processing:     steady {r['steady process']:.2f} ms, fresh {r['fresh process']:.2f} ms")
        print(f"  remove commit:      {r['remove']:.1f} ms; its processing {r['process remove']:.2f} ms")
        print(
            f"  state: to_bytes {r['to_bytes ms']:.1f} ms, from_bytes {r['from_bytes ms']:.1f} ms, "
            f"{int(r['state bytes']):,} bytes; per application message {int(r['per-message bytes'])} bytes "
            f"({int(r['first message bytes'])} for the first of the epoch)"
        )
    print("goals: N=100 self-update commit <= 10 ms, processing <= 2 ms")
    print()
    print("bytes persisted per application message (records written + names deleted), by group size:")
    for n in (2, 10, 100, 1000):
        b = Built(n, joined=1)
        g = b.members[max(b.members)]
        first, later = per_message_bytes(g)
        print(f"  N={n:>5}: {later} bytes per message; the first of an epoch {first} bytes")
    return 0


def profile(row: str) -> int:
    kind, _, arg = row.partition(":")
    n = int(arg) if arg else 0
    prof = cProfile.Profile()
    if kind == "kp":
        s = Signer.generate(crypto, b"bench")
        prof.enable()
        for _ in range(2000):
            generate_key_package(crypto, s, now=int(time.time()))
        prof.disable()
    elif kind in ("add", "join"):
        signers = [Signer.generate(crypto, f"m{i}".encode()) for i in range(n)]
        bundles = [generate_key_package(crypto, s, now=int(time.time())) for s in signers[1:]]
        creator = Group.create(crypto, signers[0], config=CONFIG, clock=time.time)
        if kind == "add":
            prof.enable()
        staged = creator.commit(add=[b.message() for b in bundles])
        creator.merge_staged_commit(staged)
        if kind == "add":
            prof.disable()
        else:
            prof.enable()
            Group.join(crypto, staged.welcome or b"", bundles[-1], signers[-1], config=CONFIG, clock=time.time)
            prof.disable()
    elif kind in ("update", "process-update", "fresh-update", "fresh-process"):
        # fresh-*: the first self-update after the one big add (the sparse tree, as vs_peers.py).
        fresh = kind.startswith("fresh")
        kind = {"fresh-update": "update", "fresh-process": "process-update"}.get(kind, kind)
        b = Built(n, joined=2)
        leaves = sorted(b.members)
        committer, receiver = leaves[1], leaves[-1]
        if not fresh:
            b.populate_copath(committer)
        for _ in range(1 if fresh else 5):
            g = b.members[committer]
            if kind == "update":
                prof.enable()
            staged = g.commit()
            if kind == "update":
                prof.disable()
            g.merge_staged_commit(staged)
            msg = staged.message or b""
            for leaf, other in b.members.items():
                if leaf == committer:
                    continue
                if leaf == receiver and kind == "process-update":
                    prof.enable()
                other.process_message(msg)
                if leaf == receiver and kind == "process-update":
                    prof.disable()
    else:
        print(f"unknown row {row}")
        return 2
    pstats.Stats(prof).sort_stats("cumulative").print_stats(30)
    pstats.Stats(prof).sort_stats("tottime").print_stats(20)
    return 0


if __name__ == "__main__":
    sys.exit(main())
