"""Welcome and what it carries (RFC 9420 §12.4.3.1): PathSecret, GroupSecrets,
EncryptedGroupSecrets, Welcome. PreSharedKeyID and PSKLabel are in ``psk``."""

from __future__ import annotations

from dataclasses import dataclass, field

from ping_core.errors import MlsDecodeError, MlsReason
from ping_core.mls.tls import Reader, Writer

from .hpke import HPKECiphertext
from .limits import MAX_HASH
from ping_core.mls.structs.psk_id import PreSharedKeyID

__all__ = ["PathSecret", "GroupSecrets", "EncryptedGroupSecrets", "Welcome"]


@dataclass(frozen=True, slots=True)
class PathSecret:
    """``struct { opaque path_secret<V>; } PathSecret`` (secret: not in repr)."""

    path_secret: bytes = field(repr=False)

    def write(self, w: Writer) -> None:
        w.opaque(self.path_secret)

    @classmethod
    def read(cls, r: Reader) -> PathSecret:
        return cls(r.opaque(MAX_HASH))


@dataclass(frozen=True, slots=True)
class GroupSecrets:
    """``struct { opaque joiner_secret<V>; optional<PathSecret> path_secret;
    PreSharedKeyID psks<V>; } GroupSecrets``.

    ``path_secret`` is the PathSecret's bytes, or ``None`` when absent. The
    secrets never appear in repr.
    """

    joiner_secret: bytes = field(repr=False)
    path_secret: bytes | None = field(default=None, repr=False)
    psks: tuple[PreSharedKeyID, ...] = ()

    def write(self, w: Writer) -> None:
        w.opaque(self.joiner_secret)
        w.optional_opaque(self.path_secret)
        w.structs(self.psks)

    @classmethod
    def read(cls, r: Reader) -> GroupSecrets:
        joiner_secret = r.opaque(MAX_HASH)
        flag = r.u8()
        if flag == 0:
            path_secret = None
        elif flag == 1:
            path_secret = r.opaque(MAX_HASH)
        else:
            raise MlsDecodeError(f"invalid optional presence byte {flag}", reason=MlsReason.MALFORMED)
        return cls(joiner_secret, path_secret, r.structs(PreSharedKeyID))


@dataclass(frozen=True, slots=True)
class EncryptedGroupSecrets:
    """``struct { KeyPackageRef new_member; HPKECiphertext encrypted_group_secrets; }``."""

    new_member: bytes
    encrypted_group_secrets: HPKECiphertext

    def write(self, w: Writer) -> None:
        w.opaque(self.new_member)
        self.encrypted_group_secrets.write(w)

    @classmethod
    def read(cls, r: Reader) -> EncryptedGroupSecrets:
        return cls(r.opaque(MAX_HASH), HPKECiphertext.read(r))


@dataclass(frozen=True, slots=True)
class Welcome:
    """``struct { CipherSuite cipher_suite; EncryptedGroupSecrets secrets<V>;
    opaque encrypted_group_info<V>; } Welcome`` (suite carried as read)."""

    cipher_suite: int
    secrets: tuple[EncryptedGroupSecrets, ...]
    encrypted_group_info: bytes

    def write(self, w: Writer) -> None:
        w.u16(self.cipher_suite)
        w.structs(self.secrets)
        w.opaque(self.encrypted_group_info)

    @classmethod
    def read(cls, r: Reader) -> Welcome:
        return cls(r.u16(), r.structs(EncryptedGroupSecrets), r.opaque())

    def find_secrets(self, key_package_ref: bytes) -> EncryptedGroupSecrets | None:
        """The entry addressed to the KeyPackage with this reference, if any."""
        for entry in self.secrets:
            if entry.new_member == key_package_ref:
                return entry
        return None
