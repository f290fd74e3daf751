"""The one-line codes of device linking, in the format of the ``ping`` command line.

Linking in three steps, the same as ``ping link-new`` / ``link-accept``
(``ping_core/cli.py``), so a browser and the command line link each other:

1. the new device makes a **request code** (its device id and a one-time X25519
   link public key; nothing secret) and keeps the secrets (:class:`PendingLink`);
2. a device of the account turns the request into a **grant code**: the
   account identity sealed with HPKE to the link key (info ``GRANT_INFO``);
   later it sends the LinkingTicket, sealed to the same key, through the new
   device's Welcome inbox (``ping_core.link.seal_ticket``);
3. the new device opens the grant (:func:`open_grant`) with its link secret.

Codes are unpadded URL-safe base64 of a versioned CBOR record. Every decoder
is strict and raises ``InvalidInput`` (``CryptoError`` never escapes).
Pure Python: tested on CPython against the command line's codes.
"""

from __future__ import annotations

import base64
import binascii
import os
from dataclasses import dataclass

from ping_core.cli import GRANT_INFO
from ping_core.codec import decode_record, encode_record
from ping_core.device import MAX_LABEL_LEN
from ping_core.errors import CryptoError, InvalidInput
from ping_core.identity import Identity
from ping_core.ids import DeviceId
from ping_core.link import LinkKeyPair
from ping_core.mls import hpke
from ping_core.mls.crypto import default_provider

__all__ = ["LinkRequestCode", "PendingLink", "make_grant", "open_grant", "encode_code", "decode_code", "GRANT_INFO"]

_MAX_CODE = 4096


def encode_code(record: bytes) -> str:
    """Unpadded URL-safe base64."""
    return base64.urlsafe_b64encode(record).decode("ascii").rstrip("=")


def decode_code(text: object, what: str) -> bytes:
    """The bytes of a code; whitespace around it is ignored."""
    if not isinstance(text, str) or not text.strip() or len(text) > _MAX_CODE:
        raise InvalidInput(f"that is not a {what} code")
    clean = "".join(text.split())
    try:
        return base64.urlsafe_b64decode(clean + "=" * (-len(clean) % 4))
    except (ValueError, binascii.Error):
        raise InvalidInput(f"that is not a {what} code") from None


@dataclass(frozen=True)
class LinkRequestCode:
    """What the new device shows: its device id and its link public key."""

    device_id: DeviceId
    link_public_key: bytes

    def encode(self) -> str:
        return encode_code(
            encode_record(1, {"device_id": self.device_id.value, "link_public_key": self.link_public_key})
        )

    @classmethod
    def decode(cls, text: object) -> LinkRequestCode:
        rec = decode_record(
            decode_code(text, "link request"),
            what="LinkRequest",
            version=1,
            keys=("device_id", "link_public_key"),
            max_size=_MAX_CODE,
        )
        return cls(DeviceId(rec.get_bytes("device_id", length=32)), rec.get_bytes("link_public_key", length=hpke.N_PK))


class PendingLink:
    """The new device's secrets between its request and the grant. SECRET (safe ``repr``)."""

    __slots__ = ("keys", "device_secret", "label")

    def __init__(self, keys: LinkKeyPair, device_secret: bytes, label: str) -> None:
        if not isinstance(device_secret, bytes) or len(device_secret) != 32:
            raise InvalidInput("a device secret is a 32-byte Ed25519 seed")
        if not isinstance(label, str) or not label or len(label.encode("utf-8")) > MAX_LABEL_LEN:
            raise InvalidInput(f"a device label is 1..{MAX_LABEL_LEN} bytes of text")
        self.keys = keys
        self.device_secret = device_secret
        self.label = label

    @classmethod
    def new(cls, label: str) -> PendingLink:
        return cls(LinkKeyPair.generate(), os.urandom(32), label)

    def __repr__(self) -> str:
        return f"PendingLink(device_id={self.device_id.as_hex()[:16]}..., label={self.label!r})"

    @property
    def device_id(self) -> DeviceId:
        return DeviceId.from_public_key(default_provider().sign_public(self.device_secret))

    def request(self) -> LinkRequestCode:
        return LinkRequestCode(self.device_id, self.keys.public_key)

    def encode(self) -> bytes:
        """SECRET record (same layout as the command line's pending-link file)."""
        return encode_record(
            1, {"link_secret": self.keys.secret, "device_secret": self.device_secret, "label": self.label}
        )

    @classmethod
    def decode(cls, raw: bytes) -> PendingLink:
        rec = decode_record(raw, what="PendingLink", version=1, keys=("link_secret", "device_secret", "label"))
        return cls(
            LinkKeyPair(rec.get_bytes("link_secret", length=32)),
            rec.get_bytes("device_secret", length=32),
            rec.get_text("label", max_len=MAX_LABEL_LEN),
        )


def make_grant(identity_export: bytes, request: LinkRequestCode) -> str:
    """The grant code: ``identity_export`` (SECRET) sealed to the request's link key."""
    try:
        enc, ciphertext = hpke.seal(default_provider(), request.link_public_key, GRANT_INFO, b"", identity_export)
    except CryptoError:
        raise InvalidInput("that request's link key is not usable") from None
    return encode_code(encode_record(1, {"enc": enc, "ciphertext": ciphertext}))


def open_grant(text: object, pending: PendingLink) -> Identity:
    """The account identity in a grant code made for ``pending``'s request."""
    rec = decode_record(
        decode_code(text, "grant"), what="Grant", version=1, keys=("enc", "ciphertext"), max_size=_MAX_CODE
    )
    try:
        seed = hpke.open(
            default_provider(), rec.get_bytes("enc", length=hpke.N_ENC), pending.keys.secret, GRANT_INFO, b"",
            rec.get_bytes("ciphertext", max_len=1024), pk_r=pending.keys.public_key,
        )  # fmt: skip
    except CryptoError:
        raise InvalidInput("that grant is not for this device (or was altered)") from None
    return Identity.import_(seed)
