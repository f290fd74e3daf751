"""Hypothesis strategies for every RFC 9420 wire struct in ``ping_core.mls.structs``.

Reusable by any test: ``from strategies import leaf_nodes, mls_messages, ...``
(pytest puts this folder on ``sys.path``). Generated values are always
encodable (consistent selects: a commit's auth data has a confirmation tag, a
member's PublicMessage a membership tag, ...) and small, so properties run
fast. ``DECODERS`` lists, for every decoder, how to encode a value and how to
decode bytes, for the generic property tests.

Also: ``example_leaf(source)`` and ``roundtrip(obj)`` for example-based tests.
"""

from __future__ import annotations

from typing import Any, Callable

from hypothesis import strategies as st

from ping_core.mls.tls import Reader, Writer, decode_exact, encode
from ping_core.mls.structs import (
    Add,
    ApplicationId,
    AuthenticatedContent,
    Capabilities,
    Commit,
    ContentType,
    Credential,
    EncryptedGroupSecrets,
    Extension,
    ExternalInit,
    ExternalPub,
    ExternalSender,
    ExternalSenders,
    FramedContent,
    FramedContentAuthData,
    GroupContext,
    GroupContextExtensions,
    GroupInfo,
    GroupSecrets,
    HPKECiphertext,
    KeyPackage,
    LeafNode,
    LeafNodeSource,
    Lifetime,
    MLSMessage,
    ParentNode,
    PathSecret,
    PreSharedKey,
    PreSharedKeyID,
    PrivateContentAAD,
    PrivateMessage,
    PrivateMessageContent,
    Proposal,
    PSKLabel,
    PublicMessage,
    RatchetTree,
    ReInit,
    Remove,
    RequiredCapabilities,
    ResumptionPSKUsage,
    Sender,
    SenderData,
    SenderDataAAD,
    SenderType,
    Update,
    UpdatePath,
    UpdatePathNode,
    Welcome,
    WireFormat,
    content_type_of,
)

u8 = st.integers(0, 0xFF)
u16 = st.integers(0, 0xFFFF)
u32 = st.integers(0, 0xFFFFFFFF)
u64 = st.integers(0, 0xFFFFFFFFFFFFFFFF)
small_bytes = st.binary(max_size=24)
keys = st.binary(max_size=40)
hashes = st.binary(max_size=64)
# Occasionally cross the 1-byte/2-byte varint boundary (63/64 bytes).
opaque_data = st.one_of(st.binary(max_size=20), st.binary(min_size=60, max_size=70))


def _tuples(elements: st.SearchStrategy[Any], max_size: int = 3) -> st.SearchStrategy[tuple[Any, ...]]:
    return st.lists(elements, max_size=max_size).map(tuple)


uint16_lists = _tuples(u16, 5)

credentials = st.one_of(
    st.builds(Credential.basic, small_bytes),
    st.builds(Credential.x509, _tuples(small_bytes)),
)
extensions = st.builds(Extension, u16, opaque_data)
extension_lists = _tuples(extensions)
capabilities = st.builds(Capabilities, uint16_lists, uint16_lists, uint16_lists, uint16_lists, uint16_lists)
lifetimes = st.builds(Lifetime, u64, u64)


@st.composite
def leaf_nodes(draw: st.DrawFn, source: LeafNodeSource | None = None) -> LeafNode:
    src = source if source is not None else draw(st.sampled_from(list(LeafNodeSource)))
    return LeafNode(
        encryption_key=draw(keys),
        signature_key=draw(keys),
        credential=draw(credentials),
        capabilities=draw(capabilities),
        leaf_node_source=src,
        lifetime=draw(lifetimes) if src == LeafNodeSource.KEY_PACKAGE else None,
        parent_hash=draw(hashes) if src == LeafNodeSource.COMMIT else None,
        extensions=draw(extension_lists),
        signature=draw(st.binary(max_size=72)),
    )


parent_nodes = st.builds(ParentNode, keys, hashes, _tuples(u32, 4))


