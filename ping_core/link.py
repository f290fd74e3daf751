"""Device linking channel: a new device's request, and the LinkingTicket sealed to it with HPKE.

Flow:

1. The new device makes a :class:`LinkKeyPair` (ephemeral X25519) and shows a
   :class:`LinkRequest` (its ``DeviceId``, the ephemeral public key and a
   fresh KeyPackage), e.g. as a QR code.
2. The existing device builds a ``LinkingTicket`` for ``request.device_id``
   (``MessagingClient.build_linking_ticket``) and seals it with
   :func:`seal_ticket` to ``request.link_public_key``.
3. The new device calls :func:`open_ticket` with its ephemeral secret: the
   ticket decrypts, decodes strictly, is checked to be addressed to it, and its
   device binding is verified.

Sealing is RFC 9180 HPKE base mode, DHKEM(X25519, HKDF-SHA256), HKDF-SHA256,
AES-128-GCM (``ping_core.mls.hpke``), single shot, with::

    info = b"ping linking ticket v1"
    aad  = b""

CBOR layouts::

    LinkRequest   {"v": 1, "device_id": bstr(32), "link_public_key": bstr(32),
                   "key_package": bstr(<= 64 KiB)}
    SealedTicket  {"v": 1, "enc": bstr(32), "ciphertext": bstr}   ciphertext = HPKE(LinkingTicket encoding)

HPKE binds the recipient's public key into the key schedule, so a ticket
sealed to one request opens with that request's secret only.

One-line codes (what ``ping link-new`` / ``link-accept`` print and the
browser app shows; the two link each other). The request code carries no
KeyPackage (the existing device claims one from the directory), and a grant
code moves the account identity to the new device before its ticket comes:

1. the new device keeps a :class:`PendingLink` (link key pair, device signing
   secret, label) and shows ``PendingLink.request().encode()``, a
   :class:`LinkRequestCode` (device id and link public key; nothing secret);
2. a device of the account that holds the account key shows :func:`seal_grant`:
   an :class:`AccountGrant` (the account's binding of the requesting device
   and, only if the user chose so, the account key) sealed with HPKE (as
   above, ``info = b"ping account grant v1"``, ``aad = b""``) to the
   request's link key; it later seals the ticket to the same key
   (:func:`seal_ticket`);
3. the new device opens the grant with :func:`open_grant` and its link key,
   and opens its client with ``grant.account`` (its binding, or the key).

A code is the record's bytes in unpadded URL-safe base64 (:func:`encode_code`)::

    LinkRequestCode  {"v": 1, "device_id": bstr(32), "link_public_key": bstr(32)}
    Grant            {"v": 1, "enc": bstr(32), "ciphertext": bstr(<= 1024)}   ciphertext = HPKE(AccountGrant)
    PendingLink      {"v": 1, "link_secret": bstr(32), "device_secret": bstr(32),
                      "label": tstr(1..256 bytes)}     SECRET, kept by the new device only
"""

from __future__ import annotations

import base64
import binascii
import os
import re
from dataclasses import dataclass, field
from typing import ClassVar

from ping_core.cbor import decode_record, encode_record
from ping_core.device import MAX_LABEL_LEN, MAX_TICKET_SIZE, LinkingTicket
from ping_core.errors import CryptoError, IdentityError, InvalidInput
from ping_core.identity import DeviceBinding, Identity
from ping_core.ids import DeviceId
from ping_core.mls import hpke
from ping_core.mls.crypto import default_provider

__all__ = [
    "LinkKeyPair",
    "LinkRequest",
    "seal_ticket",
    "open_ticket",
    "LINK_INFO",
    "LINK_REQUEST_VERSION",
    "SEALED_TICKET_VERSION",
    "LinkRequestCode",
    "PendingLink",
    "AccountGrant",
    "seal_grant",
    "open_grant",
    "encode_code",
    "decode_code",
    "GRANT_INFO",
    "MAX_CODE_LEN",
]

