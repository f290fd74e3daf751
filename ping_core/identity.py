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
  linking ticket, and every member verifies it in every MLS leaf: the leaf's
  basic credential carries it (:func:`credential_identity`,
  :func:`verify_credential_identity`), so a device can only ever appear in a
  conversation as the account that signed it in.
* A device revocation is the account key's signature over::

      b"ping device revocation v1\x00" || user_id (32 bytes) || device_id (32 bytes)

  (:class:`DeviceRevocation`). It travels in the authenticated data of the
  commits that remove the device and to the delivery service; whoever has seen
  it refuses the device for good, whatever the server says later.

The account key need not be on every device: a device that does not hold it
keeps only its own :class:`DeviceBinding` (see ``docs/security.md``). Only a
device holding the account key can link new devices and revoke devices.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar, Self

from ping_core.cbor import decode_record, encode_record
from ping_core.errors import CryptoError, IdentityError, InvalidInput
from ping_core.ids import DeviceId, UserId
from ping_core.mls.crypto import default_provider

__all__ = [
    "Identity",
    "UserId",
    "DeviceBinding",
    "DeviceRevocation",
    "DEVICE_BINDING_LABEL",
    "DEVICE_REVOCATION_LABEL",
    "IDENTITY_EXPORT_VERSION",
    "CREDENTIAL_IDENTITY_LEN",
    "LEGACY_CREDENTIAL_IDENTITY_LEN",
    "device_binding_message",
    "credential_identity",
    "verify_credential_identity",
    "claimed_user_of_credential",
]

DEVICE_BINDING_LABEL = b"ping device binding v1\x00"
DEVICE_REVOCATION_LABEL = b"ping device revocation v1\x00"
IDENTITY_EXPORT_VERSION = 1
DEVICE_BINDING_VERSION = 1
DEVICE_REVOCATION_VERSION = 1
_SEED_LEN = 32
_PUBLIC_LEN = 32
_SIGNATURE_LEN = 64
#: A Ping leaf's basic-credential identity: user_id (32) || account public key (32) || binding signature (64).
CREDENTIAL_IDENTITY_LEN = 32 + _PUBLIC_LEN + _SIGNATURE_LEN
#: What leaves made before account bindings carried: the bare user_id, asserted by the device itself.
LEGACY_CREDENTIAL_IDENTITY_LEN = 32


def _statement(label: bytes, user_id: UserId, device_id: DeviceId) -> bytes:
    if not isinstance(user_id, UserId) or not isinstance(device_id, DeviceId):
        raise InvalidInput("an account statement about a device needs a UserId and a DeviceId")
    return label + user_id.value + device_id.value


def device_binding_message(user_id: UserId, device_id: DeviceId) -> bytes:
    """The exact bytes an account key signs to bind ``device_id`` to ``user_id``."""
    return _statement(DEVICE_BINDING_LABEL, user_id, device_id)


def _verify_statement(label: bytes, user_public_key: object, user_id: object, device_id: object, signature: object) -> None:
    """Raise ``IdentityError`` unless ``signature`` is ``user_id``'s account key signing ``label`` for ``device_id``."""
    if not isinstance(user_public_key, bytes) or len(user_public_key) != _PUBLIC_LEN:
        raise IdentityError("user public key must be 32 bytes")
    if not isinstance(signature, bytes) or len(signature) != _SIGNATURE_LEN:
        raise IdentityError("an account signature must be 64 bytes")
    if not isinstance(user_id, UserId) or not isinstance(device_id, DeviceId):
        raise IdentityError("an account statement needs a UserId and a DeviceId")
    if UserId.from_public_key(user_public_key) != user_id:
        raise IdentityError("user id does not match the user public key")
    try:
        default_provider().verify(user_public_key, _statement(label, user_id, device_id), signature)
    except CryptoError:
        raise IdentityError("the account signature does not verify") from None


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

    def revoke(self, device_id: DeviceId) -> "DeviceRevocation":
        """A :class:`DeviceRevocation` of ``device_id`` signed by this account."""
        message = _statement(DEVICE_REVOCATION_LABEL, self._user_id, device_id)
        return DeviceRevocation(self._user_id, self._public_key, device_id, default_provider().sign(self._seed, message))

    @staticmethod
    def verify_device_binding(user_public_key: bytes, user_id: UserId, device_id: DeviceId, signature: bytes) -> None:
        """Return if ``signature`` binds ``device_id`` to ``user_id``; raise ``IdentityError`` otherwise.

        Also checks that ``user_id`` is the id of ``user_public_key``, so a
        binding made by one account cannot be presented for another.
        """
        _verify_statement(DEVICE_BINDING_LABEL, user_public_key, user_id, device_id, signature)

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
class _AccountStatement:
    """The account key's signature over ``LABEL || user_id || device_id``, as a CBOR record:
    ``{"v": 1, "user_id": bstr(32), "user_public_key": bstr(32), "device_id": bstr(32),
    "signature": bstr(64)}``."""

    LABEL: ClassVar[bytes]
    VERSION: ClassVar[int]

    user_id: UserId
    user_public_key: bytes
    device_id: DeviceId
    signature: bytes

    def verify(self) -> None:
        """Raise ``IdentityError`` unless the account key of ``user_id`` signed this statement."""
        _verify_statement(self.LABEL, self.user_public_key, self.user_id, self.device_id, self.signature)

    def encode(self) -> bytes:
        return encode_record(
            self.VERSION,
            {
                "user_id": self.user_id.value,
                "user_public_key": self.user_public_key,
                "device_id": self.device_id.value,
                "signature": self.signature,
            },
        )

    @classmethod
    def decode(cls, data: bytes) -> Self:
        """Parse (does not verify: call :meth:`verify`). Malformed bytes raise ``InvalidInput``."""
        rec = decode_record(
            data,
            what=cls.__name__,
            version=cls.VERSION,
            keys=("user_id", "user_public_key", "device_id", "signature"),
            max_size=512,
        )
        return cls(
            UserId(rec.get_bytes("user_id", length=32)),
            rec.get_bytes("user_public_key", length=_PUBLIC_LEN),
            DeviceId(rec.get_bytes("device_id", length=32)),
            rec.get_bytes("signature", length=_SIGNATURE_LEN),
        )

    def __repr__(self) -> str:
        return f"{type(self).__name__}(user_id={self.user_id.as_hex()}, device_id={self.device_id.as_hex()})"


