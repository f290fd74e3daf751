"""Devices, and the records one device hands another when it links it.

* :class:`LocalDevice` is this device: its Ed25519 signing key (which is
  also its MLS leaf signature key), ``DeviceId = SHA-256(signing public key)``,
  label and creation time. SECRET when encoded.
* :class:`DeviceInfo` is the public description of a device (directory entry).
* :class:`LinkingTicket` is what an existing device gives a new one: the
  account's binding of the new device, a Welcome into the user's DeviceGroup
  and a :class:`CatchupSnapshot` of the conversations' state. SECRET (it
  carries group state); it travels sealed with ``ping_core.link``.
* :class:`GroupStateSnapshot` is one conversation's MLS state store records.

Every record is a versioned canonical CBOR map with an exact key set; the
layouts are in ``docs/formats.md`` and in each class docstring. Decoders raise
only ``InvalidInput``.
"""

from __future__ import annotations

from dataclasses import dataclass

from ping_core.cbor import (
    MAX_UINT,
    CborValue,
    as_bytes,
    as_list,
    as_map,
    as_text,
    check_text,
    decode_record,
    encode_record,
)
from ping_core.errors import CryptoError, IdentityError, InvalidInput
from ping_core.identity import Identity
from ping_core.ids import ConversationId, DeviceId, UserId
from ping_core.meta import ConversationMeta
from ping_core.mls.crypto import default_provider

__all__ = [
    "DeviceId",
    "LocalDevice",
    "DeviceInfo",
    "LinkingTicket",
    "CatchupSnapshot",
    "CatchupConversationEntry",
    "CatchupAppEventEntry",
    "GroupStateSnapshot",
    "LOCAL_DEVICE_VERSION",
    "DEVICE_INFO_VERSION",
    "LINKING_TICKET_VERSION",
    "CATCHUP_SNAPSHOT_VERSION",
    "GROUP_STATE_SNAPSHOT_VERSION",
    "MAX_LABEL_LEN",
    "MAX_TICKET_SIZE",
    "MAX_SNAPSHOT_SIZE",
]

LOCAL_DEVICE_VERSION = 1
DEVICE_INFO_VERSION = 1
LINKING_TICKET_VERSION = 1
CATCHUP_SNAPSHOT_VERSION = 1
GROUP_STATE_SNAPSHOT_VERSION = 1

MAX_LABEL_LEN = 256
# A catch-up snapshot holds the state of every conversation of the account.
MAX_SNAPSHOT_SIZE = 64 * 1024 * 1024
MAX_TICKET_SIZE = MAX_SNAPSHOT_SIZE + 8 * 1024 * 1024
MAX_WELCOME_LEN = 8 * 1024 * 1024
MAX_APP_EVENT_LEN = 1024 * 1024
MAX_STATE_KEY_LEN = 512
MAX_STATE_VALUE_LEN = 16 * 1024 * 1024
MAX_SNAPSHOT_ENTRIES = 100_000


def _check_uint(value: object, what: str) -> int:
    if type(value) is not int or not 0 <= value <= MAX_UINT:
        raise InvalidInput(f"{what} must be an integer in 0..2^64-1")
    return value


def _check_bytes(value: object, what: str, *, length: int | None = None, max_len: int | None = None) -> bytes:
    if isinstance(value, (bytearray, memoryview)):
        value = bytes(value)
    return as_bytes(value, what, length=length, max_len=max_len)


# ---------------------------------------------------------------------------
# DeviceInfo


_INFO_KEYS = ("device_id", "user_id", "label", "signing_public_key", "created_at_ms", "last_seen_ms")