@st.composite
def ratchet_trees(draw: st.DrawFn) -> RatchetTree:
    n_leaves = draw(st.integers(1, 5))
    nodes: list[LeafNode | ParentNode | None] = []
    for i in range(2 * n_leaves - 1):
        present = draw(st.booleans()) or i == 2 * n_leaves - 2
        if not present:
            nodes.append(None)
        elif i % 2 == 0:
            nodes.append(draw(leaf_nodes()))
        else:
            nodes.append(draw(parent_nodes))
    return RatchetTree(tuple(nodes))


key_packages = st.builds(
    lambda v, cs, ik, ln, ex, sig: KeyPackage(
        version=v, cipher_suite=cs, init_key=ik, leaf_node=ln, extensions=ex, signature=sig
    ),
    u16,
    u16,
    keys,
    leaf_nodes(LeafNodeSource.KEY_PACKAGE),
    extension_lists,
    st.binary(max_size=72),
)
hpke_ciphertexts = st.builds(HPKECiphertext, keys, opaque_data)
update_path_nodes = st.builds(UpdatePathNode, keys, _tuples(hpke_ciphertexts, 2))
update_paths = st.builds(UpdatePath, leaf_nodes(LeafNodeSource.COMMIT), _tuples(update_path_nodes, 3))
group_contexts = st.builds(
    lambda v, cs, g, e, th, cth, ex: GroupContext(
        version=v, cipher_suite=cs, group_id=g, epoch=e, tree_hash=th, confirmed_transcript_hash=cth, extensions=ex
    ),
    u16,
    u16,
    small_bytes,
    u64,
    hashes,
    hashes,
    extension_lists,
)
group_infos = st.builds(GroupInfo, group_contexts, extension_lists, hashes, u32, st.binary(max_size=72))

application_ids = st.builds(ApplicationId, opaque_data)
required_capabilities = st.builds(RequiredCapabilities, uint16_lists, uint16_lists, uint16_lists)
external_pubs = st.builds(ExternalPub, keys)
external_senders = st.builds(ExternalSenders, _tuples(st.builds(ExternalSender, keys, credentials)))

psk_ids = st.one_of(
    st.builds(PreSharedKeyID.external, small_bytes, hashes),
    st.builds(PreSharedKeyID.resumption, st.sampled_from(list(ResumptionPSKUsage)), small_bytes, u64, hashes),
)
psk_labels = st.builds(PSKLabel, psk_ids, u16, u16)

reinits = st.builds(
    lambda g, v, cs, ex: ReInit(group_id=g, version=v, cipher_suite=cs, extensions=ex),
    small_bytes,
    u16,
    u16,
    extension_lists,
)
proposals: st.SearchStrategy[Proposal] = st.one_of(
    st.builds(Add, key_packages),
    st.builds(Update, leaf_nodes(LeafNodeSource.UPDATE)),
    st.builds(Remove, u32),
    st.builds(PreSharedKey, psk_ids),
    reinits,
    st.builds(ExternalInit, keys),
    st.builds(GroupContextExtensions, extension_lists),
)
proposal_or_refs = st.one_of(proposals, hashes)
commits = st.builds(Commit, _tuples(proposal_or_refs), st.none() | update_paths)
senders = st.one_of(
    st.builds(Sender.member, u32),
    st.builds(Sender.external, u32),
    st.just(Sender.new_member_proposal()),
    st.just(Sender.new_member_commit()),
)
contents = st.one_of(opaque_data, proposals, commits)
framed_contents = st.builds(FramedContent, small_bytes, u64, senders, small_bytes, contents)


def auth_data_for(content_type: ContentType) -> st.SearchStrategy[FramedContentAuthData]:
    tag = hashes if content_type == ContentType.COMMIT else st.none()
    return st.builds(FramedContentAuthData, st.binary(max_size=72), tag)


@st.composite
def authenticated_contents(draw: st.DrawFn) -> AuthenticatedContent:
    content = draw(framed_contents)
    return AuthenticatedContent(
        draw(st.sampled_from(list(WireFormat))), content, draw(auth_data_for(content.content_type))
    )


