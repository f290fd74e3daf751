"""Ping's MLS engine beside mls-rs (Rust, Python binding) and ts-mls (Node), through the same driver protocol.

    python benchmarks/vs_peers.py [--sizes 100,500,1000,5000] [--rows kp,add,join,update,process,app]
                                  [--peers mlsrs,tsmls] [--skip tsmls:5000] [--reps N]
    python benchmarks/vs_peers.py --profile ROW:N     # cProfile of Ping's driver for one row (in process)

Installs nothing: each implementation runs as its docs/interop.md driver (``python -m
ping_core.mls.interop``; ``tests/interop/mlsrs_driver.py`` when ``mls_rs_uniffi`` is importable,
``pip install -e '.[interop]'``; ``tests/interop/tsmls_driver.mjs`` when ts-mls is installed,
``npm ci --prefix tests/interop``). A peer that is missing is skipped with a line saying why.

Every figure is the time the driver itself reports for a request (``elapsed_us``, or ``cpu_us`` with
``--clock cpu``: on a machine shared with other work, the part that is the implementation's own;
docs/interop.md),
so neither process start-up nor the JSON lines are measured; each is the median of its samples
(``--stat min``: the minimum), the sample count shown. The implementations take turns group by
group, so the ratios are measured side by side. Rows, for each group size N:

* ``kp`` KeyPackage: one ``key_package`` (median over the N-1 made for the group, at least 50);
* ``add`` add commit: one commit by the creator of a one-member group adding N-1 members
  (the commit and the committer's own merge), repeated ``reps`` times on fresh groups;
* ``join``: a new member processing the Welcome, the ratchet tree in its extension (every
  implementation validates the whole tree: leaf signatures, parent hashes, tree hash), several
  joiners spread over the tree;
* ``update`` self-update commit: a joined member's empty commit with an UpdatePath, on the sparse
  tree the big add left (every parent blank but the creator's path), by several joiners (each
  holds its own copy of that tree);
* ``process`` process commit: other joined members processing the first of those self-updates;
* ``app`` 100 B protect+process: one member protects 100 bytes, another reads them (sum of both).

The answers are checked as they come (epochs, the joiners' group id, the data read back), so a
figure is never the time of a failure. ``--skip IMPL:N`` leaves out one implementation at one size
(ts-mls at N=5000 takes minutes), with a line saying so. Ratios below 1 mean Ping is faster.
"""

from __future__ import annotations

import argparse
import cProfile
import importlib.util
import json
import os
import pstats
import shutil
import statistics
import subprocess
import sys
import time
from collections import defaultdict
from collections.abc import Sequence
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests" / "interop"))

from runner import Driver, DriverError, command_for  # noqa: E402

IMPLS = ("ping", "mlsrs", "tsmls")
LABELS = {"ping": "Ping", "mlsrs": "mls-rs", "tsmls": "ts-mls"}
ROWS = ("kp", "add", "join", "update", "process", "app")
ROW_NAMES = {"kp": "KeyPackage", "add": "add commit", "join": "join", "update": "self-update commit",
             "process": "process commit", "app": "100 B protect+process"}
DEFAULT_REPS = {100: 5, 500: 3, 1000: 2}  # fresh groups per size (1 above 1000)
JOINERS = 5
APP_MESSAGES = 30
MIN_KEY_PACKAGES = 50
#: The response field read (--clock): elapsed_us (wall clock) or cpu_us.
CLOCK_FIELD = ["elapsed_us"]


class BenchError(Exception):
    """A driver answered something the benchmark did not expect."""


def missing_reason(impl: str) -> str | None:
    """Why ``impl``'s driver cannot run here, or None when it can."""
    if impl == "mlsrs" and importlib.util.find_spec("mls_rs_uniffi") is None:
        return "mls-rs skipped: its Python binding is not installed (pip install -e '.[interop]')"
    if impl == "tsmls":
        if shutil.which("node") is None:
            return "ts-mls skipped: node is not on PATH"
        if not (ROOT / "tests" / "interop" / "node_modules" / "ts-mls").exists():
            return "ts-mls skipped: not installed (npm ci --prefix tests/interop)"
    return None


