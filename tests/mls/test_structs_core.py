"""Round trips and strictness of the core structs: credentials, extensions,
leaf nodes, tree nodes, key packages, update paths, group context/info."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from ping_core.errors import MlsDecodeError, MlsReason
from ping_core.mls.tls import Writer, decode_exact, encode
from ping_core.mls.structs import (
    ApplicationId,
    Capabilities,
    Credential,
    CredentialType,
    Extension,
    ExtensionType,
    ExternalPub,
    ExternalSender,
    ExternalSenders,
    GroupContext,
    GroupInfo,
    HPKECiphertext,
    KeyPackage,
    LeafNode,
    LeafNodeSource,
    Lifetime,
    ParentNode,
    RatchetTree,
    RequiredCapabilities,
    UpdatePath,
    UpdatePathNode,
    find_extension,
    get_extension,
    has_unique_types,
)

from strategies import example_leaf as leaf, roundtrip  # noqa: E402
from reasons import raises_reason

MESSAGES = json.loads((Path(__file__).resolve().parent.parent / "vectors" / "messages.json").read_text())


def test_credentials_roundtrip() -> None:
    assert roundtrip(Credential.basic(b"bob")) == bytes.fromhex("0001") + b"\x03bob"
    x = Credential.x509((b"cert-1", b"cert-22"))
    assert roundtrip(x) == bytes.fromhex("0002") + bytes([15, 6]) + b"cert-1" + bytes([7]) + b"cert-22"
    assert x.credential_type is CredentialType.X509


def test_unknown_credential_type_refused() -> None:
    with raises_reason(MlsReason.MALFORMED, MlsDecodeError):
        decode_exact(Credential, bytes.fromhex("000300"))
    with pytest.raises(ValueError):
        encode(Credential(CredentialType.BASIC, identity=b"a", certificates=(b"c",)))


def test_extensions_typed_payloads() -> None:
    payloads: list[Any] = [
        ApplicationId(b"app"),
        RequiredCapabilities((1, 0xFAFA), (7,), (1, 2)),
        ExternalPub(b"\x05" * 32),
        ExternalSenders((ExternalSender(b"\x06" * 32, Credential.basic(b"ds")),)),
    ]
    exts = tuple(Extension.of(p) for p in payloads) + (Extension(0xBEEF, b"unknown stays"),)
    for p, e in zip(payloads, exts):
        roundtrip(p)
        assert e.parse(type(p)) == p
        assert get_extension(exts, type(p)) == p
    assert find_extension(exts, 0xBEEF) == Extension(0xBEEF, b"unknown stays")
    assert find_extension(exts, 0x1234) is None
    assert get_extension((), ExternalPub) is None
    assert has_unique_types(exts)
    assert not has_unique_types(exts + (Extension(ExtensionType.EXTERNAL_PUB, b""),))
    with raises_reason(MlsReason.MALFORMED, MlsDecodeError):
        Extension(ExtensionType.EXTERNAL_PUB, b"\x05").parse(ExternalPub)
    with raises_reason(MlsReason.MALFORMED, MlsDecodeError):
        Extension(ExtensionType.APPLICATION_ID, b"\x00").parse(ExternalPub)


@pytest.mark.parametrize("source", list(LeafNodeSource))
def test_leaf_node_roundtrip_and_tbs(source: LeafNodeSource) -> None:
    node = leaf(source)
    data = roundtrip(node)
    if source == LeafNodeSource.KEY_PACKAGE:
        tbs = node.tbs()
        with pytest.raises(ValueError):
            node.tbs(b"g", 0)
        # the TBS is the leaf node minus its signature
        assert data == tbs + bytes.fromhex("4040") + node.signature
    else:
        tbs = node.tbs(b"group", 5)
        assert tbs.endswith(b"\x05group\x00\x00\x00\x05")
        assert data.startswith(tbs[: -len(b"\x05group\x00\x00\x00\x05")])
        with pytest.raises(ValueError):
            node.tbs()


def test_leaf_node_inconsistent_source_not_encodable() -> None:
    bad = LeafNode(b"k", b"s", Credential.basic(b"a"), Capabilities(), LeafNodeSource.UPDATE, lifetime=Lifetime(0, 1))
    with pytest.raises(ValueError):
        encode(bad)


def test_leaf_node_unknown_source_refused() -> None:
    data = bytearray(encode(leaf(LeafNodeSource.UPDATE)))
    # encryption_key(1+32) signature_key(1+32) credential(2+1+5) capabilities(5 lists)
    caps = encode(Capabilities())
    pos = 33 + 33 + 8 + len(caps)
    assert data[pos] == LeafNodeSource.UPDATE
    data[pos] = 9
    with raises_reason(MlsReason.MALFORMED, MlsDecodeError):
        decode_exact(LeafNode, bytes(data))


def test_capabilities_odd_length_list_refused() -> None:
    with raises_reason(MlsReason.MALFORMED, MlsDecodeError):
        decode_exact(Capabilities, bytes.fromhex("03000100 00 00 00 00"))


def test_ratchet_tree_shape() -> None:
    parent = ParentNode(b"\x07" * 32, b"\x08" * 32, (0, 2))
    tree = RatchetTree((leaf(), parent, leaf(LeafNodeSource.COMMIT), None, leaf(LeafNodeSource.UPDATE)))
    roundtrip(tree)
    roundtrip(parent)
    assert RatchetTree.from_nodes([leaf(), None, None]) == RatchetTree((leaf(),))
    w = Writer()
    RatchetTree((leaf(), None)).write(w)
    with raises_reason(MlsReason.MALFORMED, MlsDecodeError):
        decode_exact(RatchetTree, w.getvalue())
    with raises_reason(MlsReason.MALFORMED, MlsDecodeError):
        decode_exact(RatchetTree, b"\x00")
    bad_shapes: list[tuple[LeafNode | ParentNode, ...]] = [(parent,), (leaf(), leaf())]
    for bad in bad_shapes:
        w = Writer()
        RatchetTree(bad).write(w)
        with raises_reason(MlsReason.MALFORMED, MlsDecodeError):
            decode_exact(RatchetTree, w.getvalue())
    with raises_reason(MlsReason.MALFORMED, MlsDecodeError):
        decode_exact(RatchetTree, bytes([2, 1, 3]))


def test_key_package_update_path_group_info() -> None:
    kp = KeyPackage(cipher_suite=1, init_key=b"\x09" * 32, leaf_node=leaf(), signature=b"s")
    data = roundtrip(kp)
    assert data == kp.tbs() + b"\x01s"
    up = UpdatePath(leaf(LeafNodeSource.COMMIT), (UpdatePathNode(b"\x0a" * 32, (HPKECiphertext(b"k" * 32, b"c" * 48),)),))
    roundtrip(up)
    ctx = GroupContext(cipher_suite=1, group_id=b"g", epoch=7, tree_hash=b"t" * 32, confirmed_transcript_hash=b"c" * 32)
    roundtrip(ctx)
    gi = GroupInfo(ctx, (Extension.of(ExternalPub(b"p" * 32)),), b"m" * 32, 3, b"sig")
    assert roundtrip(gi) == gi.tbs() + b"\x03sig"


def test_bounds_enforced() -> None:
    # a 300-byte tree hash exceeds MAX_HASH (255)
    ctx = GroupContext(cipher_suite=1, group_id=b"g", epoch=0, tree_hash=b"t" * 300, confirmed_transcript_hash=b"")
    with raises_reason(MlsReason.LIMIT_EXCEEDED, MlsDecodeError):
        decode_exact(GroupContext, encode(ctx))


@pytest.mark.parametrize("i", range(0, len(MESSAGES), 10))
def test_vector_core_structs_roundtrip(i: int) -> None:
    case = MESSAGES[i]
    fields: list[tuple[str, Any, int]] = [
        ("ratchet_tree", RatchetTree, 0),
        ("mls_key_package", KeyPackage, 4),
        ("mls_group_info", GroupInfo, 4),
    ]
    for field, cls, skip in fields:
        data = bytes.fromhex(case[field])[skip:]
        assert encode(decode_exact(cls, data)) == data