@st.composite
def public_messages(draw: st.DrawFn) -> PublicMessage:
    content = draw(framed_contents)
    auth = draw(auth_data_for(content.content_type))
    tag = draw(hashes) if content.sender.sender_type == SenderType.MEMBER else None
    return PublicMessage(content, auth, tag)


content_types = st.sampled_from(list(ContentType))
private_messages = st.builds(PrivateMessage, small_bytes, u64, content_types, small_bytes, st.binary(max_size=40), opaque_data)
sender_datas = st.builds(SenderData, u32, u32, st.binary(min_size=4, max_size=4))
sender_data_aads = st.builds(SenderDataAAD, small_bytes, u64, content_types)
private_content_aads = st.builds(PrivateContentAAD, small_bytes, u64, content_types, small_bytes)


_CONTENTS_BY_TYPE: dict[ContentType, st.SearchStrategy[Any]] = {
    ContentType.APPLICATION: opaque_data,
    ContentType.PROPOSAL: proposals,
    ContentType.COMMIT: commits,
}


@st.composite
def private_message_contents(draw: st.DrawFn, content_type: ContentType | None = None) -> PrivateMessageContent:
    content = draw(contents if content_type is None else _CONTENTS_BY_TYPE[content_type])
    auth = draw(auth_data_for(content_type_of(content)))
    return PrivateMessageContent(content, auth, draw(st.integers(0, 40)))


path_secrets = st.builds(PathSecret, hashes)
group_secrets = st.builds(GroupSecrets, hashes, st.none() | hashes, _tuples(psk_ids))
encrypted_group_secrets = st.builds(EncryptedGroupSecrets, hashes, hpke_ciphertexts)
welcomes = st.builds(Welcome, u16, _tuples(encrypted_group_secrets), opaque_data)
mls_messages = st.builds(
    MLSMessage, st.one_of(public_messages(), private_messages, welcomes, group_infos, key_packages)
)


# ---------------------------------------------------------------------------
# Every decoder, for the generic properties: name -> (values, encode, decode).

Encoder = Callable[[Any], bytes]
Decoder = Callable[[bytes], Any]


def _raw_decode(read: Callable[[Reader], Any], data: bytes) -> Any:
    """Decode without ``decode_with``'s safety net (which turns stray
    ValueError & co. into MlsDecodeError), so the properties prove that the
    structs themselves raise only MlsDecodeError."""
    r = Reader(data)
    value = read(r)
    r.expect_end()
    return value


def _body_encoder(p: Any) -> bytes:
    w = Writer()
    p.write_body(w)
    return w.getvalue()


def _plain(cls: Any) -> tuple[Encoder, Decoder]:
    return encode, lambda data: _raw_decode(cls.read, data)


def _pmc_for(ct: ContentType) -> tuple[st.SearchStrategy[Any], Encoder, Decoder]:
    values = private_message_contents(ct)
    return values, encode, lambda data: _raw_decode(lambda r: PrivateMessageContent.read_for(r, ct), data)


def _auth_for(ct: ContentType) -> tuple[st.SearchStrategy[Any], Encoder, Decoder]:
    return (
        auth_data_for(ct),
        lambda a: a.encode_for(ct),
        lambda data: _raw_decode(lambda r: FramedContentAuthData.read_for(r, ct), data),
    )


