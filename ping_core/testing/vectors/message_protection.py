"""message-protection.json: PublicMessage and PrivateMessage protect/unprotect (§6).

As the upstream description says: a GroupContext from the case's fields, a
secret tree of 2 leaves, the sender is leaf 1. Each given message must
unprotect to the given content; each content protected by us must unprotect
again (with separate sender and receiver trees, as two members would have).
"""

from __future__ import annotations

from typing import Any

from ping_core.errors import MlsError, MlsReason
from ping_core.mls.framing import epoch_framing, private_message, public_message
from ping_core.mls.tls import decode_exact, encode
from ping_core.mls.crypto import CryptoProvider
from ping_core.mls.tree.secret_tree import SecretTree
from ping_core.mls.structs.commit import Commit
from ping_core.mls.structs.content import Content, FramedContent, PrivateMessage, PublicMessage, Sender
from ping_core.mls.structs.group_info import GroupContext
from ping_core.mls.structs.message import MLSMessage
from ping_core.mls.structs.proposals import Proposal

from ping_core.testing.vectors.registry import VectorMismatch, expect_equal

__all__ = ["run"]

SENDER = 1
N_LEAVES = 2


def run(case: dict[str, Any], crypto: CryptoProvider) -> None:
    h = bytes.fromhex
    context = GroupContext(
        cipher_suite=case["cipher_suite"],
        group_id=h(case["group_id"]),
        epoch=case["epoch"],
        tree_hash=h(case["tree_hash"]),
        confirmed_transcript_hash=h(case["confirmed_transcript_hash"]),
    )
    gc = encode(context)
    sig_priv, sig_pub = h(case["signature_priv"]), h(case["signature_pub"])
    expect_equal("signature_pub", crypto.sign_public(sig_priv), sig_pub)

    def new_epoch() -> epoch_framing.EpochFraming:
        tree = SecretTree(crypto, h(case["encryption_secret"]), N_LEAVES)
        return epoch_framing.EpochFraming(
            context.group_id, context.epoch, gc, h(case["sender_data_secret"]), h(case["membership_key"]), tree
        )

    def signer_key(content: FramedContent) -> bytes:
        if content.sender != Sender.member(SENDER):
            raise MlsError(f"unexpected sender {content.sender!r}", reason=MlsReason.UNKNOWN_SENDER)
        return sig_pub

    sender, receiver2 = new_epoch(), new_epoch()

    contents: dict[str, Content] = {
        "proposal": decode_exact(Proposal, h(case["proposal"])),
        "commit": decode_exact(Commit, h(case["commit"])),
        "application": h(case["application"]),
    }
    for name, content in contents.items():
        receiver = new_epoch()
        if not isinstance(content, bytes):
            expect_equal(f"{name} re-encoding", encode(content), h(case[name]))

        tag = None
        if name != "application":
            pub = decode_exact(MLSMessage, h(case[f"{name}_pub"])).body
            if not isinstance(pub, PublicMessage):
                raise VectorMismatch(f"{name}_pub is not a PublicMessage")
            got = public_message.unprotect_public(crypto, receiver, pub, signer_key).content
            expect_equal(f"{name}_pub content", got.content.content, content)
            tag = pub.auth.confirmation_tag
            mine = public_message.protect_public(crypto, sender, SENDER, content, sig_priv, confirmation_tag=tag)
            again = decode_exact(MLSMessage, encode(MLSMessage(mine))).body
            assert isinstance(again, PublicMessage)
            got = public_message.unprotect_public(crypto, receiver2, again, signer_key).content
            expect_equal(f"{name} protected as PublicMessage", got.content.content, content)
        else:
            try:
                public_message.protect_public(crypto, sender, SENDER, content, sig_priv)
            except MlsError as exc:
                expect_equal("refusal to frame application data as a PublicMessage", exc.reason, MlsReason.INVALID_ARGUMENT)
            else:
                raise VectorMismatch("application data was protected as a PublicMessage")

        priv = decode_exact(MLSMessage, h(case[f"{name}_priv"])).body
        if not isinstance(priv, PrivateMessage):
            raise VectorMismatch(f"{name}_priv is not a PrivateMessage")
        got = private_message.unprotect_private(crypto, receiver, priv, signer_key).content
        expect_equal(f"{name}_priv content", got.content.content, content)
        expect_equal(f"{name}_priv confirmation tag", got.auth.confirmation_tag, tag)
        mine_priv = private_message.protect_private(crypto, sender, SENDER, content, sig_priv, confirmation_tag=tag)
        again_priv = decode_exact(MLSMessage, encode(MLSMessage(mine_priv))).body
        assert isinstance(again_priv, PrivateMessage)
        got = private_message.unprotect_private(crypto, receiver2, again_priv, signer_key).content
        expect_equal(f"{name} protected as PrivateMessage", got.content.content, content)
