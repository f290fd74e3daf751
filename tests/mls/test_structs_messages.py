"""Round trips, strictness and signed/MACed encodings of proposals, commits,
framing, welcome and MLSMessage."""

from __future__ import annotations

import pytest

from ping_core.errors import MlsDecodeError, MlsReason
from ping_core.mls.tls import Writer, decode_exact, decode_with, encode
from ping_core.mls.structs import (
    Add,
    AuthenticatedContent,
    Commit,
    ContentType,
    EncryptedGroupSecrets,
    Extension,
    ExternalInit,
    FramedContent,
    FramedContentAuthData,
    GroupContext,
    GroupContextExtensions,
    GroupInfo,
    GroupSecrets,
    HPKECiphertext,
    KeyPackage,
    LeafNodeSource,
    MLSMessage,
    PathSecret,
    PreSharedKey,
    PreSharedKeyID,
    PrivateContentAAD,
    PrivateMessage,
    PrivateMessageContent,
    Proposal,
    PSKLabel,
    PublicMessage,
    ReInit,
    Remove,
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
    confirmed_transcript_hash_input,
    framed_content_tbs,
    interim_transcript_hash_input,
)

from strategies import example_leaf as leaf, roundtrip
from reasons import raises_reason

CTX = GroupContext(cipher_suite=1, group_id=b"grp", epoch=3, tree_hash=b"t" * 32, confirmed_transcript_hash=b"c" * 32)


def proposals() -> list[Proposal]:
    kp = KeyPackage(cipher_suite=1, init_key=b"i" * 32, leaf_node=leaf(), signature=b"s" * 64)
    return [
        Add(kp),
        Update(leaf(LeafNodeSource.UPDATE)),
        Remove(7),
        PreSharedKey(PreSharedKeyID.external(b"ext-id", b"n" * 32)),
        PreSharedKey(PreSharedKeyID.resumption(ResumptionPSKUsage.BRANCH, b"g2", 9, b"n" * 32)),
        ReInit(group_id=b"new", cipher_suite=1, extensions=(Extension(0xAAAA, b""),)),
        ExternalInit(b"k" * 32),
        GroupContextExtensions((Extension(5, b"\x00"),)),
    ]


@pytest.mark.parametrize("proposal", proposals(), ids=lambda p: type(p).__name__)
def test_proposal_roundtrip_tagged_and_body(proposal: Proposal) -> None:
    data = roundtrip(proposal)
    assert data[:2] == proposal.proposal_type.to_bytes(2, "big")
    w = Writer()
    proposal.write_body(w)
    assert w.getvalue() == data[2:]
    assert decode_with(type(proposal).read_body, data[2:]) == proposal
    assert decode_exact(Proposal, data) == proposal


def test_proposal_strictness() -> None:
    with raises_reason(MlsReason.MALFORMED, MlsDecodeError):
        decode_exact(Proposal, bytes.fromhex("0008 00000001".replace(" ", "")))
    with raises_reason(MlsReason.MALFORMED, MlsDecodeError):
        decode_exact(Add, encode(Remove(1)))
    # unknown PSK type and resumption usage
    with raises_reason(MlsReason.MALFORMED, MlsDecodeError):
        decode_exact(PreSharedKeyID, bytes([3, 0, 0]))
    bad = bytearray(encode(PreSharedKeyID.resumption(ResumptionPSKUsage.REINIT, b"g", 1, b"n")))
    bad[1] = 4
    with raises_reason(MlsReason.MALFORMED, MlsDecodeError):
        decode_exact(PreSharedKeyID, bytes(bad))


def test_psk_label() -> None:
    label = PSKLabel(PreSharedKeyID.external(b"id", b"nonce"), 1, 2)
    assert roundtrip(label).endswith(b"\x00\x01\x00\x02")


def test_commit_roundtrip() -> None:
    path = UpdatePath(leaf(LeafNodeSource.COMMIT), (UpdatePathNode(b"e" * 32, (HPKECiphertext(b"k" * 32, b"c" * 50),)),))
    roundtrip(Commit())
    roundtrip(Commit((Remove(1), b"r" * 32), path))
    with raises_reason(MlsReason.MALFORMED, MlsDecodeError):
        decode_exact(Commit, bytes([2, 3, 0, 0]))