LINK_INFO = b"ping linking ticket v1"
LINK_REQUEST_VERSION = 1
SEALED_TICKET_VERSION = 1
MAX_KEY_PACKAGE_LEN = 64 * 1024
_TAG_LEN = 16
MAX_SEALED_SIZE = MAX_TICKET_SIZE + 1024

GRANT_INFO = b"ping account grant v1"
#: Longest code text accepted (whitespace included); real codes are under 200 characters.
MAX_CODE_LEN = 4096
_CODE_VERSION = 1
_MAX_GRANT_CIPHERTEXT = 1024
_CODE_CHARS = re.compile(r"[A-Za-z0-9_-]*")


class LinkKeyPair:
    """The new device's ephemeral X25519 key pair for one linking. SECRET; ``repr`` shows the public key."""

    __slots__ = ("public_key", "_secret")

    public_key: bytes

    def __init__(self, secret: bytes) -> None:
        if not isinstance(secret, bytes) or len(secret) != hpke.N_SK:
            raise InvalidInput("a link secret key is 32 bytes")
        try:
            self.public_key = default_provider().dh_public(secret)
        except CryptoError:
            raise InvalidInput("not a usable X25519 secret key") from None
        self._secret = secret

    @classmethod
    def generate(cls) -> "LinkKeyPair":
        secret, _ = default_provider().dh_keygen()
        return cls(secret)

    @property
    def secret(self) -> bytes:
        """SECRET: the X25519 scalar. Drop the key pair once the ticket is opened."""
        return self._secret

    def __repr__(self) -> str:
        return f"LinkKeyPair(public_key={self.public_key.hex()})"

    def __reduce__(self) -> str | tuple[object, ...]:
        raise TypeError("LinkKeyPair cannot be pickled")


@dataclass(frozen=True, slots=True)
class LinkRequest:
    """What a new device shows the existing one: who it is, where to seal, and its KeyPackage."""

    device_id: DeviceId
    link_public_key: bytes
    key_package: bytes

    def __post_init__(self) -> None:
        if not isinstance(self.device_id, DeviceId):
            raise InvalidInput("LinkRequest.device_id must be a DeviceId")
        if not isinstance(self.link_public_key, bytes) or len(self.link_public_key) != hpke.N_PK:
            raise InvalidInput("LinkRequest.link_public_key must be 32 bytes")
        if not isinstance(self.key_package, bytes) or len(self.key_package) > MAX_KEY_PACKAGE_LEN:
            raise InvalidInput(f"LinkRequest.key_package must be bytes of at most {MAX_KEY_PACKAGE_LEN}")

    def encode(self) -> bytes:
        return encode_record(
            LINK_REQUEST_VERSION,
            {"device_id": self.device_id.value, "link_public_key": self.link_public_key, "key_package": self.key_package},
        )

    @classmethod
    def decode(cls, data: bytes) -> "LinkRequest":
        """Parse :meth:`encode` output; ``InvalidInput`` on anything else."""
        rec = decode_record(
            data,
            what="LinkRequest",
            version=LINK_REQUEST_VERSION,
            keys=("device_id", "link_public_key", "key_package"),
            max_size=MAX_KEY_PACKAGE_LEN + 256,
        )
        return cls(
            DeviceId(rec.get_bytes("device_id", length=32)),
            rec.get_bytes("link_public_key", length=hpke.N_PK),
            rec.get_bytes("key_package", max_len=MAX_KEY_PACKAGE_LEN),
        )


def seal_ticket(ticket: LinkingTicket, recipient_public_key: bytes) -> bytes:
    """The ``SealedTicket`` encoding of ``ticket`` for the holder of ``recipient_public_key``.

    Raises ``InvalidInput`` for a malformed or unusable (low-order) public key.
    """
    if not isinstance(ticket, LinkingTicket):
        raise InvalidInput("seal_ticket needs a LinkingTicket")
    if not isinstance(recipient_public_key, bytes) or len(recipient_public_key) != hpke.N_PK:
        raise InvalidInput("the recipient's link public key must be 32 bytes")
    try:
        enc, ciphertext = hpke.seal(default_provider(), recipient_public_key, LINK_INFO, b"", ticket.encode())
    except CryptoError:
        raise InvalidInput("the recipient's link public key is not usable") from None
    return encode_record(SEALED_TICKET_VERSION, {"enc": enc, "ciphertext": ciphertext})


