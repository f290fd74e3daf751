"""Leaf nodes on their own: signing and the checks that need no tree (RFC 9420 §7.2, §7.3).

:func:`check_leaf_content` is the part of leaf validation that looks at the
leaf and the GroupContext only (source, key size, capabilities, lifetime,
signature); the checks against the other members are in
:mod:`ping_core.mls.tree.validation`. Every check raises an
:class:`~ping_core.errors.MlsError` (``InvalidSignature`` for a signature)
that names the leaf and what is wrong.
"""

from __future__ import annotations

from struct import Struct
from typing import Literal, Sequence

from ping_core.errors import CryptoError, InvalidSignature, MlsDecodeError, MlsError, MlsReason
from ping_core.mls.tls import opaque, varint
from ping_core.mls.crypto import CryptoProvider
from ping_core.mls.primitives import sign_with_label, verify_with_label
from ping_core.mls.structs.enums import ExtensionType, LeafNodeSource, ProposalType
from ping_core.mls.structs.extensions import Extension, RequiredCapabilities, has_unique_types
from ping_core.mls.structs.group_info import GroupContext
from ping_core.mls.structs.leaf import Capabilities, LeafNode, Lifetime

from .treemath import MAX_LEAF_WIDTH

__all__ = [
    "DEFAULT_EXTENSION_TYPES",
    "DEFAULT_PROPOSAL_TYPES",
    "HPKE_PUBLIC_KEY_LEN",
    "LEAF_NODE_TBS_LABEL",
    "sign_leaf_node",
    "leaf_tbs",
    "check_leaf_content",
    "check_extensions_listed",
    "check_lifetime_span",
    "check_supports_group",
    "required_capabilities",
]

# The proposal and extension types every client implements (§7.2): they are
# never listed in capabilities and are always supported.
DEFAULT_EXTENSION_TYPES = frozenset(int(t) for t in ExtensionType)
DEFAULT_PROPOSAL_TYPES = frozenset(int(t) for t in ProposalType)
HPKE_PUBLIC_KEY_LEN = 32  # X25519 (cipher suite 1)
LEAF_NODE_TBS_LABEL = b"LeafNodeTBS"

_U32 = Struct(">I")
_KEY_PACKAGE = LeafNodeSource.KEY_PACKAGE


def sign_leaf_node(
    crypto: CryptoProvider,
    leaf: LeafNode,
    signature_secret: bytes,
    group_id: bytes | None = None,
    leaf_index: int | None = None,
) -> LeafNode:
    """``leaf`` with its signature set: ``SignWithLabel(., "LeafNodeTBS", LeafNodeTBS)`` (§7.2).

    ``group_id`` and ``leaf_index`` are required for update and commit leaves
    and refused for key_package leaves (see ``LeafNode.tbs``).
    """
    try:
        tbs = leaf.tbs(group_id, leaf_index)
    except ValueError as exc:
        raise MlsError(f"cannot sign this leaf node: {exc}", reason=MlsReason.INVALID_ARGUMENT) from None
    signature = sign_with_label(crypto, signature_secret, LEAF_NODE_TBS_LABEL, tbs)
    return LeafNode(
        leaf.encryption_key,
        leaf.signature_key,
        leaf.credential,
        leaf.capabilities,
        leaf.leaf_node_source,
        leaf.lifetime,
        leaf.parent_hash,
        leaf.extensions,
        signature,
    )


def leaf_tbs(leaf: LeafNode, leaf_index: int | None, group_id: bytes, enc: bytes | None = None) -> bytes:
    """The LeafNodeTBS of ``leaf`` (§7.2): group id and leaf index only for update
    and commit leaves. ``enc``, the leaf's encoding when at hand, saves encoding
    it again (the TBS is that encoding without ``opaque signature<V>``)."""
    source = leaf.leaf_node_source
    if enc is None:
        return leaf.tbs(None, None) if source == _KEY_PACKAGE else leaf.tbs(group_id, leaf_index)
    n = len(leaf.signature)
    tbs = enc[: len(enc) - n - len(varint(n))]
    if source != _KEY_PACKAGE:
        assert leaf_index is not None
        tbs = tbs + opaque(group_id) + _U32.pack(leaf_index)
    return tbs