def contents() -> list[FramedContent]:
    return [
        FramedContent(b"grp", 3, Sender.member(2), b"aad", b"hello"),
        FramedContent(b"grp", 3, Sender.external(1), b"", Remove(0)),
        FramedContent(b"grp", 3, Sender.new_member_proposal(), b"", proposals()[0]),
        FramedContent(b"grp", 3, Sender.new_member_commit(), b"", Commit((ExternalInit(b"k"),))),
        FramedContent(b"grp", 3, Sender.member(0), b"", Commit((b"ref",))),
    ]


def auth_for(content: FramedContent) -> FramedContentAuthData:
    tag = b"t" * 32 if content.content_type == ContentType.COMMIT else None
    return FramedContentAuthData(b"sig" * 20, tag)


@pytest.mark.parametrize("content", contents(), ids=lambda c: f"{c.sender.sender_type.name}-{c.content_type.name}")
def test_framing_roundtrip(content: FramedContent) -> None:
    roundtrip(content)
    auth = auth_for(content)
    member = content.sender.sender_type == SenderType.MEMBER
    pub = PublicMessage(content, auth, b"m" * 32 if member else None)
    roundtrip(pub)
    roundtrip(MLSMessage(pub))
    ac = AuthenticatedContent(WireFormat.PUBLIC_MESSAGE, content, auth)
    roundtrip(ac)
    assert pub.authenticated_content() == ac
    pmc = PrivateMessageContent(content.content, auth, 17)
    data = encode(pmc)
    assert data.endswith(bytes(17))
    assert PrivateMessageContent.decode(data, content.content_type) == pmc
    # the signed encoding: version, wire format, content, then the context for member/new_member_commit
    needs_ctx = content.sender.sender_type in (SenderType.MEMBER, SenderType.NEW_MEMBER_COMMIT)
    tbs = framed_content_tbs(WireFormat.PUBLIC_MESSAGE, content, CTX if needs_ctx else None)
    expected = b"\x00\x01\x00\x01" + encode(content) + (encode(CTX) if needs_ctx else b"")
    assert tbs == expected
    assert ac.tbs(encode(CTX) if needs_ctx else None) == expected
    with pytest.raises(ValueError):
        framed_content_tbs(WireFormat.PUBLIC_MESSAGE, content, None if needs_ctx else CTX)
    if member:
        assert pub.tbm(CTX) == expected + auth.encode_for(content.content_type)


def test_confirmation_and_membership_tag_presence() -> None:
    app = contents()[0]
    with pytest.raises(ValueError):
        encode(PublicMessage(app, FramedContentAuthData(b"s", b"tag"), b"m"))
    with pytest.raises(ValueError):
        encode(PublicMessage(app, FramedContentAuthData(b"s"), None))
    ext = contents()[1]
    with pytest.raises(ValueError):
        encode(PublicMessage(ext, FramedContentAuthData(b"s"), b"m"))
    commit = contents()[4]
    with pytest.raises(ValueError):
        encode(PublicMessage(commit, FramedContentAuthData(b"s"), b"m"))


def test_transcript_inputs() -> None:
    content = contents()[4]
    ac = AuthenticatedContent(WireFormat.PRIVATE_MESSAGE, content, auth_for(content))
    assert ac.confirmed_transcript_hash_input() == b"\x00\x02" + encode(content) + b"\x3c" + b"sig" * 20
    assert confirmed_transcript_hash_input(2, content, b"sig" * 20) == ac.confirmed_transcript_hash_input()
    assert interim_transcript_hash_input(b"t" * 32) == b"\x20" + b"t" * 32


