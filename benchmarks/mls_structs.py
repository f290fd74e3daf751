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
from typing import Callable

from ping_core.mls.tls import decode_exact, encode
from ping_core.mls.structs import (
    Capabilities,
    ContentType,
    Credential,
    Extension,
    FramedContent,
    FramedContentAuthData,
    LeafNode,
    LeafNodeSource,
    Lifetime,
    MLSMessage,
    ParentNode,
    PrivateMessage,
    PrivateMessageContent,
    PublicMessage,
    RatchetTree,
    Sender,
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


def best_of(fn: Callable[[], object], repeat: int = 5) -> float:
    best = float("inf")
    for _ in range(repeat):
        t = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t)
    return best


def rate(fn: Callable[[], object], n: int = 20000) -> float:
    """Operations per second (best of 3 runs of n calls)."""
    best = float("inf")
    for _ in range(3):
        t = time.perf_counter()
        for _ in range(n):
            fn()
        best = min(best, time.perf_counter() - t)
    return n / best


def hot_path() -> None:
    group_id = os.urandom(16)
    for size in (100, 10 * 1024):
        app = os.urandom(size)
        pmc = PrivateMessageContent(app, FramedContentAuthData(os.urandom(64)), 0)
        pmc_bytes = encode(pmc)
        pm = MLSMessage(PrivateMessage(group_id, 5, ContentType.APPLICATION, b"", os.urandom(28), os.urandom(size + 84)))
        pm_bytes = encode(pm)
        fc = FramedContent(group_id, 5, Sender.member(3), b"", app)
        pub = MLSMessage(PublicMessage(fc, FramedContentAuthData(os.urandom(64)), os.urandom(32)))
        pub_bytes = encode(pub)
        fc_bytes = encode(fc)
        print(
            f"{size:>6} B app data, ops/s: "
            f"PrivateMessageContent enc {rate(lambda: encode(pmc)):,.0f} "
            f"dec {rate(lambda: PrivateMessageContent.decode(pmc_bytes, ContentType.APPLICATION)):,.0f} | "
            f"MLSMessage(PrivateMessage) enc {rate(lambda: encode(pm)):,.0f} "
            f"dec {rate(lambda: decode_exact(MLSMessage, pm_bytes)):,.0f} | "
            f"FramedContent enc {rate(lambda: encode(fc)):,.0f} "
            f"dec {rate(lambda: decode_exact(FramedContent, fc_bytes)):,.0f} | "
            f"MLSMessage(PublicMessage) enc {rate(lambda: encode(pub)):,.0f} "
            f"dec {rate(lambda: decode_exact(MLSMessage, pub_bytes)):,.0f}"
        )


def main() -> None:
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 5000
    tree = make_tree(n)
    data = encode(tree)
    assert decode_exact(RatchetTree, data) == tree
    d = best_of(lambda: decode_exact(RatchetTree, data))
    e = best_of(lambda: encode(tree))
    print(f"ratchet tree {n} leaves ({len(data)} B): decode {d * 1000:.1f} ms, encode {e * 1000:.1f} ms")
    hot_path()


if __name__ == "__main__":
    main()