class Timed:
    """One driver process and the ``elapsed_us`` of its answers."""

    def __init__(self, impl: str) -> None:
        self.impl = impl
        self.driver = Driver(impl, command_for(impl), timeout=1800)
        self.hello = self.driver.request("hello")

    def __call__(self, row: str | None, op: str, **fields: Any) -> tuple[float, dict[str, Any]]:
        """The answer to one request (made for ``row``) and the seconds the driver says it took."""
        return self._elapsed(op, self.driver.request(op, **fields))

    def _elapsed(self, op: str, r: dict[str, Any]) -> tuple[float, dict[str, Any]]:
        if not isinstance(r.get(CLOCK_FIELD[0]), int):
            raise BenchError(f"{self.impl}: {op} answered without {CLOCK_FIELD[0]}")
        return r[CLOCK_FIELD[0]] / 1e6, r

    def close(self) -> None:
        self.driver.close()


class Profiled(Timed):
    """Ping's driver in this process, with cProfile on for the requests of one row (``--profile``)."""

    def __init__(self, row: str, profiler: cProfile.Profile) -> None:
        from ping_core.mls.interop import Driver as PingDriver

        self.impl, self.row, self.profiler = "ping", row, profiler
        self.ping = PingDriver(time.time)
        self.hello = self.ping.handle(json.dumps({"op": "hello"}))

    def __call__(self, row: str | None, op: str, **fields: Any) -> tuple[float, dict[str, Any]]:
        line = json.dumps({"op": op, **fields})
        if row == self.row:
            self.profiler.enable()
        r = self.ping.handle(line)
        if row == self.row:
            self.profiler.disable()
        if not r.get("ok"):
            raise BenchError(f"ping: {op} failed: {r.get('error')}")
        return self._elapsed(op, r)

    def close(self) -> None:
        pass