def open_ticket(sealed: bytes, key_pair: LinkKeyPair, expected_device_id: DeviceId | None = None) -> LinkingTicket:
    """Decrypt, decode and check a sealed ticket.

    Raises ``InvalidInput`` when the bytes are malformed, do not decrypt with
    ``key_pair`` (wrong recipient, tampered) or the ticket is addressed to
    another device than ``expected_device_id``; ``IdentityError`` when its
    device binding does not verify. Returns only a ticket that passed all of it.
    """
    if not isinstance(key_pair, LinkKeyPair):
        raise InvalidInput("open_ticket needs the LinkKeyPair the request was made with")
    rec = decode_record(sealed, what="SealedTicket", version=SEALED_TICKET_VERSION, keys=("enc", "ciphertext"), max_size=MAX_SEALED_SIZE)
    enc = rec.get_bytes("enc", length=hpke.N_ENC)
    ciphertext = rec.get_bytes("ciphertext", max_len=MAX_TICKET_SIZE + _TAG_LEN)
    if len(ciphertext) < _TAG_LEN:
        raise InvalidInput("SealedTicket.ciphertext is too short")
    try:
        plaintext = hpke.open(default_provider(), enc, key_pair.secret, LINK_INFO, b"", ciphertext, pk_r=key_pair.public_key)
    except CryptoError:
        raise InvalidInput("the sealed ticket does not open with this key (wrong recipient or tampered)") from None
    ticket = LinkingTicket.decode(plaintext)
    if expected_device_id is not None and ticket.new_device_id != expected_device_id:
        raise InvalidInput("the ticket is addressed to another device")
    ticket.verify_binding()
    return ticket


# ---------------------------------------------------------------------------
# One-line codes (the command line's and the browser's format)


def encode_code(record: bytes) -> str:
    """``record`` as a one-line code: unpadded URL-safe base64 (``A-Z a-z 0-9 - _``)."""
    return base64.urlsafe_b64encode(record).decode("ascii").rstrip("=")


def decode_code(text: object, what: str) -> bytes:
    """The bytes of an :func:`encode_code` code; whitespace anywhere in it is ignored (a wrapped paste).

    Strict: ``InvalidInput("that is not a <what> code")`` for anything that is not
    text of at most ``MAX_CODE_LEN`` characters in that alphabet, or whose
    base64 is not the canonical encoding of its bytes.
    """
    if not isinstance(text, str) or len(text) > MAX_CODE_LEN:
        raise InvalidInput(f"that is not a {what} code")
    clean = "".join(text.split())
    if not clean or not _CODE_CHARS.fullmatch(clean):
        raise InvalidInput(f"that is not a {what} code")
    try:
        raw = base64.urlsafe_b64decode(clean + "=" * (-len(clean) % 4))
    except (ValueError, binascii.Error):
        raise InvalidInput(f"that is not a {what} code") from None
    if encode_code(raw) != clean:  # a length of 4k+1, or stray bits in the last character
        raise InvalidInput(f"that is not a {what} code")
    return raw


