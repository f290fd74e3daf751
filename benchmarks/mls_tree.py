"""Costs of the ratchet tree and TreeKEM on this machine (CPython).

    python benchmarks/mls_tree.py [--rounds R] [--profile ROW] [--big]

Prints the median of R rounds (default 7) for:

* tree hash of a fresh tree of 1000 and 5000 members: decoded from the wire
  (node encodings come from the wire bytes) and built in memory (every leaf
  encoded once); then the incremental rehash after one leaf changes;
* joining a 500-member group: decoding its tree and the full validation
  (tree hash, unmerged leaves, unique keys, capabilities, parent hashes,
  every leaf signature), and the same without the signatures to show what
  the rest costs (budget for a whole join: 50 ms, of which ~60 us per
  signature is the crypto backend's);
* a self-update commit's UpdatePath in groups of 100 and 1000 (budget at 100:
  10 ms to generate, 2 ms to process): generate (staged copy, keys, parent
  hashes, signed leaf, tree hash, HPKE to the copath resolutions) and process
  by another member (staged copy, checks, merge, decrypt, derive, compare).
  Two tree shapes: "fresh" (built by one commit of the creator adding
  everyone: parents mostly blank, so a path encrypts to many leaves) and
  "settled" (after every member committed once: about one ciphertext per
  level).

``--profile ROW`` runs that row under cProfile and prints the top entries
(ROW: hash5000, join500, gen100, proc100, gen1000, proc1000).
``--big`` adds the 1000-member "settled" shape (slow to build).
``--pyodide`` also runs the 1000-member hash, the 500-member join and the
100-member fresh-tree paths inside Pyodide under Node with the noble JS
crypto backend (as in the browser worker; Node's V8 is the browser's).
"""

from __future__ import annotations

import argparse
import cProfile
import pstats
import statistics
import sys
import time
from pathlib import Path
from typing import Callable, Iterable

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from ping_core.mls.tls import encode  # noqa: E402
from ping_core.mls.crypto import default_provider  # noqa: E402
from ping_core.mls.structs.credential import Credential  # noqa: E402
from ping_core.mls.structs.enums import LeafNodeSource  # noqa: E402
from ping_core.mls.structs.group_info import GroupContext  # noqa: E402
from ping_core.mls.structs.leaf import Capabilities, LeafNode, Lifetime  # noqa: E402
from ping_core.mls.tree import (  # noqa: E402
    RatchetTree,
    check_leaf_content,
    check_parent_hashes,
    check_unmerged_leaves,
    common_ancestor,
    sign_leaf_node,
    validate_tree,
)
from ping_core.mls.tree.treekem import (  # noqa: E402
    GeneratedPath,
    PathKeys,
    commit_leaf_maker,
    generate_update_path,
    path_keys_from_path_secret,
    process_update_path,
)

crypto = default_provider()
GROUP_ID = b"benchmark group"


class Member:
    __slots__ = ("sig_priv", "enc_priv", "leaf", "keys")

    def __init__(self, i: int) -> None:
        self.sig_priv, sig_pub = crypto.sign_keygen()
        self.enc_priv, enc_pub = crypto.dh_keygen()
        leaf = LeafNode(
            enc_pub,
            sig_pub,
            Credential.basic(b"member %d" % i),
            Capabilities(),
            LeafNodeSource.KEY_PACKAGE,
            Lifetime(0, 2**62),
        )
        self.leaf = sign_leaf_node(crypto, leaf, self.sig_priv)
        self.keys: PathKeys | None = None


def context_for(epoch: int) -> Callable[[bytes], bytes]:
    def make(tree_hash: bytes) -> bytes:
        return encode(
            GroupContext(
                cipher_suite=1,
                group_id=GROUP_ID,
                epoch=epoch,
                tree_hash=tree_hash,
                confirmed_transcript_hash=b"\x00" * 32,
            )
        )

    return make


