"""The account identity: one Ed25519 key per user, shared by all of the user's devices.

* ``UserId`` = SHA-256 of the account's 32-byte Ed25519 public key. Hashing
  (rather than using the key itself) keeps the id the same shape as a
  ``DeviceId`` and lets the MLS credential carry a fixed 32-byte identity.
* :meth:`Identity.export` gives the SECRET seed in a versioned CBOR record
  ``{"v": 1, "account_seed": bstr(32)}``; :meth:`Identity.import_` reads it.
  Hosts move it to a newly linked device over the sealed linking channel so
  every device of an account shares one ``UserId``.
* A device binding is the account key's signature over::

      b"ping device binding v1\\x00" || user_id (32 bytes) || device_id (32 bytes)

  It states "this device belongs to this account". The fixed label separates
  these signatures from every other use of the key; all fields have fixed
  lengths, so the message is unambiguous. The delivery service verifies it at
  device registration (:class:`DeviceBinding`), a new device verifies it in its
  linking ticket.
"""

from __future__ import annotations

from dataclasses import dataclass

from ping_core.codec import decode_record, encode_record
from ping_core.errors import CryptoError, IdentityError, InvalidInput
from ping_core.ids import DeviceId, UserId
from ping_core.mls.crypto import default_provider

__all__ = [
    "Identity",
    "UserId",
    "DeviceBinding",
    "DEVICE_BINDING_LABEL",
    "IDENTITY_EXPORT_VERSION",
    "device_binding_message",
]

DEVICE_BINDING_LABEL = b"ping device binding v1\x00"
IDENTITY_EXPORT_VERSION = 1
DEVICE_BINDING_VERSION = 1
_SEED_LEN = 32
_PUBLIC_LEN = 32
_SIGNATURE_LEN = 64


def device_binding_message(user_id: UserId, device_id: DeviceId) -> bytes:
    """The exact bytes an account key signs to bind ``device_id`` to ``user_id``."""
    if not isinstance(user_id, UserId) or not isinstance(device_id, DeviceId):
        raise InvalidInput("device binding needs a UserId and a DeviceId")
    return DEVICE_BINDING_LABEL + user_id.value + device_id.value