def check_leaf_content(
    crypto: CryptoProvider,
    leaf: LeafNode,
    leaf_index: int | None,
    gc: GroupContext,
    *,
    source: LeafNodeSource,
    now_s: int | None = None,
    max_lifetime_s: int | None = None,
    enc: bytes | None = None,
    required: RequiredCapabilities | None | Literal[False] = False,
) -> None:
    """Validate what a leaf says about itself against the group context (§7.3).

    Source, key size, capabilities (version, suite, own credential type,
    own extensions, GroupContext extensions, required_capabilities),
    lifetime (its span with ``max_lifetime_s``, the current time with
    ``now_s``) and, last, the signature (over group_id and ``leaf_index`` for
    update and commit leaves). ``enc`` (the leaf's encoding) and ``required``
    (the parsed required_capabilities, or ``None``) are shortcuts for a
    caller that has them.
    """
    where = f"leaf {leaf_index}" if leaf_index is not None else "leaf node"
    if source != _KEY_PACKAGE and (leaf_index is None or not 0 <= leaf_index < MAX_LEAF_WIDTH):
        raise MlsError(
            "update and commit leaves are verified at their (valid) leaf index",
            reason=MlsReason.INVALID_ARGUMENT,
        )
    if leaf.leaf_node_source != source:
        raise MlsError(
            f"{where}: leaf_node_source is {leaf.leaf_node_source.name}, expected {source.name}",
            reason=MlsReason.BAD_LEAF,
        )
    if len(leaf.encryption_key) != HPKE_PUBLIC_KEY_LEN:
        raise MlsError(
            f"{where}: the encryption key is not a {HPKE_PUBLIC_KEY_LEN}-byte X25519 key",
            reason=MlsReason.BAD_LEAF,
        )
    _check_capabilities(leaf, gc, where)
    req = required_capabilities(gc.extensions) if required is False else required
    check_supports_group(leaf, gc.extensions, req, where)
    if source == _KEY_PACKAGE:
        lt = leaf.lifetime
        # The span is checked with or without a clock: it is a property of the leaf alone.
        check_lifetime_span(lt, max_lifetime_s, where)
        assert lt is not None  # check_lifetime_span refuses a missing one
        if now_s is not None and not lt.not_before <= now_s <= lt.not_after:
            raise MlsError(
                f"{where}: its lifetime {lt.not_before}..{lt.not_after} does not cover the current time {now_s}",
                reason=MlsReason.BAD_LIFETIME,
            )
    # The signature last: the cheapest checks refuse garbage first.
    tbs = leaf_tbs(leaf, leaf_index, gc.group_id, enc)
    try:
        verify_with_label(crypto, leaf.signature_key, LEAF_NODE_TBS_LABEL, tbs, leaf.signature)
    except CryptoError as exc:
        raise InvalidSignature(
            f"{where}: the leaf node signature does not verify ({exc})",
            reason=MlsReason.BAD_SIGNATURE,
        ) from None


def _check_capabilities(leaf: LeafNode, gc: GroupContext, where: str) -> None:
    """§7.2: the leaf lists the group's version and suite, its own credential type
    and extension types, and carries no extension type twice."""
    caps = leaf.capabilities
    if gc.version not in caps.versions:
        raise MlsError(
            f"{where}: its capabilities do not list protocol version {gc.version}",
            reason=MlsReason.UNSUPPORTED,
        )
    if gc.cipher_suite not in caps.cipher_suites:
        raise MlsError(
            f"{where}: its capabilities do not list cipher suite {gc.cipher_suite}",
            reason=MlsReason.UNSUPPORTED,
        )
    if leaf.credential.credential_type not in caps.credentials:
        raise MlsError(f"{where}: its capabilities do not list its own credential type", reason=MlsReason.BAD_LEAF)
    if leaf.extensions:
        if not has_unique_types(leaf.extensions):
            raise MlsError(f"{where}: an extension type occurs twice", reason=MlsReason.BAD_LEAF)
        check_extensions_listed(leaf.extensions, caps, where)