@dataclass(frozen=True, slots=True)
class DeviceInfo:
    """The public description of a device.

    CBOR: ``{"v": 1, "device_id": bstr(32), "user_id": bstr(32), "label": tstr,
    "signing_public_key": bstr(32), "created_at_ms": uint, "last_seen_ms": uint}``.
    """

    device_id: DeviceId
    user_id: UserId
    label: str
    signing_public_key: bytes
    created_at_ms: int
    last_seen_ms: int

    def __post_init__(self) -> None:
        if not isinstance(self.device_id, DeviceId) or not isinstance(self.user_id, UserId):
            raise InvalidInput("DeviceInfo needs a DeviceId and a UserId")
        check_text(self.label, "DeviceInfo.label", MAX_LABEL_LEN)
        _check_bytes(self.signing_public_key, "DeviceInfo.signing_public_key", length=32)
        _check_uint(self.created_at_ms, "DeviceInfo.created_at_ms")
        _check_uint(self.last_seen_ms, "DeviceInfo.last_seen_ms")

    def verify(self) -> None:
        """Raise ``IdentityError`` unless ``device_id`` is SHA-256 of ``signing_public_key``."""
        if DeviceId.from_public_key(self.signing_public_key) != self.device_id:
            raise IdentityError("device id does not match the device signing key")

    def encode(self) -> bytes:
        return encode_record(
            DEVICE_INFO_VERSION,
            {
                "device_id": self.device_id.value,
                "user_id": self.user_id.value,
                "label": self.label,
                "signing_public_key": self.signing_public_key,
                "created_at_ms": self.created_at_ms,
                "last_seen_ms": self.last_seen_ms,
            },
        )

    @classmethod
    def decode(cls, data: bytes) -> "DeviceInfo":
        """Parse (does not :meth:`verify`). ``InvalidInput`` on malformed bytes."""
        rec = decode_record(data, what="DeviceInfo", version=DEVICE_INFO_VERSION, keys=_INFO_KEYS, max_size=1024)
        return cls(
            DeviceId(rec.get_bytes("device_id", length=32)),
            UserId(rec.get_bytes("user_id", length=32)),
            rec.get_text("label", max_len=MAX_LABEL_LEN),
            rec.get_bytes("signing_public_key", length=32),
            rec.get_uint("created_at_ms"),
            rec.get_uint("last_seen_ms"),
        )


# ---------------------------------------------------------------------------
# LocalDevice


class LocalDevice:
    """This device. Holds the device signing secret: ``repr`` never shows it.

    The signing key is Ed25519 and doubles as the device's MLS leaf signature
    key (cipher suite 1 signs with Ed25519), so it is stable across restarts.
    """

    __slots__ = ("device_id", "user_id", "label", "created_at_ms", "signing_public_key", "_signing_secret")

    device_id: DeviceId
    user_id: UserId
    label: str
    created_at_ms: int
    signing_public_key: bytes

    def __init__(self, user_id: UserId, label: str, created_at_ms: int, signing_secret: bytes) -> None:
        """Prefer :meth:`generate` / :meth:`from_signing_secret`."""
        if not isinstance(user_id, UserId):
            raise InvalidInput("LocalDevice.user_id must be a UserId")
        check_text(label, "LocalDevice.label", MAX_LABEL_LEN)
        _check_uint(created_at_ms, "LocalDevice.created_at_ms")
        if not isinstance(signing_secret, (bytes, bytearray)) or len(signing_secret) != 32:
            raise InvalidInput("a device signing secret is 32 bytes")
        secret = bytes(signing_secret)
        try:
            public = default_provider().sign_public(secret)
        except CryptoError as exc:
            raise IdentityError(f"device signing key rejected: {type(exc).__name__}") from None
        self.user_id = user_id
        self.label = label
        self.created_at_ms = created_at_ms
        self.signing_public_key = public
        self.device_id = DeviceId.from_public_key(public)
        self._signing_secret = secret

    @classmethod
    def generate(cls, user_id: UserId, label: str, now_ms: int) -> "LocalDevice":
        """A new device with a fresh random signing key."""
        secret, _ = default_provider().sign_keygen()
        return cls(user_id, label, now_ms, secret)

    @classmethod
    def from_signing_secret(cls, user_id: UserId, label: str, now_ms: int, secret: bytes) -> "LocalDevice":
        """A device whose signing key is the host-provided 32-byte Ed25519 seed ``secret``.

        Its ``device_id`` is then fully determined by the host:
        ``SHA-256(public_key_of(secret))``.
        """
        return cls(user_id, label, now_ms, secret)

    @property
    def signing_secret(self) -> bytes:
        """SECRET: the 32-byte Ed25519 seed (the MLS engine needs it to sign as this leaf)."""
        return self._signing_secret

    def sign(self, message: bytes) -> bytes:
        """A 64-byte Ed25519 signature by the device key (e.g. to authenticate transport requests)."""
        return default_provider().sign(self._signing_secret, message)

    def info(self, now_ms: int) -> DeviceInfo:
        """The public :class:`DeviceInfo` of this device, seen at ``now_ms``."""
        return DeviceInfo(self.device_id, self.user_id, self.label, self.signing_public_key, self.created_at_ms, now_ms)

    def encode(self) -> bytes:
        """SECRET: ``{"v": 1, "device_id": bstr(32), "label": tstr, "created_at_ms": uint,
        "signing_seed": bstr(32)}``. The ``user_id`` is not stored: it is the account's."""
        return encode_record(
            LOCAL_DEVICE_VERSION,
            {
                "device_id": self.device_id.value,
                "label": self.label,
                "created_at_ms": self.created_at_ms,
                "signing_seed": self._signing_secret,
            },
        )

    @classmethod
    def decode(cls, data: bytes, user_id: UserId) -> "LocalDevice":
        """Read :meth:`encode` output for the account ``user_id``.

        ``InvalidInput`` when malformed or when the stored ``device_id`` does
        not match the stored key (a corrupt or tampered record).
        """
        rec = decode_record(
            data,
            what="LocalDevice",
            version=LOCAL_DEVICE_VERSION,
            keys=("device_id", "label", "created_at_ms", "signing_seed"),
            max_size=1024,
        )
        device = cls(
            user_id,
            rec.get_text("label", max_len=MAX_LABEL_LEN),
            rec.get_uint("created_at_ms"),
            rec.get_bytes("signing_seed", length=32),
        )
        if device.device_id.value != rec.get_bytes("device_id", length=32):
            raise InvalidInput("LocalDevice: stored device_id does not match the stored signing key")
        return device

    def __repr__(self) -> str:
        return f"LocalDevice(device_id={self.device_id.as_hex()}, label={self.label!r})"

    __str__ = __repr__

    def __reduce__(self) -> str | tuple[object, ...]:
        raise TypeError("LocalDevice cannot be pickled; use encode()")