class Group:
    """A group as everyone sees it, with private keys kept for every member."""

    def __init__(self, n: int) -> None:
        self.members = [Member(i) for i in range(n)]
        creator = self.members[0]
        tree = RatchetTree.create(creator.leaf)
        creator.keys = PathKeys(creator.enc_priv, {})
        self.tree = tree
        self.epoch = 0
        if n > 1:
            staged = tree.copy()
            for m in self.members[1:]:
                staged.add_leaf(m.leaf)
            gen = self._generate(staged, 0, exclude=range(1, n))
            for i, m in enumerate(self.members[1:], start=1):
                m.keys = path_keys_from_path_secret(
                    crypto, staged, i, common_ancestor(2 * i, 0), gen.path_secret_for(i), m.enc_priv
                )
            self.tree = staged
            self.epoch = 1

    def _generate(self, staged: RatchetTree, committer: int, exclude: Iterable[int] = ()) -> GeneratedPath:
        m = self.members[committer]
        base = staged.leaf(committer)
        assert base is not None
        gen = generate_update_path(
            crypto,
            staged,
            committer,
            make_leaf=commit_leaf_maker(crypto, base, m.sig_priv, GROUP_ID, committer),
            group_context_for=context_for(self.epoch + 1),
            exclude=exclude,
        )
        m.keys = gen.keys
        return gen

    def commit(self, committer: int) -> None:
        """A self-update everyone follows (for building the "settled" shape)."""
        staged = self.tree.copy()
        gen = self._generate(staged, committer)
        for i, m in enumerate(self.members):
            if i == committer:
                continue
            theirs = self.tree.copy()
            assert m.keys is not None
            m.keys = process_update_path(
                crypto, theirs, committer, gen.update_path, own_leaf=i, own_keys=m.keys,
                group_context_for=context_for(self.epoch + 1),
            ).keys
        self.tree = staged
        self.epoch += 1

    def settle(self) -> None:
        for i in range(len(self.members)):
            self.commit(i)


def median_ms(fn: Callable[[], object], rounds: int) -> float:
    fn()  # warm up
    times = []
    for _ in range(rounds):
        start = time.perf_counter()
        fn()
        times.append((time.perf_counter() - start) * 1000)
    return statistics.median(times)


RESULTS: list[tuple[str, float, str]] = []


def row(label: str, ms: float, note: str = "") -> None:
    RESULTS.append((label, ms, note))
    print(f"{label:<58} {ms:9.2f} ms  {note}")


def members_tree(n: int) -> RatchetTree:
    ms = [Member(i) for i in range(n)]
    t = RatchetTree.create(ms[0].leaf)
    for m in ms[1:]:
        t.add_leaf(m.leaf)
    return t


