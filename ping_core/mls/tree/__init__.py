"""The tree layer of the engine (RFC 9420 §4, §7, §9, §12.4.3.1, Appendix C).

Modules, bottom-up (each imports only those above it):

==================  ==========================================================
``treemath``        the one tree math: node indices, parents, children, paths,
                    common ancestors (§4.1, Appendix C)
``codec``           the wire form ``optional<Node> ratchet_tree<V>`` (§12.4.3.3)
``keys``            the key index behind the uniqueness checks (§7.3)
``hashes``          tree hashes and parent hashes, cached per node (§7.8, §7.9)
``ratchet_tree``    :class:`RatchetTree`: nodes, navigation, mutation (§7.4-§7.9,
                    §12.1)
``leaves``          signing a leaf, the checks of a leaf on its own (§7.2, §7.3)
``validation``      a leaf against the tree, a whole received tree (§7.3,
                    §7.9.2, §12.4.3.1)
``treekem``         UpdatePaths: generating, verifying, merging, decrypting;
                    a joiner's path keys (§7.4-§7.6, §12.4.1-§12.4.3)
``secret_tree``     the secret tree of an epoch and its per-sender ratchets
                    (§9); it needs only ``treemath``
==================  ==========================================================

The names below are the ratchet tree's API, imported from here; TreeKEM and
the secret tree are imported from their modules.
"""

from __future__ import annotations

from . import treemath
from .keys import KeyIndex
from .leaves import (
    DEFAULT_EXTENSION_TYPES,
    DEFAULT_PROPOSAL_TYPES,
    HPKE_PUBLIC_KEY_LEN,
    check_extensions_listed,
    check_leaf_content,
    check_lifetime_span,
    check_supports_group,
    required_capabilities,
    sign_leaf_node,
)
from .ratchet_tree import RatchetTree
from .treemath import MAX_LEAF_WIDTH, common_ancestor
from .validation import (
    check_leaf_in_tree,
    check_leaf_signatures,
    check_parent_hashes,
    check_unmerged_leaves,
    validate_tree,
    verify_leaf,
)

__all__ = [
    "treemath",
    "RatchetTree",
    "KeyIndex",
    "MAX_LEAF_WIDTH",
    "common_ancestor",
    "DEFAULT_EXTENSION_TYPES",
    "DEFAULT_PROPOSAL_TYPES",
    "HPKE_PUBLIC_KEY_LEN",
    "sign_leaf_node",
    "check_leaf_content",
    "check_extensions_listed",
    "check_lifetime_span",
    "check_supports_group",
    "required_capabilities",
    "verify_leaf",
    "check_leaf_in_tree",
    "check_leaf_signatures",
    "check_parent_hashes",
    "check_unmerged_leaves",
    "validate_tree",
]
