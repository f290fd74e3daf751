"""Framing: round trips and every failure path, which must leave the receiver unchanged."""

from __future__ import annotations

from dataclasses import replace
from typing import Any, Callable, TypeVar

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ping_core.errors import DecryptionFailed, InvalidSignature, MlsDecodeError, MlsError, MlsReason
from ping_core.mls.framing import epoch_framing, private_message, public_message, sender_data
from ping_core.mls.primitives import expand_with_label
from ping_core.mls.tls import decode_exact, encode, opaque
from ping_core.mls.crypto import default_provider
from ping_core.mls.schedule.key_schedule import epoch_secrets
from ping_core.mls.tree.secret_tree import APPLICATION, HANDSHAKE, RatchetConfig
from ping_core.mls.structs.commit import Commit
from ping_core.mls.structs.enums import ContentType, WireFormat
from ping_core.mls.structs.content import (
    AuthenticatedContent,
    FramedContent,
    FramedContentAuthData,
    PrivateMessage,
    PublicMessage,
    Sender,
)
from ping_core.mls.structs.group_info import GroupContext
from ping_core.mls.structs.message import MLSMessage
from ping_core.mls.structs.proposals import Remove
from reasons import raises_reason

crypto = default_provider()
N = 4
KEYS = [crypto.sign_keygen() for _ in range(N)]
CONFIG = RatchetConfig(out_of_order_tolerance=3, maximum_forward_distance=20)


def context(epoch: int = 5, group_id: bytes = b"group") -> GroupContext:
    return GroupContext(
        cipher_suite=1, group_id=group_id, epoch=epoch, tree_hash=b"t" * 32, confirmed_transcript_hash=b"c" * 32
    )


def epoch_of(ctx: GroupContext) -> epoch_framing.EpochFraming:
    secrets = epoch_secrets(crypto, b"i" * 32, None, None, encode(ctx))
    return epoch_framing.EpochFraming.create(crypto, ctx, secrets, N, CONFIG)


def signer_key(content: FramedContent) -> bytes:
    if content.sender.sender_type != 1 or content.sender.index == 3:
        raise MlsError("leaf 3 is blank", reason=MlsReason.UNKNOWN_SENDER)
    return KEYS[content.sender.index][1]


def state(ep: epoch_framing.EpochFraming) -> tuple[object, object]:
    return ep.secret_tree.records(), ep.secret_tree.changes()


@pytest.fixture
def pair() -> Pair:
    return epoch_of(context()), epoch_of(context())


def send(ep: epoch_framing.EpochFraming, data: bytes = b"hello", leaf: int = 0, **kw: Any) -> PrivateMessage:
    return private_message.protect_private(crypto, ep, leaf, data, KEYS[leaf][0], **kw)


M = TypeVar("M", PrivateMessage, PublicMessage)
Pair = tuple[epoch_framing.EpochFraming, epoch_framing.EpochFraming]


def wire(msg: M) -> M:
    """``msg`` as a receiver decodes it from the wire."""
    body = decode_exact(MLSMessage, encode(MLSMessage(msg))).body
    assert isinstance(body, type(msg))
    return body


def test_private_roundtrips(pair: Pair) -> None:
    s, r = pair
    cases: list[tuple[bytes, dict[str, Any]]] = [
        (b"", {}),
        (b"x" * 5000, {"padding": 100}),
        (b"hi", {"authenticated_data": b"ad"}),
    ]
    for data, kw in cases:
        msg = wire(send(s, data, **kw))
        assert isinstance(msg, PrivateMessage)
        out = private_message.unprotect_private(crypto, r, msg, signer_key)
        assert out.content.content.content == data
        assert out.content.wire_format == WireFormat.PRIVATE_MESSAGE
        assert out.content.content.sender == Sender.member(0)
        assert out.ratchet_key is not None and out.ratchet_key.kind == APPLICATION
    proposal, commit = Remove(2), Commit((Remove(1),))
    msg = private_message.protect_private(crypto, s, 1, proposal, KEYS[1][0])
    assert private_message.unprotect_private(crypto, r, wire(msg), signer_key).content.content.content == proposal
    msg = private_message.protect_private(crypto, s, 2, commit, KEYS[2][0], confirmation_tag=b"T" * 32)
    out = private_message.unprotect_private(crypto, r, wire(msg), signer_key)
    assert out.content.content.content == commit and out.content.auth.confirmation_tag == b"T" * 32
    assert out.ratchet_key is not None and out.ratchet_key.kind == HANDSHAKE