@dataclass(frozen=True, slots=True)
class LinkRequestCode:
    """The request code a new device shows: its device id and its link public key (nothing secret)."""

    device_id: DeviceId
    link_public_key: bytes

    def __post_init__(self) -> None:
        if not isinstance(self.device_id, DeviceId):
            raise InvalidInput("LinkRequestCode.device_id must be a DeviceId")
        if not isinstance(self.link_public_key, bytes) or len(self.link_public_key) != hpke.N_PK:
            raise InvalidInput("LinkRequestCode.link_public_key must be 32 bytes")

    def encode(self) -> str:
        """The one-line code."""
        fields = {"device_id": self.device_id.value, "link_public_key": self.link_public_key}
        return encode_code(encode_record(_CODE_VERSION, fields))

    @classmethod
    def decode(cls, text: object) -> "LinkRequestCode":
        """Parse :meth:`encode` output (surrounding or embedded whitespace allowed); ``InvalidInput`` on anything else."""
        rec = decode_record(
            decode_code(text, "link request"),
            what="LinkRequest",
            version=_CODE_VERSION,
            keys=("device_id", "link_public_key"),
            max_size=MAX_CODE_LEN,
        )
        return cls(DeviceId(rec.get_bytes("device_id", length=32)), rec.get_bytes("link_public_key", length=hpke.N_PK))


class PendingLink:
    """The new device's secrets between its request and the grant. SECRET (safe ``repr``, no pickling).

    ``keys`` opens the grant and the ticket; ``device_secret`` is the Ed25519
    seed of the device the request announced; ``label`` its name.
    """

    __slots__ = ("keys", "device_secret", "label")

    keys: LinkKeyPair
    device_secret: bytes
    label: str

    def __init__(self, keys: LinkKeyPair, device_secret: bytes, label: str) -> None:
        if not isinstance(keys, LinkKeyPair):
            raise InvalidInput("a pending link needs a LinkKeyPair")
        if not isinstance(device_secret, bytes) or len(device_secret) != 32:
            raise InvalidInput("a device secret is a 32-byte Ed25519 seed")
        if not isinstance(label, str) or not label or len(label.encode("utf-8")) > MAX_LABEL_LEN:
            raise InvalidInput(f"a device label is 1..{MAX_LABEL_LEN} bytes of text")
        self.keys = keys
        self.device_secret = device_secret
        self.label = label

    @classmethod
    def new(cls, label: str) -> "PendingLink":
        """A fresh link key pair and device key for a device named ``label``."""
        return cls(LinkKeyPair.generate(), os.urandom(32), label)

    def __repr__(self) -> str:
        return f"PendingLink(device_id={self.device_id.as_hex()[:16]}..., label={self.label!r})"

    def __reduce__(self) -> str | tuple[object, ...]:
        raise TypeError("PendingLink cannot be pickled")

    @property
    def device_id(self) -> DeviceId:
        """The id of the device this link makes (from ``device_secret``'s public key)."""
        return DeviceId.from_public_key(default_provider().sign_public(self.device_secret))

    def request(self) -> LinkRequestCode:
        """What to show the existing device."""
        return LinkRequestCode(self.device_id, self.keys.public_key)

    def encode(self) -> bytes:
        """SECRET record: store it owner-only (the command line's ``link-pending`` file)."""
        return encode_record(
            _CODE_VERSION, {"link_secret": self.keys.secret, "device_secret": self.device_secret, "label": self.label}
        )

    @classmethod
    def decode(cls, raw: bytes) -> "PendingLink":
        """Parse :meth:`encode` output; ``InvalidInput`` on anything else."""
        keys = ("link_secret", "device_secret", "label")
        rec = decode_record(raw, what="PendingLink", version=_CODE_VERSION, keys=keys, max_size=1024)
        return cls(
            LinkKeyPair(rec.get_bytes("link_secret", length=hpke.N_SK)),
            rec.get_bytes("device_secret", length=32),
            rec.get_text("label", max_len=MAX_LABEL_LEN),
        )


