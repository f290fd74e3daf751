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
"""

from __future__ import annotations

from dataclasses import dataclass

from ping_core.codec import decode_record, encode_record
from ping_core.device import MAX_TICKET_SIZE, LinkingTicket
from ping_core.errors import CryptoError, InvalidInput
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
]

LINK_INFO = b"ping linking ticket v1"
LINK_REQUEST_VERSION = 1
SEALED_TICKET_VERSION = 1
MAX_KEY_PACKAGE_LEN = 64 * 1024
_TAG_LEN = 16
MAX_SEALED_SIZE = MAX_TICKET_SIZE + 1024


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