def spread(n: int, k: int) -> list[int]:
    """``k`` distinct member numbers in 1..n-1 spread over the tree, the last leaf first."""
    picks = [n - 1] + [max(1, (i + 1) * (n - 1) // k) for i in range(k - 1)]
    return list(dict.fromkeys(picks))[: min(k, n - 1)]


def run_rep(d: Timed, n: int, rep: int, rows: set[str], samples: dict[str, list[float]]) -> None:
    """Build group number ``rep`` of ``n`` members with driver ``d``; add each row's samples (seconds)."""
    impl = d.impl
    creator = f"c{rep}"
    d(None, "create_group", name=creator, group_id=os.urandom(16).hex())
    kps = []
    for i in range(1, n):
        t, r = d("kp", "key_package", name=f"m{rep}.{i}")
        samples["kp"].append(t)
        kps.append(r["key_package"])
    t, add = d("add", "add", name=creator, key_packages=kps)
    if add.get("epoch") != 1 or "welcome" not in add:
        raise BenchError(f"{impl}: add answered {sorted(add)} at epoch {add.get('epoch')}")
    samples["add"].append(t)
    if not rows & {"join", "update", "process", "app"}:
        return
    joiners = [f"m{rep}.{i}" for i in spread(n, 2 * JOINERS)]
    for j in joiners:
        t, r = d("join", "join", name=j, welcome=add["welcome"])
        if r.get("epoch") != 1:
            raise BenchError(f"{impl}: {j} joined at epoch {r.get('epoch')}")
        samples["join"].append(t)
    if len(joiners) < 2:
        return
    # Every joiner holds its own copy of the sparse tree the add left: the first half each commit
    # a self-update on it, the second half process the first of those updates.
    half = len(joiners) // 2
    updaters, readers = joiners[:half], joiners[half:]
    if rows & {"update", "process"}:
        commits = []
        for j in updaters:
            t, up = d("update", "update", name=j)
            samples["update"].append(t)
            commits.append(up["commit"])
        for j in readers:
            t, r = d("process", "process", name=j, message=commits[0])
            if r.get("commit_applied") is not True or r.get("epoch") != 2:
                raise BenchError(f"{impl}: {j} processed the update as {r}")
            samples["process"].append(t)
    if "app" in rows:
        for _ in range(APP_MESSAGES):
            data = os.urandom(100).hex()
            t1, m = d("app", "protect", name=updaters[0], data=data)
            t2, r = d("app", "process", name=readers[0], message=m["message"])
            if r.get("application_data") != data:
                raise BenchError(f"{impl}: the 100 B message was read as {r}")
            samples["app"].append(t1 + t2)


def run_size(drivers: Sequence[Timed], n: int, reps: int, rows: set[str]) -> dict[str, dict[str, list[float]]]:
    """Samples of every row, per implementation, for ``reps`` groups of ``n`` built by each driver.

    The implementations take turns group by group, so that a change of load on the machine
    during the run falls on all of them alike (the ratios are measured side by side).
    """
    samples: dict[str, dict[str, list[float]]] = {d.impl: defaultdict(list) for d in drivers}
    for rep in range(reps):
        for d in drivers:
            run_rep(d, n, rep, rows, samples[d.impl])
    return samples


def key_package_samples(impl: str, count: int) -> list[float]:
    """``count`` KeyPackage timings (when the group rows make too few)."""
    d = Timed(impl)
    try:
        return [d("kp", "key_package", name=f"k{i}")[0] for i in range(count)]
    finally:
        d.close()


def profile(spec: str, reps: int) -> int:
    """``--profile ROW:N``: where Ping's time goes in one row, requests made exactly as measured."""
    row, _, size = spec.partition(":")
    if row not in ROWS or not size.isdigit() or int(size) < 3:
        print(f"--profile wants ROW:N with ROW in {', '.join(ROWS)} and N >= 3, got {spec!r}")
        return 2
    prof = cProfile.Profile()
    samples = run_size([Profiled(row, prof)], int(size), reps, {row, "add"})["ping"]
    print(f"# {row} at N={size}: median {fmt_ms(statistics.median(samples[row]))} over {len(samples[row])}")
    pstats.Stats(prof).sort_stats("cumulative").print_stats(40)
    pstats.Stats(prof).sort_stats("tottime").print_stats(25)
    return 0


def fmt_ms(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    ms = seconds * 1000
    return f"{ms:.3f} ms" if ms < 1 else f"{ms:.2f} ms" if ms < 100 else f"{ms:.0f} ms"


def fmt_ratio(a: float | None, b: float | None) -> str:
    return "-" if a is None or b is None or b == 0 else f"{a / b:.2f}"


def load() -> str:
    try:
        return subprocess.run(["uptime"], capture_output=True, text=True, check=False).stdout.strip()
    except OSError:
        return f"load average {os.getloadavg()}"


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sizes", default="100,500,1000,5000", help="group sizes N, comma-separated")
    ap.add_argument("--rows", default=",".join(ROWS), help=f"rows to measure, of {','.join(ROWS)}")
    ap.add_argument("--peers", default="mlsrs,tsmls", help="peers beside Ping (mlsrs, tsmls; empty for none)")
    ap.add_argument("--skip", default="", help="IMPL:N pairs to leave out, e.g. tsmls:5000")
    ap.add_argument("--reps", type=int, default=0, help="fresh groups per size (default 5/3/2/1 by N)")
    ap.add_argument("--clock", choices=("wall", "cpu"), default="wall",
                    help="the drivers' elapsed_us (wall clock, the default) or cpu_us (CPU time: what "
                         "load from other processes does not inflate)")
    ap.add_argument("--stat", choices=("median", "min"), default="median",
                    help="figure per row: the median of its samples, or the minimum (on a machine shared "
                         "with other work, which only ever adds time, the closest to each one's own cost)")
    ap.add_argument("--profile", metavar="ROW:N", help="run Ping's driver in this process, cProfile ROW's requests at N")
    args = ap.parse_args(argv)
    if args.profile:
        return profile(args.profile, args.reps or 1)

    stat = statistics.median if args.stat == "median" else min
    CLOCK_FIELD[0] = "elapsed_us" if args.clock == "wall" else "cpu_us"
    sizes = [int(s) for s in args.sizes.split(",") if s]
    rows = [r for r in args.rows.split(",") if r]
    unknown = [r for r in rows if r not in ROWS]
    if unknown or any(n < 3 for n in sizes):
        ap.error(f"rows are {', '.join(ROWS)} (got {unknown}); sizes must be >= 3")
    skip = {tuple(p.split(":")) for p in args.skip.split(",") if p}
    impls = ["ping"] + [p for p in args.peers.split(",") if p]
    print(f"# vs_peers: {load()}")
    print(f"# figures: the {args.stat} of each row's samples (count in brackets), {args.clock} clock "
          f"({CLOCK_FIELD[0]} as each driver reports it)")
    for impl in list(impls):
        if impl not in IMPLS:
            ap.error(f"unknown implementation {impl!r}")
        reason = missing_reason(impl)
        if reason:
            print(f"# {reason}")
            impls.remove(impl)
            continue
        try:
            d = Timed(impl)
        except DriverError as e:
            print(f"# {LABELS[impl]} skipped: its driver does not start ({str(e).splitlines()[0]})")
            impls.remove(impl)
            continue
        print(f"# {LABELS[impl]}: {d.hello.get('impl')} {d.hello.get('version')} ({' '.join(command_for(impl))})")
        d.close()

    results: dict[tuple[str, str], tuple[float, int]] = {}  # (row label, impl) -> (median s, samples)
    row_set = set(rows)
    group_rows = row_set - {"kp"} or ({"add"} if "kp" in row_set else set())
    kp_samples: dict[str, list[float]] = defaultdict(list)
    table_rows: list[str] = []
    if "kp" in row_set:
        table_rows.append(ROW_NAMES["kp"])
    for n in sizes:
        for r in ROWS:
            if r != "kp" and r in row_set:
                table_rows.append(f"N={n} {ROW_NAMES[r]}")
    for n in sizes:
        reps = args.reps or DEFAULT_REPS.get(n, 1)
        here = []
        for impl in impls:
            if (impl, str(n)) in skip:
                print(f"# {LABELS[impl]} N={n} skipped (--skip {impl}:{n})")
            else:
                here.append(impl)
        if not group_rows or not here:
            continue
        started = time.perf_counter()
        drivers = [Timed(impl) for impl in here]
        try:
            by_impl = run_size(drivers, n, reps, group_rows | row_set)
        finally:
            for d in drivers:
                d.close()
        print(f"# N={n}: {reps} group(s) per implementation, built in turns, measured in "
              f"{time.perf_counter() - started:.1f} s", flush=True)
        for impl, s in by_impl.items():
            kp_samples[impl] += s.pop("kp", [])
            for r, vals in s.items():
                if r in row_set and vals:
                    results[(f"N={n} {ROW_NAMES[r]}", impl)] = (stat(vals), len(vals))
    if "kp" in row_set:
        for impl in impls:
            vals = kp_samples[impl]
            if len(vals) < MIN_KEY_PACKAGES:
                vals += key_package_samples(impl, MIN_KEY_PACKAGES - len(vals))
            results[(ROW_NAMES["kp"], impl)] = (stat(vals), len(vals))

    peers = [p for p in impls if p != "ping"]
    head = ["figure", *(LABELS[i] for i in impls), *(f"Ping/{LABELS[p]}" for p in peers)]
    print()
    print("| " + " | ".join(head) + " |")
    print("|" + "---|" * len(head))
    worst: dict[str, float] = {}
    for label in table_rows:
        cells = [label]
        med = {i: results.get((label, i), (None, 0))[0] for i in impls}
        for i in impls:
            got = results.get((label, i))
            cells.append(f"{fmt_ms(got[0])} ({got[1]})" if got else "-")
        for p in peers:
            cells.append(fmt_ratio(med["ping"], med[p]))
            ours, theirs = med["ping"], med[p]
            if ours is not None and theirs:
                worst[p] = max(worst.get(p, 0.0), ours / theirs)
        print("| " + " | ".join(cells) + " |")
    print()
    for p in peers:
        if p in worst:
            print(f"worst Ping/{LABELS[p]}: {worst[p]:.2f}")
    print(f"# done: {load()}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