def test_commit_built_in_two_steps(pair: Pair) -> None:
    s, r = pair
    fc = FramedContent(b"group", 5, Sender.member(1), b"", Commit(()))
    sig = epoch_framing.sign_framed(crypto, s, WireFormat.PRIVATE_MESSAGE, fc, KEYS[1][0])
    ac = AuthenticatedContent(WireFormat.PRIVATE_MESSAGE, fc, FramedContentAuthData(sig, b"tag"))
    msg = private_message.encrypt_private(crypto, s, ac, padding=3)
    assert private_message.unprotect_private(crypto, r, wire(msg), signer_key).content == ac
    epoch_framing.verify_framed(crypto, r, ac, KEYS[1][1])
    pub_sig = epoch_framing.sign_framed(crypto, s, WireFormat.PUBLIC_MESSAGE, fc, KEYS[1][0])
    pub = public_message.frame_public(
        crypto, s, AuthenticatedContent(WireFormat.PUBLIC_MESSAGE, fc, FramedContentAuthData(pub_sig, b"tag"))
    )
    assert public_message.unprotect_public(crypto, r, wire(pub), signer_key).content.content == fc


def test_public_roundtrip_and_rules(pair: Pair) -> None:
    s, r = pair
    before = state(r)
    msg = public_message.protect_public(crypto, s, 1, Remove(0), KEYS[1][0], authenticated_data=b"ad")
    out = public_message.unprotect_public(crypto, r, wire(msg), signer_key)
    assert out.content.content.content == Remove(0) and out.ratchet_key is None
    assert state(r) == before  # a PublicMessage uses no ratchet
    with raises_reason(MlsReason.INVALID_ARGUMENT):
        public_message.protect_public(crypto, s, 1, b"data", KEYS[1][0])
    with raises_reason(MlsReason.INVALID_ARGUMENT):
        public_message.protect_public(crypto, s, 1, Commit(()), KEYS[1][0])
    with raises_reason(MlsReason.INVALID_ARGUMENT):
        private_message.protect_private(crypto, s, 1, Remove(0), KEYS[1][0], confirmation_tag=b"x")
    # Application content in a PublicMessage is refused on receipt too.
    app = replace(msg.content, content=b"data")
    with raises_reason(MlsReason.SENDER_NOT_ALLOWED):
        public_message.unprotect_public(crypto, r, PublicMessage(app, msg.auth, msg.membership_tag), signer_key)
    # An external sender may only propose.
    ext = FramedContent(b"group", 5, Sender.external(0), b"", Commit(()))
    with raises_reason(MlsReason.SENDER_NOT_ALLOWED):
        public_message.unprotect_public(crypto, r, PublicMessage(ext, FramedContentAuthData(b"s", b"t"), None), signer_key)


def test_external_sender_proposal(pair: Pair) -> None:
    s, r = pair
    ext_sk, ext_pk = crypto.sign_keygen()
    fc = FramedContent(b"group", 5, Sender.external(0), b"", Remove(1))
    sig = epoch_framing.sign_framed(crypto, s, WireFormat.PUBLIC_MESSAGE, fc, ext_sk)
    pub = public_message.frame_public(
        crypto, s, AuthenticatedContent(WireFormat.PUBLIC_MESSAGE, fc, FramedContentAuthData(sig, None))
    )
    assert pub.membership_tag is None
    out = public_message.unprotect_public(crypto, r, wire(pub), lambda c: ext_pk)
    assert out.content.content == fc
    with raises_reason(MlsReason.MALFORMED, MlsDecodeError):  # a non-member message with a membership tag
        public_message.unprotect_public(crypto, r, PublicMessage(fc, pub.auth, b"x" * 32), lambda c: ext_pk)


def flip(data: bytes, i: int) -> bytes:
    return data[:i] + bytes([data[i] ^ 1]) + data[i + 1 :]


@pytest.mark.parametrize(
    "tamper, error",
    [
        (lambda m: replace(m, ciphertext=flip(m.ciphertext, 0)), DecryptionFailed),
        (lambda m: replace(m, ciphertext=flip(m.ciphertext, len(m.ciphertext) - 1)), DecryptionFailed),
        (lambda m: replace(m, encrypted_sender_data=flip(m.encrypted_sender_data, 3)), DecryptionFailed),
        (lambda m: replace(m, encrypted_sender_data=m.encrypted_sender_data[:-1]), DecryptionFailed),
        (lambda m: replace(m, authenticated_data=b"other"), DecryptionFailed),
        (lambda m: replace(m, content_type=ContentType.PROPOSAL), DecryptionFailed),
        (lambda m: replace(m, epoch=6), MlsError),
        (lambda m: replace(m, group_id=b"other"), MlsError),
    ],
)
def test_tampered_private_changes_nothing(
    pair: Pair, tamper: Callable[[PrivateMessage], PrivateMessage], error: type[Exception]
) -> None:
    s, r = pair
    msg = send(s)
    before = state(r)
    with pytest.raises(error):
        private_message.unprotect_private(crypto, r, tamper(msg), signer_key)
    assert state(r) == before
    # The genuine message still opens: nothing was consumed.
    assert private_message.unprotect_private(crypto, r, msg, signer_key).content.content.content == b"hello"


