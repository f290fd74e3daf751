"""The key index of a ratchet tree: what the uniqueness and compatibility checks
of RFC 9420 §7.3 and §12.4.3.1 look up (encryption keys unique in the tree,
signature keys unique among members, credential types supported by all)."""

from __future__ import annotations

from typing import Iterable, TypeVar

from ping_core.mls.structs.leaf import LeafNode
from ping_core.mls.structs.tree_nodes import Node

__all__ = ["KeyIndex"]

_K = TypeVar("_K")


def _inc(d: dict[_K, int], key: _K) -> None:
    d[key] = d.get(key, 0) + 1


def _dec(d: dict[_K, int], key: _K) -> None:
    n = d[key] - 1
    if n:
        d[key] = n
    else:
        del d[key]


class KeyIndex:
    """Multisets over the nodes of a tree (what :meth:`~ping_core.mls.tree.ratchet_tree.RatchetTree.key_index` returns: read it, never change it).

    ``enc``: HPKE public keys of every node; ``sig``: signature keys of the
    leaves; ``ctype``: credential types in use; ``ccaps``: the distinct
    ``capabilities.credentials`` lists of the leaves. Counts, so a removal is
    exact even in a tree that (invalidly) repeats a key, and a count above 1
    is a duplicate.
    """

    __slots__ = ("enc", "sig", "ctype", "ccaps")

    def __init__(self, nodes: Iterable[Node | None] = ()) -> None:
        self.enc: dict[bytes, int] = {}
        self.sig: dict[bytes, int] = {}
        self.ctype: dict[int, int] = {}
        self.ccaps: dict[tuple[int, ...], int] = {}
        for node in nodes:
            if node is not None:
                self.add(node)

    def copy(self) -> KeyIndex:
        other = KeyIndex()
        other.enc = self.enc.copy()
        other.sig = self.sig.copy()
        other.ctype = self.ctype.copy()
        other.ccaps = self.ccaps.copy()
        return other

    def add(self, node: Node) -> None:
        _inc(self.enc, node.encryption_key)
        if type(node) is LeafNode:
            _inc(self.sig, node.signature_key)
            _inc(self.ctype, node.credential.credential_type)
            _inc(self.ccaps, node.capabilities.credentials)

    def remove(self, node: Node) -> None:
        _dec(self.enc, node.encryption_key)
        if type(node) is LeafNode:
            _dec(self.sig, node.signature_key)
            _dec(self.ctype, node.credential.credential_type)
            _dec(self.ccaps, node.capabilities.credentials)