def required_capabilities(extensions: Sequence[Extension]) -> RequiredCapabilities | None:
    """The parsed required_capabilities extension among GroupContext ``extensions``, if any (§11.1)."""
    for ext in extensions:
        if ext.extension_type == ExtensionType.REQUIRED_CAPABILITIES:
            try:
                return ext.parse(RequiredCapabilities)
            except MlsDecodeError as exc:
                raise MlsError(
                    f"malformed required_capabilities extension: {exc}",
                    reason=MlsReason.MALFORMED,
                ) from None
    return None


def check_extensions_listed(extensions: Sequence[Extension], caps: Capabilities, where: str = "leaf node") -> None:
    """§7.2/§7.3: every non-default extension type a leaf carries is listed in its
    capabilities (default types are not listed: §7.2 says they MUST NOT be)."""
    for ext in extensions:
        t = ext.extension_type
        if t not in DEFAULT_EXTENSION_TYPES and t not in caps.extensions:
            raise MlsError(f"{where}: extension type {t} is not listed in its capabilities", reason=MlsReason.BAD_LEAF)


def check_lifetime_span(lifetime: Lifetime | None, max_lifetime_s: int | None, where: str = "leaf node") -> None:
    """RFC 9420 §7.2: the application's maximum total lifetime of a key_package
    leaf. ``MlsError`` when ``not_after - not_before`` exceeds ``max_lifetime_s``
    (``None``: no maximum, the engine's default, for peers and test vectors
    with very long lifetimes) or when the leaf has no lifetime at all."""
    if lifetime is None:
        raise MlsError(f"{where}: a key_package leaf node needs a lifetime", reason=MlsReason.BAD_LIFETIME)
    if max_lifetime_s is None:
        return
    span = lifetime.not_after - lifetime.not_before
    if span > max_lifetime_s:
        raise MlsError(
            f"{where}: its lifetime {lifetime.not_before}..{lifetime.not_after} spans {span} s, "
            f"more than the maximum of {max_lifetime_s} s this application accepts (RFC 9420 §7.2)",
            reason=MlsReason.LIFETIME_TOO_LONG,
        )


def check_supports_group(
    leaf: LeafNode, extensions: Sequence[Extension], required: RequiredCapabilities | None, where: str = "leaf node"
) -> None:
    """§7.3, §12.1.7: the leaf supports every non-default extension type of the
    GroupContext ``extensions`` and every type ``required`` (their parsed
    required_capabilities) names."""
    listed = leaf.capabilities.extensions
    for ext in extensions:
        t = ext.extension_type
        if t not in DEFAULT_EXTENSION_TYPES and t not in listed:
            raise MlsError(f"{where}: does not support the group's extension type {t}", reason=MlsReason.UNSUPPORTED)
    if required is not None:
        _check_required(where, leaf, required)


def _check_required(where: str, leaf: LeafNode, req: RequiredCapabilities) -> None:
    caps = leaf.capabilities
    for t in req.extension_types:
        if t not in DEFAULT_EXTENSION_TYPES and t not in caps.extensions:
            raise MlsError(f"{where}: does not support required extension type {t}", reason=MlsReason.UNSUPPORTED)
    for t in req.proposal_types:
        if t not in DEFAULT_PROPOSAL_TYPES and t not in caps.proposals:
            raise MlsError(f"{where}: does not support required proposal type {t}", reason=MlsReason.UNSUPPORTED)
    for t in req.credential_types:
        if t not in caps.credentials:
            raise MlsError(f"{where}: does not support required credential type {t}", reason=MlsReason.UNSUPPORTED)