def test_bad_signature_changes_nothing(pair: Pair) -> None:
    s, r = pair
    forged = private_message.protect_private(crypto, s, 1, b"forged", KEYS[2][0])  # leaf 1 signed with leaf 2's key
    before = state(r)
    with raises_reason(MlsReason.BAD_SIGNATURE, InvalidSignature):
        private_message.unprotect_private(crypto, r, forged, signer_key)
    assert state(r) == before
    assert r.secret_tree.next_generation(1, APPLICATION) == 0


def test_unknown_sender_changes_nothing(pair: Pair) -> None:
    s, r = pair
    msg = private_message.protect_private(crypto, s, 3, b"from a blank leaf", KEYS[3][0])
    before = state(r)
    with raises_reason(MlsReason.UNKNOWN_SENDER):
        private_message.unprotect_private(crypto, r, msg, signer_key)
    assert state(r) == before


def test_sender_data_naming_a_leaf_outside_the_tree_is_a_peers_fault(pair: Pair) -> None:
    """A member (it holds the sender data key) names a leaf outside the tree: UNKNOWN_SENDER,
    a peer's fault, and nothing changes (not the secret tree's argument error)."""
    s, r = pair
    msg = send(s)
    key, nonce = sender_data.sender_data_key_nonce(crypto, r.sender_data_secret, msg.ciphertext)
    aad = r.sender_data_aad[msg.content_type]
    plain = crypto.aead_open(key, nonce, aad, msg.encrypted_sender_data)
    forged = replace(msg, encrypted_sender_data=crypto.aead_seal(key, nonce, aad, N.to_bytes(4, "big") + plain[4:]))
    before = state(r)
    with raises_reason(MlsReason.UNKNOWN_SENDER) as info:
        private_message.unprotect_private(crypto, r, forged, signer_key)
    assert info.value.is_peer_fault
    assert state(r) == before


def test_non_zero_padding_changes_nothing(pair: Pair) -> None:
    s, r = pair
    data = b"padded"
    fc = FramedContent(b"group", 5, Sender.member(0), b"", data)
    sig = epoch_framing.sign_framed(crypto, s, WireFormat.PRIVATE_MESSAGE, fc, KEYS[0][0])
    plaintext = opaque(data) + opaque(sig) + b"\x00\x00\x07"
    msg = private_message._encrypt(crypto, s, 0, ContentType.APPLICATION, b"", plaintext, None)
    before = state(r)
    with raises_reason(MlsReason.MALFORMED, MlsDecodeError):
        private_message.unprotect_private(crypto, r, msg, signer_key)
    assert state(r) == before


def test_bad_membership_tag(pair: Pair) -> None:
    s, r = pair
    msg = public_message.protect_public(crypto, s, 1, Remove(0), KEYS[1][0])
    assert msg.membership_tag is not None
    with raises_reason(MlsReason.BAD_TAG):
        public_message.unprotect_public(crypto, r, replace(msg, membership_tag=flip(msg.membership_tag, 0)), signer_key)
    with raises_reason(MlsReason.MALFORMED, MlsDecodeError):
        public_message.unprotect_public(crypto, r, replace(msg, membership_tag=None), signer_key)
    # Another epoch's membership key (same group, same epoch number) does not verify.
    other = epoch_of(replace(context(), tree_hash=b"u" * 32))
    with raises_reason(MlsReason.BAD_TAG):
        public_message.unprotect_public(crypto, other, msg, signer_key)
    # A valid tag but a signature by someone else.
    with raises_reason(MlsReason.BAD_SIGNATURE, InvalidSignature):
        public_message.unprotect_public(crypto, r, msg, lambda c: KEYS[2][1])


def test_wrong_epoch_or_group(pair: Pair) -> None:
    s, _ = pair
    for other, reason in (
        (epoch_of(context(epoch=6)), MlsReason.WRONG_EPOCH),
        (epoch_of(context(group_id=b"other")), MlsReason.WRONG_GROUP),
    ):
        before = state(other)
        with raises_reason(reason):
            private_message.unprotect_private(crypto, other, send(s), signer_key)
        pub = public_message.protect_public(crypto, s, 1, Remove(0), KEYS[1][0])
        with raises_reason(reason):
            public_message.unprotect_public(crypto, other, pub, signer_key)
        assert state(other) == before


def test_reused_generation_changes_nothing(pair: Pair) -> None:
    s, r = pair
    msg = send(s)
    private_message.unprotect_private(crypto, r, msg, signer_key)
    before = state(r)
    with raises_reason(MlsReason.REPLAY):
        private_message.unprotect_private(crypto, r, msg, signer_key)
    assert state(r) == before


