"""Resolving pre-shared keys (RFC 9420 §8.4) for commits and Welcomes.

External PSKs come from the application: a mapping ``psk_id -> secret`` or a
callable given to the call that needs them. Resumption PSKs of this group
come from the group itself (the current epoch and the retained past epochs);
those of other groups also from the application.
"""

from __future__ import annotations

from typing import Callable, Mapping, Sequence, Union

from ping_core.errors import MlsError, MlsReason
from ping_core.mls.structs import PreSharedKeyID, PSKType

__all__ = ["PskSource", "resolve_psks"]

PskSource = Union[Mapping[bytes, bytes], Callable[[PreSharedKeyID], "bytes | None"], None]
"""External PSKs: ``{psk_id: secret}``, or a callable returning the secret of
a PreSharedKeyID (``None`` when unknown)."""


def _lookup(source: PskSource, psk: PreSharedKeyID) -> bytes | None:
    if source is None:
        return None
    if callable(source):
        return source(psk)
    if psk.psktype == PSKType.EXTERNAL:
        return source.get(psk.psk_id)
    return None


def resolve_psks(
    psk_ids: Sequence[PreSharedKeyID],
    source: PskSource,
    *,
    group_id: bytes | None = None,
    resumption: Mapping[int, bytes] | None = None,
) -> list[tuple[PreSharedKeyID, bytes]]:
    """``[(id, secret)]`` in order, or ``MlsError`` naming the first unknown PSK.

    ``resumption`` maps epochs of group ``group_id`` to their resumption_psk.
    """
    out: list[tuple[PreSharedKeyID, bytes]] = []
    for psk in psk_ids:
        value: bytes | None = None
        if psk.psktype == PSKType.RESUMPTION and resumption is not None and psk.psk_group_id == group_id:
            value = resumption.get(psk.psk_epoch)
        if value is None:
            value = _lookup(source, psk)
        if value is None:
            if psk.psktype == PSKType.EXTERNAL:
                raise MlsError(f"unknown external PSK {psk.psk_id.hex()}", reason=MlsReason.UNKNOWN_PSK)
            raise MlsError(f"unknown resumption PSK of epoch {psk.psk_epoch}", reason=MlsReason.UNKNOWN_PSK)
        out.append((psk, value))
    return out