@dataclass(frozen=True, slots=True, repr=False)
class DeviceBinding(_AccountStatement):
    """Proof that an account authorised a device (what the delivery service receives at
    registration, and what a device that does not hold the account key keeps instead of it).
    Public: it proves membership of the account, it grants nothing by itself."""

    LABEL: ClassVar[bytes] = DEVICE_BINDING_LABEL
    VERSION: ClassVar[int] = DEVICE_BINDING_VERSION


@dataclass(frozen=True, slots=True, repr=False)
class DeviceRevocation(_AccountStatement):
    """The account's statement that a device no longer belongs to it. Public and permanent."""

    LABEL: ClassVar[bytes] = DEVICE_REVOCATION_LABEL
    VERSION: ClassVar[int] = DEVICE_REVOCATION_VERSION


# ---------------------------------------------------------------------------
# Leaf credentials: the binding carried inside every MLS leaf

# Verifying a binding costs one Ed25519 verification; a tree of N leaves is checked on every
# join and a roster on every members() call. The result depends only on the bytes, so verified
# (identity, signature key) pairs are remembered (bounded; public data only).
_VERIFIED: dict[tuple[bytes, bytes], UserId] = {}
_MAX_VERIFIED = 65536


def credential_identity(binding: DeviceBinding) -> bytes:
    """The basic-credential identity of a Ping leaf: ``user_id || user_public_key || signature``
    (128 bytes). It proves, to anyone holding the leaf, that the account signed in the device
    whose MLS signature key the leaf carries (device id = SHA-256 of that key)."""
    if not isinstance(binding, DeviceBinding):
        raise InvalidInput("credential_identity needs a DeviceBinding")
    return binding.user_id.value + binding.user_public_key + binding.signature


def verify_credential_identity(identity: bytes, signature_key: bytes) -> UserId:
    """The account a leaf belongs to, verified: ``identity`` must be a :func:`credential_identity`
    whose binding signature is the account key's over SHA-256(``signature_key``).
    ``IdentityError`` otherwise (a legacy 32-byte identity included: it proves nothing)."""
    if type(identity) is not bytes or type(signature_key) is not bytes:
        raise IdentityError("a credential identity and a signature key are bytes")
    key = (identity, signature_key)
    user = _VERIFIED.get(key)
    if user is not None:
        return user
    if len(identity) != CREDENTIAL_IDENTITY_LEN:
        if len(identity) == LEGACY_CREDENTIAL_IDENTITY_LEN:
            raise IdentityError("a legacy credential: the device asserts its account without the account's signature")
        raise IdentityError("not a Ping account credential")
    if len(signature_key) != _PUBLIC_LEN:
        raise IdentityError("a Ping leaf's signature key is 32 bytes (Ed25519)")
    user = UserId(identity[:32])
    _verify_statement(DEVICE_BINDING_LABEL, identity[32:64], user, DeviceId.from_public_key(signature_key), identity[64:])
    if len(_VERIFIED) >= _MAX_VERIFIED:
        _VERIFIED.clear()
    _VERIFIED[key] = user
    return user


def claimed_user_of_credential(identity: bytes) -> UserId | None:
    """The account a credential identity NAMES, unverified (``None`` when it names none): for
    comparing a leaf with its successor, never to attribute anything to anybody."""
    if type(identity) is bytes and len(identity) in (CREDENTIAL_IDENTITY_LEN, LEGACY_CREDENTIAL_IDENTITY_LEN):
        return UserId(identity[:32])
    return None
