"""tree-math.json: array tree math (RFC 9420 Appendix C)."""

from __future__ import annotations

from typing import Any

from ping_core.errors import MlsError, MlsReason
from ping_core.mls.tree import treemath as tm
from ping_core.mls.crypto import CryptoProvider

from ping_core.testing.vectors.registry import expect_equal

__all__ = ["run"]


def _or_none(f: Any, *args: int) -> int | None:
    try:
        result: int = f(*args)
    except MlsError as exc:
        # The vector's null: the node has no such relative (a caller's question with no answer).
        if exc.reason is not MlsReason.INVALID_ARGUMENT:
            raise
        return None
    return result


def run(case: dict[str, Any], crypto: CryptoProvider) -> None:
    n = case["n_leaves"]
    expect_equal("n_nodes", tm.node_width(n), case["n_nodes"])
    expect_equal("root", tm.root(n), case["root"])
    w = case["n_nodes"]
    for name, values, f in (
        ("left", case["left"], lambda x: tm.left(x)),
        ("right", case["right"], lambda x: tm.right(x, n)),
        ("parent", case["parent"], lambda x: tm.parent(x, n)),
        ("sibling", case["sibling"], lambda x: tm.sibling(x, n)),
    ):
        expect_equal(f"{name} count", len(values), w)
        for x in range(w):
            expect_equal(f"{name}({x})", _or_none(f, x), values[x])
