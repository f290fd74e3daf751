"""Welcome and what it carries (RFC 9420 §12.4.3.1): PathSecret, GroupSecrets,
EncryptedGroupSecrets, Welcome. PreSharedKeyID and PSKLabel are in ``psk``."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import NamedTuple

from ping_core.errors import MlsDecodeError, MlsReason
from ping_core.mls.tls import Reader, Writer

from .hpke import HPKECiphertext
from .limits import MAX_HASH, MAX_KEM_OUTPUT
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


class EncryptedGroupSecrets(NamedTuple):
    """``struct { KeyPackageRef new_member; HPKECiphertext encrypted_group_secrets; }``.

    A named tuple, like HPKECiphertext: a Welcome holds one per new member."""

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
        return cls(r.u16(), _read_secrets(r), r.opaque())

    def find_secrets(self, key_package_ref: bytes) -> EncryptedGroupSecrets | None:
        """The entry addressed to the KeyPackage with this reference, if any."""
        for entry in self.secrets:
            if entry.new_member == key_package_ref:
                return entry
        return None


def _read_secrets(r: Reader) -> tuple[EncryptedGroupSecrets, ...]:
    """``EncryptedGroupSecrets secrets<V>``: the same values and errors as
    ``r.structs(EncryptedGroupSecrets)``. An entry whose three lengths are minimal one- or
    two-byte varints within every bound (all of them, in practice) is sliced here; any other is
    read through the Reader from its first byte, which raises what it always raises."""
    n = r._length()
    stop = r.pos + n
    saved_end = r.end
    r.end = stop
    data, new, egs, hct = r.data, tuple.__new__, EncryptedGroupSecrets, HPKECiphertext
    bound = r.max_vector
    out: list[EncryptedGroupSecrets] = []
    append = out.append
    try:
        pos = r.pos
        while pos < stop:
            a = _short(data, pos, stop, min(bound, MAX_HASH))
            b = _short(data, a[1], stop, min(bound, MAX_KEM_OUTPUT)) if a is not None else None
            c = _short(data, b[1], stop, bound) if b is not None else None
            if a is not None and b is not None and c is not None:
                append(new(egs, (a[0], new(hct, (b[0], c[0])))))
                pos = c[1]
                continue
            r.pos = pos
            append(EncryptedGroupSecrets.read(r))
            pos = r.pos
        r.pos = pos
    finally:
        r.end = saved_end
    return tuple(out)


def _short(data: bytes, p: int, end: int, bound: int) -> tuple[bytes, int] | None:
    """``opaque<V>`` at ``p`` with a minimal one- or two-byte length of at most ``bound`` that
    fits before ``end``, and the position after it; None for anything else."""
    if p >= end:
        return None
    first = data[p]
    if first < 0x40:
        n, a = first, p + 1
    elif first < 0x80 and p + 2 <= end:
        n, a = ((first & 0x3F) << 8) | data[p + 1], p + 2
        if n < 0x40:
            return None
    else:
        return None
    b = a + n
    if n > bound or b > end:
        return None
    return data[a:b], b