def test_out_of_order_within_and_beyond_tolerance(pair: Pair) -> None:
    s, r = pair
    msgs = [send(s, b"m%d" % i) for i in range(8)]
    # Receive generation 7 first: with tolerance 3, generations 4, 5, 6 stay readable.
    assert private_message.unprotect_private(crypto, r, msgs[7], signer_key).content.content.content == b"m7"
    for i in (5, 4, 6):
        assert private_message.unprotect_private(crypto, r, msgs[i], signer_key).content.content.content == b"m%d" % i
    before = state(r)
    for i in (0, 3):
        with raises_reason(MlsReason.TOO_OLD):
            private_message.unprotect_private(crypto, r, msgs[i], signer_key)
    assert state(r) == before


def test_too_far_ahead_changes_nothing(pair: Pair) -> None:
    s, r = pair
    msgs = [send(s) for _ in range(22)]
    before = state(r)
    with raises_reason(MlsReason.TOO_FAR_AHEAD):
        private_message.unprotect_private(crypto, r, msgs[21], signer_key)
    assert state(r) == before
    private_message.unprotect_private(crypto, r, msgs[20], signer_key)


def test_defer_commit(pair: Pair) -> None:
    s, r = pair
    msg = send(s)
    before = state(r)
    out = private_message.unprotect_private(crypto, r, msg, signer_key, defer_commit=True)
    assert state(r) == before
    assert out.ratchet_key is not None
    r.secret_tree.commit(out.ratchet_key)
    with raises_reason(MlsReason.REPLAY):
        private_message.unprotect_private(crypto, r, msg, signer_key)


def test_sender_consumes_generations(pair: Pair) -> None:
    s, _ = pair
    gens = [s.secret_tree.next_generation(0, APPLICATION)]
    send(s)
    gens.append(s.secret_tree.next_generation(0, APPLICATION))
    assert gens == [0, 1]
    with raises_reason(MlsReason.INVALID_ARGUMENT):
        send(s, padding=-1)
    with raises_reason(MlsReason.INVALID_ARGUMENT):
        private_message.protect_private(crypto, s, N, b"x", KEYS[0][0])
    assert s.secret_tree.next_generation(0, APPLICATION) == 1


def test_repr_hides_secrets(pair: Pair) -> None:
    s, r = pair
    out = private_message.unprotect_private(crypto, r, send(s, b"top secret text"), signer_key)
    text = repr(out) + repr(r)
    assert "top secret" not in text and r.sender_data_secret.hex() not in text
    assert out.ratchet_key is not None and out.ratchet_key.key.hex() not in text


@settings(max_examples=200)
@given(st.data())
def test_mutated_wire_bytes_fail_cleanly(data: st.DataObject) -> None:
    s, r = epoch_of(context()), epoch_of(context())
    raw = bytearray(encode(MLSMessage(send(s, b"payload"))))
    for _ in range(data.draw(st.integers(1, 3))):
        i = data.draw(st.integers(0, len(raw) - 1))
        raw[i] = data.draw(st.integers(0, 255))
    before = state(r)
    try:
        body = decode_exact(MLSMessage, bytes(raw)).body
        if not isinstance(body, PrivateMessage):
            return
        out = private_message.unprotect_private(crypto, r, body, signer_key)
    except MlsError:
        assert state(r) == before
        return
    # Only a mutation that left the message intact (same byte written) may pass.
    assert out.content.content.content == b"payload"


def test_sender_data_key_nonce_is_expand_with_label_of_the_sample() -> None:
    """§6.3.2: key = ExpandWithLabel(sender_data_secret, "key", ciphertext_sample, Nk), nonce likewise
    with "nonce" and Nn; the sample is the first Nh bytes of the ciphertext (all of it when shorter)."""
    secret = bytes(range(32))
    for ciphertext in (b"a" * 40, b"a" * 32, b"short"):
        sample = ciphertext[:32]
        want = [expand_with_label(crypto, secret, b"key", sample, 16), expand_with_label(crypto, secret, b"nonce", sample, 12)]
        assert list(sender_data.sender_data_key_nonce(crypto, secret, ciphertext)) == want
    # Only the sample counts.
    assert sender_data.sender_data_key_nonce(crypto, secret, b"a" * 40) == sender_data.sender_data_key_nonce(
        crypto, secret, b"a" * 32 + b"b" * 8
    )


def test_guarded_nonce_xors_the_first_four_bytes() -> None:
    nonce = bytes(range(12))
    assert sender_data.guarded_nonce(nonce, b"\x00\x00\x00\x00") == nonce
    assert sender_data.guarded_nonce(nonce, b"\xff\x00\x00\x01") == bytes([0xFF, 1, 2, 2]) + nonce[4:]
