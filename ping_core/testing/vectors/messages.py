"""The ``messages`` family: every field decodes as its RFC 9420 struct and
re-encodes to the same bytes.

Which struct each field is (the "Messages" vectors of the MLS working group's
interoperability suite, RFC 9420 §6 and §12): ``mls_*``,
``public_message_*`` and ``private_message`` are MLSMessage (with the body and
content type the name says); ``ratchet_tree`` is the bare extension payload
``optional<Node> ratchet_tree<V>``; ``group_secrets`` is GroupSecrets;
``*_proposal`` are the bare proposal bodies (Add, Update, ...); ``commit`` is
Commit. A field this runner does not know fails the case, so a new vector
field is never silently skipped. Signatures are not checked here (several
cases use other cipher suites); the signing families cover them.
"""

from __future__ import annotations

from typing import Any, Callable

from ping_core.mls.tls import Writer, decode_exact, decode_with, encode
from ping_core.mls.crypto import CryptoProvider
from ping_core.mls.structs import (
    Add,
    Commit,
    ContentType,
    ExternalInit,
    GroupContextExtensions,
    GroupInfo,
    GroupSecrets,
    KeyPackage,
    MLSMessage,
    PreSharedKey,
    PrivateMessage,
    Proposal,
    PublicMessage,
    RatchetTree,
    ReInit,
    Remove,
    Update,
    Welcome,
)

from ping_core.testing.vectors.registry import VectorMismatch, expect_equal


def _message(body_cls: type, content_type: ContentType | None = None) -> Callable[[bytes], bytes]:
    def check(data: bytes) -> bytes:
        msg = decode_exact(MLSMessage, data)
        expect_equal("body type", type(msg.body).__name__, body_cls.__name__)
        if content_type is not None:
            body = msg.body
            got = body.content.content_type if isinstance(body, PublicMessage) else getattr(body, "content_type", None)
            expect_equal("content type", got, content_type)
        return encode(msg)

    return check


def _struct(cls: Any) -> Callable[[bytes], bytes]:
    def check(data: bytes) -> bytes:
        return encode(decode_exact(cls, data))

    return check


def _proposal_body(cls: type[Proposal]) -> Callable[[bytes], bytes]:
    def check(data: bytes) -> bytes:
        proposal = decode_with(cls.read_body, data)
        w = Writer()
        proposal.write_body(w)
        return w.getvalue()

    return check


CHECKS: dict[str, Callable[[bytes], bytes]] = {
    "mls_welcome": _message(Welcome),
    "mls_group_info": _message(GroupInfo),
    "mls_key_package": _message(KeyPackage),
    "ratchet_tree": _struct(RatchetTree),
    "group_secrets": _struct(GroupSecrets),
    "add_proposal": _proposal_body(Add),
    "update_proposal": _proposal_body(Update),
    "remove_proposal": _proposal_body(Remove),
    "pre_shared_key_proposal": _proposal_body(PreSharedKey),
    "re_init_proposal": _proposal_body(ReInit),
    "external_init_proposal": _proposal_body(ExternalInit),
    "group_context_extensions_proposal": _proposal_body(GroupContextExtensions),
    "commit": _struct(Commit),
    "public_message_application": _message(PublicMessage, ContentType.APPLICATION),
    "public_message_proposal": _message(PublicMessage, ContentType.PROPOSAL),
    "public_message_commit": _message(PublicMessage, ContentType.COMMIT),
    "private_message": _message(PrivateMessage),
}


def run(case: dict[str, Any], crypto: CryptoProvider) -> None:
    """Decode and re-encode every field of one case; raise on any difference."""
    unknown = sorted(set(case) - set(CHECKS))
    if unknown:
        raise VectorMismatch(f"fields this runner does not know: {', '.join(unknown)}")
    for name, check in CHECKS.items():
        if name not in case:
            raise VectorMismatch(f"field {name} missing")
        data = bytes.fromhex(case[name])
        try:
            again = check(data)
        except VectorMismatch as exc:
            raise VectorMismatch(f"{name}: {exc}") from None
        except Exception as exc:  # name the field in any failure
            raise VectorMismatch(f"{name}: {type(exc).__name__}: {exc}") from None
        expect_equal(f"{name} re-encoded", again, data)


__all__ = ["run", "CHECKS"]