_PLAIN: dict[str, tuple[Any, st.SearchStrategy[Any]]] = {
    "Credential": (Credential, credentials),
    "Extension": (Extension, extensions),
    "ApplicationId": (ApplicationId, application_ids),
    "RequiredCapabilities": (RequiredCapabilities, required_capabilities),
    "ExternalPub": (ExternalPub, external_pubs),
    "ExternalSenders": (ExternalSenders, external_senders),
    "Capabilities": (Capabilities, capabilities),
    "Lifetime": (Lifetime, lifetimes),
    "LeafNode": (LeafNode, leaf_nodes()),
    "ParentNode": (ParentNode, parent_nodes),
    "RatchetTree": (RatchetTree, ratchet_trees()),
    "KeyPackage": (KeyPackage, key_packages),
    "HPKECiphertext": (HPKECiphertext, hpke_ciphertexts),
    "UpdatePathNode": (UpdatePathNode, update_path_nodes),
    "UpdatePath": (UpdatePath, update_paths),
    "GroupContext": (GroupContext, group_contexts),
    "GroupInfo": (GroupInfo, group_infos),
    "PreSharedKeyID": (PreSharedKeyID, psk_ids),
    "PSKLabel": (PSKLabel, psk_labels),
    "Proposal": (Proposal, proposals),
    "Commit": (Commit, commits),
    "Sender": (Sender, senders),
    "FramedContent": (FramedContent, framed_contents),
    "AuthenticatedContent": (AuthenticatedContent, authenticated_contents()),
    "PublicMessage": (PublicMessage, public_messages()),
    "PrivateMessage": (PrivateMessage, private_messages),
    "SenderData": (SenderData, sender_datas),
    "SenderDataAAD": (SenderDataAAD, sender_data_aads),
    "PrivateContentAAD": (PrivateContentAAD, private_content_aads),
    "PathSecret": (PathSecret, path_secrets),
    "GroupSecrets": (GroupSecrets, group_secrets),
    "EncryptedGroupSecrets": (EncryptedGroupSecrets, encrypted_group_secrets),
    "Welcome": (Welcome, welcomes),
    "MLSMessage": (MLSMessage, mls_messages),
}

DECODERS: dict[str, tuple[st.SearchStrategy[Any], Encoder, Decoder]] = {
    name: (values, *_plain(cls)) for name, (cls, values) in _PLAIN.items()
}
_BODIES: list[tuple[Any, st.SearchStrategy[Any]]] = [
    (Add, st.builds(Add, key_packages)),
    (Update, st.builds(Update, leaf_nodes(LeafNodeSource.UPDATE))),
    (Remove, st.builds(Remove, u32)),
    (PreSharedKey, st.builds(PreSharedKey, psk_ids)),
    (ReInit, reinits),
    (ExternalInit, st.builds(ExternalInit, keys)),
    (GroupContextExtensions, st.builds(GroupContextExtensions, extension_lists)),
]
for _cls, _values in _BODIES:
    DECODERS[f"{_cls.__name__} body"] = (
        _values,
        _body_encoder,
        (lambda c: lambda data: _raw_decode(c.read_body, data))(_cls),
    )
for _ct in ContentType:
    DECODERS[f"PrivateMessageContent {_ct.name.lower()}"] = _pmc_for(_ct)
    DECODERS[f"FramedContentAuthData {_ct.name.lower()}"] = _auth_for(_ct)


# ---------------------------------------------------------------------------
# Example helpers.


def example_leaf(source: LeafNodeSource = LeafNodeSource.KEY_PACKAGE, ident: bytes = b"alice") -> LeafNode:
    """A fixed, valid-looking leaf node of the given source."""
    return LeafNode(
        encryption_key=b"\x01" * 32,
        signature_key=b"\x02" * 32,
        credential=Credential.basic(ident),
        capabilities=Capabilities(),
        leaf_node_source=source,
        lifetime=Lifetime(1, 2) if source == LeafNodeSource.KEY_PACKAGE else None,
        parent_hash=b"\x03" * 32 if source == LeafNodeSource.COMMIT else None,
        extensions=(Extension(0xFAFA, b"grease"),),
        signature=b"\x04" * 64,
    )


def roundtrip(obj: Any) -> bytes:
    """Encode ``obj``, check that it decodes to an equal value and re-encodes the same."""
    data = encode(obj)
    back = decode_exact(type(obj), data)
    assert back == obj
    assert encode(back) == data
    return data


__all__ = ["DECODERS", "example_leaf", "roundtrip"]