# ---------------------------------------------------------------------------
# Catch-up snapshot


@dataclass(frozen=True, slots=True)
class CatchupConversationEntry:
    """One conversation in a :class:`CatchupSnapshot`. ``group_state_bytes`` is a
    ``GroupStateSnapshot`` encoding (secret)."""

    conversation_id: ConversationId
    meta: ConversationMeta
    group_state_bytes: bytes

    def __post_init__(self) -> None:
        if not isinstance(self.conversation_id, ConversationId) or not isinstance(self.meta, ConversationMeta):
            raise InvalidInput("CatchupConversationEntry needs a ConversationId and a ConversationMeta")
        _check_bytes(self.group_state_bytes, "CatchupConversationEntry.group_state_bytes", max_len=MAX_SNAPSHOT_SIZE)

    def __repr__(self) -> str:
        return f"CatchupConversationEntry(conversation_id={self.conversation_id.as_hex()}, group_state=<{len(self.group_state_bytes)} bytes>)"


@dataclass(frozen=True, slots=True)
class CatchupAppEventEntry:
    """A host-supplied app event (what the new device shows as "what you missed")."""

    conversation_id: ConversationId
    app_event_bytes: bytes

    def __post_init__(self) -> None:
        if not isinstance(self.conversation_id, ConversationId):
            raise InvalidInput("CatchupAppEventEntry.conversation_id must be a ConversationId")
        _check_bytes(self.app_event_bytes, "CatchupAppEventEntry.app_event_bytes", max_len=MAX_APP_EVENT_LEN)

    def __repr__(self) -> str:
        return f"CatchupAppEventEntry(conversation_id={self.conversation_id.as_hex()}, app_event=<{len(self.app_event_bytes)} bytes>)"


_CONV_ENTRY_KEYS = frozenset({"conversation_id", "meta", "group_state_bytes"})
_APP_ENTRY_KEYS = frozenset({"conversation_id", "app_event_bytes"})