class Identity:
    """An account's Ed25519 key pair. Holds a secret: ``repr`` shows only the ``UserId``."""

    __slots__ = ("_seed", "_public_key", "_user_id")

    def __init__(self, seed: bytes) -> None:
        """Use :meth:`generate`, :meth:`from_seed` or :meth:`import_`."""
        if not isinstance(seed, (bytes, bytearray)) or len(seed) != _SEED_LEN:
            raise InvalidInput("an account seed is 32 bytes")
        self._seed = bytes(seed)
        try:
            self._public_key = default_provider().sign_public(self._seed)
        except CryptoError as exc:
            raise IdentityError(f"account key rejected: {type(exc).__name__}") from None
        self._user_id = UserId.from_public_key(self._public_key)

    @classmethod
    def generate(cls) -> "Identity":
        """A new random account."""
        seed, _ = default_provider().sign_keygen()
        return cls(seed)

    @classmethod
    def from_seed(cls, seed: bytes) -> "Identity":
        """The account whose Ed25519 seed is ``seed`` (32 bytes)."""
        return cls(seed)

    @property
    def user_id(self) -> UserId:
        return self._user_id

    @property
    def public_key(self) -> bytes:
        """The 32-byte Ed25519 public key."""
        return self._public_key

    def export(self) -> bytes:
        """SECRET: ``{"v": 1, "account_seed": seed}`` as canonical CBOR. Never log or store in clear."""
        return encode_record(IDENTITY_EXPORT_VERSION, {"account_seed": self._seed})

    @classmethod
    def import_(cls, data: bytes) -> "Identity":
        """Read :meth:`export` output. Malformed bytes raise ``InvalidInput``."""
        rec = decode_record(data, what="Identity", version=IDENTITY_EXPORT_VERSION, keys=("account_seed",), max_size=256)
        return cls(rec.get_bytes("account_seed", length=_SEED_LEN))

    def sign_device_binding(self, device_id: DeviceId) -> bytes:
        """The 64-byte signature binding ``device_id`` to this account."""
        return default_provider().sign(self._seed, device_binding_message(self._user_id, device_id))

    def device_binding(self, device_id: DeviceId) -> "DeviceBinding":
        """A :class:`DeviceBinding` for ``device_id`` (what a device presents at registration)."""
        return DeviceBinding(self._user_id, self._public_key, device_id, self.sign_device_binding(device_id))

    @staticmethod
    def verify_device_binding(user_public_key: bytes, user_id: UserId, device_id: DeviceId, signature: bytes) -> None:
        """Return if ``signature`` binds ``device_id`` to ``user_id``; raise ``IdentityError`` otherwise.

        Also checks that ``user_id`` is the id of ``user_public_key``, so a
        binding made by one account cannot be presented for another.
        """
        if not isinstance(user_public_key, bytes) or len(user_public_key) != _PUBLIC_LEN:
            raise IdentityError("user public key must be 32 bytes")
        if not isinstance(signature, bytes) or len(signature) != _SIGNATURE_LEN:
            raise IdentityError("device binding signature must be 64 bytes")
        if not isinstance(user_id, UserId) or not isinstance(device_id, DeviceId):
            raise IdentityError("device binding needs a UserId and a DeviceId")
        if UserId.from_public_key(user_public_key) != user_id:
            raise IdentityError("user id does not match the user public key")
        try:
            default_provider().verify(user_public_key, device_binding_message(user_id, device_id), signature)
        except CryptoError:
            raise IdentityError("device binding signature does not verify") from None

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Identity):
            return NotImplemented
        return self._public_key == other._public_key

    def __hash__(self) -> int:
        return hash(self._public_key)

    def __repr__(self) -> str:
        return f"Identity(user_id={self._user_id.as_hex()})"

    __str__ = __repr__

    def __reduce__(self) -> str | tuple[object, ...]:
        # Pickling would copy the secret somewhere unexpected; export() is the way.
        raise TypeError("Identity cannot be pickled; use export()")


@dataclass(frozen=True, slots=True)
class DeviceBinding:
    """Proof that an account authorised a device, as the delivery service receives it.

    CBOR: ``{"v": 1, "user_id": bstr(32), "user_public_key": bstr(32),
    "device_id": bstr(32), "signature": bstr(64)}``.
    """

    user_id: UserId
    user_public_key: bytes
    device_id: DeviceId
    signature: bytes

    def verify(self) -> None:
        """Raise ``IdentityError`` unless the signature binds ``device_id`` to ``user_id``."""
        Identity.verify_device_binding(self.user_public_key, self.user_id, self.device_id, self.signature)

    def encode(self) -> bytes:
        return encode_record(
            DEVICE_BINDING_VERSION,
            {
                "user_id": self.user_id.value,
                "user_public_key": self.user_public_key,
                "device_id": self.device_id.value,
                "signature": self.signature,
            },
        )

    @classmethod
    def decode(cls, data: bytes) -> "DeviceBinding":
        """Parse (does not verify: call :meth:`verify`). Malformed bytes raise ``InvalidInput``."""
        rec = decode_record(
            data,
            what="DeviceBinding",
            version=DEVICE_BINDING_VERSION,
            keys=("user_id", "user_public_key", "device_id", "signature"),
            max_size=512,
        )
        return cls(
            UserId(rec.get_bytes("user_id", length=32)),
            rec.get_bytes("user_public_key", length=_PUBLIC_LEN),
            DeviceId(rec.get_bytes("device_id", length=32)),
            rec.get_bytes("signature", length=_SIGNATURE_LEN),
        )