def test_private_message_and_aads() -> None:
    pm = PrivateMessage(b"grp", 3, ContentType.APPLICATION, b"aad", b"x" * 28, b"y" * 100)
    roundtrip(pm)
    roundtrip(MLSMessage(pm))
    assert pm.content_aad() == encode(PrivateContentAAD(b"grp", 3, ContentType.APPLICATION, b"aad"))
    assert pm.sender_data_aad() == encode(SenderDataAAD(b"grp", 3, ContentType.APPLICATION))
    roundtrip(PrivateContentAAD(b"grp", 3, ContentType.COMMIT, b""))
    roundtrip(SenderDataAAD(b"grp", 3, ContentType.PROPOSAL))
    assert roundtrip(SenderData(5, 1000, b"abcd")) == bytes.fromhex("00000005000003e8") + b"abcd"
    with pytest.raises(ValueError):
        encode(SenderData(5, 1000, b"abc"))
    bad = bytearray(encode(pm))
    bad[1 + 3 + 8] = 4  # content type
    with raises_reason(MlsReason.MALFORMED, MlsDecodeError):
        decode_exact(PrivateMessage, bytes(bad))


def test_private_message_content_padding_must_be_zero() -> None:
    pmc = PrivateMessageContent(b"hi", FramedContentAuthData(b"s"), 5)
    data = bytearray(encode(pmc))
    assert PrivateMessageContent.decode(bytes(data), ContentType.APPLICATION).padding == 5
    data[-3] = 1
    with raises_reason(MlsReason.MALFORMED, MlsDecodeError):
        PrivateMessageContent.decode(bytes(data), ContentType.APPLICATION)
    with raises_reason(MlsReason.MALFORMED, MlsDecodeError):
        PrivateMessageContent.decode(bytes(data), 9)
    assert "hi" not in repr(pmc) and "2 bytes of application data" in repr(pmc)
    assert "hello" not in repr(contents()[0])


def test_sender_strictness() -> None:
    with raises_reason(MlsReason.MALFORMED, MlsDecodeError):
        decode_exact(Sender, bytes([5]))
    with pytest.raises(ValueError):
        encode(Sender(SenderType.NEW_MEMBER_COMMIT, 3))
    assert Sender.member(4).leaf_index == 4
    with pytest.raises(ValueError):
        _ = Sender.external(1).leaf_index


def test_welcome_group_secrets() -> None:
    egs = EncryptedGroupSecrets(b"r" * 32, HPKECiphertext(b"k" * 32, b"c" * 80))
    w = Welcome(1, (egs,), b"gi" * 40)
    roundtrip(w)
    roundtrip(MLSMessage(w))
    assert w.find_secrets(b"r" * 32) is egs
    assert w.find_secrets(b"x") is None
    gs = GroupSecrets(b"j" * 32, b"p" * 32, (PreSharedKeyID.external(b"e", b"n" * 32),))
    roundtrip(gs)
    roundtrip(GroupSecrets(b"j" * 32))
    roundtrip(PathSecret(b"p" * 32))
    assert "jjjj" not in repr(gs) and "pppp" not in repr(gs)
    assert "pppp" not in repr(PathSecret(b"p" * 32))


def test_mls_message_all_bodies_and_strictness() -> None:
    kp = KeyPackage(cipher_suite=1, init_key=b"i" * 32, leaf_node=leaf(), signature=b"s")
    gi = GroupInfo(CTX, (), b"t" * 32, 0, b"s")
    bodies: list[tuple[KeyPackage | GroupInfo, WireFormat]] = [(kp, WireFormat.KEY_PACKAGE), (gi, WireFormat.GROUP_INFO)]
    for body, wf in bodies:
        msg = MLSMessage(body)
        assert msg.wire_format == wf
        assert roundtrip(msg)[:4] == b"\x00\x01" + wf.to_bytes(2, "big")
    data = encode(MLSMessage(kp))
    with raises_reason(MlsReason.UNSUPPORTED, MlsDecodeError):
        decode_exact(MLSMessage, b"\x00\x02" + data[2:])
    with raises_reason(MlsReason.MALFORMED, MlsDecodeError):
        decode_exact(MLSMessage, b"\x00\x01\x00\x06" + data[4:])
    with raises_reason(MlsReason.MALFORMED, MlsDecodeError):
        decode_exact(MLSMessage, data + b"\x00")