@dataclass(frozen=True, slots=True)
class CatchupSnapshot:
    """Everything a newly linked device needs to pick up the account's conversations. SECRET.

    CBOR::

        {"v": 1,
         "conversation_metas": [{"conversation_id": bstr(16), "meta": ConversationMeta map,
                                 "group_state_bytes": bstr}, ...],
         "last_app_events_per_conv": [{"conversation_id": bstr(16), "app_event_bytes": bstr}, ...]}

    ``v`` is kept as a field to mirror the spec; it must be ``CATCHUP_SNAPSHOT_VERSION``.
    """

    v: int
    conversation_metas: tuple[CatchupConversationEntry, ...]
    last_app_events_per_conv: tuple[CatchupAppEventEntry, ...]

    def __post_init__(self) -> None:
        if self.v != CATCHUP_SNAPSHOT_VERSION:
            raise InvalidInput(f"CatchupSnapshot.v must be {CATCHUP_SNAPSHOT_VERSION}")
        metas = tuple(self.conversation_metas)
        events = tuple(self.last_app_events_per_conv)
        if not all(isinstance(e, CatchupConversationEntry) for e in metas):
            raise InvalidInput("CatchupSnapshot.conversation_metas must hold CatchupConversationEntry")
        if not all(isinstance(e, CatchupAppEventEntry) for e in events):
            raise InvalidInput("CatchupSnapshot.last_app_events_per_conv must hold CatchupAppEventEntry")
        if len({e.conversation_id for e in metas}) != len(metas):
            raise InvalidInput("CatchupSnapshot: a conversation appears twice")
        object.__setattr__(self, "conversation_metas", metas)
        object.__setattr__(self, "last_app_events_per_conv", events)

    @classmethod
    def new(
        cls,
        conversation_metas: list[CatchupConversationEntry] | tuple[CatchupConversationEntry, ...] = (),
        last_app_events_per_conv: list[CatchupAppEventEntry] | tuple[CatchupAppEventEntry, ...] = (),
    ) -> "CatchupSnapshot":
        return cls(CATCHUP_SNAPSHOT_VERSION, tuple(conversation_metas), tuple(last_app_events_per_conv))

    def encode(self) -> bytes:
        metas: list[CborValue] = [
            {"conversation_id": e.conversation_id.value, "meta": e.meta.to_value(), "group_state_bytes": e.group_state_bytes}
            for e in self.conversation_metas
        ]
        events: list[CborValue] = [
            {"conversation_id": e.conversation_id.value, "app_event_bytes": e.app_event_bytes} for e in self.last_app_events_per_conv
        ]
        return encode_record(CATCHUP_SNAPSHOT_VERSION, {"conversation_metas": metas, "last_app_events_per_conv": events})

    @classmethod
    def decode(cls, data: bytes) -> "CatchupSnapshot":
        """Parse :meth:`encode` output; ``InvalidInput`` on anything else."""
        rec = decode_record(
            data,
            what="CatchupSnapshot",
            version=CATCHUP_SNAPSHOT_VERSION,
            keys=("conversation_metas", "last_app_events_per_conv"),
            max_size=MAX_SNAPSHOT_SIZE,
        )
        metas = []
        for i, item in enumerate(rec.get_list("conversation_metas", max_items=MAX_SNAPSHOT_ENTRIES)):
            what = f"CatchupSnapshot.conversation_metas[{i}]"
            m = as_map(item, what, _CONV_ENTRY_KEYS)
            conv_id = ConversationId(m.get_bytes("conversation_id", length=ConversationId.LENGTH))
            meta = ConversationMeta.from_value(m["meta"], f"{what}.meta")
            if meta.id != conv_id:
                raise InvalidInput(f"{what}: meta.id differs from conversation_id")
            metas.append(CatchupConversationEntry(conv_id, meta, m.get_bytes("group_state_bytes", max_len=MAX_SNAPSHOT_SIZE)))
        events = []
        for i, item in enumerate(rec.get_list("last_app_events_per_conv", max_items=MAX_SNAPSHOT_ENTRIES)):
            what = f"CatchupSnapshot.last_app_events_per_conv[{i}]"
            m = as_map(item, what, _APP_ENTRY_KEYS)
            events.append(
                CatchupAppEventEntry(
                    ConversationId(m.get_bytes("conversation_id", length=ConversationId.LENGTH)),
                    m.get_bytes("app_event_bytes", max_len=MAX_APP_EVENT_LEN),
                )
            )
        return cls(CATCHUP_SNAPSHOT_VERSION, tuple(metas), tuple(events))

    def __repr__(self) -> str:
        return f"CatchupSnapshot(conversations={len(self.conversation_metas)}, app_events={len(self.last_app_events_per_conv)})"