def bench_hash(rounds: int, rows: dict[str, Callable[[], object]], sizes: tuple[int, ...] = (1000, 5000)) -> None:
    for n in sizes:
        t = members_tree(n)
        data = t.encode()
        row(f"decode a {n}-member tree ({len(data) // 1024} KiB)", median_ms(lambda: RatchetTree.decode(data), rounds))
        row(
            f"tree hash, fresh {n}-member tree decoded from the wire",
            median_ms(lambda: RatchetTree.decode(data).tree_hash(crypto), rounds),
            "(decode included)",
        )
        nodes = [t.node(x) for x in range(t.n_nodes)]
        row(
            f"tree hash, fresh {n}-member tree built in memory",
            median_ms(lambda: RatchetTree.from_nodes(nodes).tree_hash(crypto), rounds),
            "(every leaf encoded)",
        )
        t.tree_hash(crypto)
        other = t.leaf(n // 2)
        assert other is not None

        def rehash() -> None:
            c = t.copy()
            c.update_leaf(3, other)
            c.tree_hash(crypto)

        row(f"copy + change one leaf + rehash, {n}-member tree", median_ms(rehash, rounds))
        if n == 5000:
            rows["hash5000"] = lambda: RatchetTree.decode(data).tree_hash(crypto)


def bench_join(rounds: int, rows: dict[str, Callable[[], object]]) -> None:
    g = Group(500)
    g.commit(250)
    g.commit(499)
    data = g.tree.encode()
    th = g.tree.tree_hash(crypto)
    gc = GroupContext(
        cipher_suite=1, group_id=GROUP_ID, epoch=g.epoch, tree_hash=th, confirmed_transcript_hash=b"\x00" * 32
    )

    def join() -> None:
        t = RatchetTree.decode(data)
        validate_tree(t, crypto, gc, own_leaf=7, now_s=1000)

    def join_no_sigs() -> None:
        t = RatchetTree.decode(data)
        assert t.tree_hash(crypto) == th
        check_unmerged_leaves(t)
        check_parent_hashes(t, crypto)

    leaf = g.tree.leaf(9)
    assert leaf is not None
    one_sig = median_ms(lambda: check_leaf_content(crypto, leaf, 9, gc, source=leaf.leaf_node_source), rounds)
    row(f"join: decode + validate a 500-member tree ({len(data) // 1024} KiB)", median_ms(join, rounds), "(budget: whole join 50)")
    row("join: the same without leaf checks/signatures", median_ms(join_no_sigs, rounds))
    row("  one leaf's checks incl. its signature (x500 in validate)", one_sig)
    rows["join500"] = join


def bench_paths(
    rounds: int,
    rows: dict[str, Callable[[], object]],
    big: bool,
    shapes: tuple[tuple[int, str], ...] = ((100, "fresh"), (100, "settled"), (1000, "fresh")),
) -> None:
    if big:
        shapes = shapes + ((1000, "settled"),)
    for n, shape in shapes:
        build_start = time.perf_counter()
        g = Group(n)
        if shape == "settled":
            g.settle()
        built = time.perf_counter() - build_start
        committer, receiver = n // 2 + 1, n - 1
        c_member = g.members[committer]
        r_member = g.members[receiver]
        ctx = context_for(g.epoch + 1)
        base = g.tree.leaf(committer)
        assert base is not None and r_member.keys is not None
        make_leaf = commit_leaf_maker(crypto, base, c_member.sig_priv, GROUP_ID, committer)
        receiver_keys = r_member.keys
        holder: list[GeneratedPath] = []

        def generate() -> None:
            staged = g.tree.copy()
            holder[:] = [generate_update_path(crypto, staged, committer, make_leaf=make_leaf, group_context_for=ctx)]

        def process() -> None:
            theirs = g.tree.copy()
            process_update_path(
                crypto, theirs, committer, holder[0].update_path,
                own_leaf=receiver, own_keys=receiver_keys, group_context_for=ctx,
            )

        gen_ms = median_ms(generate, rounds)
        n_ct = sum(len(x.encrypted_path_secret) for x in holder[0].update_path.nodes)
        path_len = len(holder[0].update_path.nodes)
        proc_ms = median_ms(process, rounds)
        goal = " (budget 10)" if n == 100 else ""
        row(f"UpdatePath generate, {n} members, {shape} tree", gen_ms, f"{path_len} nodes, {n_ct} ciphertexts{goal}")
        row(f"UpdatePath process, {n} members, {shape} tree", proc_ms, "(budget 2)" if n == 100 else "")
        print(f"{'':<58} (group built in {built:.1f} s)")
        if shape == "fresh":
            rows[f"gen{n}"] = generate
            rows[f"proc{n}"] = process


def in_pyodide_rows(rounds: int) -> list[tuple[str, float, str]]:
    """The rows run inside Pyodide (called there through :func:`bench_pyodide`)."""
    rows: dict[str, Callable[[], object]] = {}
    bench_hash(rounds, rows, sizes=(1000,))
    bench_join(rounds, rows)
    bench_paths(rounds, rows, False, shapes=((100, "fresh"),))
    return RESULTS


def bench_pyodide(rounds: int) -> None:
    root = Path(__file__).resolve().parent.parent
    sys.path.insert(0, str(root / "tests" / "node"))
    import json

    from pyodide_node import PyodideNode, build_for_tests  # type: ignore[import-not-found]

    host = PyodideNode(wheels=build_for_tests())
    try:
        source = Path(__file__).read_text()
        code = (
            "import json\n"
            "_ns = {'__name__': 'mls_tree', '__file__': '/tmp/benchmarks/mls_tree.py'}\n"
            f"exec(compile({source!r}, 'mls_tree.py', 'exec'), _ns)\n"
            f"json.dumps([_ns['crypto'].name, _ns['in_pyodide_rows']({rounds})])\n"
        )
        name, results = json.loads(host.python(code, timeout=1800.0))
    finally:
        host.close()
    print(f"\ninside Pyodide under Node (crypto provider: {name}):")
    for label, ms, note in results:
        print(f"{label:<58} {ms:9.2f} ms  {note}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--profile", default=None)
    parser.add_argument("--big", action="store_true")
    parser.add_argument("--pyodide", action="store_true")
    args = parser.parse_args()
    print(f"crypto provider: {crypto.name}; Python {sys.version.split()[0]}; median of {args.rounds} rounds")
    rows: dict[str, Callable[[], object]] = {}
    bench_hash(args.rounds, rows)
    bench_join(args.rounds, rows)
    bench_paths(args.rounds, rows, args.big)
    if args.profile:
        fn = rows[args.profile]
        prof = cProfile.Profile()
        prof.enable()
        for _ in range(5):
            fn()
        prof.disable()
        pstats.Stats(prof).sort_stats("tottime").print_stats(18)
    if args.pyodide:
        bench_pyodide(max(3, args.rounds // 2))


if __name__ == "__main__":
    main()
