"""Pending invitations: Welcomes this device received and has not yet accepted or declined.

Joining a conversation is the recipient's decision (``docs/security.md``): a
Welcome from the delivery service's inbox is checked (it must join with one of
this device's KeyPackages, every leaf of its tree must pass the account
checks) and kept as an :class:`Invitation` until the app accepts it
(``MessagingClient.accept_invitation``) or declines it
(``MessagingClient.decline_invitation``: the service ends the membership it
opened). Hosts may accept automatically (``ping_core.account.take_welcomes``).

Record (MLS state store ``inv/<conversation id hex>``)::

    {"v": 1, "welcome": bstr (MessageEnvelope encoding), "received_ms": uint,
     "inviter_user": bstr32 / null, "name": tstr / null, "member_count": uint}

(what the Welcome showed when it was checked; the inviter device is the
envelope's ``sender_device``).
"""

from __future__ import annotations

from dataclasses import dataclass

from ping_core.cbor import decode_record, encode_record
from ping_core.ids import ConversationId, DeviceId, UserId
from ping_core.message import MAX_ENVELOPE_SIZE, MessageEnvelope
from ping_core.meta import MAX_NAME_LEN

__all__ = ["Invitation", "INVITATIONS_PREFIX", "MAX_INVITATIONS", "encode_invitation", "decode_invitation"]

INVITATIONS_PREFIX = "inv/"
#: Pending invitations a device keeps; more are refused until some are accepted or declined.
MAX_INVITATIONS = 256
_VERSION = 1


@dataclass(frozen=True, slots=True)
class Invitation:
    """A conversation this device was invited to, as its Welcome shows it.

    ``inviter_user_id`` is the verified account of the member that sent the
    Welcome (``None`` when its leaf proves no account, or the sender is not in
    the tree); ``inviter_device`` the device the delivery service names as
    sender. ``name`` and ``member_count`` are the group's at the time of the
    Welcome (a name is a member's free text).
    """

    conversation_id: ConversationId
    inviter_user_id: UserId | None
    inviter_device: DeviceId
    name: str | None
    member_count: int
    received_ms: int


def encode_invitation(welcome: MessageEnvelope, inv: Invitation) -> bytes:
    return encode_record(
        _VERSION,
        {
            "welcome": welcome.encode(),
            "received_ms": inv.received_ms,
            "inviter_user": None if inv.inviter_user_id is None else inv.inviter_user_id.value,
            "name": inv.name,
            "member_count": inv.member_count,
        },
    )


def decode_invitation(raw: bytes) -> tuple[MessageEnvelope, Invitation]:
    """The Welcome envelope and the invitation of a stored record (``InvalidInput`` if corrupt)."""
    rec = decode_record(
        raw,
        what="Invitation",
        version=_VERSION,
        keys=("welcome", "received_ms", "inviter_user", "name", "member_count"),
        max_size=MAX_ENVELOPE_SIZE + 8192,
    )
    env = MessageEnvelope.decode(rec.get_bytes("welcome", max_len=MAX_ENVELOPE_SIZE))
    user = rec.get_opt_bytes("inviter_user", length=32)
    return env, Invitation(
        env.conversation_id,
        None if user is None else UserId(user),
        env.sender_device,
        rec.get_opt_text("name", max_len=MAX_NAME_LEN),
        rec.get_uint("member_count", max_value=1 << 32),
        rec.get_uint("received_ms"),
    )