# ---------------------------------------------------------------------------
# LinkingTicket

_TICKET_KEYS = (
    "user_id",
    "user_pubkey",
    "new_device_id",
    "device_binding_sig",
    "device_group_welcome",
    "catchup_snapshot",
)


@dataclass(frozen=True, slots=True)
class LinkingTicket:
    """What an existing device hands a new one (sealed with ``ping_core.link``). SECRET.

    CBOR::

        {"v": 1, "user_id": bstr(32), "user_pubkey": bstr(32), "new_device_id": bstr(32),
         "device_binding_sig": bstr(64), "device_group_welcome": bstr,
         "catchup_snapshot": bstr}     # a CatchupSnapshot encoding, or empty

    ``device_group_welcome`` is the TLS-serialized MLSMessage(Welcome) into
    the user's DeviceGroup. Decoding checks shapes only;
    :meth:`verify_binding` checks the signature.
    """

    v: int
    user_id: UserId
    user_pubkey: bytes
    new_device_id: DeviceId
    device_binding_sig: bytes
    device_group_welcome: bytes
    catchup_snapshot: bytes

    def __post_init__(self) -> None:
        if self.v != LINKING_TICKET_VERSION:
            raise InvalidInput(f"LinkingTicket.v must be {LINKING_TICKET_VERSION}")
        if not isinstance(self.user_id, UserId) or not isinstance(self.new_device_id, DeviceId):
            raise InvalidInput("LinkingTicket needs a UserId and a DeviceId")
        _check_bytes(self.user_pubkey, "LinkingTicket.user_pubkey", length=32)
        _check_bytes(self.device_binding_sig, "LinkingTicket.device_binding_sig", length=64)
        _check_bytes(self.device_group_welcome, "LinkingTicket.device_group_welcome", max_len=MAX_WELCOME_LEN)
        _check_bytes(self.catchup_snapshot, "LinkingTicket.catchup_snapshot", max_len=MAX_SNAPSHOT_SIZE)

    @classmethod
    def new(
        cls,
        identity: Identity,
        new_device_id: DeviceId,
        device_group_welcome: bytes,
        catchup_snapshot: bytes = b"",
    ) -> "LinkingTicket":
        """A ticket for ``new_device_id`` signed by the account ``identity``."""
        return cls(
            LINKING_TICKET_VERSION,
            identity.user_id,
            identity.public_key,
            new_device_id,
            identity.sign_device_binding(new_device_id),
            device_group_welcome,
            catchup_snapshot,
        )

    def verify_binding(self) -> None:
        """Raise ``IdentityError`` unless the account key signed ``new_device_id`` for ``user_id``."""
        Identity.verify_device_binding(self.user_pubkey, self.user_id, self.new_device_id, self.device_binding_sig)

    def catchup(self) -> CatchupSnapshot | None:
        """The decoded catch-up snapshot, or ``None`` when the ticket carries none."""
        return CatchupSnapshot.decode(self.catchup_snapshot) if self.catchup_snapshot else None

    def encode(self) -> bytes:
        return encode_record(
            LINKING_TICKET_VERSION,
            {
                "user_id": self.user_id.value,
                "user_pubkey": self.user_pubkey,
                "new_device_id": self.new_device_id.value,
                "device_binding_sig": self.device_binding_sig,
                "device_group_welcome": self.device_group_welcome,
                "catchup_snapshot": self.catchup_snapshot,
            },
        )

    @classmethod
    def decode(cls, data: bytes) -> "LinkingTicket":
        """Parse :meth:`encode` output (does not verify); ``InvalidInput`` on anything else."""
        rec = decode_record(data, what="LinkingTicket", version=LINKING_TICKET_VERSION, keys=_TICKET_KEYS, max_size=MAX_TICKET_SIZE)
        return cls(
            LINKING_TICKET_VERSION,
            UserId(rec.get_bytes("user_id", length=32)),
            rec.get_bytes("user_pubkey", length=32),
            DeviceId(rec.get_bytes("new_device_id", length=32)),
            rec.get_bytes("device_binding_sig", length=64),
            rec.get_bytes("device_group_welcome", max_len=MAX_WELCOME_LEN),
            rec.get_bytes("catchup_snapshot", max_len=MAX_SNAPSHOT_SIZE),
        )

    def __repr__(self) -> str:
        return (
            f"LinkingTicket(user_id={self.user_id.as_hex()}, new_device_id={self.new_device_id.as_hex()}, "
            f"welcome=<{len(self.device_group_welcome)} bytes>, catchup=<{len(self.catchup_snapshot)} bytes>)"
        )