@dataclass(frozen=True, slots=True)
class AccountGrant:
    """What a device of the account grants a new one before its ticket: the account's binding of
    the new device and, only when the user chose to, the account key itself. SECRET when it
    carries the key (``repr`` never shows it).

    CBOR (v2; a v1 plaintext is a bare identity export, read as a grant of the key)::

        {"v": 2, "binding": DeviceBinding encoding, "account_key": Identity export / null}
    """

    binding: DeviceBinding
    identity: Identity | None = field(default=None, repr=False)

    VERSION: ClassVar[int] = 2

    def __post_init__(self) -> None:
        if not isinstance(self.binding, DeviceBinding):
            raise InvalidInput("an AccountGrant needs a DeviceBinding")
        if self.identity is not None:
            if not isinstance(self.identity, Identity):
                raise InvalidInput("AccountGrant.identity must be an Identity or None")
            if self.identity.user_id != self.binding.user_id:
                raise InvalidInput("the granted account key is not the binding's account")

    @property
    def account(self) -> Identity | DeviceBinding:
        """What the new device opens its client with: the account key when granted, else its binding."""
        return self.identity if self.identity is not None else self.binding

    def encode(self) -> bytes:
        key = None if self.identity is None else self.identity.export()
        return encode_record(self.VERSION, {"binding": self.binding.encode(), "account_key": key})

    @classmethod
    def decode(cls, raw: bytes, device_id: DeviceId) -> "AccountGrant":
        """Parse and verify a grant for ``device_id``: the binding must verify and name that device
        (``IdentityError``), a granted key must be the binding's account. A v1 grant (a bare identity
        export, made by an older Ping) is a grant of the key; its binding is made here."""
        try:
            identity = Identity.import_(raw)
        except InvalidInput:
            identity = None
        if identity is not None:
            return cls(identity.device_binding(device_id), identity)
        rec = decode_record(raw, what="AccountGrant", version=cls.VERSION, keys=("binding", "account_key"), max_size=1024)
        binding = DeviceBinding.decode(rec.get_bytes("binding", max_len=512))
        binding.verify()
        if binding.device_id != device_id:
            raise IdentityError("the grant binds another device to the account")
        key = rec.get_opt_bytes("account_key", max_len=256)
        return cls(binding, None if key is None else Identity.import_(key))


def seal_grant(grant: AccountGrant, request: LinkRequestCode) -> str:
    """The grant code: ``grant`` sealed to ``request``'s link key (HPKE, ``GRANT_INFO``).

    Raises ``InvalidInput`` when the grant is not for the request's device or
    the request's link key is not usable (a low-order point).
    """
    if not isinstance(request, LinkRequestCode):
        raise InvalidInput("seal_grant needs a LinkRequestCode")
    if not isinstance(grant, AccountGrant):
        raise InvalidInput("seal_grant needs an AccountGrant (MessagingClient.grant_device)")
    if grant.binding.device_id != request.device_id:
        raise InvalidInput("the grant is for another device than the request's")
    try:
        enc, ciphertext = hpke.seal(default_provider(), request.link_public_key, GRANT_INFO, b"", grant.encode())
    except CryptoError:
        raise InvalidInput("that request's link key is not usable") from None
    return encode_code(encode_record(_CODE_VERSION, {"enc": enc, "ciphertext": ciphertext}))


def open_grant(text: object, keys: LinkKeyPair, device_id: DeviceId) -> AccountGrant:
    """The :class:`AccountGrant` in a grant code made for the request of ``keys`` and ``device_id``.

    Raises ``InvalidInput`` when the code is malformed, was made for another
    request, or was altered; ``IdentityError`` when its binding does not verify
    or is for another device. Returns only a verified grant.
    """
    if not isinstance(keys, LinkKeyPair):
        raise InvalidInput("open_grant needs the LinkKeyPair the request was made with")
    if not isinstance(device_id, DeviceId):
        raise InvalidInput("open_grant needs the DeviceId the request announced")
    raw = decode_code(text, "grant")
    rec = decode_record(raw, what="Grant", version=_CODE_VERSION, keys=("enc", "ciphertext"), max_size=MAX_CODE_LEN)
    enc = rec.get_bytes("enc", length=hpke.N_ENC)
    ciphertext = rec.get_bytes("ciphertext", max_len=_MAX_GRANT_CIPHERTEXT)
    try:
        plaintext = hpke.open(default_provider(), enc, keys.secret, GRANT_INFO, b"", ciphertext, pk_r=keys.public_key)
    except CryptoError:
        raise InvalidInput("that grant is not for this device (or was altered)") from None
    return AccountGrant.decode(plaintext, device_id)