# ---------------------------------------------------------------------------
# GroupStateSnapshot


@dataclass(frozen=True, slots=True)
class GroupStateSnapshot:
    """One conversation's MLS state store records, for a same-account hand-off. SECRET.

    CBOR::

        {"v": 1, "group_id": bstr(16), "storage_version": uint,
         "exported_at_ms": uint, "entries": [[key tstr, value bstr], ...]}

    ``storage_version`` is the format version of the state store records
    (the spec's ``openmls_storage_version``); an importer refuses a version it
    does not know. Keys are unique.
    """

    group_id: ConversationId
    storage_version: int
    exported_at_ms: int
    entries: tuple[tuple[str, bytes], ...]

    def __post_init__(self) -> None:
        if not isinstance(self.group_id, ConversationId):
            raise InvalidInput("GroupStateSnapshot.group_id must be a ConversationId")
        _check_uint(self.storage_version, "GroupStateSnapshot.storage_version")
        _check_uint(self.exported_at_ms, "GroupStateSnapshot.exported_at_ms")
        if not isinstance(self.entries, (tuple, list)):
            raise InvalidInput("GroupStateSnapshot.entries must be a sequence of (key, value) pairs")
        if not all(isinstance(e, (tuple, list)) and len(e) == 2 for e in self.entries):
            raise InvalidInput("GroupStateSnapshot.entries must be (key, value) pairs")
        entries = tuple((k, v) for k, v in self.entries)
        if len(entries) > MAX_SNAPSHOT_ENTRIES:
            raise InvalidInput("GroupStateSnapshot: too many entries")
        for key, value in entries:
            check_text(key, "GroupStateSnapshot key", MAX_STATE_KEY_LEN)
            _check_bytes(value, "GroupStateSnapshot value", max_len=MAX_STATE_VALUE_LEN)
        if len({k for k, _ in entries}) != len(entries):
            raise InvalidInput("GroupStateSnapshot: duplicate key")
        object.__setattr__(self, "entries", entries)

    def encode(self) -> bytes:
        return encode_record(
            GROUP_STATE_SNAPSHOT_VERSION,
            {
                "group_id": self.group_id.value,
                "storage_version": self.storage_version,
                "exported_at_ms": self.exported_at_ms,
                "entries": [[k, v] for k, v in self.entries],
            },
        )

    @classmethod
    def decode(cls, data: bytes) -> "GroupStateSnapshot":
        """Parse :meth:`encode` output; ``InvalidInput`` on anything else."""
        rec = decode_record(
            data,
            what="GroupStateSnapshot",
            version=GROUP_STATE_SNAPSHOT_VERSION,
            keys=("group_id", "storage_version", "exported_at_ms", "entries"),
            max_size=MAX_SNAPSHOT_SIZE,
        )
        entries = []
        for i, item in enumerate(rec.get_list("entries", max_items=MAX_SNAPSHOT_ENTRIES)):
            what = f"GroupStateSnapshot.entries[{i}]"
            pair = as_list(item, what, max_items=2)
            if len(pair) != 2:
                raise InvalidInput(f"{what}: expected [key, value]")
            entries.append(
                (as_text(pair[0], f"{what}.key", max_len=MAX_STATE_KEY_LEN), as_bytes(pair[1], f"{what}.value", max_len=MAX_STATE_VALUE_LEN))
            )
        return cls(
            ConversationId(rec.get_bytes("group_id", length=ConversationId.LENGTH)),
            rec.get_uint("storage_version"),
            rec.get_uint("exported_at_ms"),
            tuple(entries),
        )

    def __repr__(self) -> str:
        return f"GroupStateSnapshot(group_id={self.group_id.as_hex()}, storage_version={self.storage_version}, entries={len(self.entries)})"
